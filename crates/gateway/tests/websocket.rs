//! WebSocket upgrades proxied end to end: a real WebSocket echo upstream, a
//! real client, messages both ways through the gateway.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use support::{TestGateway, TestUpstream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// An upstream that accepts WebSocket upgrades and echoes every message back,
/// prefixed with the path it was opened on.
async fn ws_echo_upstream() -> TestUpstream {
    TestUpstream::start(|mut req| async move {
        let key = req.headers().get("sec-websocket-key").cloned();
        let is_ws = req
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        let (true, Some(key)) = (is_ws, key) else {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not a websocket")));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        };
        let path = req.uri().path().to_owned();
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                let reply = match msg {
                    Message::Text(t) => Message::text(format!("{path}: {}", t.as_str())),
                    Message::Binary(b) => Message::Binary(b),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if ws.send(reply).await.is_err() {
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

fn config(up: &TestUpstream) -> String {
    format!(
        r#"
        [upstreams.ws]
        targets = ["{}"]
        [[routes]]
        path_prefix = "/ws/"
        strip_prefix = true
        upstream = "ws"
        "#,
        up.addr
    )
}

#[tokio::test]
async fn websocket_messages_flow_both_ways() {
    let up = ws_echo_upstream().await;
    let gw = TestGateway::start(&config(&up)).await;
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(format!("ws://{}/ws/chat", gw.addr)),
    )
    .await
    .expect("handshake in time")
    .expect("handshake succeeds through the gateway");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(resp.headers().contains_key("x-request-id"));
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .unwrap()
            .unwrap();
        // The upstream saw the stripped path.
        assert_eq!(got, Message::text(format!("/chat: hello {i}")));
    }
    let blob: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("binary echo in time")
        .unwrap()
        .unwrap();
    assert_eq!(got.into_data(), blob);
    ws.close(None).await.unwrap();
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn websocket_outlives_idle_timeout_while_messages_flow() {
    let up = ws_echo_upstream().await;
    let gw = TestGateway::start(&format!(
        "[server]\nidle_timeout = \"300ms\"\n{}",
        config(&up)
    ))
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/a", gw.addr))
        .await
        .unwrap();
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        ws.send(Message::text(format!("{i}"))).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::text(format!("/a: {i}")));
    }
}

#[tokio::test]
async fn plain_request_to_websocket_upstream_is_not_upgraded() {
    let up = ws_echo_upstream().await;
    let gw = TestGateway::start(&config(&up)).await;
    let r = support::client()
        .get(gw.url("/ws/chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "not a websocket");
}

#[tokio::test]
async fn websocket_connections_count_against_the_per_ip_cap() {
    let up = ws_echo_upstream().await;
    let gw = TestGateway::start(&format!(
        "[server]\nmax_connections_per_ip = 1\n{}",
        config(&up)
    ))
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/a", gw.addr))
        .await
        .unwrap();
    ws.send(Message::text("x")).await.unwrap();
    let _ = ws.next().await;
    // The upgraded connection still holds its slot: a second one is refused.
    let second = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(format!("ws://{}/ws/b", gw.addr)),
    )
    .await
    .expect("answered in time");
    assert!(second.is_err(), "a second connection got through the cap");
}

/// Open a WebSocket through `gw` and prove it works with one echo.
async fn open_ws(
    gw: &TestGateway,
) -> WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(format!("ws://{}/ws/a", gw.addr)),
    )
    .await
    .expect("handshake in time")
    .unwrap();
    echo(&mut ws, "first").await;
    ws
}

async fn echo(
    ws: &mut WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    text: &str,
) {
    ws.send(Message::text(text)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::text(format!("/a: {text}")));
}

/// Whether the gateway ends the WebSocket (close or error) within `wait`.
async fn ended_within(
    ws: &mut WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    wait: Duration,
) -> bool {
    tokio::time::timeout(wait, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn idle_websocket_is_closed_after_idle_timeout() {
    let up = ws_echo_upstream().await;
    let gw = TestGateway::start(&format!(
        "[server]\nidle_timeout = \"1500ms\"\n{}",
        config(&up)
    ))
    .await;
    let mut ws = open_ws(&gw).await;
    assert!(
        !ended_within(&mut ws, Duration::from_millis(700)).await,
        "closed well before idle_timeout"
    );
    echo(&mut ws, "still there").await;
    assert!(
        ended_within(&mut ws, Duration::from_secs(5)).await,
        "an idle WebSocket is closed after idle_timeout"
    );
}

#[tokio::test]
async fn drain_waits_for_a_websocket_until_it_closes() {
    let up = ws_echo_upstream().await;
    let mut gw = TestGateway::start(&format!(
        "[server]\ndrain_timeout = \"30s\"\n{}",
        config(&up)
    ))
    .await;
    let mut ws = open_ws(&gw).await;
    gw.shutdown.cancel();
    // Draining: the WebSocket keeps working, and the drain waits for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    echo(&mut ws, "during drain").await;
    assert!(
        !gw.task.is_finished(),
        "the drain did not wait for the WebSocket"
    );
    // Close both ways: the close handshake, then the socket.
    ws.close(None).await.unwrap();
    assert!(ended_within(&mut ws, Duration::from_secs(5)).await);
    drop(ws);
    let served = tokio::time::timeout(Duration::from_secs(5), &mut gw.task)
        .await
        .expect("serve returns once the WebSocket has closed, long before the deadline")
        .unwrap();
    assert!(served.is_ok());
}

#[tokio::test]
async fn websocket_is_closed_at_the_drain_deadline() {
    let up = ws_echo_upstream().await;
    let mut gw = TestGateway::start(&format!(
        "[server]\ndrain_timeout = \"500ms\"\nidle_timeout = \"60s\"\n{}",
        config(&up)
    ))
    .await;
    let mut ws = open_ws(&gw).await;
    gw.shutdown.cancel();
    let served = tokio::time::timeout(Duration::from_secs(5), &mut gw.task)
        .await
        .expect("serve returns at the drain deadline")
        .unwrap();
    assert!(served.is_ok());
    assert!(
        ended_within(&mut ws, Duration::from_secs(5)).await,
        "the WebSocket still open at the drain deadline is closed"
    );
}
