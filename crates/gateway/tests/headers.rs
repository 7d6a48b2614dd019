//! Header rules end to end (RFC 9110 §7.6): hop-by-hop headers removed both
//! ways, forwarding headers and Via added, Host kept or rewritten, and the
//! request id made or passed through.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::Full;
use support::{TestGateway, TestUpstream, raw_exchange};

fn config(up: &TestUpstream) -> String {
    format!(
        r#"
        [upstreams.api]
        targets = ["{}"]
        [[routes]]
        path_prefix = "/rewrite/"
        host_rewrite = "internal.svc"
        upstream = "api"
        [[routes]]
        upstream = "api"
        "#,
        up.addr
    )
}

fn header<'a>(seen: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    seen["headers"][name]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default()
}

/// A body-less request that the lean path serves, closing after it.
const GET_X_CLOSE: &str = "GET /x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";

/// The values of every `name` line among lower-cased header lines, in order.
fn values<'a>(headers: &'a [String], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter_map(|h| h.strip_prefix(name)?.strip_prefix(": "))
        .collect()
}

/// Split a raw HTTP/1.1 response into lower-cased header lines and the body.
fn split_response(raw: &str) -> (Vec<String>, String) {
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let headers = head.lines().skip(1).map(str::to_ascii_lowercase).collect();
    (headers, body.to_owned())
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_removed() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(&up)).await;
    let raw = gw
        .raw(
            "GET /x HTTP/1.1\r\n\
             Host: gw.test\r\n\
             Connection: close, X-Secret, x-other\r\n\
             X-Secret: s3cret\r\n\
             X-Other: 1\r\n\
             Keep-Alive: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\n\
             TE: trailers\r\n\
             Upgrade: h2c\r\n\
             X-Kept: yes\r\n\r\n",
        )
        .await;
    let (_, body) = split_response(&raw);
    let seen: serde_json::Value = serde_json::from_str(&body).expect(&raw);
    for gone in [
        "x-secret",
        "x-other",
        "keep-alive",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(
            header(&seen, gone).is_empty(),
            "{gone} reached the upstream: {seen}"
        );
    }
    // TE is hop-by-hop, but a client that accepts trailers gets the gateway's
    // own `TE: trailers` upstream (gRPC servers require it).
    assert_eq!(header(&seen, "te"), ["trailers"], "{seen}");
    // The upstream connection's own Connection header (if any) is hyper's, not the client's.
    for v in header(&seen, "connection") {
        assert!(!v.to_ascii_lowercase().contains("secret"), "{seen}");
    }
    assert_eq!(header(&seen, "x-kept"), ["yes"]);
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_removed() {
    let up = TestUpstream::start(|_req| async move {
        let mut r = Response::new(Full::new(Bytes::from_static(b"hi")));
        let h = r.headers_mut();
        h.insert(
            "connection",
            HeaderValue::from_static("x-up-secret, x-up-other"),
        );
        h.insert("x-up-secret", HeaderValue::from_static("1"));
        h.insert("x-up-other", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5, max=100"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert("x-up-kept", HeaderValue::from_static("yes"));
        r
    })
    .await;
    let gw = TestGateway::start(&config(&up)).await;
    let raw = gw.raw(GET_X_CLOSE).await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let (headers, body) = split_response(&raw);
    assert_eq!(body, "hi");
    for gone in [
        "x-up-secret:",
        "x-up-other:",
        "keep-alive:",
        "proxy-connection:",
        "upgrade:",
    ] {
        assert!(
            !headers.iter().any(|h| h.starts_with(gone)),
            "{gone} reached the client: {headers:?}"
        );
    }
    assert!(headers.iter().any(|h| h == "x-up-kept: yes"), "{headers:?}");
    assert!(
        headers.iter().any(|h| h == "via: 1.1 sluice"),
        "{headers:?}"
    );
}

#[tokio::test]
async fn forwarding_headers_and_via_are_added() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(&up)).await;
    let seen = gw
        .echo(
            "/x",
            &[
                ("host", "shop.test"),
                ("x-forwarded-for", "203.0.113.9"),
                ("via", "1.1 edge"),
            ],
        )
        .await;
    // Appended: the peer is not a trusted proxy, but the chain is kept for the app.
    assert_eq!(header(&seen, "x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(header(&seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(header(&seen, "x-forwarded-host"), ["shop.test"]);
    assert_eq!(header(&seen, "via"), ["1.1 edge, 1.1 sluice"]);

    let seen = gw.echo("/x", &[("host", "shop.test")]).await;
    assert_eq!(header(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header(&seen, "via"), ["1.1 sluice"]);
}

#[tokio::test]
async fn host_is_kept_or_rewritten() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(&up)).await;
    let seen = gw.echo("/x", &[("host", "shop.test:8443")]).await;
    assert_eq!(header(&seen, "host"), ["shop.test:8443"]);

    let seen = gw.echo("/rewrite/y", &[("host", "shop.test")]).await;
    assert_eq!(header(&seen, "host"), ["internal.svc"]);
    // The client's host still travels, as X-Forwarded-Host.
    assert_eq!(header(&seen, "x-forwarded-host"), ["shop.test"]);
}

