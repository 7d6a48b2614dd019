//! The change stream behind SSE, and manual retries.

use serde_json::json;
use sluice_jobs::store::{CancelResult, ChangeCursor, ChangeFilter, RetryResult};
use sluice_jobs::{BatchSpec, BatchState, Callback, CallbackOn, CallbackTarget, JobSpec, JobState};

use crate::support::Harness;

on_both_stores!(
    changes_resume_after_a_cursor_without_loss_or_repeat,
    change_ticks_follow_commits,
    retrying_a_failed_job_gives_it_one_more_attempt_and_reopens_its_batch,
    retrying_a_cancelled_job_is_refused_while_its_unique_key_is_taken,
    changes_carry_each_jobs_dependencies,
);

fn tagged_noop(tag: &str) -> Callback {
    let mut job = JobSpec::new("noop", json!({ "tag": tag }));
    job.queue = Some("callbacks".into());
    Callback {
        on: match tag {
            "success" => CallbackOn::Success,
            "failure" => CallbackOn::Failure,
            _ => CallbackOn::Complete,
        },
        target: CallbackTarget::Job(Box::new(job)),
    }
}

/// Reads changes once at least `want` are visible. PostgreSQL shows a
/// change once every transaction older than it has ended, which other
/// tests running at the same time may delay by a moment.
async fn visible(
    h: &Harness,
    filter: ChangeFilter,
    after: Option<ChangeCursor>,
    want: usize,
) -> Vec<(ChangeCursor, sluice_jobs::Job)> {
    for _ in 0..1000 {
        let got = h.client.changes(filter, after, 100).await.unwrap();
        if got.len() >= want {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("fewer than {want} changes after {after:?}");
}

async fn changes_resume_after_a_cursor_without_loss_or_repeat(h: Harness) {
    let a = h
        .submit_jobs(vec![
            JobSpec::new("noop", json!({})),
            JobSpec::new("noop", json!({})),
            JobSpec::new("noop", json!({})),
        ])
        .await;
    let other = h.submit_jobs(vec![JobSpec::new("noop", json!({}))]).await;
    let batch = a.batch_id.unwrap();

    let all = visible(&h, ChangeFilter::All, None, 4).await;
    assert_eq!(all.len(), 4, "every inserted job is a change");
    let cursors: Vec<ChangeCursor> = all.iter().map(|(c, _)| *c).collect();
    let mut sorted = cursors.clone();
    sorted.sort();
    assert_eq!(cursors, sorted, "oldest change first");

    let mine = h
        .client
        .changes(ChangeFilter::Batch(batch), None, 100)
        .await
        .unwrap();
    let ids: Vec<_> = mine.iter().map(|(_, j)| j.id).collect();
    assert_eq!(ids, a.jobs.iter().map(|j| j.id).collect::<Vec<_>>());

    // Page through one at a time: the same three, in the same order.
    let mut after = None;
    let mut paged = Vec::new();
    loop {
        let page = h
            .client
            .changes(ChangeFilter::Batch(batch), after, 1)
            .await
            .unwrap();
        let Some((c, j)) = page.into_iter().next() else {
            break;
        };
        after = Some(c);
        paged.push(j.id);
    }
    assert_eq!(paged, ids);

    // A later change shows up after the last cursor, once, at its new state;
    // the job outside the batch does not.
    let last = after.unwrap();
    assert_eq!(
        h.client.cancel_job(ids[1]).await.unwrap(),
        CancelResult::Cancelled(1)
    );
    h.client.cancel_job(other.jobs[0].id).await.unwrap();
    let next = visible(&h, ChangeFilter::Batch(batch), Some(last), 1).await;
    assert_eq!(next.len(), 1, "{next:#?}");
    assert_eq!(next[0].1.id, ids[1]);
    assert_eq!(next[0].1.state, JobState::Cancelled);
    assert!(next[0].0 > last);

    // A cursor survives its printed form (the SSE id).
    let parsed: ChangeCursor = last.to_string().parse().unwrap();
    assert_eq!(parsed, last);
    assert!("12".parse::<ChangeCursor>().is_err());

    let one = h
        .client
        .changes(ChangeFilter::Job(ids[1]), None, 100)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].1.state, JobState::Cancelled);
}

async fn change_ticks_follow_commits(h: Harness) {
    let mut rx = h.client.store().subscribe_changes();
    let before = *rx.borrow_and_update();
    h.submit_jobs(vec![JobSpec::new("noop", json!({}))]).await;
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
        .await
        .expect("a tick after the submission")
        .unwrap();
    assert_ne!(*rx.borrow(), before);
}

