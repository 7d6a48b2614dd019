//! The `filter` transform in a pipeline: only matching records reach the
//! sink, and the ones it drops are acknowledged (the HTTP answer is 200).

mod support;

use support::{p, payloads, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_matching_records_reach_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let run = start(&format!(
        r#"
data_dir = "{data}"

[sources.web]
kind = "http_push"
address = "127.0.0.1:0"

[transforms.errors]
kind = "filter"
inputs = ["web"]
condition = '.level == "error" or (.status >= 500 and not exists(.retried))'

[sinks.db]
kind = "sqlite"
inputs = ["errors"]
path = "{db}"
batch = {{ timeout = "5ms" }}
"#,
        data = p(&dir.path().join("data")),
        db = p(&db),
    ))
    .await;
    let url = format!("http://{}/", run.pipeline.local_addr("web").unwrap());
    let r = reqwest::Client::new()
        .post(&url)
        .body(
            r#"[
                {"k":1,"level":"error"},
                {"k":2,"level":"info","status":200},
                {"k":3,"status":503},
                {"k":4,"status":503,"retried":true},
                {"k":5,"status":"503"},
                "just text"
            ]"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "dropped records count as handled");
    let got: Vec<i64> = payloads(&db)
        .await
        .iter()
        .map(|p| {
            serde_json::from_str::<serde_json::Value>(p).unwrap()["k"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(got, vec![1, 3]);
    assert!(run.stop().await);
}
