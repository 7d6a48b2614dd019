//! `sluice collect` reading a JetStream durable consumer into SQLite, killed
//! with SIGKILL mid-stream and started again: every message lands exactly
//! once (by stream sequence), nothing is lost, nothing is duplicated.
//! Needs `SLUICE_TEST_NATS_URL`; skipped with one line without it.

mod streams;

use std::path::Path;

use async_nats::jetstream;

use streams::{Collector, SinkRows, unique};

fn nats_url() -> Option<String> {
    streams::service_url("SLUICE_TEST_NATS_URL", "the NATS kill -9 test")
}

fn config(dir: &Path, url: &str, stream: &str, subject: &str) -> String {
    format!(
        r#"
data_dir = "{data}"
drain_timeout = "2s"

[sources.orders]
kind = "nats"
url = "{url}"
subject = "{subject}"
# A short ack_wait: what the killed process held unacked comes back soon.
jetstream = {{ stream = "{stream}", consumer = "{stream}_c", ack_wait = "2s" }}

[sinks.db]
kind = "sqlite"
inputs = ["orders"]
path = "{db}"
batch = {{ max_records = 100, timeout = "10ms" }}
retry = {{ initial = "10ms", max = "100ms" }}
"#,
        data = streams::p(&dir.join("data")),
        db = streams::p(&dir.join("out.db")),
    )
}

/// Publish `{"n":i}` for `range` to `subject`, waiting until the stream has
/// stored them all (acks awaited in windows, so publishing stays quick).
async fn publish(js: &jetstream::Context, subject: &str, range: std::ops::Range<u64>) {
    let mut acks = Vec::with_capacity(512);
    for i in range {
        acks.push(
            js.publish(subject.to_owned(), format!(r#"{{"n":{i}}}"#).into())
                .await
                .expect("publish"),
        );
        if acks.len() == 512 {
            for a in acks.drain(..) {
                a.await.expect("stored");
            }
        }
    }
    for a in acks {
        a.await.expect("stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing() {
    let Some(url) = nats_url() else { return };
    let js = jetstream::new(async_nats::connect(&url).await.expect("connect to NATS"));
    let stream = unique("KILL9");
    let subject = format!("{}.orders", stream.to_lowercase());
    js.create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .expect("create the stream");

    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("collect.toml");
    std::fs::write(&config_path, config(dir.path(), &url, &stream, &subject)).unwrap();
    let out = SinkRows::new(dir.path().join("out.db"));

    let total = 20_000u64;
    publish(&js, &subject, 0..total / 2).await;
    let mut first = Collector::start(&config_path);
    // Kill while the first half is still draining into SQLite.
    out.wait_at_least(total / 10).await;
    first.kill_9();
    let at_kill = out.count().await;
    // Published while nothing reads: stored by the stream for the next start.
    publish(&js, &subject, total / 2..total).await;

    let second = Collector::start(&config_path);
    out.wait_at_least(total).await;
    // Longer than ack_wait, so a redelivery still on its way would show.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let rows = out.rows().await;
    second.stop();
    let _ = js.delete_stream(&stream).await;

    eprintln!("rows at SIGKILL: {at_kill} of {}", total / 2);
    // Every stream sequence exactly once (ids are the stream sequences 1..=total) …
    let mut ids: Vec<u64> = rows
        .iter()
        .map(|(id, _)| {
            id.as_deref()
                .expect("a JetStream record has an id")
                .parse()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids.len() as u64, total, "rows: one per message");
    assert!(
        ids.iter().copied().eq(1..=total),
        "every stream sequence once"
    );
    // … and every published number exactly once.
    let ns = streams::numbers(&rows);
    assert!(ns.iter().copied().eq(0..total), "every number once");
}
