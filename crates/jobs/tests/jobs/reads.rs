//! Store reads and answers the API builds on: idempotent submissions,
//! queue counts, batch lists, the present position of the change stream.

use std::time::Duration;

use serde_json::Value;
use sluice_jobs::store::{BatchFilter, ChangeFilter, QueueCounts};
use sluice_jobs::{BatchSpec, BatchState, JobSpec, Timestamp};

use crate::support::Harness;

on_both_stores!(
    a_repeated_idempotency_key_answers_with_the_first_batch,
    queue_counts_cover_unfinished_jobs_per_queue_and_state,
    batches_are_listed_newest_first_with_a_cursor,
    latest_change_is_where_a_stream_of_the_present_starts,
);

async fn a_repeated_idempotency_key_answers_with_the_first_batch(h: Harness) {
    let spec = BatchSpec {
        jobs: vec![JobSpec::new("noop", Value::Null); 3],
        idempotency_key: Some("order-7".into()),
        ..Default::default()
    };
    let first = h.client.submit_batch(&spec).await.unwrap();
    assert!(!first.replayed);
    let again = h.client.submit_batch(&spec).await.unwrap();
    assert!(again.replayed);
    assert_eq!(
        (again.batch_id, &again.jobs),
        (first.batch_id, &first.jobs),
        "the first answer, replayed"
    );
    let batches = h
        .client
        .batches(BatchFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(batches.len(), 1, "a second batch was stored");
}

async fn queue_counts_cover_unfinished_jobs_per_queue_and_state(h: Harness) {
    let in_queue = |q: &str, later: bool| {
        let mut s = JobSpec::new("noop", Value::Null);
        s.queue = Some(q.into());
        if later {
            s.run_at = Some(Timestamp::now().plus(Duration::from_secs(3600)));
        }
        s
    };
    let sub = h
        .submit_jobs(vec![
            in_queue("mail", false),
            in_queue("mail", false),
            in_queue("mail", true),
            in_queue("reports", true),
            in_queue("gone", false),
        ])
        .await;
    h.client.cancel_job(sub.jobs[4].id).await.unwrap();
    let counts = h.client.queue_counts().await.unwrap();
    assert_eq!(
        counts,
        vec![
            QueueCounts {
                queue: "mail".into(),
                scheduled: 1,
                queued: 2,
                ..Default::default()
            },
            QueueCounts {
                queue: "reports".into(),
                scheduled: 1,
                ..Default::default()
            },
        ],
        "finished jobs and empty queues are left out"
    );
}

async fn batches_are_listed_newest_first_with_a_cursor(h: Harness) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        let sub = h.submit_jobs(vec![JobSpec::new("noop", Value::Null)]).await;
        ids.push(sub.batch_id.unwrap());
    }
    h.client.cancel_batch(ids[1]).await.unwrap();
    let list = |filter: BatchFilter| {
        let client = h.client.clone();
        async move {
            let got = client.batches(filter).await.unwrap();
            got.into_iter().map(|b| b.id).collect::<Vec<_>>()
        }
    };
    let all = list(BatchFilter {
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(all, vec![ids[2], ids[1], ids[0]]);
    let older = list(BatchFilter {
        before: Some(ids[2]),
        limit: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(older, vec![ids[1]]);
    let cancelled = list(BatchFilter {
        state: Some(BatchState::Cancelled),
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(cancelled, vec![ids[1]]);
}

async fn latest_change_is_where_a_stream_of_the_present_starts(h: Harness) {
    let store = h.client.store().clone();
    assert_eq!(store.latest_change().await.unwrap(), None, "no jobs yet");
    let sub = h
        .submit_jobs(vec![
            JobSpec::new("noop", Value::Null),
            JobSpec::new("noop", Value::Null),
        ])
        .await;
    // PostgreSQL shows a change once older transactions have ended.
    let mut now = None;
    for _ in 0..1000 {
        let all = store.changes(ChangeFilter::All, None, 10).await.unwrap();
        let latest = store.latest_change().await.unwrap();
        if all.len() == 2 && latest == Some(all[1].0) {
            now = latest;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let now = now.expect("both submissions readable, latest_change at the last");
    assert!(
        store
            .changes(ChangeFilter::All, Some(now), 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing after the present"
    );
    h.client.cancel_job(sub.jobs[0].id).await.unwrap();
    let mut next = Vec::new();
    for _ in 0..1000 {
        next = store
            .changes(ChangeFilter::All, Some(now), 10)
            .await
            .unwrap();
        if !next.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ids: Vec<_> = next.iter().map(|(_, j)| j.id).collect();
    assert_eq!(ids, vec![sub.jobs[0].id], "only what changed after it");
}
