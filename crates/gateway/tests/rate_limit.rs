//! Rate limiting against real gateways: exact 429 counts for a rate and
//! burst, key isolation, trusted and spoofed `X-Forwarded-For`, limits kept
//! across a reload, two instances sharing one limit through the real Redis,
//! and failing open or closed when Redis is away.
//!
//! Rates are slow (per minute or hour) so that no request in a test can
//! earn new quota: the counts are exact whatever the machine's speed.

mod support;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use support::{TestGateway, TestUpstream, api_config, get_with, service_url};

/// One Prometheus recorder for this test binary (a process has one).
fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("recorder installs once")
        })
        .clone()
}

/// The value of one counter line in the Prometheus text, 0 when absent.
fn counter(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Send `n` GETs one after another; return how many got 200 and how many 429.
async fn count(url: &str, n: usize, headers: &[(&str, &str)]) -> (usize, usize) {
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..n {
        match get_with(url, headers).await.status().as_u16() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (ok, limited)
}

#[tokio::test]
async fn admits_exactly_burst_plus_one_then_429_with_headers() {
    let metrics = recorder();
    let up = TestUpstream::fixed("ok").await;
    let gw = TestGateway::start(&api_config(
        &[up.addr],
        "",
        r#"name = "exact"
        rate_limit = { key = "client_ip", rate = "1/m", burst = 4 }"#,
    ))
    .await;
    gw.gw.set_metrics_handle(metrics.clone());
    let url = gw.url("/x");

    let mut seen = Vec::new();
    for _ in 0..20 {
        let r = get_with(&url, &[]).await;
        let status = r.status().as_u16();
        let h = r.headers().clone();
        assert_eq!(h["ratelimit-policy"], "\"exact\";q=1;w=60;sluice-burst=4");
        if status == 200 {
            seen.push(h["ratelimit"].to_str().unwrap().to_owned());
            continue;
        }
        assert_eq!(status, 429);
        let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        // The effective window ends exactly when Retry-After does.
        assert_eq!(h["ratelimit"], format!("\"exact\";r=0;t={retry}").as_str());
        assert_eq!(h["content-type"], "application/json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
    }
    // Five allowed (one plus a burst of four), each telling what is left.
    let remaining: Vec<&str> = seen.iter().map(|v| v.split(';').nth(1).unwrap()).collect();
    assert_eq!(remaining, ["r=4", "r=3", "r=2", "r=1", "r=0"]);
    // Denied requests never reach the upstream.
    assert_eq!(up.hits(), 5);

    let text = metrics.render();
    let name = "sluice_gateway_ratelimit_decisions_total";
    assert_eq!(
        counter(&text, name, &[("route", "exact"), ("decision", "allowed")]),
        5
    );
    assert_eq!(
        counter(&text, name, &[("route", "exact"), ("decision", "denied")]),
        15
    );
}

/// A route limited per `x-api-key`, one request an hour with a burst of one.
const PER_API_KEY: &str = r#"
    [[routes]]
    name = "keys"
    path_prefix = "/"
    respond = { body = "ok" }
    rate_limit = { key = "header:x-api-key", rate = "1/h", burst = 1 }
    "#;

#[tokio::test]
async fn api_keys_get_separate_buckets_and_a_missing_key_falls_back_to_the_ip() {
    let gw = TestGateway::start(PER_API_KEY).await;
    let url = gw.url("/");
    assert_eq!(count(&url, 5, &[("x-api-key", "alpha")]).await, (2, 3));
    assert_eq!(count(&url, 5, &[("x-api-key", "beta")]).await, (2, 3));
    // No key: the client IP's own bucket, untouched so far.
    assert_eq!(count(&url, 5, &[]).await, (2, 3));
    // And the header's buckets are still empty.
    assert_eq!(count(&url, 1, &[("x-api-key", "alpha")]).await, (0, 1));
}

/// Two 8 KiB API keys that differ only in their last byte.
fn long_keys() -> [String; 2] {
    let base = "k".repeat(8 << 10);
    [format!("{base}a"), format!("{base}b")]
}

#[tokio::test]
async fn long_api_keys_are_stored_hashed_yet_told_apart() {
    let gw = TestGateway::start(PER_API_KEY).await;
    let url = gw.url("/");
    let [a, b] = long_keys();
    assert_eq!(count(&url, 3, &[("x-api-key", &a)]).await, (2, 1));
    assert_eq!(count(&url, 3, &[("x-api-key", &b)]).await, (2, 1));
    assert_eq!(count(&url, 1, &[("x-api-key", &a)]).await, (0, 1));
}

#[tokio::test]
async fn route_key_is_one_bucket_for_every_client() {
    let gw = TestGateway::start(
        r#"
        [server]
        trusted_proxies = ["127.0.0.1/32"]
        [[routes]]
        name = "per-ip"
        path = "/ip"
        respond = { body = "ok" }
        rate_limit = { key = "client_ip", rate = "1/h", burst = 1 }
        [[routes]]
        name = "shared"
        path = "/all"
        respond = { body = "ok" }
        rate_limit = { key = "route", rate = "1/h", burst = 1 }
        "#,
    )
    .await;
    let clients = ["203.0.113.1", "203.0.113.2", "203.0.113.3"];
    let (mut per_ip, mut shared) = (0, 0);
    for _ in 0..3 {
        for c in clients {
            per_ip += count(&gw.url("/ip"), 1, &[("x-forwarded-for", c)]).await.0;
            shared += count(&gw.url("/all"), 1, &[("x-forwarded-for", c)]).await.0;
        }
    }
    assert_eq!(per_ip, 6, "two per client");
    assert_eq!(shared, 2, "two for the whole route");
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let config = |trusted: &str| {
        format!(
            r#"
            [server]
            trusted_proxies = [{trusted}]
            [[routes]]
            name = "xff"
            path_prefix = "/"
            respond = {{ body = "ok" }}
            rate_limit = {{ key = "client_ip", rate = "1/h", burst = 1 }}
            "#
        )
    };
    let untrusted = TestGateway::start(&config("\"192.0.2.0/24\"")).await;
    let trusted = TestGateway::start(&config("\"127.0.0.1/32\"")).await;
    let spoofs = ["198.51.100.1", "198.51.100.2", "198.51.100.3"];
    let (mut spoofed_ok, mut trusted_ok) = (0, 0);
    for ip in spoofs {
        spoofed_ok += count(&untrusted.url("/"), 2, &[("x-forwarded-for", ip)])
            .await
            .0;
        trusted_ok += count(&trusted.url("/"), 2, &[("x-forwarded-for", ip)])
            .await
            .0;
    }
    // From an untrusted peer every spoofed address is the one peer: one bucket.
    assert_eq!(spoofed_ok, 2);
    // Through a trusted proxy each forwarded client has its own bucket.
    assert_eq!(trusted_ok, 6);
}

#[tokio::test]
async fn an_unchanged_limit_survives_a_reload() {
    let text = r#"
        [[routes]]
        name = "kept"
        path_prefix = "/"
        respond = { body = "ok" }
        rate_limit = { rate = "1/h", burst = 2 }
        "#;
    let gw = TestGateway::start(text).await;
    assert_eq!(count(&gw.url("/"), 4, &[]).await, (3, 1));
    let mut config = sluice_gateway::Config::parse(text, "reload.toml").unwrap();
    config.access_log.enabled = false;
    gw.gw.apply(config);
    assert_eq!(gw.gw.reload_count(), 1);
    // No fresh burst after the reload.
    assert_eq!(count(&gw.url("/"), 2, &[]).await, (0, 2));
}

fn shared_config(redis: &str, prefix: &str, rate: &str, burst: u32, mode: &str) -> String {
    format!(
        r#"
        [rate_limit]
        redis = "{redis}"
        redis_prefix = "{prefix}"
        redis_timeout = "500ms"
        on_redis_error = "{mode}"
        [[routes]]
        name = "shared"
        path_prefix = "/"
        respond = {{ body = "ok" }}
        rate_limit = {{ key = "client_ip", rate = "{rate}", burst = {burst} }}
        "#
    )
}

/// A connection to the test Redis and the keys under `prefix`.
async fn redis_keys(url: &str, prefix: &str) -> (redis::aio::MultiplexedConnection, Vec<Vec<u8>>) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    (conn, keys)
}

/// Remove what a test left in Redis.
async fn redis_del(conn: &mut redis::aio::MultiplexedConnection, keys: &[Vec<u8>]) {
    let _: () = redis::cmd("DEL").arg(keys).query_async(conn).await.unwrap();
}

#[tokio::test]
async fn two_instances_share_one_limit_through_redis() {
    let Some(url) = service_url("SLUICE_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("sluice-test:{}:", uuid::Uuid::new_v4());
    let config = shared_config(&url, &prefix, "1/m", 9, "closed");
    let a = TestGateway::start(&config).await;
    let b = TestGateway::start(&config).await;
    for i in 0..10 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = gw.get("/").await;
        assert_eq!(r.status(), 200, "request {i} is within rate + burst");
        let left = 9 - i;
        assert_eq!(
            r.headers()["ratelimit"].to_str().unwrap().split(';').nth(1),
            Some(format!("r={left}").as_str())
        );
    }
    for gw in [&a, &b] {
        let r = gw.get("/").await;
        assert_eq!(r.status(), 429);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry));
    }

    // One key in Redis, expiring when the bucket is cold again (10 minutes).
    let (mut conn, keys) = redis_keys(&url, &prefix).await;
    assert_eq!(keys.len(), 1);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 500_000 && ttl <= 600_000, "ttl {ttl}");
    redis_del(&mut conn, &keys).await;
}

