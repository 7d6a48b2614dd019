//! Balancing over real upstream servers: round robin, least request (power
//! of two choices over requests in flight) and consistent hashing on a
//! header or the client IP.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::{TestGateway, TestUpstream, client, respond};

/// Three upstreams that answer with their own name.
async fn three() -> [TestUpstream; 3] {
    [
        TestUpstream::fixed("a").await,
        TestUpstream::fixed("b").await,
        TestUpstream::fixed("c").await,
    ]
}

fn config(ups: &[TestUpstream], balance: &str, extra: &str) -> String {
    let targets: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    format!(
        r#"
        [server]
        trusted_proxies = ["127.0.0.1/32"]
        [upstreams.api]
        targets = [{}]
        balance = "{balance}"
        {extra}
        [[routes]]
        path_prefix = "/"
        upstream = "api"
        "#,
        targets.join(", ")
    )
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let ups = three().await;
    let gw = TestGateway::start(&config(&ups, "round_robin", "")).await;
    let c = client();
    for _ in 0..30 {
        let r = c.get(gw.url("/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let hits: Vec<usize> = ups.iter().map(|u| u.hits()).collect();
    assert_eq!(
        hits,
        vec![10, 10, 10],
        "round robin gives each target a third"
    );
}

#[tokio::test]
async fn least_request_sends_new_requests_away_from_a_busy_target() {
    // Target 0 holds every request for a while; 1 and 2 answer at once.
    let slow = TestUpstream::start(|_req| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        respond(200, "slow")
    })
    .await;
    let fast1 = TestUpstream::fixed("f1").await;
    let fast2 = TestUpstream::fixed("f2").await;
    let ups = [slow, fast1, fast2];
    let gw = TestGateway::start(&config(&ups, "least_request", "")).await;
    let c = client();

    // Send background requests until the slow target holds one. (Once it
    // does, P2C never picks it again, as the rest of the test checks.)
    let mut background = Vec::new();
    for _ in 0..60 {
        if ups[0].hits() >= 1 {
            break;
        }
        let c = c.clone();
        let url = gw.url("/bg");
        background.push(tokio::spawn(async move {
            c.get(url).send().await.unwrap().status()
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let requests already sent reach their targets.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ups[0].hits() >= 1, "the slow target holds a request");
    let held = ups[0].hits();

    // While it is busy, sequential requests must all go to the idle targets:
    // P2C compares two distinct targets and at least one of them is idle.
    for _ in 0..30 {
        let r = c.get(gw.url("/new")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_ne!(r.text().await.unwrap(), "slow");
    }
    assert_eq!(
        ups[0].hits(),
        held,
        "no new request went to the busy target"
    );
    for b in background {
        assert_eq!(b.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn hash_on_header_is_sticky_and_spreads_keys() {
    let ups = three().await;
    let gw = TestGateway::start(&config(&ups, "hash", r#"hash_on = "header:x-user""#)).await;
    let c = client();
    let mut owner: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for k in 0..30 {
            let key = format!("user-{k}");
            let r = c
                .get(gw.url("/x"))
                .header("x-user", &key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let who = r.text().await.unwrap();
            if round == 0 {
                owner.insert(key, who);
            } else {
                assert_eq!(owner[&key], who, "key {key} moved between requests");
            }
        }
    }
    let mut per_target: HashMap<&str, usize> = HashMap::new();
    for who in owner.values() {
        *per_target.entry(who).or_default() += 1;
    }
    assert_eq!(
        per_target.len(),
        3,
        "30 keys reach all 3 targets: {per_target:?}"
    );
    assert!(
        per_target.values().all(|&n| n >= 3),
        "no target is starved: {per_target:?}"
    );
}

#[tokio::test]
async fn hash_on_client_ip_is_sticky_per_client() {
    let ups = three().await;
    let gw = TestGateway::start(&config(&ups, "hash", r#"hash_on = "client_ip""#)).await;
    let c = client();
    let mut owner: HashMap<String, String> = HashMap::new();
    for round in 0..2 {
        for k in 0..30 {
            // The gateway trusts 127.0.0.1 as a proxy, so X-Forwarded-For names the client.
            let ip = format!("198.51.100.{}", k + 1);
            let r = c
                .get(gw.url("/x"))
                .header("x-forwarded-for", &ip)
                .send()
                .await
                .unwrap();
            let who = r.text().await.unwrap();
            if round == 0 {
                owner.insert(ip, who);
            } else {
                assert_eq!(owner[&ip], who, "client {ip} moved");
            }
        }
    }
    let distinct: std::collections::HashSet<_> = owner.values().collect();
    assert_eq!(distinct.len(), 3, "30 client IPs reach all 3 targets");

    // Without a trusted header every request is from 127.0.0.1: one target only.
    let gw2 = TestGateway::start(&config(&ups, "hash", r#"hash_on = "client_ip""#)).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        seen.insert(
            c.get(gw2.url("/x"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    assert_eq!(seen.len(), 1, "one client IP sticks to one target");
}
