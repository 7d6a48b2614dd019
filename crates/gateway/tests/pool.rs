//! The upstream connection pool: keep-alive reuse, the keep-alive race with
//! upstreams that close idle connections, abandoned bodies, and its metrics.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use metrics_exporter_prometheus::PrometheusBuilder;
use support::{TestGateway, TestUpstream, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A minimal HTTP/1.1 upstream on raw sockets that counts the connections
/// it accepts. With `close_each`, it closes every connection after one
/// response without saying so (no `Connection: close`), as an upstream whose
/// keep-alive timeout just fired would.
struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl RawUpstream {
    async fn start(close_each: bool) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // Requests here are GETs: a head and no body.
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        buf.drain(..end);
                        let body = format!("conn {n}");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(resp.as_bytes()).await.is_err() || close_each {
                            return;
                        }
                    }
                });
            }
        });
        RawUpstream { addr, accepted }
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

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let up = RawUpstream::start(false).await;
    let gw = TestGateway::start(&config(up.addr)).await;
    let c = client();
    for _ in 0..20 {
        let r = c.get(gw.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "conn 1");
    }
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn upstream_closing_idle_connections_fails_no_request() {
    // Retries are off: only the pool's resend of a never-written request
    // (or its discarding of closed connections) can save these requests.
    let up = RawUpstream::start(true).await;
    let gw = TestGateway::start(&config(up.addr)).await;
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = c.clone();
        let url = gw.url("/");
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let r = c.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200, "{:?}", r.text().await);
                r.text().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(up.accepted(), 100, "one connection per request");
}

#[tokio::test]
async fn abandoned_response_body_does_not_poison_the_pool() {
    let big = Bytes::from(vec![b'x'; 4 << 20]);
    let up = TestUpstream::start(move |req| {
        let big = big.clone();
        async move {
            if req.uri().path() == "/big" {
                Response::new(Full::new(big))
            } else {
                Response::new(Full::new(Bytes::from_static(b"small")))
            }
        }
    })
    .await;
    let gw = TestGateway::start(&config(up.addr)).await;
    let c = client();
    for _ in 0..3 {
        let mut r = c.get(gw.url("/big")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.chunk().await.unwrap().is_some());
        drop(r);
        // Whatever connection serves this must not carry the rest of /big.
        for _ in 0..3 {
            let r = c.get(gw.url("/small")).send().await.unwrap();
            assert_eq!(r.text().await.unwrap(), "small");
        }
    }
}

#[tokio::test]
async fn pool_metrics_count_connections() {
    // The recorder goes in before the gateway registers its handles; no
    // other test of this binary reads metrics.
    let recorder = PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder in this test binary");
    let up = RawUpstream::start(false).await;
    let gw = TestGateway::start(&config(up.addr)).await;
    let c = client();
    for _ in 0..5 {
        let r = c.get(gw.url("/")).send().await.unwrap();
        r.text().await.unwrap();
    }
    let metrics = gw.scrape(&recorder).await;
    let target = up.addr.to_string();
    let line = |name: &str| {
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
        line("sluice_gateway_upstream_connections_opened_total"),
        "1"
    );
    assert_eq!(line("sluice_gateway_upstream_pool_idle"), "1");
}
