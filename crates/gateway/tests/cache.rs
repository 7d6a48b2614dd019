//! The shared response cache (RFC 9111) end to end: real upstream servers,
//! the in-process gateway, and what `Cache-Status` says about each answer.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use support::{TestGateway, TestUpstream, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway with one cached catch-all route to `up`.
async fn gateway(up: std::net::SocketAddr) -> TestGateway {
    TestGateway::start(&format!(
        r#"
        [cache]
        max_size = "16MiB"
        max_object_size = "64KiB"
        lock_timeout = "5s"
        [upstreams.api]
        targets = ["{up}"]
        [[routes]]
        name = "cached"
        path_prefix = "/"
        upstream = "api"
        cache = true
        "#
    ))
    .await
}

fn resp(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(body.into())).unwrap()
}

fn cache_status(r: &reqwest::Response) -> String {
    r.headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn get(url: &str) -> (StatusCode, String, reqwest::header::HeaderMap, String) {
    let r = client().get(url).send().await.unwrap();
    let cs = cache_status(&r);
    let status = r.status();
    let headers = r.headers().clone();
    (status, cs, headers, r.text().await.unwrap())
}

/// Wait (bounded) until `cond` holds.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// Just past a 1s max-age.
async fn let_expire() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test]
async fn miss_then_hit_with_cache_status_and_age() {
    let up = TestUpstream::start(|_req| async {
        resp(200, &[("cache-control", "max-age=60")], "hello")
    })
    .await;
    let gw = gateway(up.addr).await;
    let (s, cs, _, body) = get(&gw.url("/a?x=1")).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "hello"));
    assert_eq!(cs, "sluice; fwd=uri-miss; fwd-status=200; ttl=60; stored");
    let (s, cs, h, body) = get(&gw.url("/a?x=1")).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "hello"));
    assert!(cs.starts_with("sluice; hit; ttl="), "{cs}");
    assert!(h.contains_key("age"));
    assert_eq!(up.hits(), 1);
    // Another query is another key.
    let (_, cs, _, _) = get(&gw.url("/a?x=2")).await;
    assert!(cs.contains("fwd=uri-miss"), "{cs}");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn miss_storm_makes_one_upstream_request() {
    let up = TestUpstream::start(|_req| async {
        // Slow enough that every client arrives while the fetch is in flight.
        tokio::time::sleep(Duration::from_millis(300)).await;
        resp(200, &[("cache-control", "max-age=60")], "storm")
    })
    .await;
    let gw = gateway(up.addr).await;
    let c = client();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = c.clone();
            let url = gw.url("/cold");
            tokio::spawn(async move {
                let r = c.get(url).send().await.unwrap();
                let cs = cache_status(&r);
                (r.status(), cs, r.text().await.unwrap())
            })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        let (s, cs, body) = t.await.unwrap();
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body, "storm");
        if cs.contains("stored") {
            stored += 1;
        } else {
            assert!(cs.contains("hit"), "{cs}");
        }
    }
    assert_eq!(stored, 1);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn vary_keeps_variants_apart() {
    let up = TestUpstream::start(|req: Request<hyper::body::Incoming>| async move {
        let lang = req
            .headers()
            .get("accept-language")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        resp(
            200,
            &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
            format!("lang={lang}"),
        )
    })
    .await;
    let gw = gateway(up.addr).await;
    let c = client();
    let send = |lang: &'static str| {
        let c = c.clone();
        let url = gw.url("/greet");
        async move {
            let r = c
                .get(url)
                .header("accept-language", lang)
                .send()
                .await
                .unwrap();
            (cache_status(&r), r.text().await.unwrap())
        }
    };
    let (cs, body) = send("en").await;
    assert!(cs.contains("fwd=uri-miss") && cs.contains("stored"), "{cs}");
    assert_eq!(body, "lang=en");
    let (cs, body) = send("fr").await;
    assert!(
        cs.contains("fwd=vary-miss") && cs.contains("stored"),
        "{cs}"
    );
    assert_eq!(body, "lang=fr");
    let (cs, body) = send("en").await;
    assert!(cs.contains("hit"), "{cs}");
    assert_eq!(body, "lang=en");
    let (cs, body) = send("fr").await;
    assert!(cs.contains("hit"), "{cs}");
    assert_eq!(body, "lang=fr");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn a_304_revalidates_and_updates_stored_headers() {
    let conditional = Arc::new(AtomicUsize::new(0));
    let up = TestUpstream::start({
        let conditional = Arc::clone(&conditional);
        move |req: Request<hyper::body::Incoming>| {
            let conditional = Arc::clone(&conditional);
            async move {
                if req
                    .headers()
                    .get("if-none-match")
                    .is_some_and(|v| v == "\"v1\"")
                {
                    conditional.fetch_add(1, Ordering::SeqCst);
                    return resp(
                        304,
                        &[
                            ("etag", "\"v1\""),
                            ("cache-control", "max-age=60"),
                            ("x-version", "updated"),
                        ],
                        "",
                    );
                }
                resp(
                    200,
                    &[
                        ("etag", "\"v1\""),
                        ("cache-control", "max-age=1"),
                        ("x-version", "original"),
                    ],
                    "body-v1",
                )
            }
        }
    })
    .await;
    let gw = gateway(up.addr).await;
    let (_, cs, h, _) = get(&gw.url("/doc")).await;
    assert!(cs.contains("stored"), "{cs}");
    assert_eq!(h["x-version"], "original");
    let_expire().await;
    let (s, cs, h, body) = get(&gw.url("/doc")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(cs.starts_with("sluice; fwd=stale; fwd-status=304"), "{cs}");
    assert_eq!(body, "body-v1");
    assert_eq!(h["x-version"], "updated");
    assert_eq!(conditional.load(Ordering::SeqCst), 1);
    // The updated headers (and the new max-age) are what is stored now.
    let (_, cs, h, body) = get(&gw.url("/doc")).await;
    assert!(cs.starts_with("sluice; hit"), "{cs}");
    assert_eq!(h["x-version"], "updated");
    assert_eq!(body, "body-v1");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let n = Arc::new(AtomicUsize::new(0));
    let up = TestUpstream::start({
        let n = Arc::clone(&n);
        move |_req| {
            let i = n.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if i > 1 {
                    // A slow refresh, so the stale requests below all overlap it.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                resp(
                    200,
                    &[("cache-control", "max-age=1, stale-while-revalidate=30")],
                    format!("v{i}"),
                )
            }
        }
    })
    .await;
    let gw = gateway(up.addr).await;
    let (_, _, _, body) = get(&gw.url("/swr")).await;
    assert_eq!(body, "v1");
    let_expire().await;
    let stale: Vec<_> = (0..5)
        .map(|_| tokio::spawn(get(gw.url("/swr").leak())))
        .collect();
    for t in stale {
        let (s, cs, _, body) = t.await.unwrap();
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body, "v1", "stale copy served at once");
        assert!(
            cs.contains("hit") && cs.contains("detail=stale-while-revalidate"),
            "{cs}"
        );
    }
    // Exactly one background refresh for five stale answers.
    assert!(eventually(|| up.hits() == 2).await);
    let mut fresh = String::new();
    for _ in 0..100 {
        let (_, cs, _, body) = get(&gw.url("/swr")).await;
        if cs.starts_with("sluice; hit; ttl=") && !cs.contains("stale") {
            fresh = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fresh, "v2");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn stale_if_error_stands_in_for_a_failing_upstream() {
    let n = Arc::new(AtomicUsize::new(0));
    let up = TestUpstream::start({
        let n = Arc::clone(&n);
        move |req: Request<hyper::body::Incoming>| {
            let first = n.fetch_add(1, Ordering::SeqCst) < 2;
            let path = req.uri().path().to_owned();
            async move {
                if !first {
                    return resp(503, &[], "down");
                }
                let cc = if path == "/sie" {
                    "max-age=1, stale-if-error=60"
                } else {
                    "max-age=1, must-revalidate, stale-if-error=60"
                };
                resp(200, &[("cache-control", cc)], "good")
            }
        }
    })
    .await;
    let gw = gateway(up.addr).await;
    assert_eq!(get(&gw.url("/sie")).await.3, "good");
    assert_eq!(get(&gw.url("/strict")).await.3, "good");
    let_expire().await;
    let (s, cs, _, body) = get(&gw.url("/sie")).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "good"));
    assert!(cs.starts_with("sluice; fwd=stale; fwd-status=503"), "{cs}");
    assert!(cs.contains("detail=stale-if-error"), "{cs}");
    // must-revalidate forbids serving stale, even on error.
    let (s, cs, _, body) = get(&gw.url("/strict")).await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "down")
    );
    assert!(cs.starts_with("sluice; fwd=stale; fwd-status=503"), "{cs}");
}

