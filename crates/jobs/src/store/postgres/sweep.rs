//! Housekeeping every worker does on a timer: rescuing expired leases and
//! pruning old finished jobs. Both skip rows another worker's sweep holds,
//! so any number of workers can sweep at once.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::XID;
use super::attempts::{Ending, SWEEP_LIMIT, error_json, finish};
use super::batches::Effects;
use crate::model::{BatchId, ErrorKind, JobId, JobState, Timestamp};
use crate::store::StoreError;

/// Requeues (or fails, when out of attempts) running jobs whose lease
/// expired. A heartbeat that extended a lease since the scan started makes
/// the locked row fail the re-checked condition, so it is left alone.
pub(super) async fn rescue(
    c: &mut PgConnection,
    fx: &mut Effects,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let rows = sqlx::query(
        "SELECT id, batch_id, attempt, max_attempts, worker FROM jobs \
         WHERE state = 'running' AND lease_expires_at < $1 \
         ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(now.0)
    .bind(SWEEP_LIMIT)
    .fetch_all(&mut *c)
    .await?;
    let requeue = format!(
        "UPDATE jobs SET state = 'queued', errors = errors || jsonb_build_array($1::jsonb), \
         worker = NULL, lease_expires_at = NULL, updated_at = $2, change_xid = {XID} WHERE id = $3"
    );
    let mut n = 0;
    for row in rows {
        let id = JobId(row.try_get(0)?);
        let batch = row.try_get::<Option<Uuid>, _>(1)?.map(BatchId);
        let attempt: i32 = row.try_get(2)?;
        let max_attempts: i32 = row.try_get(3)?;
        let worker: Option<String> = row.try_get(4)?;
        let msg = format!(
            "lease of worker {} expired",
            worker.as_deref().unwrap_or("?")
        );
        let err = error_json(attempt, ErrorKind::LeaseExpired, &msg, now);
        tracing::info!(job.id = %id, attempt, "lease expired; job rescued");
        if attempt < max_attempts {
            sqlx::query(&requeue)
                .bind(err)
                .bind(now.0)
                .bind(id.0)
                .execute(&mut *c)
                .await?;
            fx.moved(batch, JobState::Running, JobState::Queued);
        } else {
            let ending = Ending {
                id,
                batch,
                from: JobState::Running,
                to: JobState::Failed,
                error: Some(err),
            };
            finish(c, fx, ending, now).await?;
        }
        n += 1;
    }
    Ok(n)
}

/// Deletes up to `limit` jobs that finished before `before` with their
/// dependency edges, then finished batches left without jobs.
pub(super) async fn prune(
    c: &mut PgConnection,
    before: Timestamp,
    limit: u32,
) -> Result<u64, StoreError> {
    let limit = i64::from(limit.max(1));
    let pruned: i64 = sqlx::query_scalar(
        "WITH old AS (SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < $1 \
                      LIMIT $2 FOR UPDATE SKIP LOCKED), \
              gone AS (DELETE FROM jobs WHERE id IN (SELECT id FROM old) RETURNING id), \
              edges_out AS (DELETE FROM job_deps WHERE depends_on IN (SELECT id FROM gone)), \
              edges_in AS (DELETE FROM job_deps WHERE job_id IN (SELECT id FROM gone)) \
         SELECT count(*) FROM gone",
    )
    .bind(before.0)
    .bind(limit)
    .fetch_one(&mut *c)
    .await?;
    sqlx::query(
        "DELETE FROM batches WHERE id IN (SELECT id FROM batches b WHERE state <> 'running' \
         AND finished_at < $1 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id) \
         LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(before.0)
    .bind(limit)
    .execute(&mut *c)
    .await?;
    Ok(pruned.max(0) as u64)
}
