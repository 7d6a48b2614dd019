//! `sluice watch BATCH`: a live progress bar (counts per state, rate, ETA)
//! fed by the server's event stream, exiting 0 only if every job succeeded.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::remote::{Remote, RemoteArgs, context};
use super::sse;

/// Arguments of `sluice watch`.
#[derive(Debug, Args)]
#[command(after_help = "\
Shows a progress bar with the jobs finished, counts per state, rate and ETA,
and prints each job that fails with its error. Without a terminal (in CI or a
pipe) it prints only those lines and a summary. If the connection drops, it
resumes where it left off.

Exit status: 0 every job succeeded, 1 some job failed, timed out or was
cancelled, 2 no such batch or the server cannot be reached.")]
pub(crate) struct WatchArgs {
    /// The batch id (printed by `sluice submit`).
    batch: String,
    #[command(flatten)]
    remote: RemoteArgs,
}

pub(crate) async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let remote = Remote::new(&args.remote)?;
    watch_batch(&remote, &args.batch).await
}

/// What the bar shows, read from a batch JSON (a `GET` answer or a `batch`
/// event).
#[derive(Debug, Default, PartialEq)]
struct Progress {
    total: u64,
    finished: u64,
    counts: Vec<(String, u64)>,
    state: String,
    done: bool,
    /// From submission to the last job's end, by the server's clock.
    took_ms: Option<i64>,
}

const STATES: [&str; 8] = [
    "scheduled",
    "queued",
    "running",
    "retrying",
    "succeeded",
    "failed",
    "cancelled",
    "timed_out",
];
const FINAL: [&str; 4] = ["succeeded", "failed", "cancelled", "timed_out"];

impl Progress {
    fn from_batch(b: &Value) -> Self {
        // In the order of a job's life, not the JSON's (alphabetical).
        let counts: Vec<(String, u64)> = STATES
            .iter()
            .filter_map(|k| Some(((*k).to_owned(), b["counts"][*k].as_u64()?)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let finished = counts
            .iter()
            .filter(|(k, _)| FINAL.contains(&k.as_str()))
            .map(|(_, n)| n)
            .sum();
        let state = b["state"].as_str().unwrap_or("running").to_owned();
        let took_ms = b["finished_at"]
            .as_i64()
            .zip(b["created_at"].as_i64())
            .map(|(end, start)| end - start);
        Self {
            took_ms,
            total: b["total"].as_u64().unwrap_or(0),
            finished,
            done: state != "running" || !b["finished_at"].is_null(),
            counts,
            state,
        }
    }

    fn message(&self) -> String {
        self.counts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

/// Follows one batch to its end. Shared with `sluice submit --watch`.
pub(crate) async fn watch_batch(remote: &Remote, batch: &str) -> anyhow::Result<ExitCode> {
    let first: Value = match remote.get(&format!("/v1/batches/{batch}")).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {}", context(e, &format!("batch {batch}")));
            return Ok(ExitCode::from(super::submit::EXIT_IO));
        }
    };
    let mut progress = Progress::from_batch(&first);
    let bar =
        ProgressBar::with_draw_target(Some(progress.total), ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let show = |bar: &ProgressBar, p: &Progress| {
        bar.set_length(p.total);
        bar.set_position(p.finished);
        bar.set_message(p.message());
    };
    show(&bar, &progress);
    if !progress.done {
        let path = format!("/v1/events?batch={batch}");
        sse::follow(remote, &path, |ev| {
            let Ok(data) = serde_json::from_str::<Value>(&ev.data) else {
                return true;
            };
            match ev.name.as_str() {
                "batch" => {
                    progress = Progress::from_batch(&data);
                    show(&bar, &progress);
                    !progress.done
                }
                "job" => {
                    if let Some(line) = failure_line(&data) {
                        bar.println(line);
                    }
                    true
                }
                _ => true,
            }
        })
        .await?;
    }
    bar.finish_and_clear();
    let took = progress.took_ms.map_or_else(
        || format!("{:.1?}", bar.elapsed()),
        |ms| format!("{:.1}s", ms as f64 / 1000.0),
    );
    eprintln!(
        "batch {batch}: {} — {}/{} finished, {took} after submission ({})",
        progress.state,
        progress.finished,
        progress.total,
        progress.message()
    );
    Ok(if progress.state == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A line for a job event that ended badly, with its last error.
fn failure_line(job: &Value) -> Option<String> {
    let state = job["state"].as_str()?;
    if !matches!(state, "failed" | "timed_out" | "retrying") {
        return None;
    }
    let error = job
        .get("error")
        .or_else(|| job.get("last_error"))
        .or_else(|| job["errors"].as_array().and_then(|e| e.last()))
        .map(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .map_or_else(|| e.to_string(), str::to_owned)
        })
        .unwrap_or_default();
    Some(format!(
        "{} job {} ({}, attempt {}): {error}",
        if state == "retrying" { "↻" } else { "✗" },
        job["id"].as_str().unwrap_or("?"),
        job["kind"].as_str().unwrap_or("?"),
        job["attempt"].as_u64().unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn progress_counts_final_states_as_finished() {
        let p = Progress::from_batch(&json!({
            "total": 10, "state": "running", "finished_at": null,
            "counts": {"queued": 3, "running": 2, "succeeded": 4, "failed": 1, "cancelled": 0}
        }));
        assert_eq!((p.total, p.finished, p.done), (10, 5, false));
        assert_eq!(p.message(), "queued 3 · running 2 · succeeded 4 · failed 1");
        let done = Progress::from_batch(&json!({"total": 1, "state": "failed", "counts": {}}));
        assert!(done.done);
    }

    #[test]
    fn failures_print_their_last_error() {
        let line = failure_line(&json!({
            "id": "j1", "kind": "http", "state": "failed", "attempt": 3,
            "errors": [{"message": "first"}, {"message": "connection refused"}]
        }))
        .unwrap();
        assert_eq!(line, "✗ job j1 (http, attempt 3): connection refused");
        assert!(failure_line(&json!({"state": "succeeded"})).is_none());
    }
}
