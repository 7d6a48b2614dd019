//! Submissions: the batch row, its jobs (one `UNNEST` insert for all jobs
//! without a unique key) and their dependency edges.

use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::batches::Effects;
use super::rows::storable;
use super::{UNFINISHED, XID};
use crate::model::{BatchId, JobId, JobState, Timestamp};
use crate::store::{StoreError, Submitted, SubmittedJob};
use crate::validate::{NewBatch, NewJob};

fn initial_state(job: &NewJob, pending_deps: usize, now: Timestamp) -> JobState {
    if pending_deps == 0 && job.run_at <= now {
        JobState::Queued
    } else {
        JobState::Scheduled
    }
}

/// Inserts one job, or finds the unfinished holder of its unique key.
///
/// The key's partial unique index decides between two submissions racing
/// for one key: `ON CONFLICT DO NOTHING` waits for the other to commit,
/// and the holder is then read (looping in the unlikely case that it
/// finished in between).
pub(super) async fn insert_job(
    c: &mut PgConnection,
    fx: &mut Effects,
    batch: Option<BatchId>,
    job: &NewJob,
    pending_deps: usize,
    now: Timestamp,
) -> Result<SubmittedJob, StoreError> {
    let state = initial_state(job, pending_deps, now);
    // Each round loses only to a holder that finished meanwhile; a bound
    // turns a logic error into an error instead of a spin.
    for _ in 0..100 {
        let sql = format!(
            "INSERT INTO jobs (id, batch_id, queue, kind, args, priority, state, run_at, \
             max_attempts, timeout_ms, backoff, pending_deps, unique_key, created_at, updated_at, \
             change_xid) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, {XID}) \
             ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN {UNFINISHED} \
             DO NOTHING RETURNING id"
        );
        let inserted = sqlx::query(&sql)
            .bind(job.id.0)
            .bind(batch.map(|b| b.0))
            .bind(&job.queue)
            .bind(&job.kind)
            .bind(storable(&job.args).as_ref())
            .bind(job.priority)
            .bind(state.as_str())
            .bind(job.run_at.0)
            .bind(i32::try_from(job.max_attempts).unwrap_or(i32::MAX))
            .bind(i64::try_from(job.timeout_ms).unwrap_or(i64::MAX))
            .bind(Json(&job.backoff))
            .bind(i32::try_from(pending_deps).unwrap_or(i32::MAX))
            .bind(&job.unique_key)
            .bind(now.0)
            .fetch_optional(&mut *c)
            .await?;
        if inserted.is_some() {
            fx.added(batch, state);
            return Ok(SubmittedJob {
                id: job.id,
                existing: false,
            });
        }
        // FOR SHARE: a dependency edge to the holder must not be missed by
        // a completion of the holder committing meanwhile, so the holder
        // stays unfinished until this commits (or, if it finished first, it
        // is not the holder any more and the insert is tried again).
        let sql = format!(
            "SELECT id FROM jobs WHERE unique_key = $1 AND state IN {UNFINISHED} FOR SHARE"
        );
        let holder = sqlx::query(&sql)
            .bind(&job.unique_key)
            .fetch_optional(&mut *c)
            .await?;
        if let Some(row) = holder {
            return Ok(SubmittedJob {
                id: JobId(row.try_get(0)?),
                existing: true,
            });
        }
    }
    Err(StoreError::Corrupt(format!(
        "job {}: unique key {:?} neither inserted nor held",
        job.id, job.unique_key
    )))
}

/// Inserts jobs without unique keys in one statement.
async fn insert_plain(
    c: &mut PgConnection,
    fx: &mut Effects,
    batch: Option<BatchId>,
    jobs: &[&NewJob],
    now: Timestamp,
) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let n = jobs.len();
    let mut ids = Vec::with_capacity(n);
    let mut queues = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut args: Vec<Value> = Vec::with_capacity(n);
    let mut priorities = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut run_ats = Vec::with_capacity(n);
    let mut max_attempts = Vec::with_capacity(n);
    let mut timeouts = Vec::with_capacity(n);
    let mut backoffs = Vec::with_capacity(n);
    let mut pending = Vec::with_capacity(n);
    for job in jobs {
        let state = initial_state(job, job.depends_on.len(), now);
        fx.added(batch, state);
        ids.push(job.id.0);
        queues.push(job.queue.as_str());
        kinds.push(job.kind.as_str());
        args.push(storable(&job.args).into_owned());
        priorities.push(job.priority);
        states.push(state.as_str());
        run_ats.push(job.run_at.0);
        max_attempts.push(i32::try_from(job.max_attempts).unwrap_or(i32::MAX));
        timeouts.push(i64::try_from(job.timeout_ms).unwrap_or(i64::MAX));
        backoffs.push(Json(&job.backoff));
        pending.push(i32::try_from(job.depends_on.len()).unwrap_or(i32::MAX));
    }
    let sql = format!(
        "INSERT INTO jobs (id, batch_id, queue, kind, args, priority, state, run_at, \
         max_attempts, timeout_ms, backoff, pending_deps, created_at, updated_at, change_xid) \
         SELECT id, $1, queue, kind, args, priority, state, run_at, max_attempts, timeout_ms, \
                backoff, pending_deps, $2, $2, {XID} \
         FROM UNNEST($3::uuid[], $4::text[], $5::text[], $6::jsonb[], $7::int[], $8::text[], \
                     $9::bigint[], $10::int[], $11::bigint[], $12::jsonb[], $13::int[]) \
              AS t(id, queue, kind, args, priority, state, run_at, max_attempts, timeout_ms, \
                   backoff, pending_deps)"
    );
    sqlx::query(&sql)
        .bind(batch.map(|b| b.0))
        .bind(now.0)
        .bind(&ids)
        .bind(&queues)
        .bind(&kinds)
        .bind(&args)
        .bind(&priorities)
        .bind(&states)
        .bind(&run_ats)
        .bind(&max_attempts)
        .bind(&timeouts)
        .bind(&backoffs)
        .bind(&pending)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Inserts a validated batch (or lone job).