#[tokio::test]
async fn stale_if_error_covers_an_unreachable_upstream() {
    let up = TestUpstream::start(|_req| async {
        resp(
            200,
            &[("cache-control", "max-age=1, stale-if-error=60")],
            "kept",
        )
    })
    .await;
    let gw = gateway(up.addr).await;
    assert_eq!(get(&gw.url("/x")).await.3, "kept");
    up.stop();
    drop(up);
    let_expire().await;
    let (s, cs, _, body) = get(&gw.url("/x")).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "kept"));
    assert!(
        cs.contains("fwd=stale") && cs.contains("detail=stale-if-error"),
        "{cs}"
    );
}

#[tokio::test]
async fn no_store_private_and_authorization_are_not_stored() {
    let up = TestUpstream::start(|req: Request<hyper::body::Incoming>| async move {
        let cc = match req.uri().path() {
            "/no-store" => "no-store, max-age=60",
            "/private" => "private, max-age=60",
            "/public" => "public, max-age=60",
            _ => "max-age=60",
        };
        resp(200, &[("cache-control", cc)], "x")
    })
    .await;
    let gw = gateway(up.addr).await;
    let c = client();
    for path in ["/no-store", "/private"] {
        for _ in 0..2 {
            let r = c.get(gw.url(path)).send().await.unwrap();
            let cs = cache_status(&r);
            assert!(
                cs.starts_with("sluice; fwd=") && !cs.contains("stored"),
                "{path}: {cs}"
            );
            assert!(cs.contains("detail=not-storable"), "{path}: {cs}");
        }
    }
    assert_eq!(up.hits(), 4);
    // §3.5: a response to an authorized request is stored only when it says it may be.
    for _ in 0..2 {
        let r = c
            .get(gw.url("/auth"))
            .bearer_auth("t")
            .send()
            .await
            .unwrap();
        assert!(!cache_status(&r).contains("stored"));
    }
    assert_eq!(up.hits(), 6);
    for _ in 0..2 {
        c.get(gw.url("/public"))
            .bearer_auth("t")
            .send()
            .await
            .unwrap();
    }
    assert_eq!(up.hits(), 7);
}

