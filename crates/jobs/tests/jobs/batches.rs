//! Batch counters, progress and callbacks fired exactly once.

use serde_json::{Value, json};
use sluice_jobs::kinds::WEBHOOK_KIND;
use sluice_jobs::{BatchSpec, BatchState, Callback, CallbackOn, CallbackTarget, JobSpec, JobState};

use crate::support::{Harness, TestServer, eventually};

on_both_stores!(
    counters_track_every_job_and_follow_up_jobs_fire_once,
    webhook_fires_once_with_the_batch_summary,
    two_runners_drain_a_batch_with_each_job_run_once,
);

fn follow_up(on: CallbackOn, tag: &str) -> Callback {
    let mut job = JobSpec::new("noop", json!({ "tag": tag }));
    job.queue = Some("callbacks".into());
    Callback {
        on,
        target: CallbackTarget::Job(Box::new(job)),
    }
}

async fn counters_track_every_job_and_follow_up_jobs_fire_once(h: Harness) {
    let jobs: Vec<JobSpec> = (0..25)
        .map(|i| JobSpec::new("sleep", json!({"ms": i % 3})))
        .collect();
    let spec = BatchSpec {
        name: Some("twenty-five".into()),
        jobs,
        callbacks: vec![
            follow_up(CallbackOn::Success, "success"),
            follow_up(CallbackOn::Failure, "failure"),
            follow_up(CallbackOn::Complete, "complete"),
        ],
        ..Default::default()
    };
    let sub = h.client.submit_batch(&spec).await.unwrap();
    let bid = sub.batch_id.unwrap();
    let b = h.batch(bid).await;
    assert_eq!(
        (b.total, b.counts.queued, b.state, b.progress),
        (25, 25, BatchState::Running, 0.0)
    );

    let runner = h.runner(|c| {
        c.queues = vec![
            sluice_jobs::QueueConfig::new("default"),
            sluice_jobs::QueueConfig::new("callbacks"),
        ];
    });
    let b = h.wait_batch(bid).await;
    assert_eq!(b.state, BatchState::Succeeded);
    assert_eq!(b.counts.succeeded, 25);
    assert_eq!(b.counts.total(), 25, "counts: {:?}", b.counts);
    assert_eq!(b.progress, 1.0);
    assert!(b.started_at.is_some() && b.finished_at >= b.started_at);
    assert_eq!(
        b.callback_jobs.len(),
        2,
        "success and complete fire, failure does not"
    );

    for id in &b.callback_jobs {
        h.wait_state(*id, JobState::Succeeded).await;
    }
    let fired: Vec<Value> = h
        .jobs_of_kind("noop")
        .await
        .into_iter()
        .filter(|j| j.queue == "callbacks")
        .map(|j| j.args["tag"].clone())
        .collect();
    assert_eq!(fired, vec![json!("success"), json!("complete")]);
    runner.shutdown().await;
}

async fn webhook_fires_once_with_the_batch_summary(h: Harness) {
    let server = TestServer::start().await;
    let mut failing = JobSpec::new("flaky", json!({"succeed_on": 9, "permanent": true}));
    failing.max_attempts = Some(1);
    let spec = BatchSpec {
        jobs: vec![
            JobSpec::new("noop", Value::Null),
            failing,
            JobSpec::new("noop", Value::Null),
        ],
        callbacks: vec![
            Callback {
                on: CallbackOn::Failure,
                target: CallbackTarget::Webhook(server.url("/hook")),
            },
            Callback {
                on: CallbackOn::Success,
                target: CallbackTarget::Webhook(server.url("/hook")),
            },
        ],
        ..Default::default()
    };
    let runner = h.runner(|_| {});
    let sub = h.client.submit_batch(&spec).await.unwrap();
    let bid = sub.batch_id.unwrap();
    let b = h.wait_batch(bid).await;
    assert_eq!(b.state, BatchState::Failed);
    assert_eq!(b.callback_jobs.len(), 1);
    let hook_job = h.wait_state(b.callback_jobs[0], JobState::Succeeded).await;
    assert_eq!(hook_job.kind, WEBHOOK_KIND);
    assert_eq!(hook_job.result.as_ref().unwrap()["status"], 200);

    eventually("the webhook arrived", || async {
        !server.hooks().is_empty()
    })
    .await;
    let hooks = server.hooks();
    assert_eq!(hooks.len(), 1, "webhook fired {} times", hooks.len());
    let (key, body) = &hooks[0];
    assert_eq!(key.as_deref(), Some(hook_job.id.to_string().as_str()));
    assert_eq!(body["batch_id"], json!(bid));
    assert_eq!(body["state"], "failed");
    assert_eq!(body["counts"]["succeeded"], 2);
    assert_eq!(body["counts"]["failed"], 1);
    // Nothing else is pending that could fire it again.
    assert_eq!(h.jobs_of_kind(WEBHOOK_KIND).await.len(), 1);
    runner.shutdown().await;
}

async fn two_runners_drain_a_batch_with_each_job_run_once(h: Harness) {
    let a = h.runner(|c| c.worker_id = "a".into());
    let b = h.runner(|c| c.worker_id = "b".into());
    let jobs = (0..300)
        .map(|_| JobSpec::new("noop", Value::Null))
        .collect();
    let sub = h.submit_jobs(jobs).await;
    let batch = h.wait_batch(sub.batch_id.unwrap()).await;
    assert_eq!(batch.state, BatchState::Succeeded);
    assert_eq!(batch.counts.succeeded, 300);
    assert_eq!(batch.counts.total(), 300, "counts: {:?}", batch.counts);
    let filter = sluice_jobs::store::JobFilter {
        batch_id: sub.batch_id,
        limit: 1000,
        ..Default::default()
    };
    let jobs = h.client.jobs(filter).await.unwrap();
    assert_eq!(jobs.len(), 300);
    assert!(
        jobs.iter()
            .all(|j| j.state == JobState::Succeeded && j.attempt == 1 && j.errors.is_empty())
    );
    a.shutdown().await;
    b.shutdown().await;
}
