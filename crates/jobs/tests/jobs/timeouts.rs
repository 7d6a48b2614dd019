//! Timeouts of async and CPU-bound jobs; CPU jobs stay off runtime threads.

use std::sync::atomic::Ordering;

use serde_json::json;
use sluice_jobs::model::ErrorKind;
use sluice_jobs::{JobSpec, JobState};

use crate::support::Harness;

#[tokio::test]
async fn async_job_past_its_timeout_is_dropped_and_timed_out() {
    let h = Harness::new().await;
    let runner = h.runner(|_| {});
    let mut spec = JobSpec::new("sleep", json!({"ms": 60_000}));
    spec.timeout_ms = Some(50);
    spec.max_attempts = Some(2);
    spec.backoff = Some(sluice_jobs::Backoff {
        base_ms: 1,
        max_ms: 1,
        factor: 1.0,
        jitter: 0.0,
    });
    let id = h.client.submit_job(&spec).await.unwrap();
    let j = h.wait_state(id, JobState::TimedOut).await;
    assert_eq!(
        j.attempt, 2,
        "a timed-out attempt is retried while attempts remain"
    );
    assert!(j.errors.iter().all(|e| e.kind == ErrorKind::Timeout));
    assert_eq!(runner.running_jobs(), 0);
    assert!(runner.shutdown().await.drained);
}

#[tokio::test]
async fn cpu_job_past_its_timeout_gets_its_flag_and_is_timed_out() {
    let h = Harness::new().await;
    let runner = h.runner(|_| {});
    let mut spec = JobSpec::new("cpu_probe", json!({"max_ms": 20_000}));
    spec.timeout_ms = Some(50);
    spec.max_attempts = Some(1);
    let id = h.client.submit_job(&spec).await.unwrap();
    let j = h.wait_state(id, JobState::TimedOut).await;
    assert_eq!(j.errors[0].kind, ErrorKind::Timeout);
    crate::support::eventually("cpu job saw its cancel flag", || async {
        h.probes.flag_seen.load(Ordering::SeqCst)
    })
    .await;
    runner.shutdown().await;
}

#[tokio::test]
async fn cpu_jobs_run_on_the_rayon_pool() {
    let h = Harness::new().await;
    let runner = h.runner(|_| {});
    let id = h
        .client
        .submit_job(&JobSpec::new("cpu_probe", json!({"max_ms": 1})))
        .await
        .unwrap();
    let j = h.wait_state(id, JobState::Succeeded).await;
    let thread = j.result.unwrap()["thread"].as_str().unwrap().to_owned();
    assert!(thread.starts_with("sluice-cpu-"), "ran on {thread:?}");
    let id = h
        .client
        .submit_job(&JobSpec::new("burn", json!({"ms": 5})))
        .await
        .unwrap();
    let j = h.wait_state(id, JobState::Succeeded).await;
    assert!(j.result.unwrap()["rounds"].as_u64().unwrap() > 0);
    runner.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_running_cpu_job_raises_its_flag() {
    let h = Harness::new().await;
    let runner = h.runner(|_| {});
    let id = h
        .client
        .submit_job(&JobSpec::new("cpu_probe", json!({"max_ms": 20_000})))
        .await
        .unwrap();
    h.wait_state(id, JobState::Running).await;
    runner.cancel_job(id).await.unwrap();
    crate::support::eventually("cpu job saw its cancel flag", || async {
        h.probes.flag_seen.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(h.job(id).await.state, JobState::Cancelled);
    assert!(runner.shutdown().await.drained);
}
