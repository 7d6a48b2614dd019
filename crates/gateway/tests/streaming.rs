//! Bodies stream through the gateway both ways: large uploads and downloads
//! arrive intact, a response's first chunk reaches the client before the
//! upstream has produced the last, and HTTP/2 works to the upstream.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use support::{Fnv, TestGateway, TestUpstream, client, stream_body};
use tokio::sync::mpsc;

const TOTAL: usize = 20 << 20;
const CHUNK: usize = 64 << 10;

fn config(up: &TestUpstream, upstream_extra: &str) -> String {
    format!(
        r#"
        [server]
        max_body_size = "64MiB"
        [upstreams.api]
        targets = ["{}"]
        {upstream_extra}
        [[routes]]
        upstream = "api"
        timeout = "60s"
        "#,
        up.addr
    )
}

/// Deterministic, non-repeating-ish content for chunk `i`.
fn chunk(i: usize) -> Bytes {
    let seed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Bytes::from(
        (0..CHUNK)
            .map(|j| (seed.wrapping_add(j as u64).wrapping_mul(31) >> 7) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn expected_hash() -> u64 {
    let mut h = Fnv::default();
    for i in 0..TOTAL / CHUNK {
        h.update(&chunk(i));
    }
    h.0
}

/// Stream a response body and hash it; returns (bytes, hash).
async fn hash_response(r: reqwest::Response) -> (usize, u64) {
    let mut r = r;
    let mut h = Fnv::default();
    let mut n = 0;
    while let Some(c) = r.chunk().await.unwrap() {
        n += c.len();
        h.update(&c);
    }
    (n, h.0)
}

#[tokio::test]
async fn large_upload_echoed_back_streams_intact() {
    // The upstream streams the request body straight back as the response.
    let up =
        TestUpstream::start_streaming(
            |req| async move { Response::new(stream_body(req.into_body())) },
        )
        .await;
    let gw = TestGateway::start(&config(&up, "")).await;
    let chunks = (0..TOTAL / CHUNK).map(|i| Ok::<_, std::io::Error>(chunk(i)));
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = client()
        .post(gw.url("/upload"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (n, hash) = hash_response(r).await;
    assert_eq!(n, TOTAL);
    assert_eq!(hash, expected_hash());
}

#[tokio::test]
async fn large_upload_with_content_length_streams_intact() {
    let up = TestUpstream::start(|req| async move {
        let mut h = Fnv::default();
        let mut n = 0usize;
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                n += data.len();
                h.update(&data);
            }
        }
        Response::new(http_body_util::Full::new(Bytes::from(format!(
            "{n} {}",
            h.0
        ))))
    })
    .await;
    let gw = TestGateway::start(&config(&up, "")).await;
    let mut all = Vec::with_capacity(TOTAL);
    for i in 0..TOTAL / CHUNK {
        all.extend_from_slice(&chunk(i));
    }
    let r = client()
        .put(gw.url("/upload"))
        .body(all)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        format!("{TOTAL} {}", expected_hash())
    );
}

#[tokio::test]
async fn large_download_streams_intact() {
    let up = TestUpstream::start_streaming(|_req| async move {
        let frames = (0..TOTAL / CHUNK).map(|i| Ok::<_, std::io::Error>(Frame::data(chunk(i))));
        Response::new(stream_body(StreamBody::new(futures_util::stream::iter(
            frames,
        ))))
    })
    .await;
    let gw = TestGateway::start(&config(&up, "")).await;
    let r = client().get(gw.url("/download")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (n, hash) = hash_response(r).await;
    assert_eq!(n, TOTAL);
    assert_eq!(hash, expected_hash());
}

/// An upstream whose response body is fed by the test through a channel.
async fn channel_upstream() -> (TestUpstream, mpsc::Sender<Bytes>) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let up = TestUpstream::start_streaming(move |_req| {
        let rx = rx.lock().unwrap().take();
        async move {
            let rx = rx.expect("one request only");
            let frames = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
            });
            Response::new(stream_body(StreamBody::new(frames)))
        }
    })
    .await;
    (up, tx)
}

async fn first_chunk_before_last(gw: &TestGateway, tx: mpsc::Sender<Bytes>, c: reqwest::Client) {
    tx.send(Bytes::from_static(b"first")).await.unwrap();
    let mut r = tokio::time::timeout(Duration::from_secs(5), c.get(gw.url("/sse")).send())
        .await
        .expect("response head arrives while the body is still open")
        .unwrap();
    assert_eq!(r.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), r.chunk())
        .await
        .expect("first chunk arrives before the upstream sends the last")
        .unwrap()
        .unwrap();
    assert_eq!(first, "first");
    tx.send(Bytes::from_static(b"second")).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), r.chunk())
        .await
        .expect("second chunk")
        .unwrap()
        .unwrap();
    assert_eq!(second, "second");
    tx.send(Bytes::from_static(b"last")).await.unwrap();
    drop(tx);
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"last");
}

#[tokio::test]
async fn response_chunks_are_not_buffered() {
    let (up, tx) = channel_upstream().await;
    let gw = TestGateway::start(&config(&up, "")).await;
    first_chunk_before_last(&gw, tx, client()).await;
}

#[tokio::test]
async fn response_chunks_are_not_buffered_over_h2() {
    let (up, tx) = channel_upstream().await;
    let gw = TestGateway::start(&config(&up, "http2 = true")).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    first_chunk_before_last(&gw, tx, c).await;
}

#[tokio::test]
async fn http2_to_the_upstream() {
    let up = TestUpstream::echo_request().await;
    let gw = TestGateway::start(&config(&up, "http2 = true")).await;
    let c = client();
    for i in 0..3 {
        let r = c
            .post(gw.url(&format!("/h2/{i}")))
            .header("host", "shop.test")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), reqwest::Version::HTTP_11);
        let seen: serde_json::Value = r.json().await.unwrap();
        assert_eq!(seen["version"], "HTTP/2.0");
        assert_eq!(seen["path"], format!("/h2/{i}"));
        assert_eq!(seen["body_len"], 5);
        // Host travels as :authority over h2; hyper exposes it as the URI authority,
        // and the echo upstream lists headers only, so check the forwarded host.
        assert_eq!(seen["headers"]["x-forwarded-host"][0], "shop.test");
    }
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn large_download_over_http2_upstream() {
    let up = TestUpstream::start_streaming(|req| async move {
        assert_eq!(req.version(), http::Version::HTTP_2);
        let frames = (0..TOTAL / CHUNK).map(|i| Ok::<_, std::io::Error>(Frame::data(chunk(i))));
        Response::new(stream_body(StreamBody::new(futures_util::stream::iter(
            frames,
        ))))
    })
    .await;
    let gw = TestGateway::start(&config(&up, "http2 = true")).await;
    let r = client().get(gw.url("/download")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (n, hash) = hash_response(r).await;
    assert_eq!(n, TOTAL);
    assert_eq!(hash, expected_hash());
}
