//! PostgreSQL only: several stores ("processes") on one schema, sharing
//! queues, wake-ups, unique keys, rescues and the change stream. Each test
//! skips when `SLUICE_TEST_POSTGRES_URL` is unset.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sluice_jobs::kinds::HttpOptions;
use sluice_jobs::store::{ChangeFilter, ClaimRequest, Completion, JobFilter, Outcome, StoreError};
use sluice_jobs::{
    BatchSpec, BatchState, Callback, CallbackOn, CallbackTarget, Client, JobSpec, JobState,
    PostgresConfig, PostgresStore, Store,
};

use crate::support::{PgSchema, Probes, fast_config, postgres_url, registry};

/// Two stores on one fresh schema, and a client on the first.
async fn two_stores() -> Option<(PgSchema, Arc<PostgresStore>, Arc<PostgresStore>, Client)> {
    let schema = PgSchema::new(postgres_url()?);
    let a = Arc::new(schema.open().await);
    let b = Arc::new(schema.open().await);
    let client = Client::new(
        a.clone(),
        Arc::new(registry(&Probes::default(), HttpOptions::default())),
    );
    Some((schema, a, b, client))
}

fn noops(n: usize) -> BatchSpec {
    BatchSpec {
        jobs: (0..n).map(|_| JobSpec::new("noop", Value::Null)).collect(),
        ..Default::default()
    }
}

