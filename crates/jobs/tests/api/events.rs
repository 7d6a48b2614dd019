//! `GET /v1/events`: job events until a batch finishes, and resumption
//! from `Last-Event-ID` with no loss and no repeat.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_jobs::api::{self, ApiConfig, ApiState};
use sluice_jobs::kinds::BuiltinOptions;
use sluice_jobs::store::ChangeCursor;
use sluice_jobs::{Client, Registry, SqliteConfig, SqliteStore, Store};
use tokio_util::sync::CancellationToken;

use crate::support::{Server, SseEvent, SseReader, expect_error};

async fn open(s: &Server, query: &str, last_id: Option<&str>) -> SseReader {
    let mut req = s.http.get(s.url(&format!("/v1/events{query}")));
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    SseReader::new(req.send().await.unwrap())
}

/// Reads job events until the batch event says the batch finished.
async fn until_finished(stream: &mut SseReader) -> (Vec<SseEvent>, serde_json::Value) {
    let mut jobs = Vec::new();
    loop {
        let ev = stream.next().await.expect("stream ended early");
        match ev.event.as_str() {
            "job" => jobs.push(ev),
            "batch" if ev.data["state"] != "running" => return (jobs, ev.data),
            "batch" => {}
            other => panic!("unexpected event {other}: {:?}", ev.data),
        }
    }
}

fn cursor(ev: &SseEvent) -> ChangeCursor {
    ev.id
        .as_deref()
        .expect("job events have ids")
        .parse()
        .expect("a cursor")
}

/// Pages smaller than the batch and a slow throttle: reads loop over full
/// pages, and changes that come while a stream waits are not lost.
fn small_pages(c: &mut sluice_jobs::ApiConfig) {
    c.events_page = 2;
    c.events_min_interval = Duration::from_millis(300);
}

#[tokio::test]
async fn a_batch_stream_follows_jobs_until_the_batch_finishes() {
    batch_stream_follows_jobs(Server::with(small_pages).await).await;
}

#[tokio::test]
async fn a_batch_stream_follows_jobs_until_the_batch_finishes_on_postgres() {
    if let Some(s) = Server::postgres_with(small_pages).await {
        batch_stream_follows_jobs(s).await;
    }
}

async fn batch_stream_follows_jobs(s: Server) {
    let (batch, jobs) = s.submit_noops(5).await;
    let mut stream = open(&s, &format!("?batch={batch}"), None).await;
    // A new stream starts with the batch as it is.
    let first = stream.next().await.unwrap();
    assert_eq!(first.event, "batch");
    assert_eq!(first.data["id"], batch.as_str());
    assert!(first.id.is_none(), "batch events carry no id");

    let runner = s.runner();
    let (events, done) = until_finished(&mut stream).await;
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["counts"]["succeeded"], 5);

    let cursors: Vec<ChangeCursor> = events.iter().map(cursor).collect();
    let mut sorted = cursors.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(cursors, sorted, "ids strictly increase");
    // The last event of each job shows it succeeded, in the compact form.
    let mut last: HashMap<String, &SseEvent> = HashMap::new();
    for ev in &events {
        assert_eq!(ev.data["batch_id"], batch.as_str());
        assert!(ev.data.get("args").is_none(), "no args in events");
        last.insert(ev.data["id"].as_str().unwrap().to_owned(), ev);
    }
    assert_eq!(last.len(), 5);
    for id in &jobs {
        assert_eq!(last[id].data["state"], "succeeded");
        assert_eq!(last[id].data["attempt"], 1);
    }
    runner.shutdown().await;
}

#[tokio::test]
async fn resuming_returns_exactly_the_changes_after_the_cursor() {
    resuming_after_a_cursor(Server::start().await).await;
}

#[tokio::test]
async fn resuming_returns_exactly_the_changes_after_the_cursor_on_postgres() {
    if let Some(s) = Server::postgres_with(|_| {}).await {
        resuming_after_a_cursor(s).await;
    }
}

