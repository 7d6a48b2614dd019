//! The admin API over real sockets: `/healthz`, `/readyz` (listener,
//! shutdown, active health and passive ejection of the upstreams routes
//! use, and the `readyz_requires_upstreams` switch), `/upstreams` state,
//! `/metrics` (with and without a recorder) and the bearer token.
//!
//! This is the one test binary that installs the global Prometheus recorder.

mod support;

use std::time::Duration;

use support::{
    TestGateway, TestUpstream, admin_json, api_config, client, closed_addr, eventually, respond,
    status_and_json,
};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let up = TestUpstream::fixed("ok").await;
    let gw = TestGateway::proxy_to(&[up.addr]).await;
    assert_eq!(gw.admin_status("/healthz").await, 200);
    assert_eq!(gw.admin_status("/readyz").await, 200);
    assert_eq!(gw.admin_status("/nope").await, 404);
}

#[tokio::test]
async fn upstreams_show_health_ejection_and_requests_in_flight() {
    let slow = TestUpstream::delayed(Duration::from_millis(800), "slow").await;
    let gw = TestGateway::start(&api_config(
        &[slow.addr],
        r#"balance = "least_request""#,
        "",
    ))
    .await;
    let v = admin_json(&gw, "/upstreams").await;
    let api = &v["upstreams"][0];
    assert_eq!(api["name"], "api");
    assert_eq!(api["in_flight"], 0);
    let t = &api["targets"][0];
    assert_eq!(t["address"], slow.addr.to_string());
    assert_eq!(t["healthy"], true);
    assert_eq!(t["ejected"], false);
    assert_eq!(t["in_flight"], 0);

    let req = tokio::spawn({
        let url = gw.url("/x");
        async move { client().get(url).send().await.unwrap().status() }
    });
    assert!(eventually(Duration::from_secs(3), || async { slow.hits() == 1 }).await);
    let v = admin_json(&gw, "/upstreams").await;
    assert_eq!(v["upstreams"][0]["in_flight"], 1);
    assert_eq!(v["upstreams"][0]["targets"][0]["in_flight"], 1);
    assert_eq!(req.await.unwrap(), 200);
    assert!(
        eventually(Duration::from_secs(2), || async {
            admin_json(&gw, "/upstreams").await["upstreams"][0]["in_flight"] == 0
        })
        .await,
        "in_flight drops back to 0"
    );
}

#[tokio::test]
async fn metrics_without_a_recorder_is_a_json_404() {
    let gw = TestGateway::start("").await;
    let (status, v) = gw.admin_get("/metrics").await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "no_metrics");
}

#[tokio::test]
async fn metrics_render_gateway_counters() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder in this test binary");
    let up = TestUpstream::fixed("ok").await;
    let gw = TestGateway::start(&api_config(&[up.addr], "", r#"name = "api_route""#)).await;
    gw.gw.set_metrics_handle(handle);
    for _ in 0..3 {
        assert_eq!(gw.get("/x").await.status(), 200);
    }
    let r = client().get(gw.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("sluice_gateway_requests_total{")
                && l.contains("route=\"api_route\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no request counter for the route in:\n{text}"));
    assert!(line.ends_with(" 3"), "three requests counted: {line}");
    for name in [
        "sluice_gateway_request_duration_seconds",
        "sluice_gateway_upstream_duration_seconds",
        "sluice_gateway_upstream_in_flight",
    ] {
        assert!(text.contains(name), "{name} is exported:\n{text}");
    }
    // The route's duration histogram counted the three requests (other
    // tests in this binary use other route names).
    let count = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("sluice_gateway_request_duration_seconds_count{route=\"api_route\"} ")
        })
        .unwrap_or_else(|| panic!("no duration count for the route in:\n{text}"));
    assert_eq!(count, "3");
    assert!(
        text.contains(
            "sluice_gateway_upstream_duration_seconds_bucket{upstream=\"api\",le=\"+Inf\"}"
        ),
        "the upstream's histogram has buckets:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("sluice_gateway_upstream_requests_total{")
                && l.contains("upstream=\"api\"")
                && l.contains("outcome=\"200\"")),
        "tries are counted per upstream and outcome:\n{text}"
    );
}

