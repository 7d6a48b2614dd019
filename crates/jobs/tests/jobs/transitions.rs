//! Every edge of the state machine, driven through the store directly, so
//! each one is observed exactly where it happens.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_jobs::model::{ErrorKind, TRANSITIONS};
use sluice_jobs::store::{
    CancelResult, ClaimRequest, ClaimedJob, Completion, Heartbeat, Lease, Outcome,
};
use sluice_jobs::{BatchSpec, DependencyPolicy, JobId, JobSpec, JobState, Timestamp};

use crate::support::Harness;

on_both_stores!(
    every_transition_in_the_table_happens_as_documented,
    stale_tokens_are_ignored_by_completion_and_heartbeat,
    claims_follow_priority_then_run_at,
    pruning_deletes_old_finished_jobs_in_small_batches,
);

fn claim_req(n: u32, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        worker: "w1".into(),
        queues: vec![("default".into(), n)],
        lease,
    }
}

async fn claim_one(h: &Harness, id: JobId) -> ClaimedJob {
    let got = h
        .store
        .claim(claim_req(100, Duration::from_secs(30)))
        .await
        .unwrap();
    got.into_iter()
        .find(|c| c.lease.job_id == id)
        .expect("job claimed")
}

fn fail(retry_at: Option<Timestamp>, kind: ErrorKind) -> Outcome {
    Outcome::Failed {
        kind,
        message: "nope".into(),
        retry_at,
    }
}

async fn submit(h: &Harness, spec: JobSpec) -> JobId {
    h.client.submit_job(&spec).await.unwrap()
}

