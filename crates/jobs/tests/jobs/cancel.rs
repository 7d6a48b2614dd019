//! Cancelling queued and running jobs and whole batches.

use std::time::Duration;

use serde_json::json;
use sluice_jobs::store::CancelResult;
use sluice_jobs::{JobSpec, JobState};

use crate::support::{Harness, eventually};

on_both_stores!(
    cancelling_a_running_job_stops_it_and_ignores_its_completion,
    a_cancel_made_elsewhere_is_noticed_at_the_next_heartbeat,
    cancelling_a_batch_cancels_every_unfinished_job,
);

async fn cancelling_a_running_job_stops_it_and_ignores_its_completion(h: Harness) {
    let runner = h.runner(|_| {});
    let id = h
        .client
        .submit_job(&JobSpec::new("sleep", json!({"ms": 60_000})))
        .await
        .unwrap();
    h.wait_state(id, JobState::Running).await;
    assert_eq!(
        runner.cancel_job(id).await.unwrap(),
        CancelResult::Cancelled(1)
    );
    eventually("the job stopped running", || async {
        runner.running_jobs() == 0
    })
    .await;
    let j = h.job(id).await;
    assert_eq!((j.state, j.result), (JobState::Cancelled, None));
    assert!(runner.shutdown().await.drained);
}

async fn a_cancel_made_elsewhere_is_noticed_at_the_next_heartbeat(h: Harness) {
    let runner = h.runner(|_| {});
    let id = h
        .client
        .submit_job(&JobSpec::new("sleep", json!({"ms": 60_000})))
        .await
        .unwrap();
    h.wait_state(id, JobState::Running).await;
    assert_eq!(
        h.client.cancel_job(id).await.unwrap(),
        CancelResult::Cancelled(1)
    );
    eventually("the heartbeat stopped the job", || async {
        runner.running_jobs() == 0
    })
    .await;
    assert_eq!(h.job(id).await.state, JobState::Cancelled);
    runner.shutdown().await;
}

async fn cancelling_a_batch_cancels_every_unfinished_job(h: Harness) {
    let runner = h.runner(|c| c.concurrency = 2);
    let jobs = (0..6)
        .map(|_| JobSpec::new("sleep", json!({"ms": 60_000})))
        .collect();
    let sub = h.submit_jobs(jobs).await;
    let bid = sub.batch_id.unwrap();
    eventually("two jobs running", || async { runner.running_jobs() == 2 }).await;
    assert_eq!(
        runner.cancel_batch(bid).await.unwrap(),
        CancelResult::Cancelled(6)
    );
    let b = h.wait_batch(bid).await;
    assert_eq!(b.state, sluice_jobs::BatchState::Cancelled);
    assert_eq!(b.counts.cancelled, 6);
    assert_eq!(b.counts.finished(), 6);
    eventually("running jobs stopped", || async {
        runner.running_jobs() == 0
    })
    .await;
    assert_eq!(
        runner.cancel_batch(bid).await.unwrap(),
        CancelResult::AlreadyFinished
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn exec_child_is_killed_on_cancel() {
    let h = Harness::new().await;
    let runner = h.runner(|_| {});
    let pidfile = h.dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    let id = h
        .client
        .submit_job(&JobSpec::new("exec", json!({"argv": ["sh", "-c", script]})))
        .await
        .unwrap();
    eventually("the child wrote its pid", || async {
        std::fs::read_to_string(&pidfile)
            .map(|s| s.trim().parse::<u32>().is_ok())
            .unwrap_or(false)
    })
    .await;
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    runner.cancel_job(id).await.unwrap();
    eventually("the child was killed", || async {
        // Killed and reaped by tokio, or a zombie waiting to be.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.split_whitespace().nth(2) == Some("Z"),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    runner.shutdown().await;
}
