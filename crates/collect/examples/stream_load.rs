//! Load and check for the streams benchmark (`bench/collect.sh streams`)
//! and the PostgreSQL fault run (`bench/collect.sh pg-fault`).
//!
//! Every record published is the JSON object `{"id":"I","n":I}` for I in
//! `0..N`, so the table a sink wrote can be checked number by number.
//!
//! ```text
//! stream_load nats-publish URL STREAM SUBJECT N [PER_SEC]   create STREAM if missing, publish, wait until stored
//! stream_load nats-delete URL STREAM
//! stream_load mqtt-session URL CLIENT_ID TOPIC_FILTER       make a persistent QoS 1 session (subscribed)
//! stream_load mqtt-drop-session URL CLIENT_ID
//! stream_load mqtt-publish URL TOPIC N                      QoS 1, wait for every PUBACK
//! stream_load http-push URL N PER_REQUEST CONCURRENCY       NDJSON, retried on 503 until 200
//! stream_load wait DB N TIMEOUT_S                           poll until N rows; print seconds
//! stream_load verify DB N                                   each n in 0..N exactly once, or exit 1
//! ```
//!
//! `DB` is a SQLite file path or a `postgres://` URL; the table is
//! `records` (the sinks' default). `PER_SEC` paces the publisher (0: as
//! fast as it goes). Timings go to stdout as `key=value` words.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

type Res<T> = Result<T, String>;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Res<T> {
    let s = args
        .get(i)
        .ok_or_else(|| format!("missing argument {i}: {what}"))?;
    s.parse()
        .map_err(|_| format!("argument {i} ({what}): cannot parse {s:?}"))
}

fn record(i: u64) -> String {
    format!(r#"{{"id":"{i}","n":{i}}}"#)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("nats-publish") => nats_publish(&args).await,
        Some("nats-delete") => nats_delete(&args).await,
        Some("mqtt-session") => mqtt_session(&args, false).await,
        Some("mqtt-drop-session") => mqtt_session(&args, true).await,
        Some("mqtt-publish") => mqtt_publish(&args).await,
        Some("http-push") => http_push(&args).await,
        Some("wait") => wait(&args).await,
        Some("verify") => verify(&args).await,
        _ => Err("usage: see the top of crates/collect/examples/stream_load.rs".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stream_load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn nats_publish(args: &[String]) -> Res<()> {
    let url: String = arg(args, 1, "URL")?;
    let stream: String = arg(args, 2, "STREAM")?;
    let subject: String = arg(args, 3, "SUBJECT")?;
    let n: u64 = arg(args, 4, "N")?;
    let per_sec: u64 = if args.len() > 5 {
        arg(args, 5, "PER_SEC")?
    } else {
        0
    };
    let client = async_nats::connect(&url)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    let js = jetstream::new(client);
    js.get_or_create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .map_err(|e| format!("creating stream {stream}: {e}"))?;
    let start = Instant::now();
    // Acks awaited in windows: the server stores while more are on the wire.
    let mut acks = Vec::with_capacity(1024);
    for i in 0..n {
        if per_sec > 0 {
            let due = start + Duration::from_secs_f64(i as f64 / per_sec as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let ack = js
            .publish(subject.clone(), record(i).into())
            .await
            .map_err(|e| format!("publishing {i}: {e}"))?;
        acks.push(ack);
        if acks.len() == 1024 {
            for a in acks.drain(..) {
                a.await.map_err(|e| format!("storing: {e}"))?;
            }
        }
    }
    for a in acks {
        a.await.map_err(|e| format!("storing: {e}"))?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "published={n} secs={secs:.3} per_sec={:.0}",
        n as f64 / secs
    );
    Ok(())
}

async fn nats_delete(args: &[String]) -> Res<()> {
    let url: String = arg(args, 1, "URL")?;
    let stream: String = arg(args, 2, "STREAM")?;
    let client = async_nats::connect(&url)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    // A stream that is not there is fine: nothing to clean up.
    let _ = jetstream::new(client).delete_stream(&stream).await;
    Ok(())
}

fn mqtt_options(url: &str, client_id: &str, clean: bool) -> Res<MqttOptions> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| format!("not an mqtt:// URL: {url}"))?
        .trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
    let port = port.parse().map_err(|_| format!("bad port in {url}"))?;
    let mut opts = MqttOptions::new(client_id, host, port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(clean);
    Ok(opts)
}

/// Poll until `done` is true for an incoming packet; fail after 10 s of silence.
async fn poll_until(
    events: &mut rumqttc::EventLoop,
    mut done: impl FnMut(&Packet) -> bool,
) -> Res<()> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(p))) if done(&p) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("MQTT: {e}")),
            Err(_) => return Err("MQTT: nothing from the broker in 10 s".to_owned()),
        }
    }
}

