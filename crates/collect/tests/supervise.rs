//! A source that keeps failing is restarted with backoff on its own: the
//! other sources and the sinks carry on, and shutdown still drains.

mod support;

use tokio::io::AsyncWriteExt;

use support::{p, payloads, start, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_does_not_touch_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    // Reading a directory fails (EISDIR) on every attempt.
    let broken = dir.path().join("not-a-file");
    std::fs::create_dir(&broken).unwrap();
    let run = start(&format!(
        r#"
data_dir = "{data}"

[sources.broken]
kind = "file"
path = "{broken}"

[sources.lines]
kind = "tcp"
address = "127.0.0.1:0"

[sinks.db]
kind = "sqlite"
inputs = ["broken", "lines"]
path = "{db}"
batch = {{ timeout = "5ms" }}
"#,
        data = p(&dir.path().join("data")),
        broken = p(&broken),
        db = p(&db),
    ))
    .await;
    let addr = run.pipeline.local_addr("lines").unwrap();
    for round in 0..3 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("round-{round}\n").as_bytes())
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        wait_until("the tcp line", || async {
            payloads(&db).await.len() > round
        })
        .await;
        // Across the broken source's restarts (200 ms and up).
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(payloads(&db).await, ["round-0", "round-1", "round-2"]);
    assert!(
        run.stop().await,
        "drains while a source is between restarts"
    );
}
