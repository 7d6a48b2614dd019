//! `sluice collect` reading MQTT at QoS 1 under a persistent session into
//! SQLite, killed with SIGKILL mid-stream and started again: every message
//! published lands, nothing is lost. MQTT messages carry no stable id, so a
//! message committed but not yet PUBACKed at the kill is delivered and
//! written again: the test allows those duplicates and prints how many
//! there were. Only messages the killed instance had written can come
//! again, each once, so duplicates number at most the rows at the kill and
//! no message is written more than twice. (The collector's `max_inflight`
//! bounds its own publishes, not what the broker sends it: what comes
//! again is what the broker had not seen acknowledged, its own in-flight
//! window plus acks still queued in the killed client; 20–108 were seen.)
//! Needs `SLUICE_TEST_MQTT_URL`; skipped with one line without it.

mod streams;

use std::path::Path;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use streams::{Collector, SinkRows, unique};

/// The collector's in-flight window for its own publishes (`max_inflight`).
const MAX_INFLIGHT: usize = 50;

fn mqtt_url() -> Option<String> {
    streams::service_url("SLUICE_TEST_MQTT_URL", "the MQTT kill -9 test")
}

fn config(dir: &Path, url: &str, topic: &str, client_id: &str) -> String {
    format!(
        r#"
data_dir = "{data}"
drain_timeout = "2s"

[sources.sensors]
kind = "mqtt"
url = "{url}"
topics = ["{topic}/#"]
client_id = "{client_id}"
max_inflight = {MAX_INFLIGHT}

[sinks.db]
kind = "sqlite"
inputs = ["sensors"]
path = "{db}"
batch = {{ max_records = 20, timeout = "10ms" }}
retry = {{ initial = "10ms", max = "100ms" }}
"#,
        data = streams::p(&dir.join("data")),
        db = streams::p(&dir.join("out.db")),
    )
}

fn options(url: &str, client_id: &str, clean: bool) -> MqttOptions {
    let rest = url.trim_start_matches("mqtt://").trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
    let mut opts = MqttOptions::new(client_id, host, port.parse().expect("MQTT port"));
    opts.set_keep_alive(Duration::from_secs(5))
        .set_clean_session(clean);
    opts
}

/// Poll `events` until `done` says so; panic after 10 s without progress.
async fn poll_until(events: &mut rumqttc::EventLoop, mut done: impl FnMut(&Packet) -> bool) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(p))) if done(&p) => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("MQTT client: {e}"),
            Err(_) => panic!("MQTT client: nothing from the broker in 10 s"),
        }
    }
}

/// Make the collector's persistent session and its subscription before it
/// first runs, so the broker keeps what is published from now on for it.
async fn create_session(url: &str, client_id: &str, topic: &str) {
    let (client, mut events) = AsyncClient::new(options(url, client_id, false), 10);
    client
        .subscribe(format!("{topic}/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    poll_until(&mut events, |p| matches!(p, Packet::SubAck(_))).await;
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
}

/// Drop the session from the broker (a clean-session connect does that).
async fn remove_session(url: &str, client_id: &str) {
    let (client, mut events) = AsyncClient::new(options(url, client_id, true), 10);
    poll_until(&mut events, |p| matches!(p, Packet::ConnAck(_))).await;
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
}

/// Publish `{"n":i}` for `range` at QoS 1 and wait for every PUBACK.
async fn publish(url: &str, topic: &str, range: std::ops::Range<u64>) {
    let n = (range.end - range.start) as usize;
    let (client, mut events) = AsyncClient::new(options(url, &unique("pub"), true), n + 10);
    for i in range {
        client
            .publish(
                format!("{topic}/x"),
                QoS::AtLeastOnce,
                false,
                format!(r#"{{"n":{i}}}"#),
            )
            .await
            .unwrap();
    }
    let mut acked = 0;
    poll_until(&mut events, |p| {
        acked += usize::from(matches!(p, Packet::PubAck(_)));
        acked == n
    })
    .await;
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_kill_9_mid_stream_then_restart_loses_nothing() {
    let Some(url) = mqtt_url() else { return };
    let topic = unique("sluice/kill9");
    let client_id = unique("sluice-kill9");
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("collect.toml");
    std::fs::write(&config_path, config(dir.path(), &url, &topic, &client_id)).unwrap();
    let out = SinkRows::new(dir.path().join("out.db"));
    create_session(&url, &client_id, &topic).await;

    // Mosquitto queues at most 1,000 QoS 1 messages per session by default
    // (max_queued_messages); 900 in all keeps the test within it.
    let (first_half, total) = (600u64, 900u64);
    publish(&url, &topic, 0..first_half).await;
    let mut first = Collector::start(&config_path);
    out.wait_at_least(first_half / 10).await;
    first.kill_9();
    let at_kill = out.count().await;
    // Published while nothing reads: the broker keeps them for the session.
    publish(&url, &topic, first_half..total).await;

    let second = Collector::start(&config_path);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut ns = streams::numbers(&out.rows().await);
        ns.dedup();
        if ns.len() as u64 >= total {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out with {} distinct numbers of {total}",
            ns.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A little longer, for any redelivery still on its way.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = out.rows().await;
    second.stop();
    remove_session(&url, &client_id).await;

    let ns = streams::numbers(&rows);
    let mut distinct = ns.clone();
    distinct.dedup();
    let duplicates = ns.len() - distinct.len();
    eprintln!(
        "rows at SIGKILL: {at_kill} of {first_half}; written again after the restart: {duplicates}"
    );
    assert!(
        distinct.iter().copied().eq(0..total),
        "every published number arrived"
    );
    assert!(
        duplicates as u64 <= at_kill,
        "{duplicates} duplicates: more than the {at_kill} rows the killed instance had written"
    );
    let most = ns
        .chunk_by(|a, b| a == b)
        .map(<[u64]>::len)
        .max()
        .unwrap_or(0);
    assert!(most <= 2, "a message was written {most} times");
}