/// A `Connection` that names `Host` removes it like any hop-by-hop field;
/// the request still reaches the upstream with a `Host`: its target's.
#[tokio::test]
async fn a_host_named_by_connection_is_replaced_by_the_targets() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(&up)).await;
    let raw = gw
        .raw("GET /x HTTP/1.1\r\nHost: gw.test\r\nConnection: close, host\r\n\r\n")
        .await;
    let (_, body) = split_response(&raw);
    let seen: serde_json::Value = serde_json::from_str(&body).expect(&raw);
    assert_eq!(
        header(&seen, "host"),
        [up.addr.to_string().as_str()],
        "{seen}"
    );
    // Without `Connection` naming it, the client's own goes on.
    let raw = gw.raw(GET_X_CLOSE).await;
    let (_, body) = split_response(&raw);
    let seen: serde_json::Value = serde_json::from_str(&body).expect(&raw);
    assert_eq!(header(&seen, "host"), ["gw.test"], "{seen}");
}

#[tokio::test]
async fn request_id_is_generated_or_passed_through() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(&up)).await;
    let r = gw.get("/x").await;
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let seen: serde_json::Value = r.json().await.unwrap();
    assert!(uuid_like(&id), "{id}");
    assert_eq!(header(&seen, "x-request-id"), [id.as_str()]);
    // A second request gets a different id.
    let r = gw.get("/x").await;
    assert_ne!(r.headers()["x-request-id"].to_str().unwrap(), id);

    let r = gw
        .get_with("/x", &[("x-request-id", "client-chosen-42")])
        .await;
    assert_eq!(r.headers()["x-request-id"], "client-chosen-42");
    let seen: serde_json::Value = r.json().await.unwrap();
    assert_eq!(header(&seen, "x-request-id"), ["client-chosen-42"]);
}

#[tokio::test]
async fn request_id_on_local_answers_too() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&format!(
        r#"
        [upstreams.api]
        targets = ["{}"]
        [[routes]]
        path = "/only"
        upstream = "api"
        "#,
        up.addr
    ))
    .await;
    let r = gw.get_with("/missing", &[("x-request-id", "abc")]).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-request-id"], "abc");
}

/// The fields `[proxy_headers]` can turn off.
const ADDED: [&str; 5] = [
    "via",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

#[tokio::test]
async fn proxy_headers_can_each_be_turned_off() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&format!(
        r#"
        [proxy_headers]
        request_id = false
        via = false
        x_forwarded_for = false
        x_forwarded_proto = false
        x_forwarded_host = false
        [upstreams.api]
        targets = ["{}"]
        [[routes]]
        path_prefix = "/cached/"
        upstream = "api"
        cache = true
        [[routes]]
        upstream = "api"
        "#,
        up.addr
    ))
    .await;
    // The lean path writes the forwarding fields as lines, a cached route
    // inserts them in the map: both must leave them out.
    for prefix in ["/", "/cached/"] {
        let raw = gw
            .raw(&format!(
                "GET {prefix}a HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
        let (headers, body) = split_response(&raw);
        let seen: serde_json::Value = serde_json::from_str(&body).expect(&raw);
        for name in ADDED {
            assert!(
                header(&seen, name).is_empty(),
                "{prefix}: {name} went upstream: {seen}"
            );
            assert!(
                values(&headers, name).is_empty(),
                "{prefix}: {name} came back: {raw}"
            );
        }
        // A client's own fields pass upstream as they came, not extended.
        let seen = gw
            .echo(
                &format!("{prefix}b"),
                &[
                    ("x-forwarded-for", "203.0.113.9"),
                    ("via", "1.1 edge"),
                    ("x-request-id", "client-7"),
                ],
            )
            .await;
        assert_eq!(
            header(&seen, "x-forwarded-for"),
            ["203.0.113.9"],
            "{prefix}"
        );
        assert_eq!(header(&seen, "via"), ["1.1 edge"], "{prefix}");
        assert_eq!(header(&seen, "x-request-id"), ["client-7"], "{prefix}");
        assert!(header(&seen, "x-forwarded-proto").is_empty(), "{prefix}");
    }
}

#[tokio::test]
async fn proxy_headers_off_one_keeps_the_others() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&format!(
        r#"
        [proxy_headers]
        via = false
        x_forwarded_host = false
        [upstreams.api]
        targets = ["{}"]
        [[routes]]
        upstream = "api"
        "#,
        up.addr
    ))
    .await;
    let raw = gw.raw(GET_X_CLOSE).await;
    let (headers, body) = split_response(&raw);
    let seen: serde_json::Value = serde_json::from_str(&body).expect(&raw);
    assert_eq!(header(&seen, "x-forwarded-for"), ["127.0.0.1"], "{seen}");
    assert_eq!(header(&seen, "x-forwarded-proto"), ["http"], "{seen}");
    assert!(header(&seen, "x-forwarded-host").is_empty(), "{seen}");
    assert!(header(&seen, "via").is_empty(), "{seen}");
    assert!(values(&headers, "via").is_empty(), "{raw}");
    let id = values(&headers, "x-request-id");
    assert_eq!(id.len(), 1, "{raw}");
    assert!(uuid_like(id[0]), "{raw}");
    assert_eq!(header(&seen, "x-request-id"), id, "{seen}");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn h2c_upgrade_is_not_passed_upstream() {
    // Passing it on would let a client tunnel raw HTTP/2 past the router.
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(&up)).await;
    let raw = raw_exchange(
        gw.addr,
        b"GET /x HTTP/1.1\r\n\
          Host: gw.test\r\n\
          Connection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let (_, body) = split_response(&raw);
    let seen: serde_json::Value = serde_json::from_str(&body).expect(&raw);
    assert!(header(&seen, "upgrade").is_empty(), "{seen}");
    assert!(header(&seen, "http2-settings").is_empty(), "{seen}");
}

