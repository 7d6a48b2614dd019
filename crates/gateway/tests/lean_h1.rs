//! The listener's lean HTTP/1.1 server path on raw sockets: keep-alive,
//! pipelining, HTTP/1.0, `Connection: close`, HEAD, the framings a
//! response is re-encoded in, refused heads, the hand-over to hyper in the
//! middle of a connection (a body, a WebSocket upgrade), and the timeouts
//! and drain around it.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use support::{TestGateway, TestUpstream, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

const WAIT: Duration = Duration::from_secs(5);

/// One response as read off the wire, body de-chunked.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client connection with what it has read and not used yet.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Read more; false at EOF.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(WAIT, self.s.read(&mut chunk))
            .await
            .expect("bytes in time")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next response; `head` when it answers a HEAD request.
    async fn response(&mut self, head: bool) -> Resp {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(self.fill().await, "closed before a response head");
        };
        let text = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
            chunked: false,
        };
        if head || status == 204 || status == 304 {
            return resp;
        }
        if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                assert!(self.fill().await, "closed mid-body");
            }
            resp.body = self.buf.drain(..len).collect();
        } else if resp.header("transfer-encoding") == Some("chunked") {
            resp.chunked = true;
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    assert!(self.fill().await, "closed mid-chunk");
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap(), 16)
                    .unwrap_or_else(|_| panic!("chunk size {size_text:?}"));
                self.buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailers (none expected) and the last CRLF.
                    while !self.buf.starts_with(b"\r\n") {
                        assert!(self.fill().await, "closed before the last CRLF");
                    }
                    self.buf.drain(..2);
                    break;
                }
                while self.buf.len() < size + 2 {
                    assert!(self.fill().await, "closed mid-chunk");
                }
                resp.body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
            }
        } else {
            // Delimited by the close.
            while self.fill().await {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    /// Whether the gateway closes the connection within `wait`, nothing more sent.
    async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(wait, self.s.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => true,
            Ok(Ok(n)) => panic!(
                "unexpected bytes: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(_) => false,
        }
    }
}

fn config(up: SocketAddr, server: &str) -> String {
    format!(
        r#"
        [server]
        {server}
        [upstreams.api]
        targets = ["{up}"]
        [[routes]]
        path = "/a"
        respond = {{ body = "A" }}
        [[routes]]
        path = "/b"
        respond = {{ body = "BB" }}
        [[routes]]
        upstream = "api"
        "#
    )
}

async fn gateway(server: &str) -> (TestUpstream, TestGateway) {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(up.addr, server)).await;
    (up, gw)
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let (up, gw) = gateway("").await;
    let mut c = Raw::connect(gw.addr).await;
    for i in 0..6 {
        let path = if i % 2 == 0 { "/a" } else { "/up" };
        c.send(format!("GET {path}?i={i} HTTP/1.1\r\nHost: gw.test\r\n\r\n").as_bytes())
            .await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200, "{i}");
        assert!(r.header("connection").is_none(), "{r:?}");
        assert!(r.header("date").is_some(), "{r:?}");
        assert!(r.header("x-request-id").is_some(), "{r:?}");
        if i % 2 == 0 {
            assert_eq!(r.text(), "A");
            assert_eq!(r.header("content-length"), Some("1"));
        } else {
            let seen: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(seen["path"], format!("/up?i={i}"));
        }
    }
    assert_eq!(up.hits(), 3);
    assert!(!c.closed_within(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (up, gw) = gateway("").await;
    let mut c = Raw::connect(gw.addr).await;
    c.send(
        b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /up/1 HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /a HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /up/2 HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    assert_eq!(c.response(false).await.text(), "BB");
    let r = c.response(false).await;
    assert!(r.text().contains(r#""path":"/up/1""#), "{}", r.text());
    assert_eq!(c.response(false).await.text(), "A");
    let r = c.response(false).await;
    assert!(r.text().contains(r#""path":"/up/2""#), "{}", r.text());
    assert_eq!(up.hits(), 2);
    // Split across writes, mid-line, still one request.
    c.send(b"GET /b HT").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(b"TP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.response(false).await.text(), "BB");
}

#[tokio::test]
async fn http_1_0_closes_unless_keep_alive_is_asked_for() {
    let (_up, gw) = gateway("").await;
    let mut c = Raw::connect(gw.addr).await;
    c.send(b"GET /a HTTP/1.0\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.text(), "A");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_within(WAIT).await);

    let mut c = Raw::connect(gw.addr).await;
    for _ in 0..3 {
        c.send(b"GET /up HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert!(r.header("content-length").is_some(), "{r:?}");
    }
    assert!(!c.closed_within(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn connection_close_is_answered_then_closed() {
    let (_up, gw) = gateway("").await;
    let mut c = Raw::connect(gw.addr).await;
    c.send(b"GET /up HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_within(WAIT).await);
}

#[tokio::test]
async fn head_has_the_length_but_no_body() {
    let up = TestUpstream::fixed("hello").await;
    let gw = TestGateway::start(&config(up.addr, "")).await;
    let mut c = Raw::connect(gw.addr).await;
    c.send(b"HEAD /up HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let r = c.response(true).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5"), "{r:?}");
    // A fixed answer's length is its body's.
    c.send(b"HEAD /b HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let r = c.response(true).await;
    assert_eq!(r.header("content-length"), Some("2"), "{r:?}");
    // No stray body bytes: the next response starts where the head ended.
    c.send(b"GET /up HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.text(), "hello");
}

/// An upstream on raw sockets that answers every request with `reply`,
/// closing afterwards when `close`.
async fn raw_upstream(reply: &'static [u8], close: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    if s.write_all(reply).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn chunked_upstream_answer_is_chunked_again() {
    let up = raw_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        false,
    )
    .await;
    let gw = TestGateway::start(&config(up, "")).await;
    let mut c = Raw::connect(gw.addr).await;
    for _ in 0..2 {
        c.send(b"GET /up HTTP/1.1\r\nHost: t\r\n\r\n").await;
        let r = c.response(false).await;
        assert!(r.chunked, "{r:?}");
        assert!(r.header("content-length").is_none(), "{r:?}");
        assert_eq!(r.text(), "hello world");
    }
}

#[tokio::test]
async fn answer_of_unknown_length_is_chunked_for_1_1_and_closed_for_1_0() {
    let up = raw_upstream(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
        true,
    )
    .await;
    let gw = TestGateway::start(&config(up, "")).await;
    let mut c = Raw::connect(gw.addr).await;
    c.send(b"GET /up HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let r = c.response(false).await;
    assert!(r.chunked, "{r:?}");
    assert_eq!(r.text(), "until the end");
    // The client's connection stays: only the upstream's closed.
    c.send(b"GET /up HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.response(false).await.text(), "until the end");

    let mut c = Raw::connect(gw.addr).await;
    c.send(b"GET /up HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert!(!r.chunked && r.header("content-length").is_none(), "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.text(), "until the end");
}

#[tokio::test]
async fn malformed_head_gets_400_with_a_json_error() {
    let (up, gw) = gateway("").await;
    for wire in [
        &b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"[..],
        b"NOT HTTP AT ALL\r\n\r\n",
    ] {
        let mut c = Raw::connect(gw.addr).await;
        c.send(wire).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 400, "{r:?}");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
        assert!(c.closed_within(WAIT).await);
    }
    // Also after a request served on the same connection.
    let mut c = Raw::connect(gw.addr).await;
    c.send(b"GET /a HTTP/1.1\r\n\r\nGET /\x01 HTTP/1.1\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.text(), "A");
    assert_eq!(c.response(false).await.status, 400);
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    let (up, gw) = gateway(
        r#"max_headers = 10
        max_header_size = "16KiB""#,
    )
    .await;
    let mut many = String::from("GET /up HTTP/1.1\r\nHost: t\r\n");
    for i in 0..20 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let big = format!(
        "GET /up HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(32 << 10)
    );
    for wire in [many, big] {
        let mut c = Raw::connect(gw.addr).await;
        // The first request is served, so the refusal comes mid-connection.
        c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert_eq!(c.response(false).await.text(), "A");
        c.send(wire.as_bytes()).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 431, "{r:?}");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"]["code"], "header_fields_too_large");
        assert_eq!(r.header("connection"), Some("close"));
    }
    assert_eq!(up.hits(), 0);
}

/// An upstream that accepts WebSocket upgrades and echoes text messages.
async fn ws_echo_upstream() -> TestUpstream {
    TestUpstream::start(|mut req| async move {
        let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not a websocket")));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(Ok(Message::Text(t))) = ws.next().await {
                if ws
                    .send(Message::text(format!("echo: {}", t.as_str())))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(
            "sec-websocket-accept",
            HeaderValue::from_str(&derive_accept_key(key.as_bytes())).unwrap(),
        );
        r
    })
    .await
}

#[tokio::test]
async fn a_body_and_then_an_upgrade_go_to_hyper_mid_connection() {
    let echo = TestUpstream::echo_request().await;
    let ws = ws_echo_upstream().await;
    let gw = TestGateway::start(&format!(
        r#"
        [upstreams.api]
        targets = ["{}"]
        [upstreams.ws]
        targets = ["{}"]
        [[routes]]
        path = "/a"
        respond = {{ body = "A" }}
        [[routes]]
        path_prefix = "/ws/"
        upstream = "ws"
        [[routes]]
        upstream = "api"
        "#,
        echo.addr, ws.addr
    ))
    .await;
    let mut c = Raw::connect(gw.addr).await;
    c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.response(false).await.text(), "A");
    // A body, its head and part of it in one write, the rest later.
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(b"world").await;
    let r = c.response(false).await;
    assert!(r.text().contains(r#""body_len":10"#), "{}", r.text());
    // Simple requests still work on the connection (now hyper's).
    c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.response(false).await.text(), "A");
    c.send(
        b"GET /ws/chat HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    let r = c.response(true).await;
    assert_eq!(r.status, 101, "{r:?}");
    assert!(c.buf.is_empty(), "no bytes after the 101 yet");
    let mut socket = WebSocketStream::from_raw_socket(c.s, Role::Client, None).await;
    socket.send(Message::text("hi")).await.unwrap();
    let got = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("echo in time")
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::text("echo: hi"));
}

#[tokio::test]
async fn a_head_that_arrives_slowly_is_cut_by_header_read_timeout() {
    let (up, gw) = gateway(
        r#"header_read_timeout = "400ms"
        idle_timeout = "60s""#,
    )
    .await;
    let mut c = Raw::connect(gw.addr).await;
    c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.response(false).await.text(), "A");
    // A byte every 100 ms: never idle, but the head takes too long.
    let head = b"GET /up HTTP/1.1\r\nHost: t\r\nX-Slow: abcdefghijklmnop\r\n\r\n";
    let mut closed = false;
    for b in head {
        if c.s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut probe = [0u8; 64];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), c.s.read(&mut probe)).await {
            assert!(matches!(r, Ok(0) | Err(_)), "answered a slow head");
            closed = true;
            break;
        }
    }
    assert!(closed, "a slow head was not cut");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_idle_timeout() {
    let (_up, gw) = gateway(r#"idle_timeout = "1s""#).await;
    let mut c = Raw::connect(gw.addr).await;
    c.send(b"GET /up HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(c.response(false).await.status, 200);
    assert!(!c.closed_within(Duration::from_millis(500)).await);
    assert!(c.closed_within(WAIT).await);
}

#[tokio::test]
async fn drain_answers_the_request_in_flight_then_closes() {
    let up = TestUpstream::delayed(Duration::from_millis(600), "slow").await;
    let mut gw = TestGateway::start(&config(up.addr, r#"drain_timeout = "10s""#)).await;
    let mut c = Raw::connect(gw.addr).await;
    // An idle keep-alive connection is closed by the drain at once.
    let mut idle = Raw::connect(gw.addr).await;
    idle.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(idle.response(false).await.text(), "A");
    c.send(b"GET /up HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert!(eventually(WAIT, || async { up.hits() == 1 }).await);
    gw.shutdown.cancel();
    assert!(idle.closed_within(WAIT).await);
    let r = c.response(false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slow");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_within(WAIT).await);
    let served = tokio::time::timeout(WAIT, &mut gw.task)
        .await
        .expect("serve returns once drained")
        .unwrap();
    assert!(served.is_ok());
}