async fn every_transition_in_the_table_happens_as_documented(h: Harness) {
    let mut seen: Vec<(JobState, JobState)> = Vec::new();
    let mut saw = |from: JobState, to: JobState| seen.push((from, to));

    // queued -> running -> succeeded
    let a = submit(&h, JobSpec::new("noop", Value::Null)).await;
    assert_eq!(h.job(a).await.state, JobState::Queued);
    let c = claim_one(&h, a).await;
    let j = h.job(a).await;
    assert_eq!(
        (j.state, j.attempt, j.worker.as_deref()),
        (JobState::Running, 1, Some("w1"))
    );
    saw(JobState::Queued, JobState::Running);
    assert!(
        h.store
            .complete(Completion {
                lease: c.lease,
                outcome: Outcome::Succeeded(json!(7))
            })
            .await
            .unwrap()
    );
    let j = h.job(a).await;
    assert_eq!(
        (j.state, j.result.clone(), j.progress),
        (JobState::Succeeded, Some(json!(7)), 1.0)
    );
    assert!(j.finished_at.is_some() && j.worker.is_none());
    saw(JobState::Running, JobState::Succeeded);

    // scheduled -> queued (run_at reached), running -> retrying -> queued,
    // running -> failed
    let mut spec = JobSpec::new("noop", Value::Null);
    spec.run_at = Some(Timestamp::now().plus(Duration::from_millis(500)));
    spec.max_attempts = Some(2);
    let b = submit(&h, spec).await;
    assert_eq!(h.job(b).await.state, JobState::Scheduled);
    assert!(
        h.store
            .claim(claim_req(10, Duration::from_secs(30)))
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(550)).await;
    let c = claim_one(&h, b).await;
    saw(JobState::Scheduled, JobState::Queued);
    let retry_at = Timestamp::now().plus(Duration::from_millis(400));
    assert!(
        h.store
            .complete(Completion {
                lease: c.lease,
                outcome: fail(Some(retry_at), ErrorKind::Error)
            })
            .await
            .unwrap()
    );
    let j = h.job(b).await;
    assert_eq!(
        (j.state, j.run_at, j.errors.len()),
        (JobState::Retrying, retry_at, 1)
    );
    saw(JobState::Running, JobState::Retrying);
    assert!(
        h.store
            .claim(claim_req(10, Duration::from_secs(30)))
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let c = claim_one(&h, b).await;
    saw(JobState::Retrying, JobState::Queued);
    assert_eq!(c.attempt, 2);
    // Out of attempts: a retry_at is ignored and the job fails.
    let later = Timestamp::now().plus(Duration::from_millis(1));
    assert!(
        h.store
            .complete(Completion {
                lease: c.lease,
                outcome: fail(Some(later), ErrorKind::Error)
            })
            .await
            .unwrap()
    );
    let j = h.job(b).await;
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(
        j.errors.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        vec![1, 2]
    );
    saw(JobState::Running, JobState::Failed);

    // running -> timed_out
    let t = submit(&h, JobSpec::new("noop", Value::Null)).await;
    let c = claim_one(&h, t).await;
    assert!(
        h.store
            .complete(Completion {
                lease: c.lease,
                outcome: fail(None, ErrorKind::Timeout)
            })
            .await
            .unwrap()
    );
    assert_eq!(h.job(t).await.state, JobState::TimedOut);
    saw(JobState::Running, JobState::TimedOut);

    // queued -> cancelled; running -> cancelled (and the late completion is
    // ignored); retrying -> cancelled; scheduled -> cancelled
    let q = submit(&h, JobSpec::new("noop", Value::Null)).await;
    assert_eq!(
        h.store.cancel_job(q).await.unwrap(),
        CancelResult::Cancelled(1)
    );
    assert_eq!(
        h.store.cancel_job(q).await.unwrap(),
        CancelResult::AlreadyFinished
    );
    assert_eq!(
        h.store.cancel_job(JobId::new()).await.unwrap(),
        CancelResult::NotFound
    );
    saw(JobState::Queued, JobState::Cancelled);
    let r = submit(&h, JobSpec::new("noop", Value::Null)).await;
    let c = claim_one(&h, r).await;
    h.store.cancel_job(r).await.unwrap();
    assert!(
        !h.store
            .complete(Completion {
                lease: c.lease,
                outcome: Outcome::Succeeded(Value::Null)
            })
            .await
            .unwrap()
    );
    assert_eq!(h.job(r).await.state, JobState::Cancelled);
    saw(JobState::Running, JobState::Cancelled);
    let rt = submit(&h, JobSpec::new("noop", Value::Null)).await;
    let c = claim_one(&h, rt).await;
    let far = Timestamp::now().plus(Duration::from_secs(60));
    h.store
        .complete(Completion {
            lease: c.lease,
            outcome: fail(Some(far), ErrorKind::Error),
        })
        .await
        .unwrap();
    assert_eq!(h.job(rt).await.state, JobState::Retrying);
    h.store.cancel_job(rt).await.unwrap();
    assert_eq!(h.job(rt).await.state, JobState::Cancelled);
    saw(JobState::Retrying, JobState::Cancelled);
    let mut spec = JobSpec::new("noop", Value::Null);
    spec.run_at = Some(far);
    let s = submit(&h, spec).await;
    h.store.cancel_job(s).await.unwrap();
    assert_eq!(h.job(s).await.state, JobState::Cancelled);
    saw(JobState::Scheduled, JobState::Cancelled);

    // running -> queued: released (attempt not counted) and lease expired
    // (attempt counted, error kept)
    let rel = submit(&h, JobSpec::new("noop", Value::Null)).await;
    let c = claim_one(&h, rel).await;
    assert_eq!(h.store.release(vec![c.lease]).await.unwrap(), 1);
    let j = h.job(rel).await;
    assert_eq!(
        (j.state, j.attempt, j.errors.len()),
        (JobState::Queued, 0, 0)
    );
    saw(JobState::Running, JobState::Queued);
    let got = h
        .store
        .claim(claim_req(100, Duration::from_millis(1)))
        .await
        .unwrap();
    assert!(got.iter().any(|c| c.lease.job_id == rel));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(h.store.rescue_expired().await.unwrap() >= 1);
    let j = h.job(rel).await;
    assert_eq!((j.state, j.attempt), (JobState::Queued, 1));
    assert_eq!(j.errors[0].kind, ErrorKind::LeaseExpired);

    // scheduled -> failed: a dependency failed under the `fail` policy
    let mut dep = JobSpec::new("noop", Value::Null);
    dep.depends_on = vec![0];
    let batch = BatchSpec {
        jobs: vec![JobSpec::new("noop", Value::Null), dep],
        on_dependency_failure: DependencyPolicy::Fail,
        ..Default::default()
    };
    let sub = h.client.submit_batch(&batch).await.unwrap();
    let (first, second) = (sub.jobs[0].id, sub.jobs[1].id);
    assert_eq!(h.job(second).await.state, JobState::Scheduled);
    let c = claim_one(&h, first).await;
    h.store
        .complete(Completion {
            lease: c.lease,
            outcome: fail(None, ErrorKind::Error),
        })
        .await
        .unwrap();
    let j = h.job(second).await;
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.errors[0].kind, ErrorKind::Dependency);
    assert_eq!(j.depends_on, vec![first]);
    saw(JobState::Scheduled, JobState::Failed);

    // failed, timed_out, cancelled -> queued: retried by hand, one more
    // attempt each
    for (id, from) in [
        (b, JobState::Failed),
        (t, JobState::TimedOut),
        (q, JobState::Cancelled),
    ] {
        let before = h.job(id).await;
        assert_eq!(before.state, from);
        assert_eq!(
            h.store.retry_job(id).await.unwrap(),
            sluice_jobs::store::RetryResult::Requeued
        );
        let after = h.job(id).await;
        assert_eq!(after.state, JobState::Queued);
        assert!(after.max_attempts > after.attempt, "{after:#?}");
        assert_eq!(after.finished_at, None);
        saw(from, JobState::Queued);
    }

    for t in TRANSITIONS {
        assert!(
            seen.contains(&(t.from, t.to)),
            "transition {} -> {} not exercised",
            t.from,
            t.to
        );
    }
}