async fn mqtt_session(args: &[String], drop: bool) -> Res<()> {
    let url: String = arg(args, 1, "URL")?;
    let client_id: String = arg(args, 2, "CLIENT_ID")?;
    let (client, mut events) = AsyncClient::new(mqtt_options(&url, &client_id, drop)?, 10);
    if drop {
        poll_until(&mut events, |p| matches!(p, Packet::ConnAck(_))).await?;
    } else {
        let filter: String = arg(args, 3, "TOPIC_FILTER")?;
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        poll_until(&mut events, |p| matches!(p, Packet::SubAck(_))).await?;
    }
    client.disconnect().await.map_err(|e| e.to_string())?;
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
    Ok(())
}

async fn mqtt_publish(args: &[String]) -> Res<()> {
    let url: String = arg(args, 1, "URL")?;
    let topic: String = arg(args, 2, "TOPIC")?;
    let n: u64 = arg(args, 3, "N")?;
    let id = format!("stream-load-{}", std::process::id());
    let mut opts = mqtt_options(&url, &id, true)?;
    // Outgoing QoS 1 window: the broker's PUBACKs pace the publisher.
    opts.set_inflight(1000);
    let (client, mut events) = AsyncClient::new(opts, 4096);
    let start = Instant::now();
    let publisher = tokio::spawn(async move {
        for i in 0..n {
            if let Err(e) = client
                .publish(topic.clone(), QoS::AtLeastOnce, false, record(i))
                .await
            {
                return Err(format!("publishing {i}: {e}"));
            }
        }
        Ok(client)
    });
    let mut acked = 0u64;
    if n > 0 {
        poll_until(&mut events, |p| {
            acked += u64::from(matches!(p, Packet::PubAck(_)));
            acked == n
        })
        .await?;
    }
    let client = publisher.await.map_err(|e| e.to_string())??;
    let secs = start.elapsed().as_secs_f64();
    client.disconnect().await.map_err(|e| e.to_string())?;
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
    println!(
        "published={n} secs={secs:.3} per_sec={:.0}",
        n as f64 / secs
    );
    Ok(())
}

async fn http_push(args: &[String]) -> Res<()> {
    let url: String = arg(args, 1, "URL")?;
    let n: u64 = arg(args, 2, "N")?;
    let per_request: u64 = arg(args, 3, "PER_REQUEST")?;
    let concurrency: usize = arg(args, 4, "CONCURRENCY")?;
    let http = reqwest::Client::new();
    let start = Instant::now();
    let retries = std::sync::atomic::AtomicU64::new(0);
    let bodies = (0..n.div_ceil(per_request)).map(|k| {
        let lo = k * per_request;
        let hi = (lo + per_request).min(n);
        let mut body = String::with_capacity((hi - lo) as usize * 24);
        for i in lo..hi {
            body.push_str(&record(i));
            body.push('\n');
        }
        body
    });
    let mut sent = futures_util::stream::iter(bodies)
        .map(|body| {
            let (http, url, retries) = (&http, &url, &retries);
            async move {
                loop {
                    let r = http
                        .post(url.as_str())
                        .header("content-type", "application/x-ndjson")
                        .body(body.clone())
                        .send()
                        .await
                        .map_err(|e| format!("POST {url}: {e}"))?;
                    match r.status().as_u16() {
                        200 => return Ok::<(), String>(()),
                        // Nothing of it was taken: send it again.
                        503 => {
                            retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        s => return Err(format!("POST {url}: status {s}")),
                    }
                }
            }
        })
        .buffer_unordered(concurrency);
    while let Some(r) = sent.next().await {
        r?;
    }
    drop(sent);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "pushed={n} secs={secs:.3} per_sec={:.0} retries_503={}",
        n as f64 / secs,
        retries.into_inner()
    );
    Ok(())
}

