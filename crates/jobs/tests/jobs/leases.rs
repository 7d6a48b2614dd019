//! Worker death and graceful stop: expired leases run again elsewhere,
//! released jobs run again at once.

use std::time::Duration;

use serde_json::json;
use sluice_jobs::model::ErrorKind;
use sluice_jobs::{JobSpec, JobState};

use crate::support::{Harness, eventually};

on_both_stores!(
    jobs_of_a_dead_worker_run_again_after_the_lease_expires,
    heartbeats_keep_long_jobs_leased,
    graceful_stop_finishes_quick_jobs_and_releases_slow_ones,
);

async fn jobs_of_a_dead_worker_run_again_after_the_lease_expires(h: Harness) {
    let dead = h.runner(|c| {
        c.worker_id = "doomed".into();
        c.lease = Duration::from_millis(400);
        c.heartbeat_interval = Duration::from_millis(100);
    });
    let jobs = (0..3)
        .map(|_| JobSpec::new("sleep", json!({"ms": 1_000})))
        .collect();
    let sub = h.submit_jobs(jobs).await;
    eventually("all three running on the doomed worker", || async {
        dead.running_jobs() == 3
    })
    .await;
    // The worker dies without a word (SIGKILL): nothing more is written.
    dead.abandon().await;
    let j = h.job(sub.jobs[0].id).await;
    assert_eq!(
        (j.state, j.worker.as_deref()),
        (JobState::Running, Some("doomed"))
    );

    let rescuer = h.runner(|c| c.worker_id = "rescuer".into());
    let b = h.wait_batch(sub.batch_id.unwrap()).await;
    assert_eq!(b.counts.succeeded, 3);
    for s in &sub.jobs {
        let j = h.job(s.id).await;
        assert_eq!(j.attempt, 2, "ran once on each worker");
        assert_eq!(j.errors.len(), 1);
        assert_eq!(j.errors[0].kind, ErrorKind::LeaseExpired);
        assert!(j.errors[0].message.contains("doomed"));
    }
    rescuer.shutdown().await;
}

async fn heartbeats_keep_long_jobs_leased(h: Harness) {
    let runner = h.runner(|c| {
        c.lease = Duration::from_millis(600);
        c.heartbeat_interval = Duration::from_millis(100);
    });
    let id = h
        .client
        .submit_job(&JobSpec::new("sleep", json!({"ms": 1_500})))
        .await
        .unwrap();
    let j = h.wait_state(id, JobState::Succeeded).await;
    assert_eq!(
        (j.attempt, j.errors.len()),
        (1, 0),
        "the lease expired despite heartbeats"
    );
    runner.shutdown().await;
}

async fn graceful_stop_finishes_quick_jobs_and_releases_slow_ones(h: Harness) {
    let runner = h.runner(|c| c.shutdown_deadline = Duration::from_millis(1_000));
    let quick = h
        .client
        .submit_job(&JobSpec::new("sleep", json!({"ms": 50})))
        .await
        .unwrap();
    let slow = h
        .client
        .submit_job(&JobSpec::new("sleep", json!({"ms": 60_000})))
        .await
        .unwrap();
    eventually("both running", || async { runner.running_jobs() == 2 }).await;
    let report = runner.shutdown().await;
    assert!(!report.drained);
    assert_eq!(report.released, 1);
    assert_eq!(h.job(quick).await.state, JobState::Succeeded);
    let j = h.job(slow).await;
    assert_eq!(
        (j.state, j.attempt, j.worker),
        (JobState::Queued, 0, None),
        "released, attempt not counted"
    );

    // Another worker picks it up at once.
    let next = h.runner(|_| {});
    h.wait_state(slow, JobState::Running).await;
    next.cancel_job(slow).await.unwrap();
    next.shutdown().await;
}
