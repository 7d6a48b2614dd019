//! Routing through real sockets: host, path, method and header matches, file
//! order, prefix strip/rewrite, path normalization, 404s, fixed responses,
//! and refusing to be an open proxy.

mod support;

use std::time::Duration;

use support::{TestGateway, TestUpstream, api_config, client, error_json, raw_exchange};

fn config(up: &TestUpstream) -> String {
    format!(
        r#"
        [upstreams.api]
        targets = ["{up}"]

        [[routes]]
        name = "exact-host"
        host = "a.test"
        respond = {{ body = "host a" }}

        [[routes]]
        name = "wild-host"
        host = "*.wild.test"
        respond = {{ body = "wild" }}

        [[routes]]
        name = "ping"
        path = "/ping"
        respond = {{ body = "pong" }}

        [[routes]]
        name = "delete"
        path_prefix = "/items/"
        methods = ["DELETE"]
        respond = {{ status = 403, body = "no deleting" }}

        [[routes]]
        name = "beta"
        path_prefix = "/items/"
        headers = {{ "x-beta" = "1" }}
        respond = {{ body = "beta items" }}

        [[routes]]
        name = "items"
        path_prefix = "/items/"
        upstream = "api"

        [[routes]]
        name = "items-shadowed"
        path_prefix = "/items/"
        respond = {{ body = "never" }}

        [[routes]]
        name = "admin"
        path_prefix = "/admin/"
        respond = {{ body = "admin area" }}

        [[routes]]
        name = "api"
        path_prefix = "/api/"
        upstream = "api"

        [[routes]]
        name = "strip"
        path_prefix = "/strip/"
        strip_prefix = true
        upstream = "api"

        [[routes]]
        name = "rewrite"
        path_prefix = "/v1/"
        rewrite_prefix = "/internal/v2/"
        upstream = "api"

        [[routes]]
        name = "teapot"
        path = "/teapot"
        respond = {{ status = 418, headers = {{ "x-fixed" = "yes", "content-type" = "text/plain" }}, body = "short and stout" }}
        "#,
        up = up.addr
    )
}

#[tokio::test]
async fn matches_host_exact_and_suffix() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(&up)).await;
    for (host, answer) in [
        ("a.test", "host a"),
        ("A.Test:8080", "host a"),
        ("x.wild.test", "wild"),
        ("x.y.wild.test", "wild"),
        // `*.wild.test` needs a label before the suffix, and is no substring match.
        ("wild.test", "pong"),
        ("notwild.test", "pong"),
        ("b.test", "pong"),
    ] {
        let r = gw.get_with("/ping", &[("host", host)]).await;
        assert_eq!(r.text().await.unwrap(), answer, "host {host}");
    }
}

#[tokio::test]
async fn matches_path_method_and_header_in_file_order() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(&up)).await;
    // Exact path: /ping only.
    assert_eq!(gw.get_text("/ping").await, (200, "pong".into()));
    assert_eq!(gw.get("/ping/x").await.status(), 404);
    assert_eq!(gw.get("/pingx").await.status(), 404);
    // Method match comes first in the file.
    let r = client().delete(gw.url("/items/1")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // Header match.
    let r = gw.get_with("/items/1", &[("x-beta", "1")]).await;
    assert_eq!(r.text().await.unwrap(), "beta items");
    let seen = gw.echo("/items/1", &[("x-beta", "2")]).await;
    assert_eq!(seen["path"], "/items/1");
    // Neither: the first plain prefix route wins over the later identical one.
    let s = gw.echo("/items/2?x=1", &[]).await;
    assert_eq!(s["path"], "/items/2?x=1");
    assert_eq!(s["method"], "GET");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn strips_and_rewrites_the_prefix() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(&up)).await;
    for (path, upstream_path) in [
        ("/strip/users/7?full=1", "/users/7?full=1"),
        ("/strip/", "/"),
        ("/v1/users/7", "/internal/v2/users/7"),
        ("/api/users/7", "/api/users/7"),
    ] {
        assert_eq!(gw.echo(path, &[]).await["path"], upstream_path, "{path}");
    }
}

/// GET `target` as written (no client normalizes it on the way).
async fn raw_get(gw: &TestGateway, target: &str) -> String {
    gw.raw(&format!(
        "GET {target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n"
    ))
    .await
}

#[tokio::test]
async fn paths_are_normalized_before_matching() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(&up)).await;
    // Dot segments cannot climb out of /api/ into /admin/ ...
    let r = raw_get(&gw, "/api/../admin/x").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("admin area"), "{r}");
    let r = raw_get(&gw, "/api/%2e%2e/admin/x").await;
    assert!(r.ends_with("admin area"), "{r}");
    assert_eq!(up.hits(), 0, "nothing reached the api upstream");
    // ... nor out of /admin/ into /api/; the upstream sees the normalized path.
    let r = raw_get(&gw, "/admin/../api/x").await;
    assert!(r.contains(r#""path":"/api/x""#), "{r}");
    let r = raw_get(&gw, "//api//x/./y").await;
    assert!(r.contains(r#""path":"/api/x/y""#), "{r}");
    let r = raw_get(&gw, "/%61pi/z").await;
    assert!(r.contains(r#""path":"/api/z""#), "{r}");
    assert_eq!(up.hits(), 3);
    // Climbing above the root stays at the root.
    let r = raw_get(&gw, "/../../admin/x").await;
    assert!(r.ends_with("admin area"), "{r}");
}

#[tokio::test]
async fn no_route_is_404_json() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(&up)).await;
    let (status, code, message) = error_json(gw.get("/nothing/here").await).await;
    assert_eq!((status, code.as_str()), (404, "no_route"));
    assert!(message.contains("/nothing/here"), "{message}");
}

#[tokio::test]
async fn absolute_form_for_unrouted_host_is_refused() {
    let up = TestUpstream::echo_request().await;
    // A catch-all route: any origin-form request goes upstream.
    let gw = TestGateway::start(&format!(
        "[[routes]]\nhost = \"a.test\"\nrespond = {{ body = \"host a\" }}\n{}",
        api_config(&[up.addr], "", "")
    ))
    .await;
    let absolute = |target: &str, host: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    let r = gw
        .raw(&absolute("http://evil.example/", "evil.example"))
        .await;
    assert!(r.starts_with("HTTP/1.1 421"), "{r}");
    assert!(r.contains("not_routed"), "{r}");
    // The Host header cannot launder an absolute-form target either.
    let r = gw.raw(&absolute("http://evil.example/", "a.test")).await;
    assert!(r.starts_with("HTTP/1.1 421"), "{r}");
    assert_eq!(up.hits(), 0, "never forwarded");
    // Absolute form for a host the gateway does route is served.
    let r = gw.raw(&absolute("http://a.test/", "a.test")).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("host a"), "{r}");
}

#[tokio::test]
async fn connect_is_refused() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::proxy_to(&[up.addr]).await;
    let r = raw_exchange(
        gw.addr,
        b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    assert!(r.contains("connect_refused"), "{r}");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn fixed_response_with_status_headers_and_body() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(&up)).await;
    let r = gw.get("/teapot").await;
    assert_eq!(r.status(), 418);
    assert_eq!(r.headers()["x-fixed"], "yes");
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "short and stout");
    assert_eq!(up.hits(), 0);
}
