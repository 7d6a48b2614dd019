//! Smoke test of the request path: fixed routes, proxying, 404s.

mod support;

use support::{TestGateway, TestUpstream, client};

#[tokio::test]
async fn routes_fixed_and_proxied_requests() {
    let up = TestUpstream::fixed("from upstream").await;
    let gw = TestGateway::start(&format!(
        r#"
        [upstreams.api]
        targets = ["{}"]
        [[routes]]
        path = "/fixed"
        respond = {{ status = 201, body = "fixed" }}
        [[routes]]
        path_prefix = "/api/"
        upstream = "api"
        "#,
        up.addr
    ))
    .await;
    let c = client();
    let r = c.get(gw.url("/fixed")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.text().await.unwrap(), "fixed");

    let r = c.get(gw.url("/api/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.headers()["via"], "1.1 sluice");
    assert_eq!(r.text().await.unwrap(), "from upstream");
    assert_eq!(up.hits(), 1);

    let r = c.get(gw.url("/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_route");
}
