//! Resilience over real sockets: connect, per-try and total timeouts,
//! retries (which methods, which failures, backoff), the retry budget in an
//! outage, and load shedding under `max_concurrent`.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{TestGateway, TestUpstream, api_config, client, closed_addr, error_json, respond};

/// One upstream `api` over `targets`, without passive ejection (so that
/// every request meets the failures these tests set up), and extra lines.
fn config(targets: &[SocketAddr], upstream_extra: &str, route_extra: &str) -> String {
    api_config(
        targets,
        &format!("eject = {{ consecutive_failures = 0 }}\n{upstream_extra}"),
        route_extra,
    )
}

#[tokio::test]
async fn per_try_timeout_retries_on_another_target() {
    let stuck = TestUpstream::delayed(Duration::from_secs(5), "stuck").await;
    let fast = TestUpstream::fixed("fast").await;
    let gw = TestGateway::start(&config(
        &[stuck.addr, fast.addr],
        "",
        r#"timeout = "4s"
        try_timeout = "200ms"
        retries = 1
        retry_backoff = "1ms""#,
    ))
    .await;
    for _ in 0..6 {
        let r = gw.get("/x").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "fast");
    }
    assert!(
        stuck.hits() >= 1,
        "some first tries went to the stuck target"
    );
    assert_eq!(fast.hits(), 6);
}

#[tokio::test]
async fn total_timeout_answers_504_json() {
    let stuck = TestUpstream::delayed(Duration::from_secs(5), "stuck").await;
    let gw = TestGateway::start(&config(
        &[stuck.addr],
        "",
        r#"timeout = "300ms"
        retries = 2"#,
    ))
    .await;
    let r = gw.get("/x").await;
    let (status, code, message) = error_json(r).await;
    assert_eq!(status, 504);
    assert_eq!(code, "upstream_timeout");
    assert!(message.contains("\"api\""), "names the upstream: {message}");
}

/// On a kept-alive plain connection a request's deadline waits on the
/// connection's own timer, which is also set for the connection's sooner
/// deadlines (a tenth of a second ahead): a request outlasting those is not
/// cut, one outlasting its route's `timeout` gets its 504 at the deadline
/// and not before, and the connection serves on after either.
#[tokio::test]
async fn total_timeout_holds_on_a_kept_alive_connection() {
    let slow = TestUpstream::delayed(Duration::from_millis(500), "slow").await;
    let gw = TestGateway::start(&format!(
        r#"
        [upstreams.api]
        targets = ["{}"]
        [[routes]]
        path_prefix = "/short/"
        upstream = "api"
        timeout = "250ms"
        [[routes]]
        path_prefix = "/"
        upstream = "api"
        timeout = "3s"
        "#,
        slow.addr
    ))
    .await;
    // One client: its requests share a connection.
    let http = client();
    for round in 0..2 {
        let start = Instant::now();
        let r = http.get(gw.url("/long")).send().await.unwrap();
        assert_eq!(r.status(), 200, "round {round}");
        assert_eq!(r.text().await.unwrap(), "slow");
        assert!(start.elapsed() >= Duration::from_millis(500));

        let start = Instant::now();
        let r = http.get(gw.url("/short/x")).send().await.unwrap();
        let took = start.elapsed();
        let (status, code, _) = error_json(r).await;
        // A 504 (not the upstream's 200 at 500 ms), and not before the
        // route's deadline (the connection's timer fires sooner).
        assert_eq!((status, code.as_str()), (504, "upstream_timeout"));
        assert!(
            took >= Duration::from_millis(250),
            "504 before the route's deadline: {took:?}"
        );
    }
    assert_eq!(slow.hits(), 4);
}

#[tokio::test]
async fn upstream_down_answers_502_json_naming_the_upstream() {
    let gw = TestGateway::start(&config(
        &[closed_addr()],
        r#"connect_timeout = "500ms""#,
        // A total timeout far above the connect timeout: the 502 must come from the refusal.
        r#"timeout = "20s""#,
    ))
    .await;
    let r = gw.get("/x").await;
    let (status, code, message) = error_json(r).await;
    assert_eq!(status, 502);
    assert_eq!(code, "upstream_unavailable");
    assert!(message.contains("\"api\""), "names the upstream: {message}");
}

