//! `sluice status`, `sluice cancel`, `sluice jobs`: look at and act on jobs
//! and batches of a running server. An id may name a job or a batch; the
//! job is tried first (ids never collide: both are UUID v7).

use std::process::ExitCode;

use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::remote::{Remote, RemoteArgs, RemoteError};
use super::submit::EXIT_IO;

/// Arguments of `sluice status`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sluice status 01938f6e-…           a job's state, attempts, errors and result, or a batch's counts
  sluice status 01938f6e-… --json    the full JSON

Exit status: 0 found, 2 no such job or batch, or the server cannot be reached.")]
pub(crate) struct StatusArgs {
    /// A job id or a batch id.
    id: String,
    /// Print the server's JSON instead of a summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Arguments of `sluice cancel`.
#[derive(Debug, Args)]
#[command(after_help = "\
A queued or scheduled job is cancelled at once; a running one is stopped by
its worker (an exec child is killed). Cancelling a batch cancels every job of
it that has not finished.

Exit status: 0 cancelled, 1 already finished, 2 no such job or batch.")]
pub(crate) struct CancelArgs {
    /// A job id or a batch id.
    id: String,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Arguments of `sluice jobs`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sluice jobs --state failed
  sluice jobs --batch 01938f6e-… --state running
  sluice jobs --kind http --limit 500 --json")]
pub(crate) struct JobsArgs {
    /// Only jobs in this state (scheduled, queued, running, retrying,
    /// succeeded, failed, cancelled, timed_out).
    #[arg(long)]
    state: Option<String>,
    /// Only jobs of this kind.
    #[arg(long)]
    kind: Option<String>,
    /// Only jobs of this batch.
    #[arg(long)]
    batch: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

fn not_found(e: &RemoteError) -> bool {
    e.status == Some(StatusCode::NOT_FOUND)
}

fn fail(e: RemoteError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(if e.status.is_none() { EXIT_IO } else { 1 })
}

pub(crate) async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let remote = Remote::new(&args.remote)?;
    let (what, v) = match remote.get::<Value>(&format!("/v1/jobs/{}", args.id)).await {
        Ok(v) => ("job", v),
        Err(e) if not_found(&e) => {
            match remote
                .get::<Value>(&format!("/v1/batches/{}", args.id))
                .await
            {
                Ok(v) => ("batch", v),
                Err(e) if not_found(&e) => {
                    eprintln!("error: no job or batch {}", args.id);
                    return Ok(ExitCode::from(EXIT_IO));
                }
                Err(e) => return Ok(fail(e)),
            }
        }
        Err(e) => return Ok(fail(e)),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if what == "job" {
        print!("{}", job_summary(&v));
    } else {
        print!("{}", batch_summary(&v));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn cancel(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let remote = Remote::new(&args.remote)?;
    for what in ["jobs", "batches"] {
        let req = remote.request(Method::DELETE, &format!("/v1/{what}/{}", args.id));
        match remote.call::<Value>(req).await {
            Ok(v) => {
                let n = v["cancelled"].as_u64().unwrap_or(1);
                println!("cancelled {n} job{}", if n == 1 { "" } else { "s" });
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) if not_found(&e) => continue,
            Err(e) if e.status == Some(StatusCode::CONFLICT) => {
                println!("{}: already finished", args.id);
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => return Ok(fail(e)),
        }
    }
    eprintln!("error: no job or batch {}", args.id);
    Ok(ExitCode::from(EXIT_IO))
}

pub(crate) async fn jobs(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let remote = Remote::new(&args.remote)?;
    let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    query.extend(args.state.clone().map(|s| ("state", s)));
    query.extend(args.kind.clone().map(|k| ("kind", k)));
    let path = match &args.batch {
        Some(b) => format!("/v1/batches/{b}/jobs"),
        None => "/v1/jobs".to_owned(),
    };
    let req = remote.request(Method::GET, &path).query(&query);
    let v: Value = match remote.call(req).await {
        Ok(v) => v,
        Err(e) => return Ok(fail(e)),
    };
    let list = v
        .get("items")
        .or(Some(&v))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if args.json {
        for j in &list {
            println!("{j}");
        }
    } else {
        println!(
            "{:<36}  {:<10}  {:<12}  {:>7}  ERROR",
            "ID", "STATE", "KIND", "ATTEMPT"
        );
        for j in &list {
            println!(
                "{:<36}  {:<10}  {:<12}  {:>7}  {}",
                j["id"].as_str().unwrap_or("?"),
                j["state"].as_str().unwrap_or("?"),
                j["kind"].as_str().unwrap_or("?"),
                format!(
                    "{}/{}",
                    j["attempt"].as_u64().unwrap_or(0),
                    j["max_attempts"].as_u64().unwrap_or(0)
                ),
                last_error(j).unwrap_or_default()
            );
        }
        eprintln!("{} jobs", list.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn last_error(job: &Value) -> Option<String> {
    let e = job["errors"].as_array()?.last()?;
    Some(e["message"].as_str().unwrap_or_default().to_owned())
}

fn job_summary(j: &Value) -> String {
    let mut out = format!(
        "job {}\n  kind {}  queue {}  state {}  attempt {}/{}  progress {:.0}%\n",
        j["id"].as_str().unwrap_or("?"),
        j["kind"].as_str().unwrap_or("?"),
        j["queue"].as_str().unwrap_or("?"),
        j["state"].as_str().unwrap_or("?"),
        j["attempt"].as_u64().unwrap_or(0),
        j["max_attempts"].as_u64().unwrap_or(0),
        j["progress"].as_f64().unwrap_or(0.0) * 100.0,
    );
    if let Some(b) = j["batch_id"].as_str() {
        out.push_str(&format!("  batch {b}\n"));
    }
    out.push_str(&format!("  args {}\n", j["args"]));
    for e in j["errors"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  attempt {} {}: {}\n",
            e["attempt"].as_u64().unwrap_or(0),
            e["kind"].as_str().unwrap_or("error"),
            e["message"].as_str().unwrap_or("")
        ));
    }
    if !j["result"].is_null() {
        out.push_str(&format!("  result {}\n", j["result"]));
    }
    out
}

fn batch_summary(b: &Value) -> String {
    let counts: Vec<String> = b["counts"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    format!(
        "batch {}{}\n  state {}  {} jobs  progress {:.0}%\n  {}\n",
        b["id"].as_str().unwrap_or("?"),
        b["name"]
            .as_str()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        b["state"].as_str().unwrap_or("?"),
        b["total"].as_u64().unwrap_or(0),
        b["progress"].as_f64().unwrap_or(0.0) * 100.0,
        counts.join(" · ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries_show_state_errors_and_counts() {
        let j = job_summary(&json!({
            "id": "j", "kind": "sleep", "queue": "default", "state": "failed",
            "attempt": 2, "max_attempts": 2, "progress": 0.5, "args": {"ms": 5},
            "errors": [{"attempt": 1, "kind": "timeout", "message": "ran past 1s"}],
            "result": null
        }));
        assert!(j.contains("state failed  attempt 2/2  progress 50%"), "{j}");
        assert!(j.contains("attempt 1 timeout: ran past 1s"), "{j}");
        let b = batch_summary(&json!({
            "id": "b", "name": "n", "state": "running", "total": 3, "progress": 0.33,
            "counts": {"queued": 2, "succeeded": 1, "failed": 0}
        }));
        assert!(b.contains("batch b (n)"), "{b}");
        assert!(b.contains("queued 2 · succeeded 1"), "{b}");
        assert!(!b.contains("failed"), "{b}");
    }
}
