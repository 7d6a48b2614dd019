//! Fan-out to two sinks: the HTTP answer waits for both; the SQLite sink
//! sets a record it can never write aside in its dead-letter table without
//! stalling the rest; the jsonl sink rotates by size.

mod support;

use support::{p, payloads, start};

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