#[tokio::test]
async fn successful_unsafe_methods_invalidate() {
    let up = TestUpstream::start(|req: Request<hyper::body::Incoming>| async move {
        match *req.method() {
            hyper::Method::POST if req.uri().path() == "/items" => {
                resp(201, &[("location", "/items/7")], "created")
            }
            hyper::Method::POST => resp(200, &[], "updated"),
            hyper::Method::DELETE => resp(500, &[], "failed"),
            _ => resp(200, &[("cache-control", "max-age=60")], "item"),
        }
    })
    .await;
    let gw = gateway(up.addr).await;
    let c = client();
    get(&gw.url("/items/1")).await;
    get(&gw.url("/items/7")).await;
    assert!(get(&gw.url("/items/1")).await.1.contains("hit"));
    // A failed unsafe request invalidates nothing.
    let r = c.delete(gw.url("/items/1")).send().await.unwrap();
    assert_eq!(cache_status(&r), "sluice; fwd=method; fwd-status=500");
    assert!(get(&gw.url("/items/1")).await.1.contains("hit"));
    // A successful one invalidates its target URI...
    let r = c.post(gw.url("/items/1")).body("x").send().await.unwrap();
    assert_eq!(cache_status(&r), "sluice; fwd=method; fwd-status=200");
    assert!(get(&gw.url("/items/1")).await.1.contains("fwd=uri-miss"));
    // ...and the same-origin Location it answers with.
    assert!(get(&gw.url("/items/7")).await.1.contains("hit"));
    c.post(gw.url("/items")).body("x").send().await.unwrap();
    assert!(get(&gw.url("/items/7")).await.1.contains("fwd=uri-miss"));
}