/// Rows in the `records` table (0 while it does not exist).
async fn rows(db: &str) -> Res<u64> {
    if db.starts_with("postgres://") {
        let mut c = connect_pg(db).await?;
        // The sink's table may not exist yet.
        let n: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM records")
            .fetch_one(&mut c)
            .await
            .ok();
        let _ = sqlx::Connection::close(c).await;
        Ok(n.unwrap_or(0) as u64)
    } else {
        if !std::path::Path::new(db).exists() {
            return Ok(0);
        }
        let mut c = connect_sqlite(db).await?;
        // seq is the rowid: max(seq) is the row count of an append-only
        // table, without a scan.
        let n: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM records")
            .fetch_one(&mut c)
            .await
            .ok()
            .flatten();
        let _ = sqlx::Connection::close(c).await;
        Ok(n.unwrap_or(0) as u64)
    }
}

async fn connect_pg(url: &str) -> Res<sqlx::PgConnection> {
    <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))
}

async fn connect_sqlite(path: &str) -> Res<sqlx::SqliteConnection> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts)
        .await
        .map_err(|e| format!("opening {path}: {e}"))
}

async fn wait(args: &[String]) -> Res<()> {
    let db: String = arg(args, 1, "DB")?;
    let n: u64 = arg(args, 2, "N")?;
    let timeout: u64 = arg(args, 3, "TIMEOUT_S")?;
    let start = Instant::now();
    let mut first: Option<f64> = None;
    loop {
        // A database that is down (the fault run) counts as no progress.
        let have = rows(&db).await.unwrap_or(0);
        if have > 0 && first.is_none() {
            first = Some(start.elapsed().as_secs_f64());
        }
        if have >= n {
            let secs = start.elapsed().as_secs_f64();
            println!(
                "rows={have} secs={secs:.3} first_row_secs={:.3}",
                first.unwrap_or(secs)
            );
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(timeout) {
            return Err(format!("{have} rows of {n} after {timeout} s"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn verify(args: &[String]) -> Res<()> {
    let db: String = arg(args, 1, "DB")?;
    let n: u64 = arg(args, 2, "N")?;
    let payloads: Vec<String> = if db.starts_with("postgres://") {
        let mut c = connect_pg(&db).await?;
        // The PostgreSQL sink stores payloads as JSONB.
        let v = sqlx::query_scalar("SELECT payload::text FROM records")
            .fetch_all(&mut c)
            .await
            .map_err(|e| format!("reading records: {e}"))?;
        let _ = sqlx::Connection::close(c).await;
        v
    } else {
        let mut c = connect_sqlite(&db).await?;
        let v = sqlx::query_scalar("SELECT payload FROM records")
            .fetch_all(&mut c)
            .await
            .map_err(|e| format!("reading records: {e}"))?;
        let _ = sqlx::Connection::close(c).await;
        v
    };
    let mut seen = vec![0u32; n as usize];
    let mut foreign = 0u64;
    for p in &payloads {
        let mut v: serde_json::Value =
            serde_json::from_str(p).map_err(|e| format!("payload {p:?}: {e}"))?;
        // The PostgreSQL sink stores a text payload as a JSON string.
        if let Some(inner) = v.as_str() {
            v = serde_json::from_str(inner).map_err(|e| format!("payload {inner:?}: {e}"))?;
        }
        match v["n"].as_u64() {
            Some(i) if i < n => seen[i as usize] += 1,
            _ => foreign += 1,
        }
    }
    let missing = seen.iter().filter(|&&c| c == 0).count();
    let duplicated = seen.iter().filter(|&&c| c > 1).count();
    let ok = missing == 0 && duplicated == 0 && foreign == 0;
    println!(
        "rows={} missing={missing} duplicated={duplicated} foreign={foreign} exactly_once={}",
        payloads.len(),
        if ok { "yes" } else { "NO" }
    );
    if ok {
        Ok(())
    } else {
        Err("not every number exactly once".to_owned())
    }
}