/// Fill the accept queue of a listener that never accepts: further connects
/// hang (the kernel drops their SYNs) until the connector gives up.
fn fill_accept_queue(addr: SocketAddr) -> Vec<std::net::TcpStream> {
    let mut held = Vec::new();
    for _ in 0..64 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(_) => return held,
        }
    }
    panic!("could not fill the accept queue of {addr}");
}

#[tokio::test]
async fn route_connect_timeout_overrides_the_upstream_one() {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let _held = tokio::task::spawn_blocking(move || fill_accept_queue(addr))
        .await
        .unwrap();
    // The upstream would wait 10s to connect, longer than the 3s total timeout:
    // only the route's 200ms override turns the hang into a 502.
    let gw = TestGateway::start(&format!(
        r#"
        [upstreams.api]
        targets = ["{addr}"]
        connect_timeout = "10s"
        eject = {{ consecutive_failures = 0 }}
        [[routes]]
        path_prefix = "/short/"
        upstream = "api"
        timeout = "3s"
        connect_timeout = "200ms"
        [[routes]]
        path_prefix = "/long/"
        upstream = "api"
        timeout = "1s"
        "#
    ))
    .await;
    let (status, code, _) = error_json(gw.get("/short/x").await).await;
    assert_eq!((status, code.as_str()), (502, "upstream_unavailable"));
    let (status, code, _) = error_json(gw.get("/long/x").await).await;
    assert_eq!((status, code.as_str()), (504, "upstream_timeout"));
}

/// Answers with the status named in the path (`/s/503`), 200 otherwise, and
/// echoes the request body.
async fn status_echo() -> TestUpstream {
    TestUpstream::start(|req| async move {
        let status: u16 = req
            .uri()
            .path()
            .strip_prefix("/s/")
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        let body = support::body_bytes(req.into_body()).await;
        let mut r = hyper::Response::new(http_body_util::Full::new(body));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        r
    })
    .await
}

