//! The public listener against real sockets: keep-alive, h2c, the limits that
//! stop slow or greedy clients (header read timeout, 431, 413, idle timeout)
//! and the connection caps.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::{TestGateway, TestUpstream, client, raw_exchange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn proxied(up: &TestUpstream, server: &str) -> String {
    format!(
        r#"
        [server]
        {server}
        [upstreams.api]
        targets = ["{}"]
        [[routes]]
        path = "/fixed"
        respond = {{ body = "ok" }}
        [[routes]]
        upstream = "api"
        "#,
        up.addr
    )
}

/// Read from `s` until it is closed (Ok(0) or an error), up to `wait`.
/// Returns what was read, or None when the connection stayed open.
async fn read_until_closed(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|()| out)
}

/// One HTTP/1.1 request on an open connection; returns the status.
/// Send half a request head and expect the gateway to close the connection
/// (with nothing, or a 408) because the head never completes.
async fn send_half_head_expect_close(s: &mut TcpStream, when: &str) {
    s.write_all(b"GET /up HTTP/1.1\r\nHost: gw.test\r\nX-Slow: ")
        .await
        .unwrap();
    let got = read_until_closed(s, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("{when}: a head that never completes is not closed"));
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{when}: no normal response: {text:?}"
    );
}

async fn get_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> u16 {
    let req = http::Request::get(path)
        .header("host", "gw.test")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(&up, "")).await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    for i in 0..5 {
        let path = if i % 2 == 0 { "/fixed" } else { "/up" };
        assert_eq!(get_on(&mut sender, path).await, 200, "request {i}");
    }
    // The upstream saw the proxied ones, all through one client connection.
    assert_eq!(up.hits(), 2);
    assert!(
        !conn.is_finished(),
        "connection stays open between requests"
    );
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&proxied(&up, "")).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = c.get(gw.url("/x?q=1")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        let seen: serde_json::Value = r.json().await.unwrap();
        assert_eq!(seen["path"], "/x?q=1");
        // HTTP/2 has :authority, not Host; the upstream still gets a Host.
        assert_eq!(seen["headers"]["host"][0], gw.addr.to_string());
        assert_eq!(seen["headers"]["via"][0], "2 sluice");
    }
}