async fn stale_tokens_are_ignored_by_completion_and_heartbeat(h: Harness) {
    let id = submit(&h, JobSpec::new("noop", Value::Null)).await;
    let first = h
        .store
        .claim(claim_req(1, Duration::from_millis(1)))
        .await
        .unwrap()
        .remove(0);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(h.store.rescue_expired().await.unwrap(), 1);
    let second = claim_one(&h, id).await;
    assert_eq!(
        second.lease.token,
        first.lease.token + 1,
        "fencing token increments per claim"
    );

    // The first worker wakes up late: its heartbeat is refused, its
    // completion ignored.
    let lost = h
        .store
        .heartbeat(Heartbeat {
            leases: vec![(first.lease, 0.5), (second.lease, 0.25)],
            lease: Duration::from_secs(30),
        })
        .await
        .unwrap();
    assert_eq!(lost, vec![id]);
    assert!(
        !h.store
            .complete(Completion {
                lease: first.lease,
                outcome: Outcome::Succeeded(json!("old"))
            })
            .await
            .unwrap()
    );
    let j = h.job(id).await;
    assert_eq!((j.state, j.progress), (JobState::Running, 0.25));

    assert!(
        h.store
            .complete(Completion {
                lease: second.lease,
                outcome: Outcome::Succeeded(json!("new"))
            })
            .await
            .unwrap()
    );
    let j = h.job(id).await;
    assert_eq!(
        (j.state, j.result),
        (JobState::Succeeded, Some(json!("new")))
    );
    // A made-up token is stale too.
    let bogus = Lease {
        job_id: id,
        token: 999,
    };
    assert!(
        !h.store
            .complete(Completion {
                lease: bogus,
                outcome: Outcome::Succeeded(Value::Null)
            })
            .await
            .unwrap()
    );
}

async fn claims_follow_priority_then_run_at(h: Harness) {
    let mut ids = Vec::new();
    for p in [0, 5, 1, 5] {
        let mut s = JobSpec::new("noop", Value::Null);
        s.priority = p;
        ids.push(submit(&h, s).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut order = Vec::new();
    for _ in 0..4 {
        let c = h
            .store
            .claim(claim_req(1, Duration::from_secs(30)))
            .await
            .unwrap();
        order.push(c[0].lease.job_id);
    }
    assert_eq!(order, vec![ids[1], ids[3], ids[2], ids[0]]);
}

async fn pruning_deletes_old_finished_jobs_in_small_batches(h: Harness) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = submit(&h, JobSpec::new("noop", Value::Null)).await;
        h.store.cancel_job(id).await.unwrap();
        ids.push(id);
    }
    let unfinished = submit(&h, JobSpec::new("noop", Value::Null)).await;
    let cutoff = Timestamp::now().plus(Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(h.store.prune(cutoff, 2).await.unwrap(), 2);
    assert_eq!(h.store.prune(cutoff, 2).await.unwrap(), 2);
    assert_eq!(h.store.prune(cutoff, 2).await.unwrap(), 1);
    assert_eq!(h.store.prune(cutoff, 2).await.unwrap(), 0);
    for id in ids {
        assert!(h.client.job(id).await.unwrap().is_none());
    }
    assert!(h.client.job(unfinished).await.unwrap().is_some());
}
