//! Shared test support: a gateway started in-process on `127.0.0.1:0`, and
//! real upstream HTTP servers whose handlers the tests write.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_gateway::{Config, Gateway};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A gateway running in this process.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub gw: Gateway,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), sluice_gateway::Error>>,
}

impl TestGateway {
    /// Start from TOML text. `listen` keys are ignored: both listeners bind port 0.
    pub async fn start(toml: &str) -> TestGateway {
        let mut config =
            Config::parse(toml, "test.toml").unwrap_or_else(|e| panic!("test config invalid: {e}"));
        config.access_log.enabled = false;
        Self::start_config(config).await
    }

    pub async fn start_config(config: Config) -> TestGateway {
        let shutdown = CancellationToken::new();
        let gw = Gateway::new(config, shutdown.clone()).expect("gateway builds");
        Self::serve(gw, shutdown).await
    }

    /// Start from a config file, as the binary does, so that `reload` (and
    /// `POST /reload`) read it again. The file's `listen` keys are ignored.
    pub async fn start_file(path: &Path) -> TestGateway {
        let shutdown = CancellationToken::new();
        let gw = Gateway::from_file(path, shutdown.clone()).expect("gateway builds from file");
        Self::serve(gw, shutdown).await
    }

    /// Serve `gw` and its admin API on `127.0.0.1:0`; returns once the proxy
    /// listener is accepting (or serving ended), so that `/readyz` needs no
    /// waiting.
    async fn serve(gw: Gateway, shutdown: CancellationToken) -> TestGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        tokio::spawn({
            let gw = gw.clone();
            let shutdown = shutdown.clone();
            async move { gw.serve_admin(admin_listener, shutdown).await }
        });
        let task = tokio::spawn({
            let gw = gw.clone();
            let shutdown = shutdown.clone();
            async move { gw.serve(listener, shutdown).await }
        });
        // A serve that fails at once (say, on TLS set-up) is the test's to see in `task`.
        let started = eventually(Duration::from_secs(5), || async {
            gw.readiness().accepting || task.is_finished()
        })
        .await;
        assert!(started, "the gateway's listener starts accepting");
        TestGateway {
            addr,
            admin,
            gw,
            shutdown,
            task,
        }
    }

    /// Start a gateway whose one route sends everything to `targets` (see [`api_config`]).
    pub async fn proxy_to(targets: &[SocketAddr]) -> TestGateway {
        Self::start(&api_config(targets, "", "")).await
    }

    /// GET `path` on the proxy listener.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_with(path, &[]).await
    }

    /// GET `path` on the proxy listener with extra request headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        get_with(&self.url(path), headers).await
    }

    /// POST `body` to `path` on the proxy listener.
    pub async fn post(&self, path: &str, body: &str) -> reqwest::Response {
        client()
            .post(self.url(path))
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// What an [`TestUpstream::echo_request`] upstream saw of a GET of
    /// `path` with `headers`; the answer must be 200.
    pub async fn echo(&self, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
        let r = self.get_with(path, headers).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// Send a raw HTTP/1.1 request to the proxy listener; what came back
    /// within 5 s (see [`raw_exchange`]).
    pub async fn raw(&self, request: &str) -> String {
        raw_exchange(self.addr, request.as_bytes(), Duration::from_secs(5)).await
    }

    /// GET `path` on the proxy listener: status and body text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self.get(path).await;
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// GET an admin path: the status.
    pub async fn admin_status(&self, path: &str) -> u16 {
        self.admin_get(path).await.0
    }

    /// GET an admin path: status and JSON body (`Null` when it is not JSON).
    pub async fn admin_get(&self, path: &str) -> (u16, serde_json::Value) {
        status_and_json(client().get(self.admin_url(path)).send().await.unwrap()).await
    }

    /// The admin `/metrics` text, served from `recorder` (this test
    /// binary's): a scrape, which also publishes the gauges read at
    /// scrape time.
    pub async fn scrape(&self, recorder: &metrics_exporter_prometheus::PrometheusHandle) -> String {
        self.gw.set_metrics_handle(recorder.clone());
        let r = client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET /metrics");
        r.text().await.unwrap()
    }

    /// POST to an admin path with no body: status and JSON body.
    pub async fn admin_post(&self, path: &str) -> (u16, serde_json::Value) {
        status_and_json(client().post(self.admin_url(path)).send().await.unwrap()).await
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `http://127.0.0.1:ADMIN_PORT{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A real HTTP/1.1 + HTTP/2 upstream server on `127.0.0.1:0`.
pub struct TestUpstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl TestUpstream {
    /// Serve with `handler`; every request counts as a hit.
    pub async fn start<F, Fut>(handler: F) -> TestUpstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, handler).await
    }

    /// Serve on an already bound listener (to restart on a known port),
    /// with any response body type.
    pub async fn start_on<F, Fut, B>(listener: TcpListener, handler: F) -> TestUpstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let handler = Arc::new(handler);
        tokio::spawn({
            let hits = Arc::clone(&hits);
            let shutdown = shutdown.clone();
            async move {
                loop {
                    let (stream, _) = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        r = listener.accept() => match r { Ok(p) => p, Err(_) => continue },
                    };
                    let handler = Arc::clone(&handler);
                    let hits = Arc::clone(&hits);
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            hits.fetch_add(1, Ordering::SeqCst);
                            let fut = handler(req);
                            async move { Ok::<_, Infallible>(fut.await) }
                        });
                        let builder =
                            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                        tokio::select! {
                            _ = conn => {}
                            _ = shutdown.cancelled() => {}
                        }
                    });
                }
            }
        });
        TestUpstream {
            addr,
            hits,
            shutdown,
        }
    }

    /// An upstream that answers 200 with `body` to everything after `delay`.
    pub async fn delayed(delay: Duration, body: &'static str) -> TestUpstream {
        Self::start(move |_req| async move {
            tokio::time::sleep(delay).await;
            respond(200, body)
        })
        .await
    }

    /// An upstream that answers 200 with `body` to everything.
    pub async fn fixed(body: &'static str) -> TestUpstream {
        Self::start(move |_req| async move {
            Response::new(Full::new(Bytes::from_static(body.as_bytes())))
        })
        .await
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stop accepting and drop open connections.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// GET `url` with extra request headers.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("the gateway answers")
}

/// A config file in a temporary directory (removed on drop), for the tests
/// that start from a file and reload it.
pub struct ConfigFile {
    pub path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl ConfigFile {
    /// A file `gateway.toml` holding `text`.
    pub fn new(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().unwrap();
        let file = ConfigFile {
            path: dir.path().join("gateway.toml"),
            _dir: dir,
        };
        file.write(text);
        file
    }

    /// Replace the file's contents.
    pub fn write(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }

    /// The path as the gateway names it in errors.
    pub fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// A reqwest client that never pools across tests and never uses a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Read a whole hyper body to bytes.
pub async fn body_bytes(body: Incoming) -> Bytes {
    body.collect().await.unwrap().to_bytes()
}

/// Skip (return `None` and print why) when an env var with a service URL is unset.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            eprintln!("skipped: {var} is not set, so this test has no server to talk to");
            None
        }
    }
}

// ---- helpers for the balancing, resilience, reload and admin tests ----

/// An address on loopback where nothing listens (bound, then released).
pub fn closed_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A response with `status` and `body`.
pub fn respond(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r
}

/// Poll `check` every 20ms until it is true or `within` has passed; returns the last answer.
pub async fn eventually<F, Fut>(within: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// GET an admin path and parse its JSON body.
pub async fn admin_json(gw: &TestGateway, path: &str) -> serde_json::Value {
    client()
        .get(gw.admin_url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A config with one upstream `api` over `targets` and one catch-all route
/// to it; `upstream_extra` and `route_extra` are TOML lines added to the
/// `[upstreams.api]` table and to the route.
pub fn api_config(targets: &[SocketAddr], upstream_extra: &str, route_extra: &str) -> String {
    let t: Vec<String> = targets.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
        [upstreams.api]
        targets = [{}]
        {upstream_extra}
        [[routes]]
        path_prefix = "/"
        upstream = "api"
        {route_extra}
        "#,
        t.join(", ")
    )
}

/// A response's status and JSON body (`Null` when the body is not JSON).
pub async fn status_and_json(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// A JSON error answer (`{"error":{"code","message"}}`, as the proxy and
/// the admin API write them): status, code and message.
pub async fn error_json(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = r.json().await.unwrap();
    let field = |k: &str| {
        v["error"][k]
            .as_str()
            .unwrap_or_else(|| panic!("no error.{k} in {v}"))
            .to_owned()
    };
    (status, field("code"), field("message"))
}

// ---- helpers for listener/routing/headers/streaming/websocket/tls tests ----

/// A streaming response body for [`TestUpstream::start_streaming`].
pub type StreamBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// Box any body with `Bytes` data into a [`StreamBody`].
pub fn stream_body<B>(body: B) -> StreamBody
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: std::fmt::Display,
{
    body.map_err(|e| std::io::Error::other(e.to_string()))
        .boxed()
}

impl TestUpstream {
    /// Like [`TestUpstream::start`], but the handler answers with a streaming body.
    pub async fn start_streaming<F, Fut>(handler: F) -> TestUpstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<StreamBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, handler).await
    }

    /// An upstream that answers every request with JSON describing what it
    /// saw: `method`, `path` (with query), `version`, `headers` (name → list
    /// of values) and `body_len`.
    pub async fn echo_request() -> TestUpstream {
        Self::start(|req| async move {
            let method = req.method().to_string();
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            let version = format!("{:?}", req.version());
            let mut headers = serde_json::Map::new();
            for (k, v) in req.headers() {
                let list = headers
                    .entry(k.as_str().to_owned())
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                if let serde_json::Value::Array(a) = list {
                    a.push(String::from_utf8_lossy(v.as_bytes()).into_owned().into());
                }
            }
            let body = body_bytes(req.into_body()).await;
            let json = serde_json::json!({
                "method": method,
                "path": path,
                "version": version,
                "headers": headers,
                "body_len": body.len(),
            });
            let mut resp = Response::new(Full::new(Bytes::from(json.to_string())));
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            resp
        })
        .await
    }
}

/// Send raw bytes on a fresh connection and read until the peer closes or
/// `wait` passes; returns what was read (lossy UTF-8).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], wait: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// FNV-1a over a stream of chunks: the same for any chunking of the same bytes.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