async fn resuming_after_a_cursor(s: Server) {
    let (batch, _) = s.submit_noops(4).await;
    let mut live = open(&s, &format!("?batch={batch}"), None).await;
    let runner = s.runner();
    let (events, _) = until_finished(&mut live).await;
    drop(live);
    runner.shutdown().await;

    // Each job's final change is the last event about it.
    let mut finals: HashMap<String, ChangeCursor> = HashMap::new();
    for ev in &events {
        finals.insert(ev.data["id"].as_str().unwrap().to_owned(), cursor(ev));
    }
    for (k, resume_at) in events.iter().enumerate() {
        let from = cursor(resume_at);
        let mut expected: Vec<(ChangeCursor, String)> = finals
            .iter()
            .filter(|(_, c)| **c > from)
            .map(|(id, c)| (*c, id.clone()))
            .collect();
        expected.sort();

        let id = resume_at.id.as_deref().unwrap();
        // Header and query resume alike.
        for (query, header) in [
            (format!("?batch={batch}"), Some(id)),
            (format!("?batch={batch}&after={id}"), None),
        ] {
            let mut resumed = open(&s, &query, header).await;
            let mut got = Vec::new();
            if !expected.is_empty() {
                loop {
                    let ev = resumed.next().await.unwrap();
                    assert_ne!(ev.event, "error", "{:?}", ev.data);
                    if ev.event == "job" {
                        got.push((cursor(&ev), ev.data["id"].as_str().unwrap().to_owned()));
                    } else if ev.event == "batch" {
                        break;
                    }
                }
            }
            assert_eq!(got, expected, "resumed after event {k} ({query})");
        }
    }
}

#[tokio::test]
async fn a_job_stream_and_the_all_stream_see_changes() {
    let s = Server::start().await;
    let (status, body) = s
        .post("/v1/jobs", json!({"kind": "sleep", "args": {"ms": 1}}))
        .await;
    assert_eq!(status, 201);
    let id = body["id"].as_str().unwrap().to_owned();
    let mut one = open(&s, &format!("?job={id}"), None).await;
    let mut all = open(&s, "", None).await;
    let runner = s.runner();
    for stream in [&mut one, &mut all] {
        loop {
            let ev = stream.next().await.unwrap();
            assert_eq!(ev.event, "job");
            assert_eq!(ev.data["id"], id.as_str());
            if ev.data["state"] == "succeeded" {
                break;
            }
        }
    }
    runner.shutdown().await;
}

#[tokio::test]
async fn after_now_starts_at_the_present_without_replaying_history() {
    let s = Server::start().await;
    let (_, old) = s.submit_noops(3).await;
    let mut stream = open(&s, "?after=now", None).await;
    let (status, body) = s
        .post("/v1/jobs", json!({"kind": "noop", "args": {}}))
        .await;
    assert_eq!(status, 201);
    let new = body["id"].as_str().unwrap().to_owned();
    let ev = stream.next().await.expect("an event for the new job");
    assert_eq!(ev.event, "job");
    assert_eq!(ev.data["id"], new.as_str(), "old jobs {old:?} not replayed");
}

#[tokio::test]
async fn bad_stream_requests_are_refused() {
    let s = Server::start().await;
    let missing = uuid::Uuid::now_v7();
    expect_error(
        &s.get(&format!("/v1/events?batch={missing}")).await,
        404,
        "not_found",
    );
    expect_error(
        &s.get(&format!("/v1/events?job={missing}")).await,
        404,
        "not_found",
    );
    expect_error(
        &s.get(&format!("/v1/events?job={missing}&batch={missing}"))
            .await,
        400,
        "bad_request",
    );
    let err = expect_error(
        &s.get("/v1/events?after=yesterday").await,
        400,
        "bad_request",
    );
    assert!(err["message"].as_str().unwrap().contains("yesterday"));
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let s = Server::start().await;
    let (batch, _) = s.submit_noops(1).await;
    let mut stream = open(&s, &format!("?batch={batch}"), None).await;
    stream.next().await.unwrap();
    // serve returns only once every response ended, the stream included.
    s.stop().await.expect("clean stop");
    while let Some(ev) = stream.next().await {
        assert_ne!(ev.event, "error");
    }
}

#[tokio::test]
async fn a_router_mounted_elsewhere_ends_streams_by_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(SqliteConfig::at(dir.path().join("db")))
            .await
            .unwrap(),
    );
    let registry = Arc::new(Registry::with_builtins(BuiltinOptions::default()));
    let token = CancellationToken::new();
    let state = ApiState::new(Client::new(store, registry), ApiConfig::default())
        .with_shutdown(token.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/events", listener.local_addr().unwrap());
    // Plain axum::serve, not api::serve: only the state's token can end it.
    let server = tokio::spawn(async move {
        axum::serve(listener, api::router(state)).await.unwrap();
    });
    let res = reqwest::get(&url).await.unwrap();
    let mut stream = SseReader::new(res);
    token.cancel();
    assert!(stream.next().await.is_none(), "the stream ended");
    server.abort();
}
