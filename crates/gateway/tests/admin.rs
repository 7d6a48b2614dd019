//! The admin API over real sockets: `/healthz`, `/readyz`, `/upstreams`
//! state, `/metrics` (with and without a recorder) and the bearer token.
//!
//! This is the one test binary that installs the global Prometheus recorder.

mod support;

use std::time::Duration;

use support::{TestGateway, TestUpstream, admin_json, client, eventually, respond};

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let up = TestUpstream::fixed("ok").await;
    let gw = TestGateway::start(&format!(
        r#"
        [upstreams.api]
        targets = ["{}"]
        [[routes]]
        path_prefix = "/"
        upstream = "api"
        "#,
        up.addr
    ))
    .await;
    let c = client();
    let r = c.get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(gw.admin_url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn upstreams_show_health_ejection_and_requests_in_flight() {
    let slow = TestUpstream::start(|_req| async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        respond(200, "slow")
    })
    .await;
    let gw = TestGateway::start(&format!(
        r#"
        [upstreams.api]
        targets = ["{}"]
        balance = "least_request"
        [[routes]]
        path_prefix = "/"
        upstream = "api"
        "#,
        slow.addr
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
    let r = client().get(gw.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "no_metrics");
}

#[tokio::test]
async fn metrics_render_gateway_counters() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder in this test binary");
    let up = TestUpstream::fixed("ok").await;
    let gw = TestGateway::start(&format!(
        r#"
        [upstreams.api]
        targets = ["{}"]
        [[routes]]
        name = "api_route"
        path_prefix = "/"
        upstream = "api"
        "#,
        up.addr
    ))
    .await;
    gw.gw.set_metrics_handle(handle);
    let c = client();
    for _ in 0..3 {
        assert_eq!(c.get(gw.url("/x")).send().await.unwrap().status(), 200);
    }
    let r = c.get(gw.admin_url("/metrics")).send().await.unwrap();
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
    let c = client();
    for path in ["/healthz", "/upstreams", "/readyz"] {
        let r = c.get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without a token");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
        let r = c
            .get(gw.admin_url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
        let r = c
            .get(gw.admin_url(path))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with the token");
    }
    let r = c.post(gw.admin_url("/reload")).send().await.unwrap();
    assert_eq!(r.status(), 401, "reload needs the token too");
}