#[tokio::test]
async fn a_configured_token_is_required() {
    let gw = TestGateway::start(
        r#"
        [admin]
        token = "s3cret"
        "#,
    )
    .await;
    let with_token =
        |path: &str, token: &str| client().get(gw.admin_url(path)).bearer_auth(token).send();
    for path in ["/healthz", "/upstreams", "/readyz"] {
        let (status, v) = gw.admin_get(path).await;
        assert_eq!(status, 401, "{path} without a token");
        assert_eq!(v["error"]["code"], "unauthorized");
        let r = with_token(path, "wrong").await.unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
        let r = with_token(path, "s3cret").await.unwrap();
        assert_eq!(r.status(), 200, "{path} with the token");
    }
    assert_eq!(
        gw.admin_post("/reload").await.0,
        401,
        "reload needs the token too"
    );
}

#[tokio::test]
async fn readyz_follows_passive_ejection_of_a_used_upstream() {
    let web = TestUpstream::fixed("web").await;
    let gw = TestGateway::start(&format!(
        r#"
        [upstreams.web]
        targets = ["{}"]
        [upstreams.api]
        targets = ["{}"]
        eject = {{ consecutive_failures = 2, base_time = "30s" }}
        [[routes]]
        path_prefix = "/api/"
        upstream = "api"
        [[routes]]
        path_prefix = "/"
        upstream = "web"
        "#,
        web.addr,
        closed_addr()
    ))
    .await;
    let (status, body) = gw.admin_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(
        body["upstreams"],
        serde_json::json!([
            {"name": "api", "targets": 1, "available": 1},
            {"name": "web", "targets": 1, "available": 1},
        ]),
        "a target nobody has found down yet counts as available"
    );

    for _ in 0..2 {
        assert_eq!(gw.get("/api/x").await.status(), 502);
    }
    assert!(
        eventually(Duration::from_secs(2), || async {
            gw.admin_status("/readyz").await == 503
        })
        .await,
        "two refused connections eject api's only target"
    );
    let (_, body) = gw.admin_get("/readyz").await;
    assert_eq!(body["ready"], false);
    assert_eq!(body["unavailable"], serde_json::json!(["api"]));
    assert_eq!(body["upstreams"][0]["available"], 0);
    assert_eq!(body["error"]["code"], "not_ready");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("api") && !message.contains("web"),
        "{message}"
    );
    // The healthy upstream still serves: readiness reports, it does not route.
    assert_eq!(gw.get_text("/x").await, (200, "web".into()));
}

#[tokio::test]
async fn readyz_follows_a_real_upstream_going_down_and_coming_back() {
    let up = TestUpstream::fixed("first").await;
    let addr = up.addr;
    let gw = TestGateway::start(&api_config(
        &[addr],
        r#"health = { path = "/", interval = "50ms", timeout = "200ms", rise = 1, fall = 1 }"#,
        "",
    ))
    .await;
    assert_eq!(gw.admin_status("/readyz").await, 200);

    drop(up);
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.admin_status("/readyz").await == 503
        })
        .await,
        "/readyz turns 503 when the only target stops"
    );
    assert_eq!(
        gw.admin_get("/readyz").await.1["unavailable"],
        serde_json::json!(["api"])
    );

    // The same address serves again.
    let mut listener = None;
    assert!(
        eventually(Duration::from_secs(5), || {
            listener = listener
                .take()
                .or_else(|| std::net::TcpListener::bind(addr).ok());
            std::future::ready(listener.is_some())
        })
        .await,
        "{addr} can be bound again"
    );
    let listener = listener.unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let _back = TestUpstream::start_on(listener, |_req| async { respond(200, "back") }).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.admin_status("/readyz").await == 200
        })
        .await,
        "/readyz turns 200 when the target answers its checks again"
    );
    assert_eq!(gw.get_text("/x").await, (200, "back".into()));
}