async fn retrying_a_failed_job_gives_it_one_more_attempt_and_reopens_its_batch(h: Harness) {
    let mut spec = JobSpec::new("flaky", json!({"succeed_on": 2}));
    spec.max_attempts = Some(1);
    let sub = h
        .client
        .submit_batch(&BatchSpec {
            jobs: vec![spec],
            callbacks: vec![
                tagged_noop("success"),
                tagged_noop("failure"),
                tagged_noop("complete"),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let (bid, id) = (sub.batch_id.unwrap(), sub.jobs[0].id);
    let runner = h.runner(|c| {
        c.queues = vec![
            sluice_jobs::QueueConfig::new("default"),
            sluice_jobs::QueueConfig::new("callbacks"),
        ];
    });
    let failed = h.wait_state(id, JobState::Failed).await;
    assert_eq!((failed.attempt, failed.errors.len()), (1, 1));
    let b = h.wait_batch(bid).await;
    assert_eq!(b.state, BatchState::Failed);
    assert_eq!(b.callback_jobs.len(), 2, "failure and complete fired");

    assert_eq!(h.client.retry_job(id).await.unwrap(), RetryResult::Requeued);
    let ok = h.wait_state(id, JobState::Succeeded).await;
    assert_eq!(ok.attempt, 2);
    assert_eq!(ok.max_attempts, 2);
    assert_eq!(ok.errors.len(), 1, "the first attempt's error is kept");
    let b = h.wait_batch(bid).await;
    assert_eq!(b.state, BatchState::Succeeded);
    assert_eq!((b.counts.succeeded, b.counts.failed), (1, 0));
    assert_eq!(
        b.callback_jobs.len(),
        3,
        "success fires now; failure and complete do not fire again"
    );
    for cb in &b.callback_jobs {
        h.wait_state(*cb, JobState::Succeeded).await;
    }
    let mut tags: Vec<String> = h
        .jobs_of_kind("noop")
        .await
        .into_iter()
        .filter(|j| j.queue == "callbacks")
        .map(|j| j.args["tag"].as_str().unwrap().to_owned())
        .collect();
    tags.sort();
    assert_eq!(tags, vec!["complete", "failure", "success"]);

    assert_eq!(
        h.client.retry_job(id).await.unwrap(),
        RetryResult::NotRetryable(JobState::Succeeded)
    );
    assert_eq!(
        h.client.retry_job(sluice_jobs::JobId::new()).await.unwrap(),
        RetryResult::NotFound
    );
    runner.shutdown().await;
}

async fn retrying_a_cancelled_job_is_refused_while_its_unique_key_is_taken(h: Harness) {
    let mut spec = JobSpec::new("sleep", json!({"ms": 1}));
    spec.unique_key = Some("k".into());
    let first = h.client.submit_job(&spec).await.unwrap();
    h.client.cancel_job(first).await.unwrap();
    let second = h.client.submit_job(&spec).await.unwrap();
    assert_ne!(first, second, "the key is free once the first is cancelled");
    assert_eq!(
        h.client.retry_job(first).await.unwrap(),
        RetryResult::UniqueKeyTaken
    );
    assert_eq!(h.job(first).await.state, JobState::Cancelled);
    h.client.cancel_job(second).await.unwrap();
    assert_eq!(
        h.client.retry_job(first).await.unwrap(),
        RetryResult::Requeued
    );
    assert_eq!(h.job(first).await.state, JobState::Queued);
}

async fn changes_carry_each_jobs_dependencies(h: Harness) {
    let mut second = JobSpec::new("noop", json!({}));
    second.depends_on = vec![0];
    let sub = h
        .submit_jobs(vec![JobSpec::new("noop", json!({})), second])
        .await;
    let batch = sub.batch_id.unwrap();
    let got = visible(&h, ChangeFilter::Batch(batch), None, 2).await;
    let of = |i: usize| {
        got.iter()
            .find(|(_, j)| j.id == sub.jobs[i].id)
            .map(|(_, j)| j.depends_on.clone())
            .expect("both jobs are changes")
    };
    assert_eq!(of(0), vec![]);
    assert_eq!(
        of(1),
        vec![sub.jobs[0].id],
        "as GET /v1/jobs/{{id}} shows them"
    );
}