#[tokio::test]
async fn h2c_refused_when_http2_is_off() {
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(&up, "http2 = false")).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    assert!(c.get(gw.url("/fixed")).send().await.is_err());
    // HTTP/1.1 still works.
    let r = client().get(gw.url("/fixed")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn half_sent_request_head_is_closed_after_header_read_timeout() {
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(&up, r#"header_read_timeout = "300ms""#)).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    send_half_head_expect_close(&mut s, "at once").await;
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn silent_connection_is_closed_after_header_read_timeout() {
    // A client that connects and sends nothing must not hold a slot until the
    // (much longer) idle timeout.
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(
        &up,
        r#"header_read_timeout = "300ms"
        idle_timeout = "60s""#,
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(got.is_some(), "silent connection was not closed");
}

#[tokio::test]
async fn too_many_headers_get_431() {
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(&up, "max_headers = 10")).await;
    let mut req = client().get(gw.url("/up"));
    for i in 0..20 {
        req = req.header(format!("x-h{i}"), "v");
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 431);
    // Under the limit is fine.
    let r = client()
        .get(gw.url("/up"))
        .header("x-a", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn too_large_head_gets_431() {
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(&up, r#"max_header_size = "16KiB""#)).await;
    let big = "a".repeat(32 << 10);
    let r = client()
        .get(gw.url("/up"))
        .header("x-big", big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn too_large_head_over_h2_is_refused() {
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(&up, r#"max_header_size = "16KiB""#)).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let big = "a".repeat(32 << 10);
    let r = c.get(gw.url("/up")).header("x-big", big).send().await;
    // HTTP/2 may also refuse the stream outright (an error here).
    if let Ok(r) = r {
        assert_eq!(r.status(), 431);
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn body_over_limit_by_content_length_gets_413_before_upstream() {
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(&up, r#"max_body_size = "1KiB""#)).await;
    // Announce a large body but send none: the answer must not wait for it.
    let text = raw_exchange(
        gw.addr,
        b"POST /up HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 1000000\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");
    assert!(text.contains("body_too_large"), "{text:?}");
    let r = client()
        .post(gw.url("/up"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(up.hits(), 0);
    // At the limit is fine.
    let r = client()
        .post(gw.url("/up"))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn chunked_body_over_limit_is_cut_off() {
    // The upstream reads the whole body before answering, as an app would.
    let up = TestUpstream::start(|req| async move {
        // The gateway aborts an over-limit body mid-way: the read then fails.
        let n = match req.into_body().collect().await {
            Ok(b) => b.to_bytes().len().to_string(),
            Err(_) => "cut".to_owned(),
        };
        http::Response::new(http_body_util::Full::new(Bytes::from(n)))
    })
    .await;
    let gw = TestGateway::start(&proxied(&up, r#"max_body_size = "64KiB""#)).await;
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..16)
        .map(|_| Ok(Bytes::from(vec![b'x'; 16 << 10])))
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    match client().post(gw.url("/up")).body(body).send().await {
        Ok(r) => {
            assert_eq!(r.status(), 413);
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "body_too_large");
        }
        Err(e) => eprintln!("connection cut while sending: {e}"),
    }
    // A chunked body under the limit goes through whole.
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..3)
        .map(|_| Ok(Bytes::from(vec![b'x'; 16 << 10])))
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = client()
        .post(gw.url("/up"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), (48 << 10).to_string());
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(&up, r#"idle_timeout = "300ms""#)).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /fixed HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("idle connection closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(text.ends_with("ok"), "{text:?}");
}

#[tokio::test]
async fn slow_upstream_answer_is_not_cut_by_idle_timeout() {
    // Idle means no request in flight: a request waiting on its upstream
    // longer than idle_timeout must still get its answer.
    let up = TestUpstream::start(|_req| async move {
        tokio::time::sleep(Duration::from_millis(900)).await;
        http::Response::new(http_body_util::Full::new(Bytes::from_static(b"late")))
    })
    .await;
    let gw = TestGateway::start(&proxied(&up, r#"idle_timeout = "200ms""#)).await;
    let r = client().get(gw.url("/slow")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "late");
}

/// Open a connection and prove it is served by completing one request on it.
async fn served_connection(gw: &TestGateway) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /fixed HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let mut got = Vec::new();
    while !got.ends_with(b"ok") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("response in time")
            .unwrap();
        assert!(n > 0, "connection closed before a response");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    s
}

/// The extra connection is closed without a response.
async fn refused(gw: &TestGateway) {
    let text = raw_exchange(
        gw.addr,
        b"GET /fixed HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(text, "", "the connection over the cap got service");
}

#[tokio::test]
async fn per_ip_connection_cap() {
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(&up, "max_connections_per_ip = 2")).await;
    let a = served_connection(&gw).await;
    let _b = served_connection(&gw).await;
    refused(&gw).await;
    // Closing one frees its slot.
    drop(a);
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let text = raw_exchange(
            gw.addr,
            b"GET /fixed HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        if text.starts_with("HTTP/1.1 200") {
            ok = true;
            break;
        }
    }
    assert!(ok, "a slot freed by a closed connection is reused");
}

#[tokio::test]
async fn max_connections_cap() {
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(&up, "max_connections = 3")).await;
    let _a = served_connection(&gw).await;
    let _b = served_connection(&gw).await;
    let _c = served_connection(&gw).await;
    refused(&gw).await;
}

/// Read one whole response (head and `Content-Length` body) from `s`.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        assert!(n > 0, "connection closed mid-response: {text:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

const GET_FIXED: &[u8] = b"GET /fixed HTTP/1.1\r\nHost: gw.test\r\n\r\n";

#[tokio::test]
async fn idle_keep_alive_outlives_header_read_timeout() {
    // The wait for the next request is bounded by idle_timeout alone; idle
    // past 100 ms the connection is also parked (hyper's state dropped) and
    // must still serve the next request.
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(
        &up,
        r#"header_read_timeout = "300ms"
        idle_timeout = "10s""#,
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    for i in 0..3 {
        s.write_all(GET_FIXED).await.unwrap();
        let resp = read_response(&mut s).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "request {i}: {resp}");
        assert!(resp.ends_with("ok"), "request {i}: {resp}");
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    // A proxied request on the same connection, after the idle spells.
    s.write_all(b"GET /up HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.ends_with("hello"), "{resp}");
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn idle_after_a_request_body_outlives_header_read_timeout() {
    // After a body the connection is not parked (hyper keeps it), and the
    // header read timeout must still not end the idle wait.
    // The upstream reads the whole body before it answers.
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&proxied(
        &up,
        r#"header_read_timeout = "300ms"
        idle_timeout = "10s""#,
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"abcde").await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.contains(r#""body_len":5"#), "{resp}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(GET_FIXED).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test]
async fn half_sent_second_head_is_closed_after_header_read_timeout() {
    let up = TestUpstream::fixed("hello").await;
    for pause in [Duration::ZERO, Duration::from_millis(1300)] {
        let gw = TestGateway::start(&proxied(
            &up,
            r#"header_read_timeout = "300ms"
            idle_timeout = "60s""#,
        ))
        .await;
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(GET_FIXED).await.unwrap();
        read_response(&mut s).await;
        // Idle (and, after the pause, parked), then a head that never ends.
        tokio::time::sleep(pause).await;
        send_half_head_expect_close(&mut s, &format!("after {pause:?} idle")).await;
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn parked_connection_is_closed_after_idle_timeout() {
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(&up, r#"idle_timeout = "2s""#)).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(GET_FIXED).await.unwrap();
    read_response(&mut s).await;
    // Parked after 100 ms; only idle_timeout ends it, not earlier.
    assert!(
        read_until_closed(&mut s, Duration::from_millis(1500))
            .await
            .is_none(),
        "closed before idle_timeout"
    );
    let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(
        got.as_deref(),
        Some(&b""[..]),
        "an idle connection is closed after idle_timeout, with nothing sent"
    );
}

#[tokio::test]
async fn pipelined_partial_head_survives_idle() {
    // A complete request and the start of the next one in one write: the
    // start sits in hyper's buffer, so the connection must not be parked
    // (which would lose it) while the client pauses.
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&proxied(&up, r#"idle_timeout = "10s""#)).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /fixed HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /up HTTP/1.1\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut s).await.ends_with("ok"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"Host: gw.test\r\n\r\n").await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.ends_with("hello"), "{resp}");
    assert_eq!(up.hits(), 1);
}
