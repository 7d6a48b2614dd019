//! Checks a submitted batch and resolves it into what the store inserts.
//!
//! Every problem is reported, not just the first, each with the job index
//! and field it is about, so a client can fix a 10,000-job batch in one go.
//! Nothing is stored unless the whole batch passes.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::kinds::{Registry, WEBHOOK_KIND};
use crate::model::{
    Backoff, BatchId, BatchSpec, Callback, CallbackOn, CallbackTarget, DEFAULT_QUEUE,
    DependencyPolicy, JobId, JobSpec, Timestamp,
};

/// Bounds on what one submission may contain.
#[derive(Clone, Debug)]
pub struct SubmitLimits {
    /// Jobs per batch.
    pub max_jobs: usize,
    /// Serialized args per job.
    pub max_args_bytes: usize,
    /// Length of queue names and unique keys.
    pub max_key_len: usize,
    /// Attempts a job may ask for.
    pub max_attempts: u32,
}

impl Default for SubmitLimits {
    fn default() -> Self {
        Self {
            max_jobs: 10_000,
            max_args_bytes: 256 * 1024,
            max_key_len: 200,
            max_attempts: 100,
        }
    }
}

/// One thing wrong with a submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The job's index in the batch; `None` for batch-level fields.
    pub index: Option<usize>,
    /// The field, relative to the job (`kind`, `args.ms`, `depends_on[1]`)
    /// or to the batch (`jobs`, `callbacks[0].webhook`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "jobs[{i}].{}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// A job ready to insert: every default resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Id it will have (unless a unique key resolves to an existing job).
    pub id: JobId,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// Args.
    pub args: Value,
    /// Priority.
    pub priority: i32,
    /// Earliest run.
    pub run_at: Timestamp,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Per-attempt timeout.
    pub timeout_ms: u64,
    /// Backoff.
    pub backoff: Backoff,
    /// Uniqueness key.
    pub unique_key: Option<String>,
    /// Indexes of dependencies in the same batch.
    pub depends_on: Vec<usize>,
}

/// A callback resolved into the job it enqueues.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallbackPlan {
    /// When it fires.
    pub on: CallbackOn,
    /// For webhooks, the URL: the payload is added when it fires.
    pub webhook: Option<String>,
    /// The job to enqueue (for webhooks, a `sluice.webhook` job).
    pub job: NewJob,
}

/// A batch ready to insert.
#[derive(Clone, Debug, PartialEq)]
pub struct NewBatch {
    /// The batch row's id; `None` for a lone job (no batch row).
    pub id: Option<BatchId>,
    /// Label.
    pub name: Option<String>,
    /// Callbacks as submitted.
    pub callbacks: Vec<Callback>,
    /// Callbacks resolved.
    pub callback_plans: Vec<CallbackPlan>,
    /// Dependency failure policy.
    pub on_dependency_failure: DependencyPolicy,
    /// Jobs.
    pub jobs: Vec<NewJob>,
    /// Submission time.
    pub created_at: Timestamp,
    /// The client's idempotency key: a second submission with it returns
    /// the first batch.
    pub idempotency_key: Option<String>,
}

fn resolve_job(
    spec: &JobSpec,
    registry: &Registry,
    limits: &SubmitLimits,
    now: Timestamp,
    mut report: impl FnMut(&str, String),
) -> Option<NewJob> {
    let mut ok = true;
    let mut bad = |field: &str, message: String| {
        ok = false;
        report(field, message);
    };
    let options = registry.options(&spec.kind);
    if options.is_none() {
        bad("kind", format!("unknown kind `{}`", spec.kind));
    } else if let Err(e) = registry.check(&spec.kind, &spec.args) {
        bad(&e.field, e.message);
    }
    let args_len = serde_json::to_vec(&spec.args)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if args_len > limits.max_args_bytes {
        bad(
            "args",
            format!("{args_len} bytes, at most {}", limits.max_args_bytes),
        );
    }
    let queue = spec
        .queue
        .clone()
        .unwrap_or_else(|| DEFAULT_QUEUE.to_owned());
    if let Some(message) = bad_key(&queue, limits) {
        bad("queue", message);
    }
    if let Some(message) = spec.unique_key.as_deref().and_then(|k| bad_key(k, limits)) {
        bad("unique_key", message);
    }
    if let Some(n) = spec.max_attempts
        && !(1..=limits.max_attempts).contains(&n)
    {
        bad(
            "max_attempts",
            format!("must be 1 to {}", limits.max_attempts),
        );
    }
    if spec.timeout_ms == Some(0) {
        bad("timeout_ms", "must be at least 1".to_owned());
    }
    if let Some(b) = &spec.backoff
        && (b.factor.is_nan()
            || b.factor < 1.0
            || !(0.0..=1.0).contains(&b.jitter)
            || b.max_ms < b.base_ms)
    {
        bad(
            "backoff",
            "needs factor >= 1, jitter in 0..=1 and max_ms >= base_ms".to_owned(),
        );
    }
    let options = options?;
    if !ok {
        return None;
    }
    let timeout = spec
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(options.timeout);
    Some(NewJob {
        id: JobId::new(),
        queue,
        kind: spec.kind.clone(),
        args: spec.args.clone(),
        priority: spec.priority,
        run_at: spec.run_at.unwrap_or(now),
        max_attempts: spec.max_attempts.unwrap_or(options.max_attempts),
        timeout_ms: timeout.as_millis() as u64,
        backoff: spec.backoff.unwrap_or(options.backoff),
        unique_key: spec.unique_key.clone(),
        depends_on: spec.depends_on.clone(),
    })
}

