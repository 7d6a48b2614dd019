//! Crash safety: a batch of 2,000 jobs, the process running them killed
//! with SIGKILL mid-batch and started again. Every job ends succeeded
//! exactly once in the store; only jobs that were running on the killed
//! worker ran twice (each with a `lease_expired` error recorded); the
//! batch callback fired once; recovery took under 30 s.
//!
//! On SQLite one process serves and works; on PostgreSQL (when
//! `SLUICE_TEST_POSTGRES_URL` is set) an API-only server and two workers
//! share the queue and one worker is killed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::support::{Proc, Schema, free_addr, sluice};

const JOBS: usize = 2_000;

/// Records every call the jobs make: hits per job index, and webhooks.
#[derive(Clone, Default)]
struct Sink {
    hits: Arc<Mutex<HashMap<usize, usize>>>,
    hooks: Arc<Mutex<Vec<Value>>>,
}

async fn start_sink() -> (std::net::SocketAddr, Sink) {
    let sink = Sink::default();
    async fn hit(State(s): State<Sink>, Path(i): Path<usize>) -> &'static str {
        *s.hits.lock().unwrap().entry(i).or_default() += 1;
        // Long enough that a good number of jobs are in flight at the kill.
        tokio::time::sleep(Duration::from_millis(40)).await;
        "ok"
    }
    async fn hook(State(s): State<Sink>, body: axum::Json<Value>) -> &'static str {
        s.hooks.lock().unwrap().push(body.0);
        "ok"
    }
    let app = axum::Router::new()
        .route("/hit/{i}", get(hit))
        .route("/hook", post(hook))
        .with_state(sink.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr, sink)
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn wait_healthy(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(url).await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never became healthy");
}

fn worker_args(db: &str) -> Vec<String> {
    ["--db", db, "--queues", "default,callbacks"]
        .map(str::to_owned)
        .to_vec()
}

/// Runs the scenario: `spawn_worker` starts the process that is killed.
async fn crash_and_recover(db: &str, server_works: bool, extra_workers: usize) {
    let (sink_addr, sink) = start_sink().await;
    let api = free_addr();
    let mut server_cmd = sluice();
    server_cmd
        .args(["server", "--listen", &api.to_string()])
        .args(worker_args(db))
        .args(["--workers", if server_works { "16" } else { "0" }]);
    let mut server = Proc::spawn(&mut server_cmd);
    let base = format!("http://{api}");
    wait_healthy(&format!("{base}/healthz")).await;
    let spawn_worker = || {
        let mut c = sluice();
        c.arg("worker")
            .args(worker_args(db))
            .args(["--concurrency", "16"]);
        Proc::spawn(&mut c)
    };
    let mut workers: Vec<Proc> = (0..extra_workers).map(|_| spawn_worker()).collect();

    let jobs: Vec<Value> = (0..JOBS)
        .map(|i| json!({"kind": "http", "args": {"url": format!("http://{sink_addr}/hit/{i}")}}))
        .collect();
    let batch = json!({
        "name": "crash",
        "jobs": jobs,
        "callbacks": [{"on": "complete", "webhook": format!("http://{sink_addr}/hook")}]
    });
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/batches"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["batch_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Kill the working process once a fifth of the jobs are done.
    loop {
        let done: usize = sink.hits.lock().unwrap().len();
        if done >= JOBS / 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let victim = if server_works {
        &mut server
    } else {
        &mut workers[0]
    };
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let killed_at = Instant::now();
    if server_works {
        server = Proc::spawn(&mut server_cmd);
        wait_healthy(&format!("{base}/healthz")).await;
    } else {
        workers[0] = spawn_worker();
    }

    let b = loop {
        let b = get_json(&format!("{base}/v1/batches/{id}")).await;
        if !b["finished_at"].is_null() {
            break b;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(90),
            "batch not finished 90 s after the kill: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recovery = killed_at.elapsed();
    assert!(
        recovery < Duration::from_secs(30),
        "recovery took {recovery:?}"
    );
    assert_eq!(b["state"], "succeeded", "{b}");
    assert_eq!(b["counts"]["succeeded"], JOBS, "{b}");

    // Every job ran; the ones that ran twice are exactly those whose lease
    // expired on the killed worker.
    let hits = sink.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), JOBS, "every job ran");
    let twice: Vec<usize> = hits
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(i, _)| *i)
        .collect();
    assert!(hits.values().all(|n| *n <= 2), "no job ran three times");
    assert!(
        twice.len() <= 16,
        "{} jobs ran twice; at most 16 were running",
        twice.len()
    );
    let mut rescued = 0;
    let mut cursor = String::new();
    loop {
        let page = get_json(&format!("{base}/v1/batches/{id}/jobs?limit=1000{cursor}")).await;
        let list = page["items"].as_array().cloned().unwrap_or_default();
        for j in &list {
            assert_eq!(j["state"], "succeeded", "{j}");
            if j["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["kind"] == "lease_expired"))
            {
                rescued += 1;
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) if !list.is_empty() => cursor = format!("&cursor={c}"),
            _ => break,
        }
    }
    eprintln!(
        "crash test: {} jobs rescued from the killed process, {} ran twice, batch done {recovery:?} after the kill",
        rescued,
        twice.len()
    );
    assert!(
        twice.len() <= rescued,
        "{} jobs ran twice but only {rescued} were rescued from the dead worker",
        twice.len()
    );

    // The callback fired once.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.hooks.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sink.hooks.lock().unwrap().len(),
        1,
        "the callback fired once"
    );

    for w in &mut workers {
        assert_eq!(w.terminate(), Some(0));
    }
    assert_eq!(server.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_on_sqlite_loses_nothing_and_reruns_only_the_running_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    crash_and_recover(db.to_str().unwrap(), true, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_of_two_postgres_workers_loses_nothing() {
    let Some(schema) = Schema::from_env() else {
        return;
    };
    crash_and_recover(&schema.db(), false, 2).await;
}
