//! Dependencies inside a batch and the three failure policies.

use serde_json::{Value, json};
use sluice_jobs::model::ErrorKind;
use sluice_jobs::{BatchSpec, BatchState, DependencyPolicy, JobSpec, JobState};

use crate::support::Harness;

on_both_stores!(
    a_chain_runs_in_dependency_order,
    fail_policy_fails_dependents_transitively,
    cancel_policy_cancels_dependents_transitively,
    ignore_policy_runs_dependents_anyway,
);

fn after(mut j: JobSpec, deps: &[usize]) -> JobSpec {
    j.depends_on = deps.to_vec();
    j
}

async fn a_chain_runs_in_dependency_order(h: Harness) {
    let runner = h.runner(|_| {});
    // Submitted in reverse order on purpose.
    let jobs = vec![
        after(JobSpec::new("sleep", json!({"ms": 5})), &[1]),
        after(JobSpec::new("sleep", json!({"ms": 5})), &[2]),
        JobSpec::new("sleep", json!({"ms": 5})),
    ];
    let sub = h.submit_jobs(jobs).await;
    let b = h.wait_batch(sub.batch_id.unwrap()).await;
    assert_eq!(b.state, BatchState::Succeeded);
    let j: Vec<_> = futures_util::future::join_all(sub.jobs.iter().map(|s| h.job(s.id))).await;
    assert!(j[1].started_at >= j[2].finished_at);
    assert!(j[0].started_at >= j[1].finished_at);
    assert_eq!(j[0].depends_on, vec![sub.jobs[1].id]);
    runner.shutdown().await;
}

async fn run_policy(
    h: Harness,
    policy: DependencyPolicy,
) -> (Vec<sluice_jobs::Job>, sluice_jobs::Batch) {
    let runner = h.runner(|_| {});
    let mut failing = JobSpec::new("flaky", json!({"succeed_on": 100, "permanent": true}));
    failing.max_attempts = Some(1);
    let jobs = vec![
        failing,
        after(JobSpec::new("noop", Value::Null), &[0]),
        after(JobSpec::new("noop", Value::Null), &[1]),
        JobSpec::new("noop", Value::Null),
    ];
    let spec = BatchSpec {
        jobs,
        on_dependency_failure: policy,
        ..Default::default()
    };
    let sub = h.client.submit_batch(&spec).await.unwrap();
    let b = h.wait_batch(sub.batch_id.unwrap()).await;
    let mut out = Vec::new();
    for s in &sub.jobs {
        out.push(h.job(s.id).await);
    }
    runner.shutdown().await;
    (out, b)
}

async fn fail_policy_fails_dependents_transitively(h: Harness) {
    let (j, b) = run_policy(h, DependencyPolicy::Fail).await;
    let states: Vec<JobState> = j.iter().map(|j| j.state).collect();
    assert_eq!(
        states,
        vec![
            JobState::Failed,
            JobState::Failed,
            JobState::Failed,
            JobState::Succeeded
        ]
    );
    assert_eq!(j[1].errors[0].kind, ErrorKind::Dependency);
    assert_eq!(j[1].attempt, 0, "a dependent of a failed job never runs");
    assert!(j[2].errors[0].message.contains(&j[1].id.to_string()));
    assert_eq!(
        (b.state, b.counts.failed, b.counts.succeeded),
        (BatchState::Failed, 3, 1)
    );
}

async fn cancel_policy_cancels_dependents_transitively(h: Harness) {
    let (j, b) = run_policy(h, DependencyPolicy::Cancel).await;
    let states: Vec<JobState> = j.iter().map(|j| j.state).collect();
    assert_eq!(
        states,
        vec![
            JobState::Failed,
            JobState::Cancelled,
            JobState::Cancelled,
            JobState::Succeeded
        ]
    );
    assert_eq!((b.counts.failed, b.counts.cancelled), (1, 2));
}

async fn ignore_policy_runs_dependents_anyway(h: Harness) {
    let (j, b) = run_policy(h, DependencyPolicy::Ignore).await;
    let states: Vec<JobState> = j.iter().map(|j| j.state).collect();
    assert_eq!(
        states,
        vec![
            JobState::Failed,
            JobState::Succeeded,
            JobState::Succeeded,
            JobState::Succeeded
        ]
    );
    assert!(j[1].started_at >= j[0].finished_at);
    assert_eq!((b.state, b.counts.succeeded), (BatchState::Failed, 3));
}
