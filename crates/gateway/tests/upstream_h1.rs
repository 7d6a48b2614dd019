//! The lean HTTP/1.1 upstream client (requests without a body), against a
//! scripted upstream on raw sockets: body framings, bodiless responses,
//! interim responses, broken upstreams, keep-alive reuse and its metric,
//! and no pipelining.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::PrometheusBuilder;
use support::{TestGateway, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the scripted upstream does with one request.
struct Reply {
    /// Bytes written back, verbatim.
    bytes: Vec<u8>,
    /// Close the connection after writing them.
    close: bool,
    /// Wait this long before answering (and watch for a pipelined request).
    delay: Duration,
}

fn keep(bytes: impl Into<Vec<u8>>) -> Reply {
    Reply {
        bytes: bytes.into(),
        close: false,
        delay: Duration::ZERO,
    }
}

fn close(bytes: impl Into<Vec<u8>>) -> Reply {
    Reply {
        close: true,
        ..keep(bytes)
    }
}

/// An upstream on raw sockets whose answers a function of the request
/// line scripts. Counts connections and notes any request that arrived
/// while another was still unanswered on the same connection.
struct Scripted {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    pipelined: Arc<AtomicBool>,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Scripted {
    async fn start(script: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Scripted {
        let script = Arc::new(script);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let pipelined = Arc::new(AtomicBool::new(false));
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, piped, seen) = (accepted.clone(), pipelined.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (script, piped, seen) = (script.clone(), piped.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end);
                        let line = head.lines().next().unwrap_or("").to_owned();
                        seen.lock().unwrap().push(head);
                        let reply = script(&line);
                        if !reply.delay.is_zero() {
                            tokio::time::sleep(reply.delay).await;
                        }
                        // Anything already here was sent before the answer.
                        let mut probe = [0u8; 1];
                        if !buf.is_empty() || matches!(stream.try_read(&mut probe), Ok(n) if n > 0)
                        {
                            piped.store(true, Ordering::SeqCst);
                        }
                        if stream.write_all(&reply.bytes).await.is_err() || reply.close {
                            return;
                        }
                    }
                });
            }
        });
        Scripted {
            addr,
            accepted,
            pipelined,
            heads,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn config(upstream: SocketAddr) -> String {
    format!(
        r#"
        [upstreams.up]
        targets = ["{upstream}"]
        [[routes]]
        path_prefix = "/"
        upstream = "up"
        retries = 0
        "#
    )
}

async fn start(script: impl Fn(&str) -> Reply + Send + Sync + 'static) -> (Scripted, TestGateway) {
    let up = Scripted::start(script).await;
    let gw = TestGateway::start(&config(up.addr)).await;
    (up, gw)
}

const SMALL: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsmall";

#[tokio::test]
async fn content_length_body_arrives_whole_and_the_connection_is_reused() {
    let (up, gw) = start(|line| {
        if line.starts_with("GET /big") {
            let body = "x".repeat(300_000);
            keep(format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ))
        } else {
            keep(SMALL)
        }
    })
    .await;
    let c = client();
    for _ in 0..3 {
        let r = c.get(gw.url("/big")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.content_length(), Some(300_000));
        assert_eq!(r.bytes().await.unwrap().len(), 300_000);
        assert_eq!(gw.get_text("/").await, (200, "small".to_owned()));
    }
    assert_eq!(up.accepted(), 1);
    // What went upstream: origin-form, HTTP/1.1, forwarding headers.
    let head = up.heads.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET /big HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn chunked_body_with_extensions_is_decoded_and_trailers_are_passed_on() {
    let (up, gw) = start(|_| {
        keep(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n\
             5;ext=1\r\nhello\r\n6 ; a=\"b c\"\r\n world\r\n0\r\ngrpc-status: 0\r\n\r\n",
        )
    })
    .await;
    assert_eq!(gw.get_text("/").await, (200, "hello world".to_owned()));
    // An HTTP/2 client (as gRPC's) gets the trailers after the data.
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(format!("http://{}/", gw.addr))
        .header("te", "trailers")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = resp.into_body().collect().await.unwrap();
    let trailers = got.trailers().cloned().expect("trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(got.to_bytes(), "hello world");
    assert_eq!(
        up.accepted(),
        1,
        "a chunked body read to its end frees the connection"
    );
}

#[tokio::test]
async fn close_delimited_body_ends_at_close_and_is_not_reused() {
    let (up, gw) =
        start(|_| close("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")).await;
    for _ in 0..3 {
        assert_eq!(gw.get_text("/").await, (200, "until close".to_owned()));
    }
    assert_eq!(up.accepted(), 3);
    // An HTTP/1.0 answer without keep-alive is not reused either.
    let (up, gw) = start(|_| keep("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
    for _ in 0..2 {
        assert_eq!(gw.get_text("/").await, (200, "ok".to_owned()));
    }
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn head_204_and_304_have_no_body_and_keep_the_connection() {
    let (up, gw) = start(|line| {
        if line.starts_with("HEAD") {
            keep("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        } else if line.contains("/204") {
            keep("HTTP/1.1 204 No Content\r\n\r\n")
        } else if line.contains("/304") {
            keep("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n")
        } else {
            keep(SMALL)
        }
    })
    .await;
    let c = client();
    let r = c.head(gw.url("/h")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "1234");
    assert_eq!(r.bytes().await.unwrap().len(), 0);
    let r = c.get(gw.url("/204")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = c.get(gw.url("/304")).send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], "\"v1\"");
    // Had any of those been read as having a body, this would hang or
    // come back garbled.
    assert_eq!(gw.get_text("/").await, (200, "small".to_owned()));
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn interim_responses_before_the_final_one_are_skipped() {
    let (up, gw) = start(|_| {
        keep(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
        )
    })
    .await;
    for _ in 0..2 {
        assert_eq!(gw.get_text("/").await, (200, "final".to_owned()));
    }
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn upstream_closing_mid_body_aborts_the_client_body_and_drops_the_connection() {
    let (up, gw) = start(|line| {
        if line.contains("/cutchunk") {
            close("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly")
        } else if line.contains("/cut") {
            close("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        } else {
            keep(SMALL)
        }
    })
    .await;
    let c = client();
    for path in ["/cut", "/cutchunk"] {
        // The head may or may not have reached the client before the
        // abort; either way the client must not see a complete response.
        if let Ok(r) = c.get(gw.url(path)).send().await {
            assert_eq!(r.status(), 200);
            assert!(
                r.bytes().await.is_err(),
                "{path}: the client sees an aborted body"
            );
        }
    }
    assert_eq!(gw.get_text("/").await, (200, "small".to_owned()));
    assert_eq!(up.accepted(), 3, "the cut connections are not reused");
}

#[tokio::test]
async fn oversized_response_head_is_a_502() {
    let (_up, gw) = start(|_| {
        keep(format!(
            "HTTP/1.1 200 OK\r\nx-big: {}\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(100 << 10)
        ))
    })
    .await;
    let (status, body) = gw.get_text("/").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("upstream_unavailable"), "{body}");
}

#[tokio::test]
async fn malformed_status_line_is_a_502_naming_the_upstream() {
    let (_up, gw) = start(|line| {
        if line.contains("/garbage") {
            close("SPDY/3 200 OK\r\n\r\n")
        } else {
            close("HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n")
        }
    })
    .await;
    for path in ["/", "/garbage"] {
        let (status, body) = gw.get_text(path).await;
        assert_eq!(status, 502, "{path}: {body}");
        assert!(body.contains(r#"upstream \"up\""#), "{path}: {body}");
    }
}

#[tokio::test]
async fn conflicting_content_lengths_are_a_502() {
    let (_up, gw) =
        start(|_| keep("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"))
            .await;
    assert_eq!(gw.get_text("/").await.0, 502);
}

#[tokio::test]
async fn requests_are_never_pipelined_on_one_connection() {
    let (up, gw) = start(|_| Reply {
        delay: Duration::from_millis(30),
        ..keep(SMALL)
    })
    .await;
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, url) = (c.clone(), gw.url("/"));
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let r = c.get(&url).send().await.unwrap();
                assert_eq!(r.text().await.unwrap(), "small");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(!up.pipelined.load(Ordering::SeqCst));
    assert!(
        up.accepted() <= 8,
        "connections are reused: {}",
        up.accepted()
    );
}

#[tokio::test]
async fn requests_with_bodies_go_through_hyper_next_to_lean_ones() {
    // A POST with a body takes hyper's connection; a GET after it the lean
    // one; both are answered from the same upstream.
    let (up, gw) = start(|line| {
        if line.starts_with("POST") {
            keep("HTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\ncreated")
        } else {
            keep(SMALL)
        }
    })
    .await;
    let r = gw.post("/p", "payload").await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.text().await.unwrap(), "created");
    assert_eq!(gw.get_text("/").await, (200, "small".to_owned()));
    // The POST's body was sent with it.
    let heads = up.heads.lock().unwrap();
    assert!(heads[0].starts_with("POST /p HTTP/1.1\r\n"), "{}", heads[0]);
    assert!(
        heads[0].to_ascii_lowercase().contains("content-length: 7"),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn keep_alive_reuse_is_counted_by_the_opened_connections_metric() {
    // The only recorder in this test binary; installed before the gateway
    // registers its handles.
    let recorder = PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder in this test binary");
    let (up, gw) = start(|line| {
        if line.contains("/close") {
            keep("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        } else {
            keep(SMALL)
        }
    })
    .await;
    for _ in 0..5 {
        assert_eq!(gw.get_text("/").await.0, 200);
    }
    // `Connection: close` from the upstream: that connection is not reused.
    assert_eq!(gw.get_text("/close").await.0, 200);
    assert_eq!(gw.get_text("/").await.0, 200);
    let metrics = gw.scrape(&recorder).await;
    let target = up.addr.to_string();
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&target))
            .unwrap_or_else(|| panic!("no {name} for {target} in:\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        value("sluice_gateway_upstream_connections_opened_total"),
        "2"
    );
    assert_eq!(value("sluice_gateway_upstream_pool_idle"), "1");
    assert_eq!(up.accepted(), 2);
}
