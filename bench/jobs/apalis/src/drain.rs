//! The drain and enqueue scenarios: N no-op jobs pushed by one producer with no
//! worker running (enqueue: in chunks, or one at a time), and, for drain, one
//! worker then started and timed from its first job's start to its stop after
//! the N-th, with the acks flushed and the `Done` rows counted.

use std::time::Instant;

use serde_json::{Value, json};

use crate::job::{self, Job};
use crate::stats::{processes_cpu_secs, round, self_cpu_secs};
use crate::store::{Error, Store};

const QUEUE: &str = "bench";

fn enqueue_row(n: usize, batch: usize, secs: f64, cpu: f64, mode: &str) -> Value {
    json!({
        "batch": batch,
        "n": n,
        "secs": round(secs, 3),
        "jobs_per_s": round(n as f64 / secs, 1),
        "producer_cpu_us_per_job": round(cpu / n as f64 * 1e6, 1),
        "mode": mode,
    })
}

/// Pushes N no-op jobs in chunks of 1,000, then drains them with one worker of
/// concurrency `conc`. Returns the enqueue row and the drain row.
pub async fn drain(store: &Store, n: usize, conc: usize) -> Result<(Value, Value), Error> {
    let enq = enqueue(store, n, 1_000).await?;
    job::set_target(n);
    let broker0 = store.broker_comm().map(processes_cpu_secs);
    store.spawn_worker("bench-drain", QUEUE, conc, conc.clamp(10, 1000)).await??;
    let (end, cpu1) = (Instant::now(), self_cpu_secs());
    let broker = store.broker_comm().map(processes_cpu_secs).zip(broker0).map(|(b, a)| b - a);
    let (first, cpu0) = job::first_start().ok_or("no job ran")?;
    let secs = (end - first).as_secs_f64().max(0.001);
    let stored = store.count(QUEUE, "Done").await?;
    let drained = json!({
        "n": n,
        "secs": round(secs, 3),
        "jobs_per_s": round(n as f64 / secs, 1),
        "worker_cpu_s": round(cpu1 - cpu0, 2),
        "worker_cpu_us_per_job": round((cpu1 - cpu0) / n as f64 * 1e6, 1),
        "broker_cpu_s": broker.map(|c| round(c, 2)),
        "results_stored": stored,
        "concurrency": conc,
    });
    Ok((enq, drained))
}

/// Pushes N no-op jobs from one producer, `batch` per transaction: `push_all`
/// in chunks of `batch`, or `push` one at a time when `batch` is 1.
pub async fn enqueue(store: &Store, n: usize, batch: usize) -> Result<Value, Error> {
    let (t, cpu) = (Instant::now(), self_cpu_secs());
    let mut sent = 0;
    while sent < n {
        let chunk = (n - sent).min(batch.max(1));
        if chunk == 1 {
            store.push(QUEUE, Job::Noop(sent as u64)).await?;
        } else {
            store.push_all(QUEUE, (sent..sent + chunk).map(|i| Job::Noop(i as u64)).collect()).await?;
        }
        sent += chunk;
    }
    let mode = if batch <= 1 {
        "push, one at a time (in process)".to_string()
    } else {
        format!("push_all, chunks of {batch} (in process)")
    };
    Ok(enqueue_row(n, batch.max(1), t.elapsed().as_secs_f64(), self_cpu_secs() - cpu, &mode))
}