/// Finds dependency cycles; returns one problem per cycle, on its lowest index.
fn find_cycles(deps: &[Vec<usize>]) -> Vec<Problem> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let n = deps.len();
    let mut mark = vec![Mark::New; n];
    let mut problems = Vec::new();
    for start in 0..n {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge to look at); `path` mirrors the stack.
        let mut stack = vec![(start, 0usize)];
        mark[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
            let next = deps[node].iter().copied().filter(|&d| d < n).nth(*edge);
            *edge += 1;
            match next {
                Some(d) if mark[d] == Mark::OnPath => {
                    let from = stack.iter().position(|&(x, _)| x == d).unwrap_or(0);
                    let mut cycle: Vec<usize> = stack[from..].iter().map(|&(x, _)| x).collect();
                    let low = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|&(_, &x)| x)
                        .map(|(i, _)| i);
                    cycle.rotate_left(low.unwrap_or(0));
                    let path: Vec<String> = cycle
                        .iter()
                        .chain(cycle.first())
                        .map(|i| i.to_string())
                        .collect();
                    problems.push(Problem {
                        index: Some(cycle[0]),
                        field: "depends_on".into(),
                        message: format!("dependency cycle: {}", path.join(" -> ")),
                    });
                }
                Some(d) if mark[d] == Mark::New => {
                    mark[d] = Mark::OnPath;
                    stack.push((d, 0));
                }
                Some(_) => {}
                None => {
                    mark[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
    }
    problems
}

/// What is wrong with a queue name or a key, if anything: its length, or
/// control characters (PostgreSQL text refuses NUL; none belongs in a name).
fn bad_key(key: &str, limits: &SubmitLimits) -> Option<String> {
    if key.is_empty() || key.len() > limits.max_key_len {
        Some(format!("must be 1 to {} bytes", limits.max_key_len))
    } else if key.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else {
        None
    }
}

/// Checks `spec` and resolves it, or returns every problem found.
pub fn validate_batch(
    spec: &BatchSpec,
    registry: &Registry,
    limits: &SubmitLimits,
    now: Timestamp,
) -> Result<NewBatch, Vec<Problem>> {
    let mut problems = Vec::new();
    if spec.jobs.is_empty() {
        problems.push(Problem {
            index: None,
            field: "jobs".into(),
            message: "no jobs".into(),
        });
    }
    if spec.jobs.len() > limits.max_jobs {
        // Checking each of a million jobs would be work done for nothing.
        problems.push(Problem {
            index: None,
            field: "jobs".into(),
            message: format!("{} jobs, at most {}", spec.jobs.len(), limits.max_jobs),
        });
        return Err(problems);
    }
    let n = spec.jobs.len();
    let mut jobs = Vec::with_capacity(n);
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for (i, job) in spec.jobs.iter().enumerate() {
        let mut report = |field: &str, message: String| {
            problems.push(Problem {
                index: Some(i),
                field: field.to_owned(),
                message,
            });
        };
        for (k, &d) in job.depends_on.iter().enumerate() {
            if d >= n {
                report(
                    &format!("depends_on[{k}]"),
                    format!("no job at index {d} (the batch has {n})"),
                );
            } else if job.depends_on[..k].contains(&d) {
                report(
                    &format!("depends_on[{k}]"),
                    format!("index {d} listed twice"),
                );
            }
        }
        if let Some(key) = job.unique_key.as_deref() {
            if let Some(&first) = keys.get(key) {
                report("unique_key", format!("same key as job {first}"));
            } else {
                keys.insert(key, i);
            }
        }
        if let Some(j) = resolve_job(job, registry, limits, now, report) {
            jobs.push(j);
        }
    }
    let deps: Vec<Vec<usize>> = spec.jobs.iter().map(|j| j.depends_on.clone()).collect();
    problems.extend(find_cycles(&deps));

    let mut plans = Vec::new();
    for (c, cb) in spec.callbacks.iter().enumerate() {
        let (job_spec, webhook, field) = match &cb.target {
            CallbackTarget::Webhook(url) => (
                JobSpec::new(WEBHOOK_KIND, json!({ "url": url, "payload": null })),
                Some(url.clone()),
                format!("callbacks[{c}].webhook"),
            ),
            CallbackTarget::Job(j) => ((**j).clone(), None, format!("callbacks[{c}].job")),
        };
        if !job_spec.depends_on.is_empty() {
            problems.push(Problem {
                index: None,
                field: format!("{field}.depends_on"),
                message: "a callback job cannot have dependencies".into(),
            });
            continue;
        }
        let mut report = |f: &str, message: String| {
            // A webhook's only submitted field is its URL.
            let f = if webhook.is_some() {
                field.clone()
            } else {
                format!("{field}.{f}")
            };
            problems.push(Problem {
                index: None,
                field: f,
                message,
            });
        };
        if let Some(job) = resolve_job(&job_spec, registry, limits, now, &mut report) {
            plans.push(CallbackPlan {
                on: cb.on,
                webhook,
                job,
            });
        }
    }

    if let Some(message) = spec
        .idempotency_key
        .as_deref()
        .and_then(|k| bad_key(k, limits))
    {
        problems.push(Problem {
            index: None,
            field: "idempotency_key".into(),
            message,
        });
    }
    if let Some(name) = &spec.name
        && name.chars().any(char::is_control)
    {
        problems.push(Problem {
            index: None,
            field: "name".into(),
            message: "must not contain control characters".into(),
        });
    }

    problems.sort_by_key(|p| p.index.map_or(0, |i| i + 1));
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(NewBatch {
        id: Some(BatchId::new()),
        name: spec.name.clone(),
        callbacks: spec.callbacks.clone(),
        callback_plans: plans,
        on_dependency_failure: spec.on_dependency_failure,
        jobs,
        created_at: now,
        idempotency_key: spec.idempotency_key.clone(),
    })
}

/// Checks and resolves a lone job (no batch row).
pub fn validate_job(
    spec: &JobSpec,
    registry: &Registry,
    limits: &SubmitLimits,
    now: Timestamp,
) -> Result<NewBatch, Vec<Problem>> {
    let mut problems = Vec::new();
    if !spec.depends_on.is_empty() {
        problems.push(Problem {
            index: Some(0),
            field: "depends_on".into(),
            message: "only jobs of a batch can depend on each other".into(),
        });
    }
    let job = resolve_job(spec, registry, limits, now, |field, message| {
        problems.push(Problem {
            index: Some(0),
            field: field.to_owned(),
            message,
        });
    });
    match job {
        Some(job) if problems.is_empty() => Ok(NewBatch {
            id: None,
            name: None,
            callbacks: Vec::new(),
            callback_plans: Vec::new(),
            on_dependency_failure: DependencyPolicy::default(),
            jobs: vec![job],
            created_at: now,
            idempotency_key: None,
        }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::BuiltinOptions;

    fn registry() -> Registry {
        Registry::with_builtins(BuiltinOptions::default())
    }

    fn batch(jobs: Vec<JobSpec>) -> BatchSpec {
        BatchSpec {
            jobs,
            ..Default::default()
        }
    }

    fn dep(mut j: JobSpec, on: &[usize]) -> JobSpec {
        j.depends_on = on.to_vec();
        j
    }

    fn noop() -> JobSpec {
        JobSpec::new("noop", Value::Null)
    }

    #[test]
    fn cycles_are_found_and_reported_once() {
        let p = find_cycles(&[vec![1], vec![2], vec![0], vec![]]);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].index, Some(0));
        assert_eq!(p[0].message, "dependency cycle: 0 -> 1 -> 2 -> 0");
        let p = find_cycles(&[vec![], vec![1]]);
        assert_eq!(p[0].message, "dependency cycle: 1 -> 1");
        assert!(find_cycles(&[vec![], vec![0], vec![0, 1]]).is_empty());
        // A diamond is not a cycle.
        assert!(find_cycles(&[vec![1, 2], vec![3], vec![3], vec![]]).is_empty());
    }

    #[test]
    fn defaults_come_from_the_kind() {
        let b = validate_batch(
            &batch(vec![noop()]),
            &registry(),
            &SubmitLimits::default(),
            Timestamp(5),
        )
        .unwrap();
        let j = &b.jobs[0];
        assert_eq!(j.queue, DEFAULT_QUEUE);
        assert_eq!(
            j.max_attempts,
            registry().options("noop").unwrap().max_attempts
        );
        assert_eq!(j.run_at, Timestamp(5));
    }

    #[test]
    fn every_problem_is_reported_with_index_and_field() {
        let mut bad_attempts = noop();
        bad_attempts.max_attempts = Some(0);
        let spec = batch(vec![
            JobSpec::new("nope", Value::Null),
            JobSpec::new("sleep", json!({"ms": -1})),
            dep(noop(), &[7]),
            bad_attempts,
            dep(noop(), &[5]),
            dep(noop(), &[4]),
        ]);
        let p =
            validate_batch(&spec, &registry(), &SubmitLimits::default(), Timestamp(0)).unwrap_err();
        let got: Vec<(Option<usize>, &str)> =
            p.iter().map(|p| (p.index, p.field.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Some(0), "kind"),
                (Some(1), "args.ms"),
                (Some(2), "depends_on[0]"),
                (Some(3), "max_attempts"),
                (Some(4), "depends_on"),
            ]
        );
    }

    #[test]
    fn too_many_jobs_and_bad_callbacks() {
        let limits = SubmitLimits {
            max_jobs: 2,
            ..Default::default()
        };
        let p = validate_batch(
            &batch(vec![noop(), noop(), noop()]),
            &registry(),
            &limits,
            Timestamp(0),
        )
        .unwrap_err();
        assert_eq!((p[0].index, p[0].field.as_str()), (None, "jobs"));

        let mut spec = batch(vec![noop()]);
        spec.callbacks = vec![
            Callback {
                on: CallbackOn::Success,
                target: CallbackTarget::Webhook("ftp://x".into()),
            },
            Callback {
                on: CallbackOn::Failure,
                target: CallbackTarget::Job(Box::new(JobSpec::new("sleep", json!({})))),
            },
        ];
        let p =
            validate_batch(&spec, &registry(), &SubmitLimits::default(), Timestamp(0)).unwrap_err();
        let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["callbacks[0].webhook", "callbacks[1].job.args"]
        );
    }

    #[test]
    fn control_characters_in_names_and_keys_are_refused() {
        let mut a = JobSpec::new("noop", json!({}));
        a.queue = Some("mail\0".into());
        let mut b = JobSpec::new("noop", json!({}));
        b.unique_key = Some("k\n".into());
        let spec = BatchSpec {
            name: Some("nightly\u{7}".into()),
            jobs: vec![a, b],
            idempotency_key: Some("\0".into()),
            ..Default::default()
        };
        let p = validate_batch(
            &spec,
            &registry(),
            &SubmitLimits::default(),
            Timestamp::now(),
        )
        .unwrap_err();
        let at: Vec<(Option<usize>, &str)> =
            p.iter().map(|p| (p.index, p.field.as_str())).collect();
        assert_eq!(
            at,
            vec![
                (None, "idempotency_key"),
                (None, "name"),
                (Some(0), "queue"),
                (Some(1), "unique_key")
            ]
        );
        assert!(p.iter().all(|p| p.message.contains("control characters")));
    }

    #[test]
    fn duplicate_unique_keys_in_one_batch_are_refused() {
        let mut a = noop();
        a.unique_key = Some("k".into());
        let p = validate_batch(
            &batch(vec![a.clone(), a]),
            &registry(),
            &SubmitLimits::default(),
            Timestamp(0),
        )
        .unwrap_err();
        assert_eq!((p[0].index, p[0].field.as_str()), (Some(1), "unique_key"));
    }
}
