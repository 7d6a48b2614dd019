//! `latency`: open-loop probes. A no-op job is sent by `POST /v1/jobs` at each
//! *intended* time (rate R for S seconds, after a W-second warm-up); afterwards
//! each job's `started_at` is read back, and enqueue-to-start is `started_at`
//! minus the intended send time. A producer or server that falls behind
//! therefore shows up as latency (no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::args::{Error, Opts};
use crate::http::{Api, ms};
use crate::stats::{percentile, round};

/// One probe: its intended send time (ms since the epoch) and its job id, or
/// why it could not be submitted.
type Sent = (f64, Result<String, String>);

pub(crate) async fn run(o: &Opts) -> Result<(Value, bool), Error> {
    let api = Api::new(&o.get::<String>("url", None)?)?;
    let rate: f64 = o.get("rate", None)?;
    let secs: f64 = o.get("secs", None)?;
    let warm: f64 = o.get("warm", Some(1.0))?;
    let wait: f64 = o.get("wait", Some(60.0))?;
    let conc: usize = o.get("conc", Some(256))?;
    let dump = o.opt("dump");
    if !(rate > 0.0 && secs > 0.0 && conc > 0) {
        return Err("--rate, --secs and --conc must be positive".into());
    }
    api.wait_healthy(Duration::from_secs(30)).await?;
    if warm > 0.0 {
        let sent = send_open_loop(&api, rate, warm, conc).await?;
        starts(&api, &sent, wait).await?;
    }
    let t0 = Instant::now();
    let sent = send_open_loop(&api, rate, secs, conc).await?;
    let took = t0.elapsed().as_secs_f64();
    let (lat, first_error) = starts(&api, &sent, wait).await?;
    if let Some(path) = dump {
        // In send order, for looking at when the slow ones happened.
        let text: String = lat
            .iter()
            .map(|(t, l)| format!("{t:.3} {l:.3}\n"))
            .collect();
        std::fs::write(&path, text).map_err(|e| format!("writing --dump {path}: {e}"))?;
    }
    let mut lat: Vec<f64> = lat.into_iter().map(|(_, l)| l).collect();
    lat.sort_by(f64::total_cmp);
    let n = sent.len();
    let missing = n - lat.len();
    let p = |q: f64| percentile(&lat, q).map(|v| round(v, 3));
    Ok((
        json!({
            "rate": rate,
            "secs": secs,
            "sent": n,
            // The window opens 50 ms after t0 (see send_open_loop).
            "achieved_rate": round(n as f64 / (took - 0.05).max(1e-9), 1),
            "started": lat.len(),
            "missing": missing,
            "p50_ms": p(50.0),
            "p90_ms": p(90.0),
            "p99_ms": p(99.0),
            "max_ms": lat.last().map(|v| round(*v, 3)),
            "first_error": first_error,
        }),
        missing == 0,
    ))
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Sends `rate * secs` probes on a fixed schedule from a thread of its own
/// (`std::thread::sleep` keeps to ~0.1 ms; tokio's timer has 1 ms ticks). At
/// most `conc` requests are in flight: beyond that a send waits, and the wait
/// counts as latency because the intended time is kept.
async fn send_open_loop(api: &Api, rate: f64, secs: f64, conc: usize) -> Result<Vec<Sent>, Error> {
    let n = (rate * secs) as usize;
    let handle = tokio::runtime::Handle::current();
    let api = api.clone();
    let sem = Arc::new(Semaphore::new(conc));
    let scheduled = tokio::task::spawn_blocking(move || {
        let body = Bytes::from_static(br#"{"kind":"noop","args":{}}"#);
        let interval = 1.0 / rate;
        let mono0 = Instant::now() + Duration::from_millis(50);
        let wall0 = now_ms() + 50.0;
        let mut tasks: Vec<(f64, JoinHandle<Result<String, String>>)> = Vec::with_capacity(n);
        for i in 0..n {
            let due = mono0 + Duration::from_secs_f64(i as f64 * interval);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            // The semaphore is never closed, so this only waits.
            let Ok(permit) = handle.block_on(sem.clone().acquire_owned()) else {
                break;
            };
            let (api, body) = (api.clone(), body.clone());
            let task = handle.spawn(async move {
                let _permit = permit;
                let ans = api
                    .post("/v1/jobs", body)
                    .await
                    .map_err(|e| e.to_string())?;
                ans["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "POST /v1/jobs: the answer has no id".to_owned())
            });
            tasks.push((wall0 + i as f64 * interval * 1000.0, task));
        }
        tasks
    })
    .await?;
    let mut sent = Vec::with_capacity(scheduled.len());
    for (intended, task) in scheduled {
        sent.push((
            intended,
            task.await.map_err(|e| e.to_string()).and_then(|r| r),
        ));
    }
    Ok(sent)
}

/// Reads every probe's `started_at` (32 requests at once), re-reading those
/// not started yet until `wait` seconds have passed. Returns (intended send
/// time, latency) in ms per started probe and the first submission or read
/// error, if any.
async fn starts(
    api: &Api,
    sent: &[Sent],
    wait: f64,
) -> Result<(Vec<(f64, f64)>, Option<String>), Error> {
    let deadline = Instant::now() + Duration::from_secs_f64(wait);
    let mut first_error = sent.iter().find_map(|(_, r)| r.as_ref().err().cloned());
    let mut pending: Vec<(f64, String)> = sent
        .iter()
        .filter_map(|(t, r)| r.as_ref().ok().map(|id| (*t, id.clone())))
        .collect();
    let mut lat = Vec::with_capacity(pending.len());
    loop {
        let mut still = Vec::new();
        for chunk in pending.chunks(32) {
            let reads = chunk.iter().map(|(t, id)| {
                let api = api.clone();
                let (t, id) = (*t, id.clone());
                async move {
                    let job = api.get(&format!("/v1/jobs/{id}")).await;
                    (t, id, job)
                }
            });
            for (t, id, job) in futures_util::future::join_all(reads).await {
                match job {
                    // started_at is stored in whole ms, truncated: +0.5 ms is
                    // the unbiased estimate of the true instant.
                    Ok(j) => match ms(&j, "started_at") {
                        Some(s) => lat.push((t, s as f64 + 0.5 - t)),
                        None => still.push((t, id)),
                    },
                    Err(e) => {
                        first_error.get_or_insert(e.to_string());
                        still.push((t, id));
                    }
                }
            }
        }
        if still.is_empty() || Instant::now() > deadline {
            lat.sort_by(|a, b| a.0.total_cmp(&b.0));
            return Ok((lat, first_error));
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