pub(super) async fn submit(
    c: &mut PgConnection,
    fx: &mut Effects,
    batch: &NewBatch,
    now: Timestamp,
) -> Result<Submitted, StoreError> {
    if let Some(key) = &batch.idempotency_key
        && let Some(first) = replay(c, key).await?
    {
        return Ok(first);
    }
    if let Some(id) = batch.id {
        // ON CONFLICT: a submission with the same key committing meanwhile
        // wins; this one waits for it and answers with its batch.
        let inserted = sqlx::query(
            "INSERT INTO batches (id, name, state, total, on_dependency_failure, callbacks, \
             callback_plans, created_at, idempotency_key) \
             VALUES ($1, $2, 'running', 0, $3, $4, $5, $6, $7) \
             ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING id",
        )
        .bind(id.0)
        .bind(&batch.name)
        .bind(batch.on_dependency_failure.as_str())
        .bind(Json(&batch.callbacks))
        .bind(Json(&batch.callback_plans))
        .bind(now.0)
        .bind(&batch.idempotency_key)
        .fetch_optional(&mut *c)
        .await?;
        if inserted.is_none() {
            let key = batch.idempotency_key.as_deref().unwrap_or_default();
            return replay(c, key).await?.ok_or_else(|| {
                StoreError::Corrupt(format!("idempotency key {key:?} neither new nor stored"))
            });
        }
        // Checked at commit even when every job resolved to an existing
        // one (an empty batch ends at once).
        fx.touch(id);
    }
    // Jobs with a unique key may resolve to another job: those go one by
    // one; dependency edges then point at whichever id each resolved to.
    let mut out: Vec<SubmittedJob> = Vec::with_capacity(batch.jobs.len());
    let mut plain = Vec::new();
    for job in &batch.jobs {
        if job.unique_key.is_some() {
            out.push(insert_job(c, fx, batch.id, job, job.depends_on.len(), now).await?);
        } else {
            out.push(SubmittedJob {
                id: job.id,
                existing: false,
            });
            plain.push(job);
        }
    }
    insert_plain(c, fx, batch.id, &plain, now).await?;
    let mut before: Vec<Uuid> = Vec::new();
    let mut after: Vec<Uuid> = Vec::new();
    for (i, job) in batch.jobs.iter().enumerate() {
        if out[i].existing {
            continue;
        }
        for &d in &job.depends_on {
            let dep = out
                .get(d)
                .ok_or_else(|| StoreError::Corrupt(format!("job {i}: dependency {d}")))?;
            before.push(dep.id.0);
            after.push(out[i].id.0);
        }
    }
    if !before.is_empty() {
        sqlx::query(
            "INSERT INTO job_deps (depends_on, job_id) SELECT * FROM UNNEST($1::uuid[], $2::uuid[])",
        )
        .bind(&before)
        .bind(&after)
        .execute(&mut *c)
        .await?;
    }
    if let Some(id) = batch.id {
        let inserted = out.iter().filter(|j| !j.existing).count() as i64;
        // The answer is kept only for keyed batches: only they are replayed.
        let submitted = batch.idempotency_key.as_ref().map(|_| Json(&out));
        sqlx::query("UPDATE batches SET total = $1, submitted = $2 WHERE id = $3")
            .bind(inserted)
            .bind(submitted)
            .bind(id.0)
            .execute(&mut *c)
            .await?;
    }
    Ok(Submitted {
        batch_id: batch.id,
        jobs: out,
        replayed: false,
    })
}

/// The first answer given for an idempotency key, if a batch holds it.
async fn replay(c: &mut PgConnection, key: &str) -> Result<Option<Submitted>, StoreError> {
    let Some(row) = sqlx::query("SELECT id, submitted FROM batches WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(None);
    };
    let jobs: Option<Json<Vec<SubmittedJob>>> = row.try_get("submitted")?;
    Ok(Some(Submitted {
        batch_id: Some(BatchId(row.try_get("id")?)),
        jobs: jobs.map(|Json(j)| j).unwrap_or_default(),
        replayed: true,
    }))
}
