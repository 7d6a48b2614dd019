//! `sluice server` with `submit`, `watch`, `status`, `jobs` and `cancel`
//! against it.

use std::io::Write;

use crate::support::{Proc, free_addr, run, sluice, text, wait_ready};

struct Server {
    proc: Proc,
    url: String,
    _dir: tempfile::TempDir,
}

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let db = dir.path().join("jobs.db");
    let proc = Proc::spawn(sluice().args([
        "server",
        "--db",
        db.to_str().unwrap(),
        "--listen",
        &addr.to_string(),
        "--workers",
        "8",
    ]));
    let url = format!("http://{addr}");
    wait_ready(&format!("{url}/healthz"));
    Server {
        proc,
        url,
        _dir: dir,
    }
}

fn write(dir: &std::path::Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    path.display().to_string()
}

fn batch_id(out: &std::process::Output) -> String {
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(id.len(), 36, "a UUID on stdout: {}", text(out));
    id
}

#[test]
fn submit_watch_status_jobs_and_cancel_through_the_api() {
    let mut s = server();
    let dir = tempfile::tempdir().unwrap();

    // A batch that succeeds: watch exits 0.
    let good = write(
        dir.path(),
        "good.jsonl",
        &(0..5)
            .map(|i| format!("{{\"kind\":\"sleep\",\"args\":{{\"ms\":{}}}}}\n", 20 * i))
            .collect::<String>(),
    );
    let out = run(&s.url, &["submit", &good, "--name", "good"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let good_id = batch_id(&out);
    let out = run(&s.url, &["watch", &good_id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("succeeded"),
        "{}",
        text(&out)
    );
    let out = run(&s.url, &["status", &good_id]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(good)"),
        "{}",
        text(&out)
    );

    // A batch with a job that fails for good: watch prints it and exits 1.
    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"jobs": [
            {"kind": "noop"},
            {"kind": "http", "args": {"url": "http://127.0.0.1:1/"}, "max_attempts": 1}
        ]}"#,
    );
    let out = run(&s.url, &["submit", &bad]);
    let bad_id = batch_id(&out);
    let out = run(&s.url, &["watch", &bad_id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let failed = run(&s.url, &["jobs", "--state", "failed", "--json"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&failed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", text(&failed));
    assert_eq!(lines[0]["kind"], "http");
    let job_id = lines[0]["id"].as_str().unwrap().to_owned();
    let out = run(&s.url, &["status", &job_id]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("state failed"), "{}", text(&out));
    assert!(shown.contains("attempt 1"), "{}", text(&out));

    // A refused batch names the job and field, and stores nothing.
    let refused = write(
        dir.path(),
        "refused.json",
        r#"[{"kind": "noop"}, {"kind": "no-such-kind"}]"#,
    );
    let out = run(&s.url, &["submit", &refused]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jobs[1]"), "{}", text(&out));
    assert!(err.contains("no-such-kind"), "{}", text(&out));
    let all = run(&s.url, &["jobs", "--json", "--limit", "1000"]);
    assert_eq!(
        String::from_utf8_lossy(&all.stdout).lines().count(),
        7,
        "5 + 2 jobs, none of the refused batch: {}",
        text(&all)
    );

    // Cancel a long job; cancelling it again reports it finished.
    let long = write(
        dir.path(),
        "long.json",
        r#"{"kind": "sleep", "args": {"ms": 60000}}"#,
    );
    let out = run(&s.url, &["submit", &long]);
    let long_batch = batch_id(&out);
    let out = run(&s.url, &["cancel", &long_batch]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&s.url, &["cancel", &long_batch]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = run(&s.url, &["status", "00000000-0000-7000-8000-000000000000"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // Lines of a file become jobs of one kind.
    let urls = write(
        dir.path(),
        "urls.txt",
        &format!("{0}/healthz\n# a comment\n{0}/healthz\n", s.url),
    );
    let out = run(
        &s.url,
        &["submit", "--kind", "http", "--args-from", &urls, "--watch"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2/2"),
        "{}",
        text(&out)
    );

    assert_eq!(s.proc.terminate(), Some(0), "SIGTERM exits 0");
}

#[test]
fn the_server_refuses_a_public_address_without_a_token() {
    let out = sluice()
        .args([
            "server",
            "--listen",
            "0.0.0.0:0",
            "--db",
            "/nonexistent/x.db",
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("token") && err.contains("--insecure"),
        "{}",
        text(&out)
    );
}