#[tokio::test]
async fn readyz_ignores_upstreams_no_route_uses() {
    let up = TestUpstream::fixed("ok").await;
    let gw = TestGateway::start(&format!(
        r#"
        [upstreams.spare]
        targets = ["{}"]
        health = {{ path = "/", interval = "50ms", timeout = "200ms", fall = 1 }}
        {}
        "#,
        closed_addr(),
        api_config(&[up.addr], "", "")
    ))
    .await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin_json(&gw, "/upstreams").await["upstreams"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["name"] == "spare" && u["targets"][0]["healthy"] == false)
        })
        .await,
        "the spare upstream's target is found down"
    );
    let (status, body) = gw.admin_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["upstreams"],
        serde_json::json!([{"name": "api", "targets": 1, "available": 1}])
    );
}

#[tokio::test]
async fn readyz_requires_upstreams_can_be_switched_off() {
    let config = |requires: bool| {
        format!(
            "[admin]\nreadyz_requires_upstreams = {requires}\n{}",
            api_config(
                &[closed_addr()],
                r#"health = { path = "/", interval = "50ms", timeout = "200ms", fall = 1 }"#,
                ""
            )
        )
    };
    let gw = TestGateway::start(&config(false)).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.admin_get("/readyz").await.1["unavailable"] == serde_json::json!(["api"])
        })
        .await,
        "the dead target is reported"
    );
    let (status, body) = gw.admin_get("/readyz").await;
    assert_eq!(status, 200, "reported but not required: {body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["requires_upstreams"], false);

    // The switch is read from the config in force.
    gw.gw
        .apply(sluice_gateway::Config::parse(&config(true), "on.toml").unwrap());
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.admin_status("/readyz").await == 503
        })
        .await,
        "required again after a reload"
    );
}

#[tokio::test]
async fn not_ready_until_the_listener_accepts_nor_once_it_stops() {
    let slow = TestUpstream::delayed(Duration::from_millis(600), "slow").await;
    let config =
        sluice_gateway::Config::parse(&api_config(&[slow.addr], "", ""), "t.toml").unwrap();
    let whole = CancellationToken::new();
    let gw = sluice_gateway::Gateway::without_access_log(config, whole.clone());
    let r = gw.readiness();
    assert!(!r.ready && !r.accepting, "{r:?}");

    // The admin API and the proxy stop separately here, so that /readyz can
    // be asked while the proxy drains.
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}/readyz", admin.local_addr().unwrap());
    tokio::spawn({
        let gw = gw.clone();
        async move { gw.serve_admin(admin, CancellationToken::new()).await }
    });
    let c = client();
    let (status, body) = status_and_json(c.get(&admin_url).send().await.unwrap()).await;
    assert_eq!(status, 503);
    assert_eq!(body["accepting"], false);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not accepting"),
        "{body}"
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let proxy = tokio::spawn({
        let (gw, stop) = (gw.clone(), stop.clone());
        async move { gw.serve(listener, stop).await }
    });
    assert!(eventually(Duration::from_secs(5), || async { gw.readiness().ready }).await);
    assert_eq!(c.get(&admin_url).send().await.unwrap().status(), 200);

    let in_flight = tokio::spawn({
        let c = c.clone();
        async move { c.get(url).send().await.unwrap().status() }
    });
    assert!(eventually(Duration::from_secs(3), || async { slow.hits() == 1 }).await);
    stop.cancel();
    // Unready at once, while the request in flight still drains.
    assert!(
        eventually(Duration::from_secs(1), || async {
            !gw.readiness().accepting
        })
        .await
    );
    assert!(!proxy.is_finished(), "still draining");
    assert_eq!(c.get(&admin_url).send().await.unwrap().status(), 503);
    assert_eq!(in_flight.await.unwrap(), 200);
    proxy.await.unwrap().unwrap();

    // The gateway's own shutdown is reported as such.
    whole.cancel();
    let r = gw.readiness();
    assert!(!r.ready && r.shutting_down, "{r:?}");
}