#[tokio::test]
async fn get_is_retried_on_502_503_504_and_connect_errors() {
    let bad = status_echo().await;
    let good = TestUpstream::fixed("good").await;
    let gw = TestGateway::start(&config(
        &[bad.addr, good.addr],
        "",
        r#"retries = 1
        retry_backoff = "1ms""#,
    ))
    .await;
    for status in [502, 503, 504] {
        for _ in 0..4 {
            let r = gw.get(&format!("/s/{status}")).await;
            assert_eq!(r.status(), 200, "a {status} is retried on the other target");
            assert_eq!(r.text().await.unwrap(), "good");
        }
    }
    assert_eq!(good.hits(), 12);
    assert!(
        bad.hits() >= 3,
        "the failing target was tried first sometimes"
    );

    // Other errors (here 500) are answers, not retried.
    let r = gw.get("/s/500").await;
    let r2 = gw.get("/s/500").await;
    assert!(r.status() == 500 || r2.status() == 500);

    // Connection refused: retried on the other target.
    let gw = TestGateway::start(&config(
        &[closed_addr(), good.addr],
        "",
        r#"retries = 1
        retry_backoff = "1ms""#,
    ))
    .await;
    for _ in 0..6 {
        let r = gw.get("/x").await;
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn post_is_retried_only_when_the_route_allows_it() {
    let bad = status_echo().await;
    let gw = TestGateway::start(&config(
        &[bad.addr],
        "",
        r#"retries = 2
        retry_backoff = "1ms""#,
    ))
    .await;
    let r = gw.post("/s/503", "payload").await;
    assert_eq!(r.status(), 503);
    assert_eq!(bad.hits(), 1, "POST is not retried by default");
    let r = gw.get("/s/503").await;
    assert_eq!(r.status(), 503);
    assert_eq!(bad.hits(), 4, "GET is tried 1 + 2 times");

    // With retry_non_idempotent the POST is retried too.
    let bad = status_echo().await;
    let gw = TestGateway::start(&config(
        &[bad.addr],
        "",
        r#"retries = 2
        retry_backoff = "1ms"
        retry_non_idempotent = true"#,
    ))
    .await;
    let r = gw.post("/s/503", "payload").await;
    assert_eq!(r.status(), 503);
    assert_eq!(bad.hits(), 3, "POST tried 1 + 2 times");
}

#[tokio::test]
async fn retried_post_replays_its_body() {
    let always503 = TestUpstream::start(|_req| async { respond(503, "no") }).await;
    let echo = status_echo().await;
    let gw = TestGateway::start(&config(
        &[always503.addr, echo.addr],
        "",
        r#"retries = 1
        retry_backoff = "1ms"
        retry_non_idempotent = true"#,
    ))
    .await;
    for i in 0..4 {
        let body = format!("payload-{i}");
        let r = gw.post("/x", &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), body);
    }
    assert!(always503.hits() >= 1);
}

#[tokio::test]
async fn retries_wait_a_jittered_exponential_backoff() {
    let stamps: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let up = TestUpstream::start({
        let stamps = stamps.clone();
        move |_req| {
            stamps.lock().unwrap().push(Instant::now());
            async { respond(503, "busy") }
        }
    })
    .await;
    let gw = TestGateway::start(&config(
        &[up.addr],
        "",
        r#"retries = 2
        retry_backoff = "200ms""#,
    ))
    .await;
    let r = gw.get("/x").await;
    assert_eq!(r.status(), 503);
    let s = stamps.lock().unwrap().clone();
    assert_eq!(s.len(), 3);
    // Full jitter in [½, 3⁄2) of base·2^(n-1): at least 100ms, then at least 200ms.
    let first = s[1] - s[0];
    let second = s[2] - s[1];
    assert!(
        first >= Duration::from_millis(100),
        "first backoff {first:?}"
    );
    assert!(
        second >= Duration::from_millis(200),
        "second backoff {second:?}"
    );
}

#[tokio::test]
async fn retry_budget_bounds_upstream_load_in_an_outage() {
    let a = TestUpstream::start(|_req| async { respond(503, "down") }).await;
    let b = TestUpstream::start(|_req| async { respond(503, "down") }).await;
    let gw = TestGateway::start(&config(
        &[a.addr, b.addr],
        "",
        r#"retries = 3
        retry_backoff = "1ms""#,
    ))
    .await;
    let requests = 400usize;
    let c = client();
    let url = gw.url("/x");
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            for _ in (w..requests).step_by(8) {
                let r = c.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 503);
                n += 1;
            }
            n
        }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap();
    }
    assert_eq!(sent, requests);
    let tries = a.hits() + b.hits();
    // Budget: 20% of requests plus a reserve of 10 retries/s over a 10s window.
    let bound = requests + requests / 5 + 100;
    assert!(
        tries <= bound,
        "{tries} upstream tries for {requests} requests; budget allows at most {bound}, without it {}",
        requests * 4
    );
    assert!(tries > requests, "some retries happened ({tries})");
}

#[tokio::test]
async fn max_concurrent_sheds_with_503_and_retry_after() {
    let up = TestUpstream::delayed(Duration::from_millis(800), "slow").await;
    let gw = TestGateway::start(&config(&[up.addr], "max_concurrent = 2", "")).await;
    let c = client();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (c, url) = (c.clone(), gw.url("/x"));
            tokio::spawn(async move { c.get(url).send().await.unwrap().status() })
        })
        .collect();
    assert!(
        support::eventually(Duration::from_secs(3), || async { up.hits() == 2 }).await,
        "two requests reach the upstream"
    );
    let r = gw.get("/x").await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let (_, code, message) = error_json(r).await;
    assert_eq!(code, "upstream_overloaded");
    assert!(message.contains("\"api\""));
    assert_eq!(up.hits(), 2, "the shed request never reached the upstream");
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    // The slots are free again.
    let r = gw.get("/x").await;
    assert_eq!(r.status(), 200);
}
