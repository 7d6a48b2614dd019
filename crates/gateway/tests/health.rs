//! Target health over real sockets: active checks take a target out after
//! `fall` failed probes and bring it back after `rise` passes; passive
//! ejection takes failing targets out of live traffic for `base_time`,
//! never more than `max_percent` of them; `/readyz` follows.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::{
    TestGateway, TestUpstream, admin_json, api_config, closed_addr, eventually, respond,
};

/// An upstream whose `/healthz` answer can be switched, counting probes and
/// other requests apart.
struct Switchable {
    up: TestUpstream,
    healthy: Arc<AtomicBool>,
    probes: Arc<AtomicUsize>,
    traffic: Arc<AtomicUsize>,
}

async fn switchable(name: &'static str) -> Switchable {
    let healthy = Arc::new(AtomicBool::new(true));
    let probes = Arc::new(AtomicUsize::new(0));
    let traffic = Arc::new(AtomicUsize::new(0));
    let up = TestUpstream::start({
        let (healthy, probes, traffic) = (healthy.clone(), probes.clone(), traffic.clone());
        move |req| {
            let ok = healthy.load(Ordering::SeqCst);
            let probe = req.uri().path() == "/healthz";
            if probe {
                probes.fetch_add(1, Ordering::SeqCst);
            } else {
                traffic.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                match (probe, ok) {
                    (true, false) => respond(503, "sick"),
                    _ => respond(200, name),
                }
            }
        }
    })
    .await;
    Switchable {
        up,
        healthy,
        probes,
        traffic,
    }
}

/// `healthy`/`ejected` of the target at `addr` in the admin API's `/upstreams`.
async fn target_state(gw: &TestGateway, addr: SocketAddr, field: &str) -> bool {
    let v = admin_json(gw, "/upstreams").await;
    let ups = v["upstreams"].as_array().unwrap();
    for u in ups {
        for t in u["targets"].as_array().unwrap() {
            if t["address"] == addr.to_string() {
                return t[field].as_bool().unwrap();
            }
        }
    }
    panic!("target {addr} not in /upstreams: {v}");
}

#[tokio::test]
async fn active_checks_take_a_target_out_after_fall_and_back_after_rise() {
    let a = switchable("a").await;
    let b = switchable("b").await;
    let gw = TestGateway::start(&api_config(
        &[a.up.addr, b.up.addr],
        r#"health = { path = "/healthz", interval = "100ms", timeout = "500ms", rise = 2, fall = 3 }"#,
        "",
    ))
    .await;
    for _ in 0..4 {
        assert_eq!(gw.get("/x").await.status(), 200);
    }
    assert!(
        a.traffic.load(Ordering::SeqCst) > 0,
        "both targets serve at first"
    );

    // Make a's health check fail; it goes down only after `fall` failed probes.
    let probes_at_switch = a.probes.load(Ordering::SeqCst);
    a.healthy.store(false, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || async {
            !target_state(&gw, a.up.addr, "healthy").await
        })
        .await,
        "target a is marked unhealthy"
    );
    let failed_probes = a.probes.load(Ordering::SeqCst) - probes_at_switch;
    assert!(
        failed_probes >= 3,
        "down only after fall=3 failed probes, saw {failed_probes}"
    );

    let before = a.traffic.load(Ordering::SeqCst);
    for _ in 0..20 {
        assert_eq!(gw.get_text("/x").await, (200, "b".into()));
    }
    assert_eq!(
        a.traffic.load(Ordering::SeqCst),
        before,
        "no traffic to a down target"
    );

    // Healthy again: back after `rise` passing probes.
    let probes_at_heal = a.probes.load(Ordering::SeqCst);
    a.healthy.store(true, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || async {
            target_state(&gw, a.up.addr, "healthy").await
        })
        .await,
        "target a comes back"
    );
    let passes = a.probes.load(Ordering::SeqCst) - probes_at_heal;
    assert!(
        passes >= 2,
        "up only after rise=2 passing probes, saw {passes}"
    );
    for _ in 0..10 {
        assert_eq!(gw.get("/x").await.status(), 200);
    }
    assert!(
        a.traffic.load(Ordering::SeqCst) > before,
        "a serves traffic again"
    );
    let _ = b.traffic.load(Ordering::SeqCst);
}

