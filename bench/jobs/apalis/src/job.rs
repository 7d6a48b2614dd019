//! The one task type and its handler: no-op jobs (drain), latency probes and
//! CPU-burning jobs, with the process-wide counters the scenarios read.
//!
//! A probe carries its *intended* send time in µs since [`base`], the
//! process's monotonic clock origin; the handler records its start minus that,
//! so a lagging producer counts as latency (no coordinated omission).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Job {
    /// A no-op; the worker stops itself once [`set_target`] of them ran.
    Noop(u64),
    /// A latency probe: (window id, intended send time in µs since [`base`]).
    Probe(u32, u64),
    /// Busy CPU for this many ms, on tokio's blocking pool (apalis's way to run
    /// CPU work: a handler that spins would stall the runtime's only thread).
    Burn(u64),
}

static BASE: OnceLock<Instant> = OnceLock::new();
static DONE: AtomicUsize = AtomicUsize::new(0);
static TARGET: AtomicUsize = AtomicUsize::new(usize::MAX);
static FIRST: OnceLock<(Instant, f64)> = OnceLock::new();
static PROBES: Mutex<Option<HashMap<u32, Vec<f64>>>> = Mutex::new(None);

/// The clock origin of probe times.
pub fn base() -> Instant {
    *BASE.get_or_init(Instant::now)
}

/// µs since [`base`].
pub fn now_us() -> u64 {
    base().elapsed().as_micros() as u64
}

/// The number of no-op jobs after which their worker stops itself.
pub fn set_target(n: usize) {
    TARGET.store(n, Ordering::SeqCst);
}

/// When the first no-op job started, and this process's CPU seconds then.
pub fn first_start() -> Option<(Instant, f64)> {
    FIRST.get().copied()
}

/// The latencies (ms) recorded for a probe window so far.
pub fn probes(window: u32) -> Vec<f64> {
    PROBES.lock().unwrap().as_ref().and_then(|m| m.get(&window).cloned()).unwrap_or_default()
}

pub async fn handle(job: Job, wrk: WorkerContext) -> Result<(), BoxDynError> {
    match job {
        Job::Noop(_) => {
            FIRST.get_or_init(|| (Instant::now(), crate::stats::self_cpu_secs()));
            if DONE.fetch_add(1, Ordering::SeqCst) + 1 >= TARGET.load(Ordering::SeqCst) {
                let _ = wrk.stop();
            }
        }
        Job::Probe(window, intended_us) => {
            let lat_ms = (now_us() as f64 - intended_us as f64) / 1000.0;
            PROBES.lock().unwrap().get_or_insert_with(HashMap::new).entry(window).or_default().push(lat_ms);
        }
        Job::Burn(ms) => {
            tokio::task::spawn_blocking(move || {
                let until = Instant::now() + Duration::from_millis(ms);
                let mut x = 0u64;
                while Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
            .await?;
        }
    }
    Ok(())
}
