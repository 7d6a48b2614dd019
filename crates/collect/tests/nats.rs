//! The `nats` source against a real NATS server (`SLUICE_TEST_NATS_URL`):
//! JetStream messages land in SQLite once each and are acked only after the
//! commit; a pipeline stopped before its commit loses nothing (the server
//! delivers again); a second consumer replaying the stream adds no rows;
//! core subjects flow too. Every test uses its own stream and subjects.

mod support;

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use sqlx::Connection;

use support::{db, p, payloads, service_url, start, unique, wait_until};

fn config(dir: &Path, url: &str, stream: &str, consumer: &str, subject: &str) -> String {
    format!(
        r#"
data_dir = "{data}"
drain_timeout = "1s"

[sources.orders]
kind = "nats"
url = "{url}"
subject = "{subject}"
jetstream = {{ stream = "{stream}", consumer = "{consumer}", ack_wait = "1s" }}

[sinks.db]
kind = "sqlite"
inputs = ["orders"]
path = "{db}"
busy_timeout = "10ms"
batch = {{ max_records = 200, timeout = "20ms" }}
retry = {{ initial = "10ms", max = "50ms" }}
"#,
        data = p(&dir.join("data")),
        db = p(&dir.join("out.db")),
    )
}

/// Publish `n` messages `{"n":i}` to `subject` through JetStream, each
/// stored before the next.
async fn publish(js: &jetstream::Context, subject: &str, n: usize) {
    for i in 0..n {
        js.publish(subject.to_owned(), format!(r#"{{"n":{i}}}"#).into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
}

/// `(record_id, payload)` rows of the sink.
async fn rows(path: &Path) -> Vec<(String, String)> {
    if !path.exists() {
        return Vec::new();
    }
    let pool = db(path).await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT record_id, payload FROM records ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    pool.close().await;
    rows
}

fn assert_each_once(rows: &[(String, String)], n: usize) {
    let mut ids: Vec<u64> = rows.iter().map(|(id, _)| id.parse().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=n as u64).collect::<Vec<_>>(),
        "every stream sequence exactly once"
    );
    let mut ns: Vec<String> = rows.iter().map(|(_, p)| p.clone()).collect();
    ns.sort();
    ns.dedup();
    assert_eq!(ns.len(), n, "every payload once");
}

async fn consumer_pending(js: &jetstream::Context, stream: &str, consumer: &str) -> (u64, usize) {
    let mut c: jetstream::consumer::PullConsumer = js
        .get_stream(stream)
        .await
        .unwrap()
        .get_consumer(consumer)
        .await
        .unwrap();
    let info = c.info().await.unwrap();
    (info.num_pending, info.num_ack_pending)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_messages_land_once_and_are_acked_after_commit() {
    let Some(url) = service_url("SLUICE_TEST_NATS_URL", "NATS") else {
        return;
    };
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client);
    let stream = unique("ORDERS");
    let subject = format!("{}.>", stream.to_lowercase());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.db");

    // The source creates the stream and the consumer.
    let run = start(&config(dir.path(), &url, &stream, "sluice", &subject)).await;
    wait_until("the stream exists", || async {
        js.get_stream(&stream).await.is_ok()
    })
    .await;
    let n = 300;
    publish(&js, &format!("{}.new", stream.to_lowercase()), n).await;
    wait_until("all rows", || async { rows(&out).await.len() >= n }).await;
    wait_until("every message acked", || async {
        consumer_pending(&js, &stream, "sluice").await == (0, 0)
    })
    .await;
    assert!(run.stop().await, "drained in time");
    assert_each_once(&rows(&out).await, n);

    // A second consumer replays the whole stream into the same table: the
    // ids (stream sequences) are already there, so nothing is added.
    let run = start(&config(dir.path(), &url, &stream, "replay", &subject)).await;
    wait_until("the replay is acked", || async {
        js.get_stream(&stream)
            .await
            .unwrap()
            .get_consumer::<jetstream::consumer::pull::Config>("replay")
            .await
            .is_ok()
            && consumer_pending(&js, &stream, "replay").await == (0, 0)
    })
    .await;
    assert!(run.stop().await);
    assert_each_once(&rows(&out).await, n);
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_stopped_before_its_commit_loses_nothing() {
    let Some(url) = service_url("SLUICE_TEST_NATS_URL", "NATS") else {
        return;
    };
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client);
    let stream = unique("STOPPED");
    let subject = format!("{}.>", stream.to_lowercase());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.db");
    let cfg = config(dir.path(), &url, &stream, "sluice", &subject);

    let run = start(&cfg).await;
    // Hold the database's write lock: the sink cannot commit anything.
    let mut locked = sqlx::SqliteConnection::connect(&format!("sqlite://{}", out.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locked)
        .await
        .unwrap();
    wait_until("the stream exists", || async {
        js.get_stream(&stream).await.is_ok()
    })
    .await;
    let n = 50;
    publish(&js, &format!("{}.x", stream.to_lowercase()), n).await;
    wait_until("every message delivered", || async {
        consumer_pending(&js, &stream, "sluice").await.0 == 0
    })
    .await;
    assert!(
        consumer_pending(&js, &stream, "sluice").await.1 > 0,
        "delivered but not acked while the sink cannot commit"
    );
    assert!(
        !run.stop().await,
        "the drain cannot finish while the sink cannot commit"
    );
    sqlx::query("ROLLBACK").execute(&mut locked).await.unwrap();
    drop(locked);
    assert!(payloads(&out).await.is_empty(), "nothing was committed");

    // Started again: the server delivers the unacked messages once more.
    let run = start(&cfg).await;
    wait_until("all rows after the restart", || async {
        rows(&out).await.len() >= n
    })
    .await;
    wait_until("every message acked", || async {
        consumer_pending(&js, &stream, "sluice").await == (0, 0)
    })
    .await;
    assert!(run.stop().await);
    assert_each_once(&rows(&out).await, n);
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_subjects_flow_without_acks() {
    let Some(url) = service_url("SLUICE_TEST_NATS_URL", "NATS") else {
        return;
    };
    let client = async_nats::connect(&url).await.unwrap();
    let subject = unique("core").replace('_', ".");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.db");
    let run = start(&format!(
        r#"
data_dir = "{data}"

[sources.events]
kind = "nats"
url = "{url}"
subject = "{subject}.>"
queue_group = "sluice"

[sinks.db]
kind = "sqlite"
inputs = ["events"]
path = "{db}"
batch = {{ timeout = "10ms" }}
"#,
        data = p(&dir.path().join("data")),
        db = p(&out),
    ))
    .await;
    // The subscription is made once the source has connected: publish a
    // marker until one arrives, then the real messages.
    wait_until("the subscription", || async {
        client
            .publish(format!("{subject}.warmup"), "warmup".into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        !payloads(&out).await.is_empty()
    })
    .await;
    for i in 0..100 {
        client
            .publish(format!("{subject}.n"), format!("m{i}").into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    wait_until("the messages", || async {
        payloads(&out)
            .await
            .iter()
            .filter(|p| p.starts_with('m'))
            .count()
            >= 100
    })
    .await;
    assert!(run.stop().await);
    let got: Vec<String> = payloads(&out)
        .await
        .into_iter()
        .filter(|p| p.starts_with('m'))
        .collect();
    let want: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want, "in order, each once");
}