#[tokio::test]
async fn readyz_reports_an_upstream_without_a_healthy_target() {
    let a = switchable("a").await;
    a.healthy.store(false, Ordering::SeqCst);
    let gw = TestGateway::start(&api_config(
        &[a.up.addr],
        r#"health = { path = "/healthz", interval = "100ms", rise = 1, fall = 1 }"#,
        "",
    ))
    .await;
    let readyz_turns = |status: u16| {
        let gw = &gw;
        async move {
            eventually(Duration::from_secs(5), || async {
                gw.admin_status("/readyz").await == status
            })
            .await
        }
    };
    assert!(readyz_turns(503).await, "/readyz turns 503");
    let (_, body) = gw.admin_get("/readyz").await;
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(body["error"]["message"].as_str().unwrap().contains("api"));
    assert_eq!(body["unavailable"], serde_json::json!(["api"]));

    a.healthy.store(true, Ordering::SeqCst);
    assert!(readyz_turns(200).await, "/readyz turns 200 again");
}

/// One upstream `api` over `targets` with `eject = { <eject> }`.
fn eject_config(targets: &[SocketAddr], eject: &str) -> String {
    api_config(targets, &format!("eject = {{ {eject} }}"), "")
}

#[tokio::test]
async fn consecutive_503s_eject_a_target_until_base_time_passes() {
    let bad = TestUpstream::start(|_req| async { respond(503, "bad") }).await;
    let ok1 = TestUpstream::fixed("ok1").await;
    let ok2 = TestUpstream::fixed("ok2").await;
    let targets = [bad.addr, ok1.addr, ok2.addr];
    let gw = TestGateway::start(&eject_config(
        &targets,
        r#"consecutive_failures = 3, base_time = "2s", max_percent = 34"#,
    ))
    .await;
    let mut failed = 0;
    for _ in 0..30 {
        if gw.get("/x").await.status() == 503 {
            failed += 1;
        }
    }
    assert_eq!(failed, 3, "three 503s, then the target is ejected");
    assert_eq!(bad.hits(), 3);
    assert!(target_state(&gw, bad.addr, "ejected").await);

    // After base_time it gets traffic again (and, still failing, is ejected again).
    assert!(
        eventually(Duration::from_secs(6), || async {
            !target_state(&gw, bad.addr, "ejected").await
        })
        .await,
        "ejection ends after base_time"
    );
    for _ in 0..6 {
        gw.get("/x").await;
    }
    assert!(
        bad.hits() > 3,
        "the target is tried again after its ejection"
    );
}

#[tokio::test]
async fn connect_refused_ejects_a_target() {
    let ok = TestUpstream::fixed("ok").await;
    let targets = [closed_addr(), ok.addr];
    let gw = TestGateway::start(&eject_config(
        &targets,
        r#"consecutive_failures = 2, base_time = "10s", max_percent = 50"#,
    ))
    .await;
    let mut bad_gateway = 0;
    for _ in 0..20 {
        match gw.get("/x").await.status().as_u16() {
            200 => {}
            502 => bad_gateway += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(bad_gateway, 2, "two refused connections, then ejected");
    assert_eq!(ok.hits(), 18);
}

#[tokio::test]
async fn max_percent_caps_how_many_targets_are_ejected() {
    let bad1 = TestUpstream::start(|_req| async { respond(503, "bad1") }).await;
    let bad2 = TestUpstream::start(|_req| async { respond(503, "bad2") }).await;
    let ok = TestUpstream::fixed("ok").await;
    let targets = [bad1.addr, bad2.addr, ok.addr];

    // A third of three targets: only one of the two bad ones may be out.
    let gw = TestGateway::start(&eject_config(
        &targets,
        r#"consecutive_failures = 2, base_time = "30s", max_percent = 34"#,
    ))
    .await;
    for _ in 0..30 {
        gw.get("/x").await;
    }
    let ejected = [
        target_state(&gw, bad1.addr, "ejected").await,
        target_state(&gw, bad2.addr, "ejected").await,
    ];
    assert_eq!(
        ejected.iter().filter(|e| **e).count(),
        1,
        "max_percent = 34 of 3 targets ejects one: {ejected:?}"
    );
    let still_in = if ejected[0] { &bad2 } else { &bad1 };
    let hits = still_in.hits();
    for _ in 0..6 {
        gw.get("/x").await;
    }
    assert!(
        still_in.hits() > hits,
        "the capped target keeps getting traffic"
    );
    drop(gw);

    // Two thirds: both bad targets go, all traffic reaches the good one.
    let gw = TestGateway::start(&eject_config(
        &targets,
        r#"consecutive_failures = 2, base_time = "30s", max_percent = 67"#,
    ))
    .await;
    for _ in 0..30 {
        gw.get("/x").await;
    }
    assert!(target_state(&gw, bad1.addr, "ejected").await);
    assert!(target_state(&gw, bad2.addr, "ejected").await);
    let (h1, h2) = (bad1.hits(), bad2.hits());
    for _ in 0..10 {
        assert_eq!(gw.get("/x").await.status(), 200);
    }
    assert_eq!((bad1.hits(), bad2.hits()), (h1, h2));
}
