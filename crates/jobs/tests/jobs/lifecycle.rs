//! Jobs through a real runner: running to success, run_at, concurrency
//! bounds, unique keys, validation.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_jobs::store::JobFilter;
use sluice_jobs::{BatchSpec, JobSpec, JobState, QueueConfig, SubmitError, Timestamp};

use crate::support::Harness;

on_both_stores!(
    noop_job_runs_to_success,
    scheduled_job_waits_for_its_run_at,
    concurrency_is_bounded_per_queue_and_overall,
    unique_key_returns_the_unfinished_holder,
    rejected_batch_names_index_and_field_and_stores_nothing,
);

async fn noop_job_runs_to_success(h: Harness) {
    let runner = h.runner(|_| {});
    let id = h
        .client
        .submit_job(&JobSpec::new("sleep", json!({"ms": 5})))
        .await
        .unwrap();
    let j = h.wait_state(id, JobState::Succeeded).await;
    assert_eq!(j.attempt, 1);
    assert_eq!(j.result, Some(json!({"slept_ms": 5})));
    assert!(j.started_at.is_some() && j.finished_at >= j.started_at);
    assert!(j.errors.is_empty());
    assert!(runner.shutdown().await.drained);
}

async fn scheduled_job_waits_for_its_run_at(h: Harness) {
    let runner = h.runner(|_| {});
    let run_at = Timestamp::now().plus(Duration::from_millis(600));
    let mut spec = JobSpec::new("noop", Value::Null);
    spec.run_at = Some(run_at);
    let id = h.client.submit_job(&spec).await.unwrap();
    assert_eq!(h.job(id).await.state, JobState::Scheduled);
    let j = h.wait_state(id, JobState::Succeeded).await;
    assert!(j.started_at.unwrap() >= run_at, "started before run_at");
    runner.shutdown().await;
}

async fn concurrency_is_bounded_per_queue_and_overall(h: Harness) {
    let runner = h.runner(|c| {
        c.concurrency = 3;
        c.queues = vec![
            QueueConfig {
                name: "narrow".into(),
                concurrency: Some(1),
            },
            QueueConfig::new("default"),
        ];
    });
    let mut jobs = Vec::new();
    for _ in 0..4 {
        let mut s = JobSpec::new("gauge", json!({"ms": 40}));
        s.queue = Some("narrow".into());
        jobs.push(s);
    }
    let b = h.submit_jobs(jobs).await;
    h.wait_batch(b.batch_id.unwrap()).await;
    assert_eq!(
        h.probes.max.load(Ordering::SeqCst),
        1,
        "queue bound of 1 exceeded"
    );

    h.probes.max.store(0, Ordering::SeqCst);
    let jobs = (0..9)
        .map(|_| JobSpec::new("gauge", json!({"ms": 40})))
        .collect();
    let b = h.submit_jobs(jobs).await;
    h.wait_batch(b.batch_id.unwrap()).await;
    let max = h.probes.max.load(Ordering::SeqCst);
    assert!((1..=3).contains(&max), "overall bound of 3 exceeded: {max}");
    runner.shutdown().await;
}

async fn unique_key_returns_the_unfinished_holder(h: Harness) {
    let mut spec = JobSpec::new("noop", Value::Null);
    spec.unique_key = Some("report-42".into());
    spec.run_at = Some(Timestamp::now().plus(Duration::from_secs(3600)));
    let first = h.client.submit_job(&spec).await.unwrap();
    let again = h.client.submit_job(&spec).await.unwrap();
    assert_eq!(first, again);

    // In a batch, the job resolves to the holder and is not counted.
    let batch = BatchSpec {
        jobs: vec![spec.clone(), JobSpec::new("noop", Value::Null)],
        ..Default::default()
    };
    let sub = h.client.submit_batch(&batch).await.unwrap();
    assert!(sub.jobs[0].existing);
    assert_eq!(sub.jobs[0].id, first);
    assert!(!sub.jobs[1].existing);
    assert_eq!(h.batch(sub.batch_id.unwrap()).await.total, 1);

    // Once the holder is final the key is free again.
    h.client.cancel_job(first).await.unwrap();
    let third = h.client.submit_job(&spec).await.unwrap();
    assert_ne!(third, first);
}

async fn rejected_batch_names_index_and_field_and_stores_nothing(h: Harness) {
    let mut cyclic_a = JobSpec::new("noop", Value::Null);
    cyclic_a.depends_on = vec![4];
    let mut cyclic_b = JobSpec::new("noop", Value::Null);
    cyclic_b.depends_on = vec![3];
    let mut missing = JobSpec::new("noop", Value::Null);
    missing.depends_on = vec![99];
    let batch = BatchSpec {
        jobs: vec![
            JobSpec::new("teleport", Value::Null),
            JobSpec::new("sleep", json!({"ms": "long"})),
            missing,
            cyclic_a,
            cyclic_b,
            JobSpec::new("noop", Value::Null),
        ],
        ..Default::default()
    };
    let Err(SubmitError::Invalid(problems)) = h.client.submit_batch(&batch).await else {
        panic!("batch accepted");
    };
    let got: Vec<(Option<usize>, &str)> = problems
        .iter()
        .map(|p| (p.index, p.field.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(0), "kind"),
            (Some(1), "args.ms"),
            (Some(2), "depends_on[0]"),
            (Some(3), "depends_on")
        ]
    );
    assert!(
        problems[3].message.contains("3 -> 4 -> 3"),
        "{}",
        problems[3].message
    );
    let stored = h
        .client
        .jobs(JobFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        stored.is_empty(),
        "a rejected batch stored {} jobs",
        stored.len()
    );

    let limits = sluice_jobs::validate::SubmitLimits {
        max_jobs: 2,
        ..Default::default()
    };
    let small = h.client.clone().with_limits(limits);
    let three = BatchSpec {
        jobs: vec![JobSpec::new("noop", Value::Null); 3],
        ..Default::default()
    };
    let Err(SubmitError::Invalid(p)) = small.submit_batch(&three).await else {
        panic!("accepted")
    };
    assert_eq!((p[0].index, p[0].field.as_str()), (None, "jobs"));
}
