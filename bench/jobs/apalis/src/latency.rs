//! Open-loop latency windows: probes pushed on a fixed schedule by a producer
//! thread in this process, enqueue-to-start latency as the probes' handler
//! records it (start minus *intended* send time), and the same JSON fields as
//! celery_bench.py's and jobs_load's `latency`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::job::{self, Job};
use crate::stats::{percentile, round};
use crate::store::{Error, Store};

/// The queue of the probes (and of no-op jobs).
pub const QUEUE: &str = "bench";

pub struct Window {
    pub rate: f64,
    pub secs: f64,
    /// A warm-up of this many seconds at the same rate, not counted.
    pub warm: f64,
    /// How long to wait for the last probes to start.
    pub wait: f64,
}

static PUSH_ERRORS: AtomicUsize = AtomicUsize::new(0);

/// Pushes rate*secs probes tagged `id`, each at its intended time: a thread
/// sleeps until the time (std's sleep keeps to ~0.1 ms; tokio's timer ticks in
/// 1 ms) and hands the push to the runtime, so a slow commit does not delay the
/// next send. Returns (sent, seconds taken).
async fn send_open_loop(store: &Arc<Store>, id: u32, rate: f64, secs: f64) -> Result<(usize, f64), Error> {
    let n = (rate * secs) as usize;
    let store = store.clone();
    let rt = tokio::runtime::Handle::current();
    let took = tokio::task::spawn_blocking(move || {
        let interval = Duration::from_secs_f64(1.0 / rate);
        let t0 = Instant::now() + Duration::from_millis(50);
        let t0_us = (t0 - job::base()).as_micros() as u64;
        for i in 0..n {
            let due = t0 + interval * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let intended = t0_us + (interval * i as u32).as_micros() as u64;
            let store = store.clone();
            rt.spawn(async move {
                if let Err(e) = store.push(QUEUE, Job::Probe(id, intended)).await {
                    if PUSH_ERRORS.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("push failed: {e}");
                    }
                }
            });
        }
        Instant::now().saturating_duration_since(t0).as_secs_f64()
    })
    .await?;
    Ok((n, took))
}

async fn wait_started(id: u32, n: usize, wait: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(wait);
    while job::probes(id).len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One window (warm-up, then measured) of probes tagged `id` (warm-up: `id + 1`),
/// against workers already running on [`QUEUE`].
pub async fn window(store: &Arc<Store>, id: u32, w: &Window) -> Result<Value, Error> {
    if w.warm > 0.0 {
        let (n, _) = send_open_loop(store, id + 1, w.rate, w.warm).await?;
        wait_started(id + 1, n, w.wait).await;
    }
    let (sent, took) = send_open_loop(store, id, w.rate, w.secs).await?;
    wait_started(id, sent, w.wait).await;
    let mut lat = job::probes(id);
    lat.sort_by(f64::total_cmp);
    let p = |q| percentile(&lat, q).map(|v| round(v, 3));
    Ok(json!({
        "rate": w.rate,
        "secs": w.secs,
        "sent": sent,
        "achieved_rate": if took > 0.0 { Some(round(sent as f64 / took, 1)) } else { None },
        "started": lat.len(),
        "missing": sent.saturating_sub(lat.len()),
        "push_errors": PUSH_ERRORS.load(Ordering::Relaxed),
        "p50_ms": p(50.0),
        "p90_ms": p(90.0),
        "p99_ms": p(99.0),
        "max_ms": lat.last().map(|v| round(*v, 3)),
    }))
}