#[tokio::test]
async fn redis_keys_are_bounded_whatever_the_client_sends() {
    let Some(url) = service_url("SLUICE_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("sluice-test:{}:", uuid::Uuid::new_v4());
    let config = shared_config(&url, &prefix, "1/m", 1, "closed")
        .replace(r#"key = "client_ip""#, r#"key = "header:x-api-key""#);
    let gw = TestGateway::start(&config).await;
    let [a, b] = long_keys();
    assert_eq!(count(&gw.url("/"), 3, &[("x-api-key", &a)]).await, (2, 1));
    assert_eq!(count(&gw.url("/"), 1, &[("x-api-key", &b)]).await, (1, 0));

    let (mut conn, keys) = redis_keys(&url, &prefix).await;
    assert_eq!(keys.len(), 2, "one bucket per API key");
    for key in &keys {
        // <prefix><route>\x1f<32 hex digits>: nothing of the client's 8 KiB.
        assert_eq!(key.len(), prefix.len() + "shared".len() + 1 + 32);
        let hash = &key[prefix.len() + "shared".len() + 1..];
        assert!(hash.iter().all(u8::is_ascii_hexdigit), "{key:?}");
    }
    redis_del(&mut conn, &keys).await;
}

/// A port on loopback where nothing listens.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn redis_away_fails_open_to_the_local_limiter() {
    let metrics = recorder();
    let url = format!("redis://127.0.0.1:{}", closed_port().await);
    let config =
        shared_config(&url, "open:", "1/h", 1, "open").replace("\"shared\"", "\"fail-open\"");
    let gw = TestGateway::start(&config).await;
    gw.gw.set_metrics_handle(metrics.clone());
    // The local limiter still holds the line.
    assert_eq!(count(&gw.url("/"), 4, &[]).await, (2, 2));
    let text = metrics.render();
    let errors = counter(
        &text,
        "sluice_gateway_ratelimit_redis_errors_total",
        &[("route", "fail-open")],
    );
    assert_eq!(errors, 4, "every decision Redis did not make is counted");
    let name = "sluice_gateway_ratelimit_decisions_total";
    assert_eq!(
        counter(
            &text,
            name,
            &[("route", "fail-open"), ("decision", "allowed")]
        ),
        2
    );
    assert_eq!(
        counter(
            &text,
            name,
            &[("route", "fail-open"), ("decision", "error")]
        ),
        0
    );
}

#[tokio::test]
async fn redis_away_fails_closed_with_503() {
    let metrics = recorder();
    let url = format!("redis://127.0.0.1:{}", closed_port().await);
    let config = shared_config(&url, "closed:", "1/h", 100, "closed")
        .replace("\"shared\"", "\"fail-closed\"");
    let gw = TestGateway::start(&config).await;
    gw.gw.set_metrics_handle(metrics.clone());
    for _ in 0..3 {
        let r = gw.get("/").await;
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limiter_unavailable");
        assert!(body["error"]["message"].as_str().unwrap().contains("redis"));
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("fail-closed")
        );
    }
    let text = metrics.render();
    let name = "sluice_gateway_ratelimit_decisions_total";
    assert_eq!(
        counter(
            &text,
            name,
            &[("route", "fail-closed"), ("decision", "error")]
        ),
        3
    );
}
