//! Graceful drain over real sockets: on shutdown the gateway stops accepting,
//! lets requests in flight finish, closes idle keep-alive connections, and
//! `serve()` returns `Ok` by the drain deadline.

mod support;

use std::time::Duration;

use support::{TestGateway, TestUpstream, eventually, respond};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn slow_gateway(delay: Duration, drain: &str) -> (TestUpstream, TestGateway) {
    let up = TestUpstream::start(move |_req| async move {
        tokio::time::sleep(delay).await;
        respond(200, "slow")
    })
    .await;
    let gw = TestGateway::start(&format!(
        r#"
        [server]
        drain_timeout = "{drain}"
        idle_timeout = "60s"
        [upstreams.api]
        targets = ["{}"]
        [[routes]]
        path_prefix = "/slow"
        upstream = "api"
        [[routes]]
        path = "/fast"
        respond = {{ body = "fast" }}
        "#,
        up.addr
    ))
    .await;
    (up, gw)
}

#[tokio::test]
async fn in_flight_requests_finish_and_new_connections_are_refused() {
    let (up, mut gw) = slow_gateway(Duration::from_millis(800), "10s").await;
    let in_flight = tokio::spawn({
        let url = gw.url("/slow");
        async move {
            let r = support::client().get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    assert!(eventually(Duration::from_secs(3), || async { up.hits() == 1 }).await);
    gw.shutdown.cancel();
    let addr = gw.addr;
    assert!(
        eventually(Duration::from_secs(2), || async {
            TcpStream::connect(addr).await.is_err()
        })
        .await,
        "new connections are refused once draining"
    );
    assert_eq!(in_flight.await.unwrap(), (200, "slow".into()));
    let served = tokio::time::timeout(Duration::from_secs(5), &mut gw.task)
        .await
        .expect("serve returns once drained, before the 10s deadline")
        .unwrap();
    assert!(served.is_ok());
}

/// Send one keep-alive request on `s` and read the whole response head and body.
async fn request(s: &mut TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    for _ in 0..100 {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the response ended");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap();
            if body.len() >= len {
                return text.into_owned();
            }
        }
    }
    panic!("response did not end");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_on_shutdown() {
    let (_up, mut gw) = slow_gateway(Duration::from_millis(10), "30s").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let resp = request(&mut s, "/fast").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    gw.shutdown.cancel();
    // The idle timeout is 60s and the drain deadline 30s: only the drain closes it now.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the idle keep-alive connection is closed on shutdown: {closed:?}"
    );
    let served = tokio::time::timeout(Duration::from_secs(5), &mut gw.task)
        .await
        .expect("serve returns once idle connections are closed")
        .unwrap();
    assert!(served.is_ok());
}

#[tokio::test]
async fn the_drain_deadline_ends_requests_that_outlast_it() {
    let (up, mut gw) = slow_gateway(Duration::from_secs(20), "300ms").await;
    let in_flight = tokio::spawn({
        let url = gw.url("/slow");
        async move { support::client().get(url).send().await.map(|r| r.status()) }
    });
    assert!(eventually(Duration::from_secs(3), || async { up.hits() == 1 }).await);
    gw.shutdown.cancel();
    let served = tokio::time::timeout(Duration::from_secs(5), &mut gw.task)
        .await
        .expect("serve returns at the drain deadline")
        .unwrap();
    assert!(
        served.is_ok(),
        "a drain that hit its deadline still ends Ok"
    );
    // The connection still open at the deadline is closed, not left running for 20s.
    let outcome = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the request past the deadline ends with the drain")
        .unwrap();
    assert!(outcome.is_err(), "its connection was closed: {outcome:?}");
}
