//! Scaling out: a `sluice server` serving only the API and two `sluice
//! worker` processes, all on one PostgreSQL schema, run a batch together.
//! Skipped when `SLUICE_TEST_POSTGRES_URL` is unset.

use std::io::Write;

use crate::support::{Proc, free_addr, run, sluice, text, wait_ready};

/// A schema of its own, dropped at the end (even after a panic).
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: String) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("sluice_cli_{}_{nanos}", std::process::id());
        Self { url, name }
    }

    /// The `--db` value: the server's URL with `schema=` in its query.
    fn db(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.url, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dropped = rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&self.url).await?;
            sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name))
                .execute(&mut c)
                .await?;
            Ok::<_, sqlx::Error>(())
        });
        if let Err(e) = dropped {
            eprintln!("could not drop schema {}: {e}", self.name);
        }
    }
}

#[test]
fn an_api_server_and_two_worker_processes_share_one_postgres_queue() {
    let url = match std::env::var("SLUICE_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            eprintln!("skipping: SLUICE_TEST_POSTGRES_URL unset");
            return;
        }
    };
    let schema = Schema::new(url);
    let db = schema.db();
    let addr = free_addr();
    let mut server = Proc::spawn(sluice().args([
        "server",
        "--db",
        &db,
        "--listen",
        &addr.to_string(),
        "--workers",
        "0",
    ]));
    let api = format!("http://{addr}");
    wait_ready(&format!("{api}/healthz"));
    let mut workers: Vec<Proc> = (0..2)
        .map(|_| Proc::spawn(sluice().args(["worker", "--db", &db, "--concurrency", "4"])))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..40 {
        writeln!(
            f,
            "{{\"kind\":\"sleep\",\"args\":{{\"ms\":{}}}}}",
            10 + i % 5
        )
        .unwrap();
    }
    drop(f);
    let out = run(&api, &["submit", path.to_str().unwrap(), "--watch"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("40/40"),
        "{}",
        text(&out)
    );
    let all = run(&api, &["jobs", "--json", "--limit", "1000"]);
    let jobs: Vec<serde_json::Value> = String::from_utf8_lossy(&all.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(jobs.len(), 40, "{}", text(&all));
    assert!(
        jobs.iter()
            .all(|j| j["state"] == "succeeded" && j["attempt"] == 1),
        "each job ran once: {}",
        text(&all)
    );

    for w in &mut workers {
        assert_eq!(w.terminate(), Some(0), "a worker exits 0 on SIGTERM");
    }
    assert_eq!(server.terminate(), Some(0), "the server exits 0 on SIGTERM");
}
