//! `sluice up --demo`: a small HTTP service for the demo's `http` jobs
//! (reached through the gateway at `/demo/`) and the demo batch itself.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use sluice_jobs::{BatchId, BatchSpec, Client, JobSpec};
use tokio_util::sync::CancellationToken;

/// The demo service: `/items/{n}` (JSON, cacheable, a little slow),
/// `/flaky` (503 twice, then 200), `/healthz`.
pub(crate) struct Service {
    pub(crate) addr: SocketAddr,
}

#[derive(Default)]
struct Counters {
    flaky_calls: AtomicU64,
}

impl Service {
    /// Serves on an ephemeral loopback port until `shutdown`.
    pub(crate) async fn start(shutdown: CancellationToken) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the demo service")?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/items/{n}", get(item))
            .route("/flaky", get(flaky))
            .route("/healthz", get(|| async { "ok\n" }))
            .with_state(Arc::new(Counters::default()));
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "demo service stopped");
            }
        });
        Ok(Self { addr })
    }
}

/// An item, after 20–200 ms of pretend work; cacheable for a minute, so
/// repeated jobs for one item are answered by the gateway's cache.
async fn item(UrlPath(n): UrlPath<u64>) -> impl IntoResponse {
    tokio::time::sleep(Duration::from_millis(20 + (n * 37) % 180)).await;
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        axum::Json(json!({ "item": n, "price_cents": 100 + n * 7 })),
    )
}

/// Fails the first two calls (a retryable 503), then succeeds.
async fn flaky(State(c): State<Arc<Counters>>) -> (StatusCode, &'static str) {
    if c.flaky_calls.fetch_add(1, Ordering::SeqCst) < 2 {
        (StatusCode::SERVICE_UNAVAILABLE, "warming up, try again\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

fn job(kind: &str, args: Value) -> JobSpec {
    JobSpec::new(kind, args)
}

/// The demo batch: HTTP fetches through the gateway (half of them cache
/// hits), sleeps, CPU-bound checksums and busy work on the rayon pool, a
/// dependency chain, and a job that fails twice before it succeeds.
pub(crate) async fn submit_batch(
    client: &Client,
    gateway: SocketAddr,
    data: &Path,
) -> anyhow::Result<BatchId> {
    let sample = data.join("demo-sample.bin");
    write_sample(&sample).context("writing the checksum sample")?;
    let sample = sample.display().to_string();
    let base = format!("http://{gateway}/demo");
    let mut jobs = Vec::new();
    for i in 0..20 {
        jobs.push(job(
            "http",
            json!({ "method": "GET", "url": format!("{base}/items/{}", i % 10), "expect_status": 200 }),
        ));
    }
    for ms in [300, 600, 900, 1_200, 1_500, 2_000] {
        jobs.push(job("sleep", json!({ "ms": ms })));
    }
    for algo in ["sha256", "blake3"] {
        jobs.push(job("checksum", json!({ "path": sample, "algo": algo })));
    }
    for _ in 0..4 {
        jobs.push(job("burn", json!({ "ms": 400 })));
    }
    // A chain: fetch, then checksum, then a report; each waits for the one
    // before it to succeed.
    let first = jobs.len();
    jobs.push(job("http", json!({ "url": format!("{base}/items/42") })));
    let mut checksum = job("checksum", json!({ "path": sample, "algo": "blake3" }));
    checksum.depends_on = vec![first];
    jobs.push(checksum);
    let mut report = job("sleep", json!({ "ms": 100 }));
    report.depends_on = vec![first + 1];
    jobs.push(report);
    // Fails twice with 503 (retryable), succeeds on the third attempt.
    let mut flaky = job(
        "http",
        json!({ "url": format!("{base}/flaky"), "expect_status": 200 }),
    );
    flaky.max_attempts = Some(5);
    flaky.backoff = Some(sluice_jobs::Backoff {
        base_ms: 500,
        max_ms: 5_000,
        factor: 2.0,
        jitter: 0.2,
    });
    jobs.push(flaky);
    let submitted = client
        .submit_batch(&BatchSpec {
            name: Some("demo".into()),
            jobs,
            ..Default::default()
        })
        .await
        .context("submitting")?;
    submitted.batch_id.context("no batch id")
}

/// 16 MiB of deterministic bytes for the checksum jobs.
fn write_sample(path: &Path) -> std::io::Result<()> {
    const LEN: usize = 16 << 20;
    if std::fs::metadata(path).is_ok_and(|m| m.len() == LEN as u64) {
        return Ok(());
    }
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = Vec::with_capacity(LEN);
    while buf.len() < LEN {
        // xorshift: cheap, deterministic filler.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, buf)
}
