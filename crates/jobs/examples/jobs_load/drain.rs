//! `drain-wait`: watch batches queued earlier until every one has finished,
//! once a server with workers is up. The rate comes from the server's own
//! clock: the earliest batch `started_at` (first job claimed) to the latest
//! `finished_at` (last job final), so the watcher's polling does not count.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::args::{Error, Opts};
use crate::http::{Api, ms};
use crate::stats::{process_cpu_secs, processes_cpu_secs, round};

pub(crate) async fn run(o: &Opts) -> Result<(Value, bool), Error> {
    let api = Api::new(&o.get::<String>("url", None)?)?;
    let path: String = o.get("ids", None)?;
    let n: u64 = o.get("n", None)?;
    let pid: Option<u32> = o
        .opt("pid")
        .map(|p| p.parse())
        .transpose()
        .map_err(|e| format!("--pid: {e}"))?;
    let timeout: f64 = o.get("timeout", Some(600.0))?;
    // A database server in processes of its own (postgres): its CPU is counted
    // apart, as Redis's is for Celery.
    let broker = o.opt("broker-comm");
    let ids: Vec<String> = std::fs::read_to_string(&path)
        .map_err(|e| format!("reading --ids {path}: {e}"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .collect();
    if ids.is_empty() {
        return Err(format!("--ids {path}: no batch ids").into());
    }
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);
    api.wait_healthy(Duration::from_secs(30)).await?;
    // The server's CPU from the moment its API answers (its boot is not counted).
    let cpu0 = pid.and_then(process_cpu_secs);
    let broker0 = broker.as_deref().map(processes_cpu_secs);

    // Jobs are claimed in submission order, so the last batch finishes last:
    // watch it alone, then confirm every batch, watching any still open.
    let mut open: Vec<usize> = vec![ids.len() - 1];
    let mut all_checked = false;
    let mut batches: Vec<Option<Value>> = vec![None; ids.len()];
    loop {
        while let Some(&i) = open.last() {
            let b = api.get(&format!("/v1/batches/{}", ids[i])).await?;
            if ms(&b, "finished_at").is_some() {
                batches[i] = Some(b);
                open.pop();
                continue;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "drain timed out after {timeout} s: batch {} has counts {}",
                    ids[i], b["counts"]
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if all_checked {
            break;
        }
        for (i, id) in ids.iter().enumerate() {
            if batches[i].is_none() {
                let b = api.get(&format!("/v1/batches/{id}")).await?;
                if ms(&b, "finished_at").is_some() {
                    batches[i] = Some(b);
                } else {
                    open.push(i);
                }
            }
        }
        all_checked = true;
    }
    let cpu1 = pid.and_then(process_cpu_secs);
    let broker_cpu = broker
        .as_deref()
        .map(processes_cpu_secs)
        .zip(broker0)
        .map(|(b, a)| b - a);
    let batches: Vec<Value> = batches.into_iter().flatten().collect();
    let first = batches.iter().filter_map(|b| ms(b, "started_at")).min();
    let last = batches.iter().filter_map(|b| ms(b, "finished_at")).max();
    let count = |state: &str| -> u64 {
        batches
            .iter()
            .map(|b| b["counts"][state].as_u64().unwrap_or(0))
            .sum()
    };
    let (Some(first), Some(last)) = (first, last) else {
        return Err("the finished batches carry no started_at/finished_at".into());
    };
    // Timestamps are whole ms: a window under 1 ms would divide by zero.
    let secs = ((last - first) as f64 / 1000.0).max(0.001);
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let stored = count("succeeded");
    let failed = count("failed") + count("timed_out") + count("cancelled");
    Ok((
        json!({
            "n": n,
            "secs": round(secs, 3),
            "jobs_per_s": round(n as f64 / secs, 1),
            "worker_cpu_s": cpu.map(|c| round(c, 2)),
            "worker_cpu_us_per_job": cpu.map(|c| round(c / n as f64 * 1e6, 1)),
            "broker_cpu_s": broker_cpu.map(|c| round(c, 2)),
            "results_stored": stored,
            "failed": failed,
            "batches": batches.len(),
        }),
        stored == n,
    ))
}
