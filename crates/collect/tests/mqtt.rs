//! The `mqtt` source against a real broker (`SLUICE_TEST_MQTT_URL`): QoS 1
//! under a persistent session, so messages published while the collector
//! is down arrive when it is back; and messages taken but not committed
//! (the pipeline was stopped before its commit) are delivered again because
//! they were never acked. Each test uses its own topic and client id.

mod support;

use std::path::Path;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sqlx::Connection;

use support::{p, payloads, service_url, start, unique, wait_until};

fn config(dir: &Path, url: &str, topic: &str, client_id: &str) -> String {
    format!(
        r#"
data_dir = "{data}"
drain_timeout = "1s"

[sources.sensors]
kind = "mqtt"
url = "{url}"
topics = ["{topic}/#"]
client_id = "{client_id}"

[sinks.db]
kind = "sqlite"
inputs = ["sensors"]
path = "{db}"
busy_timeout = "10ms"
batch = {{ max_records = 100, timeout = "10ms" }}
retry = {{ initial = "10ms", max = "50ms" }}
"#,
        data = p(&dir.join("data")),
        db = p(&dir.join("out.db")),
    )
}

/// Publish `payloads` at QoS 1 and wait for the broker's PUBACK of each.
async fn publish(url: &str, topic: &str, payloads: &[String]) {
    let rest = url.trim_start_matches("mqtt://").trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
    let mut opts = MqttOptions::new(unique("pub"), host, port.parse().unwrap());
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(opts, payloads.len() + 10);
    for m in payloads {
        client
            .publish(format!("{topic}/x"), QoS::AtLeastOnce, false, m.clone())
            .await
            .unwrap();
    }
    let mut acked = 0;
    while acked < payloads.len() {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("publisher: {e}"),
            Err(_) => panic!("publisher: no PUBACK in 10 s"),
        }
    }
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
}

fn batch(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}{i}")).collect()
}

fn assert_each_once(got: &[String], tag: &str, n: usize) {
    let mut got: Vec<&String> = got.iter().filter(|p| p.starts_with(tag)).collect();
    got.sort();
    let mut want = batch(tag, n);
    want.sort();
    assert_eq!(
        got,
        want.iter().collect::<Vec<_>>(),
        "each {tag} message once"
    );
}

/// Start a pipeline and wait until its subscription is in place.
async fn start_subscribed(cfg: &str, url: &str, topic: &str, out: &Path) -> support::Running {
    let run = start(cfg).await;
    let mut i = 0;
    wait_until("the subscription", || {
        i += 1;
        let marker = vec![format!("warmup{i}")];
        async move {
            publish(url, topic, &marker).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            payloads(out).await.iter().any(|p| p.starts_with("warmup"))
        }
    })
    .await;
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_while_down_arrive_after_restart() {
    let Some(url) = service_url("SLUICE_TEST_MQTT_URL", "MQTT") else {
        return;
    };
    let topic = unique("sluice/test");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.db");
    let cfg = config(dir.path(), &url, &topic, &unique("sluice"));

    let run = start_subscribed(&cfg, &url, &topic, &out).await;
    publish(&url, &topic, &batch("live", 50)).await;
    wait_until("live messages", || async {
        payloads(&out)
            .await
            .iter()
            .filter(|p| p.starts_with("live"))
            .count()
            >= 50
    })
    .await;
    assert!(run.stop().await);

    // Down: the broker keeps QoS 1 messages for the persistent session.
    publish(&url, &topic, &batch("offline", 50)).await;
    let run = start(&cfg).await;
    wait_until("offline messages", || async {
        payloads(&out)
            .await
            .iter()
            .filter(|p| p.starts_with("offline"))
            .count()
            >= 50
    })
    .await;
    assert!(run.stop().await);
    let got = payloads(&out).await;
    assert_each_once(&got, "live", 50);
    assert_each_once(&got, "offline", 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_not_committed_are_delivered_again() {
    let Some(url) = service_url("SLUICE_TEST_MQTT_URL", "MQTT") else {
        return;
    };
    let topic = unique("sluice/test");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.db");
    let cfg = config(dir.path(), &url, &topic, &unique("sluice"));

    let run = start_subscribed(&cfg, &url, &topic, &out).await;
    // Hold the database's write lock: the sink cannot commit anything.
    let mut locked = sqlx::SqliteConnection::connect(&format!("sqlite://{}", out.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locked)
        .await
        .unwrap();
    publish(&url, &topic, &batch("held", 10)).await;
    // Give the source time to take them (they cannot be committed).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !run.stop().await,
        "the drain cannot finish while the sink cannot commit"
    );
    sqlx::query("ROLLBACK").execute(&mut locked).await.unwrap();
    drop(locked);
    assert!(
        !payloads(&out).await.iter().any(|p| p.starts_with("held")),
        "nothing of them was committed"
    );

    let run = start(&cfg).await;
    wait_until("the held messages", || async {
        payloads(&out)
            .await
            .iter()
            .filter(|p| p.starts_with("held"))
            .count()
            >= 10
    })
    .await;
    assert!(run.stop().await);
    assert_each_once(&payloads(&out).await, "held", 10);
}