fn claim_req(worker: &str, n: u32) -> ClaimRequest {
    ClaimRequest {
        worker: worker.into(),
        queues: vec![("default".into(), n)],
        lease: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claimers_in_two_processes_never_take_the_same_job() {
    let Some((_schema, a, b, client)) = two_stores().await else {
        return;
    };
    let sub = client.submit_batch(&noops(400)).await.unwrap();
    let claimed = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (i, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let claimed = claimed.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("w{i}");
            loop {
                let got = store.claim(claim_req(&worker, 7)).await.unwrap();
                if got.is_empty() {
                    break;
                }
                for job in got {
                    claimed.lock().unwrap().push(job.lease.job_id);
                    let done = Completion {
                        lease: job.lease,
                        outcome: Outcome::Succeeded(json!(worker)),
                    };
                    assert!(store.complete(done).await.unwrap());
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let claimed = claimed.lock().unwrap().clone();
    let unique: HashSet<_> = claimed.iter().collect();
    assert_eq!(unique.len(), claimed.len(), "a job was claimed twice");
    assert_eq!(claimed.len(), 400);
    let batch = client.batch(sub.batch_id.unwrap()).await.unwrap().unwrap();
    assert_eq!(batch.state, BatchState::Succeeded);
    assert_eq!(batch.counts.succeeded, 400);
    assert_eq!(batch.counts.total(), 400, "counts: {:?}", batch.counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runners_in_two_processes_drain_a_batch_and_fire_its_callback_once() {
    let Some((_schema, a, b, client)) = two_stores().await else {
        return;
    };
    let mut follow_up = JobSpec::new("noop", json!({"tag": "done"}));
    follow_up.queue = Some("callbacks".into());
    let spec = BatchSpec {
        callbacks: vec![Callback {
            on: CallbackOn::Complete,
            target: CallbackTarget::Job(Box::new(follow_up)),
        }],
        ..noops(300)
    };
    let registry = Arc::new(registry(&Probes::default(), HttpOptions::default()));
    let runners: Vec<_> = [("a", a.clone()), ("b", b.clone())]
        .into_iter()
        .map(|(name, store)| {
            let mut config = fast_config();
            config.worker_id = name.into();
            config.queues = vec![
                sluice_jobs::QueueConfig::new("default"),
                sluice_jobs::QueueConfig::new("callbacks"),
            ];
            sluice_jobs::Runner::start(store, registry.clone(), config).unwrap()
        })
        .collect();
    let sub = client.submit_batch(&spec).await.unwrap();
    let bid = sub.batch_id.unwrap();
    let mut batch = None;
    for _ in 0..1000 {
        let b = client.batch(bid).await.unwrap().unwrap();
        if b.finished_at.is_some() {
            batch = Some(b);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let batch = batch.expect("batch finished");
    assert_eq!(batch.counts.succeeded, 300);
    assert_eq!(batch.callback_jobs.len(), 1);
    let jobs = client
        .jobs(JobFilter {
            batch_id: Some(bid),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(jobs.iter().all(|j| j.attempt == 1 && j.errors.is_empty()));
    let callbacks: Vec<_> = client
        .jobs(JobFilter {
            kind: Some("noop".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.queue == "callbacks")
        .collect();
    assert_eq!(callbacks.len(), 1, "the callback fired more than once");
    for r in runners {
        r.shutdown().await;
    }
}

#[tokio::test]
async fn a_commit_in_one_process_wakes_the_other_by_notification() {
    let Some(url) = postgres_url() else { return };
    let schema = PgSchema::new(url);
    let a = Arc::new(schema.open().await);
    // No polling fallback to speak of: only a notification can tick.
    let b = PostgresStore::open(PostgresConfig {
        poll_fallback: Duration::from_secs(3600),
        ..schema.config()
    })
    .await
    .unwrap();
    let mut wake = b.subscribe();
    let mut changed = b.subscribe_changes();
    // The interval's first tick is immediate: let it pass.
    tokio::time::sleep(Duration::from_millis(200)).await;
    wake.borrow_and_update();
    changed.borrow_and_update();
    let client = Client::new(
        a.clone(),
        Arc::new(registry(&Probes::default(), HttpOptions::default())),
    );
    client
        .submit_job(&JobSpec::new("noop", Value::Null))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), wake.changed())
        .await
        .expect("a wake-up from the other process")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), changed.changed())
        .await
        .expect("a change tick from the other process")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_unique_key_submitted_concurrently_by_two_processes_is_one_job() {
    let Some((_schema, a, b, _client)) = two_stores().await else {
        return;
    };
    let registry = Arc::new(registry(&Probes::default(), HttpOptions::default()));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store: Arc<dyn Store> = if i % 2 == 0 { a.clone() } else { b.clone() };
        let client = Client::new(store, registry.clone());
        tasks.push(tokio::spawn(async move {
            let mut spec = JobSpec::new("noop", Value::Null);
            spec.unique_key = Some("nightly-report".into());
            spec.run_at = Some(sluice_jobs::Timestamp::now().plus(Duration::from_secs(3600)));
            client.submit_job(&spec).await.unwrap()
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 1, "one key became {} jobs", ids.len());
    let stored = a
        .list_jobs(JobFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rescues_racing_in_two_processes_rescue_each_job_once() {
    let Some((_schema, a, b, client)) = two_stores().await else {
        return;
    };
    client.submit_batch(&noops(60)).await.unwrap();
    let got = a
        .claim(ClaimRequest {
            lease: Duration::from_millis(1),
            ..claim_req("doomed", 100)
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 60);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (ra, rb) = tokio::join!(a.rescue_expired(), b.rescue_expired());
    assert_eq!(ra.unwrap() + rb.unwrap(), 60);
    let jobs = a
        .list_jobs(JobFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        jobs.iter()
            .all(|j| j.state == JobState::Queued && j.errors.len() == 1)
    );
}

/// The stream's promise: a change committed after a reader's cursor is
/// never skipped, even when an older transaction commits later than a
/// newer one.
#[tokio::test]
async fn changes_wait_for_older_transactions_still_in_progress() {
    let Some((_schema, a, _b, client)) = two_stores().await else {
        return;
    };
    let sub = client.submit_batch(&noops(2)).await.unwrap();
    let (x, y) = (sub.jobs[0].id, sub.jobs[1].id);
    let mut seen = Vec::new();
    for _ in 0..1000 {
        seen = a.changes(ChangeFilter::All, None, 100).await.unwrap();
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.len(), 2);
    let cursor = seen[1].0;

    // An older transaction changes x and stays open; a newer one cancels y
    // and commits.
    let mut older = a.pool().begin().await.unwrap();
    sqlx::query(
        "UPDATE jobs SET progress = 0.5, change_xid = pg_current_xact_id()::text::bigint \
         WHERE id = $1",
    )
    .bind(x.0)
    .execute(&mut *older)
    .await
    .unwrap();
    a.cancel_job(y).await.unwrap();
    let early = a
        .changes(ChangeFilter::All, Some(cursor), 100)
        .await
        .unwrap();
    assert!(
        early.is_empty(),
        "y was read while an older transaction was open: {early:?}"
    );
    older.commit().await.unwrap();
    let mut late = Vec::new();
    for _ in 0..1000 {
        late = a
            .changes(ChangeFilter::All, Some(cursor), 100)
            .await
            .unwrap();
        if late.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ids: Vec<_> = late.iter().map(|(_, j)| j.id).collect();
    assert_eq!(ids, vec![x, y], "older transaction first");
    assert_eq!(late[1].1.state, JobState::Cancelled);
}

#[tokio::test]
async fn bad_settings_are_refused_with_what_was_wrong() {
    let Some(url) = postgres_url() else { return };
    let e = PostgresStore::open(PostgresConfig {
        schema: Some("Bad-Name".into()),
        ..PostgresConfig::new(url)
    })
    .await
    .unwrap_err();
    assert!(matches!(e, StoreError::Config(_)), "{e}");
    assert!(e.to_string().contains("Bad-Name"), "{e}");

    let e = PostgresStore::open(PostgresConfig::new("postgres://u:secret@[bad"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("database URL") && !e.contains("secret"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_cancelled_while_two_processes_run_it_keeps_exact_counts() {
    let Some((_schema, a, b, client)) = two_stores().await else {
        return;
    };
    let mut follow_up = JobSpec::new("noop", Value::Null);
    follow_up.queue = Some("callbacks".into());
    // Chains of four: job i waits for job i - 50.
    let jobs = (0..200)
        .map(|i| {
            let mut j = JobSpec::new("sleep", json!({"ms": 2}));
            if i >= 50 {
                j.depends_on = vec![i - 50];
            }
            j
        })
        .collect();
    let spec = BatchSpec {
        jobs,
        callbacks: vec![Callback {
            on: CallbackOn::Complete,
            target: CallbackTarget::Job(Box::new(follow_up)),
        }],
        ..Default::default()
    };
    let registry = Arc::new(registry(&Probes::default(), HttpOptions::default()));
    let runners: Vec<_> = [("a", a.clone()), ("b", b.clone())]
        .into_iter()
        .map(|(name, store)| {
            let mut config = fast_config();
            config.worker_id = name.into();
            sluice_jobs::Runner::start(store, registry.clone(), config).unwrap()
        })
        .collect();
    let sub = client.submit_batch(&spec).await.unwrap();
    let bid = sub.batch_id.unwrap();
    crate::support::eventually("some jobs succeeded", || async {
        client.batch(bid).await.unwrap().unwrap().counts.succeeded >= 40
    })
    .await;
    b.cancel_batch(bid).await.unwrap();
    let mut batch = client.batch(bid).await.unwrap().unwrap();
    for _ in 0..1000 {
        if batch.finished_at.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        batch = client.batch(bid).await.unwrap().unwrap();
    }
    assert_eq!(batch.state, BatchState::Cancelled, "{batch:#?}");
    assert_eq!(batch.counts.total(), 200, "counts: {:?}", batch.counts);
    assert_eq!(batch.counts.finished(), 200, "counts: {:?}", batch.counts);
    assert!(batch.counts.cancelled > 0 && batch.counts.succeeded >= 40);
    assert_eq!(batch.callback_jobs.len(), 1);
    let jobs = client
        .jobs(JobFilter {
            batch_id: Some(bid),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    for state in JobState::ALL {
        let n = jobs.iter().filter(|j| j.state == state).count() as u64;
        assert_eq!(n, batch.counts.get(state), "{state} jobs vs counter");
    }
    for r in runners {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_submitted_concurrently_by_two_processes_is_one_batch() {
    let Some((_schema, a, b, _client)) = two_stores().await else {
        return;
    };
    let registry = Arc::new(registry(&Probes::default(), HttpOptions::default()));
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store: Arc<dyn Store> = if i % 2 == 0 { a.clone() } else { b.clone() };
        let client = Client::new(store, registry.clone());
        tasks.push(tokio::spawn(async move {
            let spec = BatchSpec {
                idempotency_key: Some("import-2026-12-01".into()),
                ..noops(5)
            };
            client.submit_batch(&spec).await.unwrap()
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert_eq!(answers.iter().filter(|s| !s.replayed).count(), 1);
    let first = answers.iter().find(|s| !s.replayed).unwrap();
    for s in &answers {
        assert_eq!((s.batch_id, &s.jobs), (first.batch_id, &first.jobs));
    }
    let jobs = a
        .list_jobs(JobFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), 5, "one batch's jobs stored");
}