/// A raw HTTP/1.1 upstream that streams `chunks` chunks of 16 KiB with no
/// Content-Length; counts requests.
async fn chunked_upstream(chunks: usize) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let h = Arc::clone(&h);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut head = Vec::new();
                // Read one request head (bounded), answer, close.
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                h.fetch_add(1, Ordering::SeqCst);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
                    .await;
                let chunk = vec![b'z'; 16 << 10];
                for _ in 0..chunks {
                    let _ = s
                        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .await;
                    let _ = s.write_all(&chunk).await;
                    let _ = s.write_all(b"\r\n").await;
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn objects_over_the_cap_stream_through_whole_and_uncached() {
    // Known too large from Content-Length.
    let big = vec![b'b'; 200 << 10];
    let up = TestUpstream::start(move |_req| {
        let big = big.clone();
        async move { resp(200, &[("cache-control", "max-age=60")], big) }
    })
    .await;
    let gw = gateway(up.addr).await;
    for _ in 0..2 {
        let (s, cs, _, body) = get(&gw.url("/big")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body.len(), 200 << 10);
        assert!(
            cs.contains("detail=too-large") && !cs.contains("stored"),
            "{cs}"
        );
    }
    assert_eq!(up.hits(), 2);

    // Found too large only while streaming: 20 × 16 KiB, cap 64 KiB.
    let (addr, hits) = chunked_upstream(20).await;
    let gw = gateway(addr).await;
    for _ in 0..2 {
        let (s, _, _, body) = get(&gw.url("/grows")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body.len(), 20 * (16 << 10), "never truncated");
        assert!(body.bytes().all(|b| b == b'z'));
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2, "not stored");

    // The same upstream within the cap (2 × 16 KiB) is stored.
    let (addr, hits) = chunked_upstream(2).await;
    let gw = gateway(addr).await;
    assert_eq!(get(&gw.url("/small")).await.3.len(), 32 << 10);
    let (_, cs, _, body) = get(&gw.url("/small")).await;
    assert!(cs.contains("hit"), "{cs}");
    assert_eq!(body.len(), 32 << 10);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn purge_by_key_and_prefix_through_the_admin_api() {
    let up =
        TestUpstream::start(|_req| async { resp(200, &[("cache-control", "max-age=60")], "p") })
            .await;
    let gw = gateway(up.addr).await;
    for p in ["/api/a", "/api/b?x=1", "/api/c/d", "/other"] {
        get(&gw.url(p)).await;
    }
    let c = client();
    let purge = |body: serde_json::Value| {
        let c = c.clone();
        let url = gw.admin_url("/cache/purge");
        async move {
            let r = c.post(url).json(&body).send().await.unwrap();
            let status = r.status();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (s, v) = purge(serde_json::json!({"key": "/api/a"})).await;
    assert_eq!((s, v["purged"].as_u64()), (StatusCode::OK, Some(1)));
    assert!(get(&gw.url("/api/a")).await.1.contains("uri-miss"));
    assert!(get(&gw.url("/api/c/d")).await.1.contains("hit"));
    // A host that does not match purges nothing.
    let (_, v) = purge(serde_json::json!({"prefix": "/api/", "host": "elsewhere.example"})).await;
    assert_eq!(v["purged"], 0);
    let (_, v) = purge(serde_json::json!({"prefix": "/api/", "host": "127.0.0.1"})).await;
    assert_eq!(v["purged"], 3);
    assert!(get(&gw.url("/api/b?x=1")).await.1.contains("uri-miss"));
    assert!(get(&gw.url("/other")).await.1.contains("hit"));
    let (s, v) = purge(serde_json::json!({"key": "/a", "prefix": "/b"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "bad_purge_request");
    let stats: serde_json::Value = c
        .get(gw.admin_url("/cache"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stats["entries"].as_u64().unwrap() >= 1);
    assert!(stats["bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn heuristic_freshness_expires_and_no_freshness() {
    let long_ago = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(10 * 86400));
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(600));
    let up = TestUpstream::start(move |req: Request<hyper::body::Incoming>| {
        let (long_ago, later) = (long_ago.clone(), later.clone());
        async move {
            match req.uri().path() {
                // §4.2.2: a 200 with Last-Modified and no explicit freshness.
                "/heuristic" => resp(200, &[("last-modified", long_ago.as_str())], "h"),
                // A 302 is not heuristically cacheable.
                "/redirect" => resp(
                    302,
                    &[("last-modified", long_ago.as_str()), ("location", "/x")],
                    "",
                ),
                "/expires" => resp(200, &[("expires", later.as_str())], "e"),
                _ => resp(200, &[], "nothing"),
            }
        }
    })
    .await;
    let gw = gateway(up.addr).await;
    for p in ["/heuristic", "/expires"] {
        get(&gw.url(p)).await;
        let (_, cs, _, _) = get(&gw.url(p)).await;
        assert!(cs.starts_with("sluice; hit"), "{p}: {cs}");
    }
    assert_eq!(up.hits(), 2);
    let c = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for p in ["/redirect", "/plain"] {
        for _ in 0..2 {
            let r = c.get(gw.url(p)).send().await.unwrap();
            assert!(!cache_status(&r).contains("stored"), "{p}");
        }
    }
    assert_eq!(up.hits(), 6);
}

#[tokio::test]
async fn head_conditionals_ranges_and_request_no_cache() {
    let up = TestUpstream::start(|_req| async {
        resp(
            200,
            &[("cache-control", "max-age=60"), ("etag", "\"e1\"")],
            "0123456789",
        )
    })
    .await;
    let gw = gateway(up.addr).await;
    let c = client();
    get(&gw.url("/r")).await;
    // HEAD is answered from the stored GET.
    let r = c.head(gw.url("/r")).send().await.unwrap();
    assert!(cache_status(&r).starts_with("sluice; hit"));
    assert_eq!(r.headers()["content-length"], "10");
    assert_eq!(r.text().await.unwrap(), "");
    // The client's own conditional is answered from the cache.
    let r = c
        .get(gw.url("/r"))
        .header("if-none-match", "\"e1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(cache_status(&r).starts_with("sluice; hit"));
    assert_eq!(up.hits(), 1);
    // Ranges bypass the cache.
    let r = c
        .get(gw.url("/r"))
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        cache_status(&r),
        "sluice; fwd=bypass; fwd-status=200; detail=range"
    );
    assert_eq!(up.hits(), 2);
    // `Cache-Control: no-cache` from the client forces a trip upstream.
    let r = c
        .get(gw.url("/r"))
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap();
    let cs = cache_status(&r);
    assert!(cs.starts_with("sluice; fwd=request"), "{cs}");
    assert_eq!(up.hits(), 3);
    // So does HTTP/1.0's `Pragma: no-cache` without a Cache-Control.
    let r = c
        .get(gw.url("/r"))
        .header("pragma", "no-cache")
        .send()
        .await
        .unwrap();
    let cs = cache_status(&r);
    assert!(cs.starts_with("sluice; fwd=request"), "{cs}");
    assert_eq!(up.hits(), 4);
}

#[tokio::test]
async fn the_cache_survives_a_reload() {
    let up =
        TestUpstream::start(|_req| async { resp(200, &[("cache-control", "max-age=60")], "kept") })
            .await;
    let gw = gateway(up.addr).await;
    get(&gw.url("/r")).await;
    let config = (*gw.gw.config()).clone();
    gw.gw.apply(config);
    assert_eq!(gw.gw.reload_count(), 1);
    assert!(get(&gw.url("/r")).await.1.starts_with("sluice; hit"));
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn followers_stop_waiting_after_lock_timeout() {
    let up = TestUpstream::start(|_req| async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        resp(200, &[("cache-control", "max-age=60")], "slow")
    })
    .await;
    let gw = TestGateway::start(&format!(
        r#"
        [cache]
        lock_timeout = "100ms"
        [upstreams.api]
        targets = ["{}"]
        [[routes]]
        path_prefix = "/"
        upstream = "api"
        cache = true
        "#,
        up.addr
    ))
    .await;
    let tasks: Vec<_> = (0..3)
        .map(|_| tokio::spawn(get(gw.url("/slow").leak())))
        .collect();
    for t in tasks {
        let (s, _, _, body) = t.await.unwrap();
        assert_eq!((s, body.as_str()), (StatusCode::OK, "slow"));
    }
    // The leader's fetch takes longer than lock_timeout: everyone went upstream.
    assert_eq!(up.hits(), 3);
}