/// The plain path passes the upstream's fields on as the bytes they came
/// as: every value and repeat in order, the upstream's `Via` before this
/// hop's, one `Date`, one length, and the proxy's own request id instead of
/// the upstream's; hop-by-hop fields still go.
#[tokio::test]
async fn upstream_fields_pass_through_in_order_with_the_proxys_own() {
    let up = TestUpstream::start(|_req| async move {
        let mut r = Response::new(Full::new(Bytes::from_static(b"hello")));
        let h = r.headers_mut();
        h.append("set-cookie", HeaderValue::from_static("a=1"));
        h.append("set-cookie", HeaderValue::from_static("b=2"));
        h.insert("via", HeaderValue::from_static("1.0 cdn"));
        h.insert("x-request-id", HeaderValue::from_static("theirs"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("trailer", HeaderValue::from_static("x-sum"));
        h.insert("x-up-kept", HeaderValue::from_static("yes"));
        r
    })
    .await;
    let gw = TestGateway::start(&config(&up)).await;
    let raw = gw.raw(GET_X_CLOSE).await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let (headers, body) = split_response(&raw);
    assert_eq!(body, "hello");
    let lines = |name: &str| values(&headers, name);
    assert_eq!(lines("set-cookie"), ["a=1", "b=2"], "{headers:?}");
    assert_eq!(lines("via"), ["1.0 cdn", "1.1 sluice"], "{headers:?}");
    let ids = lines("x-request-id");
    assert_eq!(ids.len(), 1, "{headers:?}");
    assert!(uuid_like(ids[0]), "the proxy's own id: {headers:?}");
    assert_eq!(lines("date").len(), 1, "{headers:?}");
    assert_eq!(lines("content-length"), ["5"], "{headers:?}");
    assert_eq!(lines("x-up-kept"), ["yes"], "{headers:?}");
    for gone in ["keep-alive", "proxy-connection", "trailer"] {
        assert!(
            lines(gone).is_empty(),
            "{gone} reached the client: {headers:?}"
        );
    }
}

/// A route's limiter adds its `RateLimit` fields after an upstream's own:
/// one list item per policy, the client being under both.
#[tokio::test]
async fn a_limiting_route_adds_its_ratelimit_fields_after_the_upstreams() {
    let up = TestUpstream::start(|_req| async move {
        let mut r = Response::new(Full::new(Bytes::from_static(b"hi")));
        let h = r.headers_mut();
        h.insert("ratelimit", HeaderValue::from_static("\"up\";r=1;t=1"));
        h.insert(
            "ratelimit-policy",
            HeaderValue::from_static("\"up\";q=1;w=1"),
        );
        h.insert("x-up-kept", HeaderValue::from_static("yes"));
        r
    })
    .await;
    let gw = TestGateway::start(&format!(
        r#"
        [upstreams.api]
        targets = ["{}"]
        [[routes]]
        upstream = "api"
        rate_limit = {{ key = "route", rate = "1000/s", burst = 100 }}
        "#,
        up.addr
    ))
    .await;
    let raw = gw.raw(GET_X_CLOSE).await;
    let (headers, _) = split_response(&raw);
    let lines = |name: &str| values(&headers, name);
    for name in ["ratelimit", "ratelimit-policy"] {
        let values = lines(name);
        assert_eq!(values.len(), 2, "{name}: {headers:?}");
        assert!(values[0].starts_with("\"up\""), "{name}: {headers:?}");
        assert!(values[1].starts_with("\"route0\""), "{name}: {headers:?}");
    }
    assert_eq!(lines("x-up-kept"), ["yes"], "{headers:?}");
}
