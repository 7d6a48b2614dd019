//! The `http_push` source over real HTTP into a real SQLite sink: 200 only
//! after the commit, 503 when full, 413 and 400 with clear errors, and
//! idempotent writes by id.

mod support;

use std::path::Path;
use std::time::Duration;

use sqlx::Connection;

use support::{p, payloads, start, wait_rows};

fn config(dir: &Path) -> String {
    format!(
        r#"
data_dir = "{data}"
buffer = 2

[sources.web]
kind = "http_push"
address = "127.0.0.1:0"
path = "/ingest"
max_body = "1KiB"
id_field = "id"

[sinks.db]
kind = "sqlite"
inputs = ["web"]
path = "{db}"
busy_timeout = "10ms"
batch = {{ max_records = 1, timeout = "5ms" }}
retry = {{ initial = "10ms", max = "20ms" }}
"#,
        data = p(&dir.join("data")),
        db = p(&dir.join("out.db")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_200_after_commit_and_errors_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let run = start(&config(dir.path())).await;
    let url = format!("http://{}/ingest", run.pipeline.local_addr("web").unwrap());
    let http = reqwest::Client::new();

    let r = http
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"[{"id":"a","n":1},{"id":"b","n":2}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"accepted":2}"#);
    // 200 means committed: the rows are there now, without waiting.
    assert_eq!(payloads(&db).await.len(), 2);

    let r = http
        .post(&url)
        .header("content-type", "application/x-ndjson")
        .body("{\"id\":\"a\",\"n\":1}\n{\"id\":\"c\",\"n\":3}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rows = payloads(&db).await;
    assert_eq!(rows.len(), 3, "id a is not written twice: {rows:?}");

    let r = http.post(&url).body("{nope").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("invalid_json"));
    let r = http
        .post(&url)
        .header("content-type", "application/x-ndjson")
        .body("{}\n{bad\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("line 2"));
    let r = http
        .post(&url)
        .body(format!("\"{}\"", "z".repeat(2000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("max_body"));
    let r = http.post(&url).body("[1,2,3]").send().await.unwrap();
    assert_eq!(r.status(), 413, "more records than the buffer holds");
    assert_eq!(payloads(&db).await.len(), 3);
    assert!(run.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_503_when_full_then_200_once_the_sink_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let run = start(&config(dir.path())).await;
    let url = format!("http://{}/ingest", run.pipeline.local_addr("web").unwrap());
    let mut locked = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locked)
        .await
        .unwrap();

    // Requests wait for their commit, which cannot happen: each one takes a
    // slot until the pipeline (sink batch + buffer of 2) is full.
    let http = reqwest::Client::new();
    let mut waiting = Vec::new();
    let mut refused = None;
    for i in 0..20 {
        let req = http.post(&url).body(format!(r#"{{"id":"{i}"}}"#));
        let (tx, rx) = tokio::sync::oneshot::channel();
        waiting.push(tokio::spawn(async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let _ = tx.send(status);
            (status, r.headers().get("retry-after").is_some())
        }));
        // A refused request answers at once; an accepted one does not.
        if let Ok(Ok(503)) = tokio::time::timeout(Duration::from_millis(100), rx).await {
            refused = Some(i);
            break;
        }
    }
    let refused = refused.expect("some request was refused with 503");
    sqlx::query("ROLLBACK").execute(&mut locked).await.unwrap();
    drop(locked);
    let mut ok = 0;
    for (i, w) in waiting.into_iter().enumerate() {
        let (status, retry_after) = w.await.unwrap();
        if i == refused {
            assert_eq!(status, 503);
            assert!(retry_after);
        } else {
            assert_eq!(status, 200);
            ok += 1;
        }
    }
    assert!(ok >= 1);
    wait_rows(&db, ok).await;
    assert_eq!(
        payloads(&db).await.len(),
        ok,
        "exactly the accepted records"
    );
    assert!(run.stop().await);
}
