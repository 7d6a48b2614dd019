//! Requests from people: cancelling jobs and batches, retrying by hand.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::attempts::{Ending, finish};
use super::batches::Effects;
use super::rows::parse_state;
use super::{UNFINISHED, XID};
use crate::model::{BatchId, JobId, JobState, Timestamp};
use crate::store::{CancelResult, RetryResult, StoreError};

async fn cancel_one(
    c: &mut PgConnection,
    fx: &mut Effects,
    id: JobId,
    batch: Option<BatchId>,
    from: JobState,
    now: Timestamp,
) -> Result<(), StoreError> {
    let ending = Ending {
        id,
        batch,
        from,
        to: JobState::Cancelled,
        error: None,
    };
    finish(c, fx, ending, now).await
}

pub(super) async fn cancel_job(
    c: &mut PgConnection,
    fx: &mut Effects,
    id: JobId,
    now: Timestamp,
) -> Result<CancelResult, StoreError> {
    let Some(row) = sqlx::query("SELECT batch_id, state FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(id.0)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(CancelResult::NotFound);
    };
    let batch = row.try_get::<Option<Uuid>, _>(0)?.map(BatchId);
    let state = parse_state(row.try_get(1)?)?;
    if state.is_final() {
        return Ok(CancelResult::AlreadyFinished);
    }
    cancel_one(c, fx, id, batch, state, now).await?;
    Ok(CancelResult::Cancelled(1))
}

/// Cancels every unfinished job of a batch. The jobs are locked first, in
/// id order, and the batch row only at commit with the others, as every
/// transaction does.
pub(super) async fn cancel_batch(
    c: &mut PgConnection,
    fx: &mut Effects,
    id: BatchId,
    now: Timestamp,
) -> Result<CancelResult, StoreError> {
    let Some(row) = sqlx::query("SELECT state FROM batches WHERE id = $1")
        .bind(id.0)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(CancelResult::NotFound);
    };
    if row.try_get::<String, _>(0)? != "running" {
        return Ok(CancelResult::AlreadyFinished);
    }
    let sql = format!(
        "SELECT id FROM jobs WHERE batch_id = $1 AND state IN {UNFINISHED} ORDER BY id FOR UPDATE"
    );
    let rows = sqlx::query(&sql).bind(id.0).fetch_all(&mut *c).await?;
    fx.cancel_requested(id);
    let mut n = 0;
    for row in rows {
        let job = JobId(row.try_get(0)?);
        // An earlier cancel's cascade may have settled this one already.
        let now_state: String = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
            .bind(job.0)
            .fetch_one(&mut *c)
            .await?;
        let state = parse_state(&now_state)?;
        if state.is_final() {
            continue;
        }
        cancel_one(c, fx, job, Some(id), state, now).await?;
        n += 1;
    }
    Ok(CancelResult::Cancelled(n))
}

/// A manual retry: a finished job gets one more attempt, a retrying one
/// skips its backoff. A finished batch runs again; callbacks that fired do
/// not fire again (`callbacks_fired`). A unique key taken meanwhile by a
/// new job fails the UPDATE on the key's index, which the caller answers
/// as [`RetryResult::UniqueKeyTaken`].
pub(super) async fn retry_job(
    c: &mut PgConnection,
    fx: &mut Effects,
    id: JobId,
    now: Timestamp,
) -> Result<RetryResult, StoreError> {
    let Some(row) =
        sqlx::query("SELECT batch_id, state, unique_key FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(id.0)
            .fetch_optional(&mut *c)
            .await?
    else {
        return Ok(RetryResult::NotFound);
    };
    let batch = row.try_get::<Option<Uuid>, _>(0)?.map(BatchId);
    let state = parse_state(row.try_get(1)?)?;
    let unique_key: Option<String> = row.try_get(2)?;
    match state {
        JobState::Failed | JobState::TimedOut | JobState::Cancelled => {
            if let Some(key) = unique_key {
                let sql = format!(
                    "SELECT 1 FROM jobs WHERE unique_key = $1 AND state IN {UNFINISHED} LIMIT 1"
                );
                if sqlx::query(&sql)
                    .bind(key)
                    .fetch_optional(&mut *c)
                    .await?
                    .is_some()
                {
                    return Ok(RetryResult::UniqueKeyTaken);
                }
            }
            let sql = format!(
                "UPDATE jobs SET state = 'queued', run_at = $1, \
                 max_attempts = GREATEST(max_attempts, attempt + 1), finished_at = NULL, \
                 updated_at = $1, change_xid = {XID} WHERE id = $2"
            );
            sqlx::query(&sql)
                .bind(now.0)
                .bind(id.0)
                .execute(&mut *c)
                .await?;
            if let Some(b) = batch {
                sqlx::query(
                    "UPDATE batches SET state = 'running', finished_at = NULL, \
                     cancel_requested = false WHERE id = $1 AND state <> 'running'",
                )
                .bind(b.0)
                .execute(&mut *c)
                .await?;
            }
        }
        JobState::Retrying => {
            let sql = format!(
                "UPDATE jobs SET state = 'queued', run_at = $1, updated_at = $1, \
                 change_xid = {XID} WHERE id = $2"
            );
            sqlx::query(&sql)
                .bind(now.0)
                .bind(id.0)
                .execute(&mut *c)
                .await?;
        }
        other => return Ok(RetryResult::NotRetryable(other)),
    }
    fx.moved(batch, state, JobState::Queued);
    Ok(RetryResult::Requeued)
}
