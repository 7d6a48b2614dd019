//! `enqueue`: N no-op jobs, in batches through `POST /v1/batches` or one per
//! `POST /v1/jobs`, from C connections at once: client-side jobs/s.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::args::{Error, Opts};
use crate::http::{Api, batch_body};
use crate::stats::{round, self_cpu_secs};

pub(crate) async fn run(o: &Opts) -> Result<(Value, bool), Error> {
    let api = Api::new(&o.get::<String>("url", None)?)?;
    let n: usize = o.get("n", None)?;
    let batch: usize = o.get("batch", Some(1000))?;
    let conc: usize = o.get("conc", Some(1))?;
    let ids_file = o.opt("ids");
    let wait_done: bool = o.get("wait-done", Some(false))?;
    if n == 0 || batch == 0 || conc == 0 {
        return Err("--n, --batch and --conc must be at least 1".into());
    }
    // Connections open and the server up before the clock starts.
    api.wait_healthy(Duration::from_secs(30)).await?;

    // Request i covers jobs [i*batch, min(n, (i+1)*batch)); C tasks take the next
    // request number in turn, so at most C requests are in flight.
    let requests = n.div_ceil(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let full = batch_body(batch, "noop", "{}", None);
    let single = Bytes::from_static(br#"{"kind":"noop","args":{}}"#);
    let cpu0 = self_cpu_secs();
    let t0 = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..conc.min(requests) {
        let (api, next, full, single) = (api.clone(), next.clone(), full.clone(), single.clone());
        tasks.spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return Ok::<_, Error>(ids);
                }
                if batch == 1 {
                    api.post("/v1/jobs", single.clone()).await?;
                    continue;
                }
                let size = batch.min(n - i * batch);
                let body = if size == batch {
                    full.clone()
                } else {
                    batch_body(size, "noop", "{}", None)
                };
                let ans = api.post("/v1/batches", body).await?;
                let id = ans["batch_id"]
                    .as_str()
                    .ok_or("POST /v1/batches: the answer has no batch_id")?;
                ids.push((i, id.to_owned()));
            }
        });
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        ids.extend(r??);
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = self_cpu_secs() - cpu0;
    // With workers running, the end-to-end rate through the API: from the first
    // request to no unfinished job left (polled every 50 ms).
    let done_secs = if wait_done {
        wait_no_unfinished(&api, Duration::from_secs(600)).await?;
        Some(t0.elapsed().as_secs_f64())
    } else {
        None
    };
    if let Some(path) = ids_file {
        // In submission order: drain-wait watches the last one first.
        ids.sort();
        let text: String = ids.iter().map(|(_, id)| format!("{id}\n")).collect();
        std::fs::write(&path, text).map_err(|e| format!("writing --ids {path}: {e}"))?;
    }
    let mode = if batch == 1 {
        format!("one job per POST /v1/jobs, {conc} connection(s)")
    } else {
        format!("POST /v1/batches of {batch}, {conc} connection(s)")
    };
    Ok((
        json!({
            "n": n,
            "secs": round(secs, 4),
            "jobs_per_s": round(n as f64 / secs, 1),
            "producer_cpu_us_per_job": round(cpu / n as f64 * 1e6, 1),
            "mode": mode,
            "batch": batch,
            "conc": conc,
            "done_secs": done_secs.map(|s| round(s, 3)),
            "done_jobs_per_s": done_secs.map(|s| round(n as f64 / s, 1)),
        }),
        true,
    ))
}

/// Polls `GET /v1/queues` until no queue holds an unfinished job.
async fn wait_no_unfinished(api: &Api, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let q = api.get("/v1/queues").await?;
        let left: u64 = q["queues"]
            .as_array()
            .map(|qs| {
                qs.iter()
                    .map(|q| {
                        ["scheduled", "queued", "running", "retrying"]
                            .iter()
                            .map(|k| q[*k].as_u64().unwrap_or(0))
                            .sum::<u64>()
                    })
                    .sum()
            })
            .unwrap_or(0);
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{left} jobs still unfinished after {timeout:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
