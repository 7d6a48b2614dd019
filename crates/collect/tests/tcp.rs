//! The `tcp` source over a real socket: lines, an over-long line, and
//! backpressure `block` versus `drop_newest` against a sink that is stuck.

mod support;

use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use support::{hold_write_lock, p, payloads, start, wait_rows};

fn config(dir: &Path, when_full: &str) -> String {
    format!(
        r#"
data_dir = "{data}"
buffer = 2

[sources.lines]
kind = "tcp"
address = "127.0.0.1:0"
max_line_length = "32"
when_full = "{when_full}"

[sinks.db]
kind = "sqlite"
inputs = ["lines"]
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
async fn lines_and_an_over_long_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let run = start(&config(dir.path(), "block")).await;
    let addr = run.pipeline.local_addr("lines").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let long = "y".repeat(100);
    s.write_all(format!("one\r\ntwo\n{long}\nthree\n").as_bytes())
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    wait_rows(&db, 3).await;
    assert!(run.stop().await);
    assert_eq!(payloads(&db).await, ["one", "two", "three"]);
}

async fn fill(when_full: &str) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let run = start(&config(dir.path(), when_full)).await;
    let mut locked = hold_write_lock(&db).await;
    let addr = run.pipeline.local_addr("lines").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let sent = 200;
    let text: String = (0..sent).map(|i| format!("{i}\n")).collect();
    s.write_all(text.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    // Give the source time to read everything it is going to read while
    // the sink is stuck (no assertion on time: only on counts).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    sqlx::query("ROLLBACK").execute(&mut locked).await.unwrap();
    drop(locked);
    s.shutdown().await.unwrap();
    let got = if when_full == "block" {
        wait_rows(&db, sent).await;
        payloads(&db).await.len()
    } else {
        // Everything the source kept is written; then nothing more comes.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        payloads(&db).await.len()
    };
    assert!(run.stop().await);
    (sent, got.max(payloads(&db).await.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_keeps_every_record() {
    let (sent, got) = fill("block").await;
    assert_eq!(got, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_drops_what_does_not_fit() {
    let (sent, got) = fill("drop_newest").await;
    assert!(got > 0 && got < sent, "kept {got} of {sent}");
}
