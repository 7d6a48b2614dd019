//! Fan-out to two sinks: the HTTP answer waits for both; the SQLite sink
//! sets a record it can never write aside in its dead-letter table without
//! stalling the rest; the jsonl sink rotates by size; a batch is written
//! once it holds `batch.max_bytes`.

mod support;

use support::{p, payloads, start, wait_rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_dead_letters_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let jsonl = dir.path().join("out").join("records.jsonl");
    let run = start(&format!(
        r#"
data_dir = "{data}"

[sources.web]
kind = "http_push"
address = "127.0.0.1:0"
id_field = "id"

[sinks.db]
kind = "sqlite"
inputs = ["web"]
path = "{db}"
max_record_size = "64"
batch = {{ timeout = "5ms" }}

[sinks.files]
kind = "jsonl"
inputs = ["web"]
path = "{jsonl}"
max_size = "300"
max_files = 2
batch = {{ max_records = 1, timeout = "5ms" }}
"#,
        data = p(&dir.path().join("data")),
        db = p(&db),
        jsonl = p(&jsonl),
    ))
    .await;
    let url = format!("http://{}/", run.pipeline.local_addr("web").unwrap());
    let http = reqwest::Client::new();
    for i in 0..10 {
        let r = http
            .post(&url)
            .body(format!(r#"{{"id":"{i}","n":{i}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let big = format!(r#"{{"id":"big","text":"{}"}}"#, "b".repeat(100));
    let r = http.post(&url).body(big).send().await.unwrap();
    assert_eq!(r.status(), 200, "a dead-lettered record is handled");
    let r = http
        .post(&url)
        .body(r#"{"id":"after"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the rest is not stalled");

    // 200 means both sinks committed: everything is in place now.
    assert_eq!(payloads(&db).await.len(), 11);
    let pool = support::db(&db).await;
    let dead: Vec<(String, String)> =
        sqlx::query_as("SELECT record_id, error FROM records_dead_letters")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "big");
    assert!(dead[0].1.contains("max_record_size"), "{}", dead[0].1);

    let rotated = |n: usize| dir.path().join("out").join(format!("records.jsonl.{n}"));
    assert!(
        rotated(1).exists() && rotated(2).exists(),
        "rotated twice at least"
    );
    assert!(
        !rotated(3).exists(),
        "only max_files rotated files are kept"
    );
    for f in [jsonl.clone(), rotated(1), rotated(2)] {
        let len = std::fs::metadata(&f).unwrap().len();
        assert!(len <= 300, "{} is {len} bytes", f.display());
    }
    let newest = std::fs::read_to_string(&jsonl).unwrap();
    let last: serde_json::Value = serde_json::from_str(newest.lines().last().unwrap()).unwrap();
    assert_eq!(last["id"], "after");
    assert_eq!(last["source"], "web");
    assert!(run.stop().await);
}

/// A file source into SQLite batching by `max_bytes`, with `timeout`.
fn by_bytes(dir: &std::path::Path, timeout: &str) -> String {
    format!(
        r#"
data_dir = "{data}"
drain_timeout = "1s"

[sources.app]
kind = "file"
path = "{log}"
poll_interval = "10ms"

[sinks.db]
kind = "sqlite"
inputs = ["app"]
path = "{db}"
batch = {{ max_records = 1000, max_bytes = "250", timeout = "{timeout}" }}
"#,
        data = p(&dir.join("data")),
        log = p(&dir.join("app.log")),
        db = p(&dir.join("out.db")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_close_at_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    // Ten 100-byte lines, 250 bytes a batch (it closes at the third line),
    // and a batch timeout no test waits for: only the byte limit can write
    // them while the pipeline runs.
    let line = |i: usize| format!("{i}{}", "x".repeat(99));
    let text: String = (0..10).map(|i| format!("{}\n", line(i))).collect();
    std::fs::write(dir.path().join("app.log"), text).unwrap();
    let run = start(&by_bytes(dir.path(), "1h")).await;
    let written = wait_rows(&db, 9).await;
    assert_eq!(written, (0..9).map(line).collect::<Vec<_>>());
    assert_eq!(run.pipeline.stats().sinks["db"].records_out, 9);
    // The tenth waits for its batch's timeout while the pipeline runs; a
    // drain writes it at once (the source waits for its acknowledgement),
    // long before the hour is up or the drain deadline cuts anything short.
    // (`stop` is false when `drain_timeout`, 1 s here, cut the drain short.)
    assert_eq!(payloads(&db).await.len(), 9);
    assert!(run.stop().await, "the drain wrote the partial batch");
    assert_eq!(payloads(&db).await, (0..10).map(line).collect::<Vec<_>>());
    // A restart finds everything acknowledged: nothing read again, nothing twice.
    let run = start(&by_bytes(dir.path(), "5ms")).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(run.stop().await);
    assert_eq!(payloads(&db).await, (0..10).map(line).collect::<Vec<_>>());
}

/// A database another connection holds locked for a moment when the
/// pipeline starts (a writer of the pipeline before a restart, still
/// closing) delays the start instead of failing it, even with a
/// `busy_timeout` far shorter than the lock: that setting bounds one
/// batch's wait, and opening has no batch loop to retry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_at_start_is_waited_for() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let mut holder =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", db.display()))
            .await
            .unwrap();
    sqlx::raw_sql("PRAGMA journal_mode=WAL; BEGIN EXCLUSIVE; CREATE TABLE held(x);")
        .execute(&mut holder)
        .await
        .unwrap();
    // Released while the pipeline starts, in the same task (`join!`).
    let release = async move {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
        holder.close().await.unwrap();
    };
    let started = std::time::Instant::now();
    let config = format!(
        r#"
data_dir = "{data}"

[sources.web]
kind = "http_push"
address = "127.0.0.1:0"
id_field = "id"

[sinks.db]
kind = "sqlite"
inputs = ["web"]
path = "{db}"
busy_timeout = "10ms"
batch = {{ timeout = "5ms" }}
"#,
        data = p(&dir.path().join("data")),
        db = p(&db),
    );
    let (run, ()) = tokio::join!(start(&config), release);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "the start waited for the lock ({:?})",
        started.elapsed()
    );
    let url = format!("http://{}/", run.pipeline.local_addr("web").unwrap());
    let r = reqwest::Client::new()
        .post(&url)
        .body(r#"{"id":"1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(run.stop().await);
    assert_eq!(payloads(&db).await, [r#"{"id":"1"}"#]);
}
