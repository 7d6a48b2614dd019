//! Scaling out: a `sluice server` serving only the API and two `sluice
//! worker` processes, all on one PostgreSQL schema, run a batch together.
//! Skipped when `SLUICE_TEST_POSTGRES_URL` is unset.

use std::io::Write;

use crate::support::{Proc, Schema, free_addr, run, sluice, text, wait_ready};

#[test]
fn an_api_server_and_two_worker_processes_share_one_postgres_queue() {
    let Some(schema) = Schema::from_env() else {
        return;
    };
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
