//! `sluice submit`: turns a file into one batch and posts it.
//!
//! Accepted inputs, told apart by their first non-blank character:
//! - a JSON object: a whole batch (`{"name": …, "jobs": [...], "callbacks": …}`);
//! - a JSON array: the jobs of a batch;
//! - JSON Lines: one job object per line;
//! - with `--kind K --args-from FILE`: one job of kind K per non-blank line,
//!   whose args are the line itself if it is a JSON object, else
//!   `{"<--arg-field>": "<line>"}` (`url` by default, for `http` jobs).
//!
//! Errors name the file and line. `-` reads standard input.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::remote::{Remote, RemoteArgs};

/// Arguments of `sluice submit`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sluice submit batch.json                     a batch object or an array of jobs
  sluice submit jobs.jsonl --name nightly      one job per line
  sluice submit --kind http --args-from urls.txt --watch
  echo '{\"kind\":\"sleep\",\"args\":{\"ms\":100}}' | sluice submit -

Prints the batch id on standard output (and nothing else, for scripts).
Exit status: 0 accepted, 1 refused (every problem is printed with its job
index and field), 2 the file cannot be read or the server cannot be reached.")]
pub(crate) struct SubmitArgs {
    /// JSON batch, JSON array of jobs, or JSON Lines; `-` for stdin.
    #[arg(required_unless_present = "args_from")]
    file: Option<PathBuf>,
    /// With --args-from: the kind of every job.
    #[arg(long, requires = "args_from")]
    kind: Option<String>,
    /// One job per non-blank line of this file (see --kind, --arg-field).
    #[arg(long, requires = "kind", conflicts_with = "file")]
    args_from: Option<PathBuf>,
    /// With --args-from: the args field a plain line fills.
    #[arg(long, default_value = "url")]
    arg_field: String,
    /// Queue for every job that names none.
    #[arg(long)]
    queue: Option<String>,
    /// Batch name (overrides one in the file).
    #[arg(long)]
    name: Option<String>,
    /// Idempotency key: submitting the same key again returns the first batch.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Watch the batch until it finishes (as `sluice watch`).
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Exit status when the input cannot be read or the server not reached.
pub(crate) const EXIT_IO: u8 = 2;

pub(crate) async fn run(args: SubmitArgs) -> anyhow::Result<std::process::ExitCode> {
    let batch = match build_batch(&args) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(std::process::ExitCode::from(EXIT_IO));
        }
    };
    let remote = Remote::new(&args.remote)?;
    let mut req = remote.request(Method::POST, "/v1/batches").json(&batch);
    if let Some(k) = &args.idempotency_key {
        req = req.header("idempotency-key", k);
    }
    let answer: Value = match remote.call(req).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: submitting {} jobs: {e}", job_count(&batch));
            return Ok(std::process::ExitCode::from(if e.status.is_some() {
                1
            } else {
                EXIT_IO
            }));
        }
    };
    let id = answer
        .get("batch_id")
        .or_else(|| answer.get("id"))
        .and_then(Value::as_str)
        .context("the server's answer has no batch_id")?
        .to_owned();
    println!("{id}");
    // Name the server only when it is not the one `sluice watch` assumes.
    let server = if args.remote.server == super::remote::DEFAULT_SERVER {
        String::new()
    } else {
        format!(" --server {}", args.remote.server)
    };
    eprintln!(
        "submitted {} jobs; watch with: sluice watch{server} {id}",
        job_count(&batch)
    );
    if args.watch {
        return super::watch::watch_batch(&remote, &id).await;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn job_count(batch: &Value) -> usize {
    batch["jobs"].as_array().map_or(0, Vec::len)
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The batch object to post.
fn build_batch(args: &SubmitArgs) -> anyhow::Result<Value> {
    let mut batch = if let (Some(kind), Some(from)) = (&args.kind, &args.args_from) {
        let text = read_input(from)?;
        json!({ "jobs": jobs_from_lines(&text, kind, &args.arg_field, &from.display().to_string())? })
    } else {
        let path = args.file.as_deref().unwrap_or(Path::new("-"));
        let text = read_input(path)?;
        parse_batch(&text, &path.display().to_string())?
    };
    if let Some(name) = &args.name {
        batch["name"] = json!(name);
    }
    if let Some(queue) = &args.queue
        && let Some(jobs) = batch["jobs"].as_array_mut()
    {
        for job in jobs.iter_mut().filter_map(Value::as_object_mut) {
            job.entry("queue").or_insert_with(|| json!(queue));
        }
    }
    if job_count(&batch) == 0 {
        bail!("no jobs to submit");
    }
    Ok(batch)
}

/// A batch object, an array of jobs, or JSON Lines.
fn parse_batch(text: &str, file: &str) -> anyhow::Result<Value> {
    match text.trim_start().chars().next() {
        None => bail!("{file}: empty"),
        Some('[') => {
            let jobs: Value = serde_json::from_str(text)
                .map_err(|e| anyhow::anyhow!("{file}:{}: {e}", e.line()))?;
            Ok(json!({ "jobs": jobs }))
        }
        Some('{') => {
            // One object spanning the file is a batch (or a lone job);
            // several objects, one per line, are JSON Lines.
            if let Ok(v) = serde_json::from_str::<Value>(text) {
                return Ok(if v.get("jobs").is_some() {
                    v
                } else {
                    json!({ "jobs": [v] })
                });
            }
            let mut jobs = Vec::new();
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(line)
                    .map_err(|e| anyhow::anyhow!("{file}:{}: {e}", n + 1))?;
                if !v.is_object() {
                    bail!("{file}:{}: expected a job object", n + 1);
                }
                jobs.push(v);
            }
            Ok(json!({ "jobs": jobs }))
        }
        Some(c) => bail!("{file}: expected a JSON object, array or JSON Lines; found `{c}`"),
    }
}

/// One job of `kind` per non-blank line.
fn jobs_from_lines(text: &str, kind: &str, field: &str, file: &str) -> anyhow::Result<Vec<Value>> {
    let mut jobs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let args = if line.starts_with('{') {
            serde_json::from_str::<Value>(line)
                .map_err(|e| anyhow::anyhow!("{file}:{}: {e}", n + 1))?
        } else {
            let mut m = Map::new();
            m.insert(field.to_owned(), json!(line));
            Value::Object(m)
        };
        jobs.push(json!({ "kind": kind, "args": args }));
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_shapes_become_a_batch() {
        let b = parse_batch(r#"{"name":"n","jobs":[{"kind":"noop"}]}"#, "f").unwrap();
        assert_eq!(b["name"], "n");
        let a = parse_batch(r#"[{"kind":"noop"},{"kind":"sleep"}]"#, "f").unwrap();
        assert_eq!(a["jobs"].as_array().unwrap().len(), 2);
        let l = parse_batch("{\"kind\":\"noop\"}\n\n{\"kind\":\"sleep\"}\n", "f").unwrap();
        assert_eq!(l["jobs"][1]["kind"], "sleep");
        let one = parse_batch(r#"{"kind":"noop"}"#, "f").unwrap();
        assert_eq!(one["jobs"][0]["kind"], "noop");
    }

    #[test]
    fn a_bad_line_is_named() {
        let e = parse_batch("{\"kind\":\"noop\"}\n{\"kind\":\n", "jobs.jsonl").unwrap_err();
        assert!(e.to_string().starts_with("jobs.jsonl:2:"), "{e}");
        let e = parse_batch("kind: noop", "x.yaml").unwrap_err();
        assert!(e.to_string().contains("found `k`"), "{e}");
    }

    #[test]
    fn lines_become_jobs_of_one_kind() {
        let jobs = jobs_from_lines(
            "http://127.0.0.1:1/a\n# comment\n\n{\"url\":\"http://x/\",\"method\":\"HEAD\"}\n",
            "http",
            "url",
            "urls.txt",
        )
        .unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0]["args"]["url"], "http://127.0.0.1:1/a");
        assert_eq!(jobs[1]["args"]["method"], "HEAD");
        assert_eq!(jobs[1]["kind"], "http");
    }
}
