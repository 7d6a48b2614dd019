//! Retries with backoff, exhausted attempts, permanent errors, panics.

use serde_json::json;
use sluice_jobs::model::ErrorKind;
use sluice_jobs::{Backoff, JobSpec, JobState};

use crate::support::Harness;

on_both_stores!(
    failing_job_retries_with_backoff_then_succeeds,
    exhausted_attempts_fail_and_keep_every_error,
    permanent_errors_and_panics_are_not_retried,
);

async fn failing_job_retries_with_backoff_then_succeeds(h: Harness) {
    let runner = h.runner(|_| {});
    let mut spec = JobSpec::new("flaky", json!({"succeed_on": 3}));
    spec.max_attempts = Some(5);
    spec.backoff = Some(Backoff {
        base_ms: 60,
        max_ms: 1_000,
        factor: 2.0,
        jitter: 0.0,
    });
    let id = h.client.submit_job(&spec).await.unwrap();
    let j = h.wait_state(id, JobState::Succeeded).await;
    assert_eq!(j.attempt, 3);
    assert_eq!(j.result, Some(json!({"attempt": 3})));
    assert_eq!(
        j.errors.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        vec![1, 2]
    );
    // Attempt 2 was due 60 ms after the first failure, attempt 3 120 ms
    // after the second. The runner sets the retry time when the attempt
    // fails; the store stamps the error when it records it, a store round
    // trip later (a few ms on PostgreSQL), so two error stamps can be up to
    // that much closer than the backoff. An immediate retry would be
    // nowhere near it.
    const STORE_SLACK_MS: i64 = 15;
    let gap = j.errors[1].at.as_millis() - j.errors[0].at.as_millis();
    assert!(
        gap + STORE_SLACK_MS >= 60,
        "second attempt came {gap} ms after the first error"
    );
    runner.shutdown().await;
}

async fn exhausted_attempts_fail_and_keep_every_error(h: Harness) {
    let runner = h.runner(|_| {});
    let mut spec = JobSpec::new("flaky", json!({"succeed_on": 100}));
    spec.max_attempts = Some(3);
    let id = h.client.submit_job(&spec).await.unwrap();
    let j = h.wait_state(id, JobState::Failed).await;
    assert_eq!(j.attempt, 3);
    let msgs: Vec<&str> = j.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        msgs,
        vec![
            "failure on attempt 1",
            "failure on attempt 2",
            "failure on attempt 3"
        ]
    );
    assert!(j.errors.iter().all(|e| e.kind == ErrorKind::Error));
    runner.shutdown().await;
}

async fn permanent_errors_and_panics_are_not_retried(h: Harness) {
    let runner = h.runner(|_| {});
    let mut spec = JobSpec::new("flaky", json!({"succeed_on": 100, "permanent": true}));
    spec.max_attempts = Some(5);
    let id = h.client.submit_job(&spec).await.unwrap();
    let j = h.wait_state(id, JobState::Failed).await;
    assert_eq!((j.attempt, j.errors.len()), (1, 1));

    let id = h
        .client
        .submit_job(&JobSpec::new("panic", json!(null)))
        .await
        .unwrap();
    let j = h.wait_state(id, JobState::Failed).await;
    assert_eq!(j.errors[0].message, "panicked: boom");
    // The runner survives a panicking job.
    let ok = h
        .client
        .submit_job(&JobSpec::new("noop", json!(null)))
        .await
        .unwrap();
    h.wait_state(ok, JobState::Succeeded).await;
    runner.shutdown().await;
}
