//! Rows to model values, and the reads: one job, one batch, filtered
//! lists, the change stream.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::UNFINISHED;
use crate::model::{
    Batch, BatchId, BatchState, DependencyPolicy, Job, JobId, JobState, StateCounts, Timestamp,
};
use crate::store::{BatchFilter, ChangeCursor, ChangeFilter, JobFilter, QueueCounts, StoreError};

pub(super) const COUNT_COLUMNS: [&str; 8] = [
    "n_scheduled",
    "n_queued",
    "n_running",
    "n_retrying",
    "n_succeeded",
    "n_failed",
    "n_cancelled",
    "n_timed_out",
];

pub(super) fn parse_state(s: &str) -> Result<JobState, StoreError> {
    JobState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("job state `{s}`")))
}

fn decode<T: serde::de::DeserializeOwned>(row: &PgRow, col: &str) -> Result<T, StoreError> {
    let Json(v): Json<T> = row
        .try_get(col)
        .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))?;
    Ok(v)
}

fn opt_ts(row: &PgRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(Timestamp))
}

/// jsonb refuses `\u0000` in strings; such characters (say, from a
/// command's output) become U+FFFD instead of failing the write.
pub(super) fn storable(v: &Value) -> Cow<'_, Value> {
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(has_nul),
            Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    fn scrub(v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(s.replace('\0', "\u{fffd}")),
            Value::Array(a) => Value::Array(a.iter().map(scrub).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.replace('\0', "\u{fffd}"), scrub(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    if has_nul(v) {
        Cow::Owned(scrub(v))
    } else {
        Cow::Borrowed(v)
    }
}

pub(super) fn job_from_row(row: &PgRow) -> Result<Job, StoreError> {
    Ok(Job {
        id: JobId(row.try_get("id")?),
        batch_id: row.try_get::<Option<Uuid>, _>("batch_id")?.map(BatchId),
        queue: row.try_get("queue")?,
        kind: row.try_get("kind")?,
        args: row.try_get("args")?,
        priority: row.try_get("priority")?,
        state: parse_state(row.try_get("state")?)?,
        run_at: Timestamp(row.try_get("run_at")?),
        attempt: row.try_get::<i32, _>("attempt")?.max(0) as u32,
        max_attempts: row.try_get::<i32, _>("max_attempts")?.max(0) as u32,
        timeout_ms: row.try_get::<i64, _>("timeout_ms")?.max(0) as u64,
        backoff: decode(row, "backoff")?,
        result: row.try_get("result")?,
        errors: decode(row, "errors")?,
        progress: row.try_get("progress")?,
        depends_on: Vec::new(),
        unique_key: row.try_get("unique_key")?,
        worker: row.try_get("worker")?,
        lease_expires_at: opt_ts(row, "lease_expires_at")?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        started_at: opt_ts(row, "started_at")?,
        finished_at: opt_ts(row, "finished_at")?,
    })
}

pub(super) fn batch_from_row(row: &PgRow) -> Result<Batch, StoreError> {
    let mut counts = StateCounts::default();
    for (i, col) in COUNT_COLUMNS.iter().enumerate() {
        counts.set(JobState::ALL[i], row.try_get::<i64, _>(*col)?.max(0) as u64);
    }
    let total = row.try_get::<i64, _>("total")?.max(0) as u64;
    let state: String = row.try_get("state")?;
    let policy: String = row.try_get("on_dependency_failure")?;
    Ok(Batch {
        id: BatchId(row.try_get("id")?),
        name: row.try_get("name")?,
        state: BatchState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("batch state `{state}`")))?,
        total,
        progress: if total == 0 {
            1.0
        } else {
            counts.finished() as f64 / total as f64
        },
        counts,
        callbacks: decode(row, "callbacks")?,
        on_dependency_failure: DependencyPolicy::parse(&policy)
            .ok_or_else(|| StoreError::Corrupt(format!("policy `{policy}`")))?,
        callback_jobs: decode(row, "callback_jobs")?,
        created_at: Timestamp(row.try_get("created_at")?),
        started_at: opt_ts(row, "started_at")?,
        finished_at: opt_ts(row, "finished_at")?,
    })
}

/// Fills in `depends_on` of `jobs` with one query.
async fn add_deps(pool: &PgPool, jobs: &mut [Job]) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id.0).collect();
    let rows = sqlx::query("SELECT job_id, depends_on FROM job_deps WHERE job_id = ANY($1)")
        .bind(&ids)
        .fetch_all(pool)
        .await?;
    let mut deps: HashMap<Uuid, Vec<JobId>> = HashMap::new();
    for r in rows {
        deps.entry(r.try_get(0)?)
            .or_default()
            .push(JobId(r.try_get(1)?));
    }
    for j in jobs {
        if let Some(mut v) = deps.remove(&j.id.0) {
            v.sort();
            j.depends_on = v;
        }
    }
    Ok(())
}

pub(super) async fn get_job(pool: &PgPool, id: JobId) -> Result<Option<Job>, StoreError> {
    let Some(row) = sqlx::query("SELECT * FROM jobs WHERE id = $1")
        .bind(id.0)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let mut job = [job_from_row(&row)?];
    add_deps(pool, &mut job).await?;
    let [job] = job;
    Ok(Some(job))
}

pub(super) async fn get_batch(pool: &PgPool, id: BatchId) -> Result<Option<Batch>, StoreError> {
    let row = sqlx::query("SELECT * FROM batches WHERE id = $1")
        .bind(id.0)
        .fetch_optional(pool)
        .await?;
    row.map(|r| batch_from_row(&r)).transpose()
}

pub(super) async fn list_jobs(pool: &PgPool, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
    let mut q: QueryBuilder<'_, Postgres> = QueryBuilder::new("SELECT * FROM jobs WHERE true");
    if let Some(b) = filter.batch_id {
        q.push(" AND batch_id = ").push_bind(b.0);
    }
    if let Some(s) = filter.state {
        q.push(" AND state = ").push_bind(s.as_str());
    }
    if let Some(k) = filter.kind {
        q.push(" AND kind = ").push_bind(k);
    }
    if let Some(a) = filter.after {
        q.push(" AND id > ").push_bind(a.0);
    }
    q.push(" ORDER BY id LIMIT ")
        .push_bind(i64::from(filter.limit.clamp(1, 1_000)));
    let rows = q.build().fetch_all(pool).await?;
    let mut jobs: Vec<Job> = rows.iter().map(job_from_row).collect::<Result<_, _>>()?;
    add_deps(pool, &mut jobs).await?;
    Ok(jobs)
}

/// Changes after a cursor, read only from transactions older than every
/// transaction still in progress (`change_xid < xmin` of this statement's
/// snapshot): those have all committed or rolled back, and every later
/// change will carry a larger id, so a stream resumed after the last cursor
/// it saw misses nothing. The price is latency: a change shows once the
/// transactions that began before it have ended.
pub(super) async fn changes(
    pool: &PgPool,
    filter: ChangeFilter,
    after: Option<ChangeCursor>,
    limit: u32,
) -> Result<Vec<(ChangeCursor, Job)>, StoreError> {
    let (seq, after_id) = after.map_or((-1, Uuid::nil()), |c| (c.seq, c.id.0));
    let mut q: QueryBuilder<'_, Postgres> = QueryBuilder::new("SELECT * FROM jobs WHERE ");
    match filter {
        ChangeFilter::All => {}
        ChangeFilter::Batch(b) => {
            q.push("batch_id = ").push_bind(b.0).push(" AND ");
        }
        ChangeFilter::Job(j) => {
            q.push("id = ").push_bind(j.0).push(" AND ");
        }
    }
    q.push("change_xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint AND (change_xid, id) > (")
        .push_bind(seq)
        .push(", ")
        .push_bind(after_id)
        .push(") ORDER BY change_xid, id LIMIT ")
        .push_bind(i64::from(limit.clamp(1, 1_000)));
    let rows = q.build().fetch_all(pool).await?;
    let mut out: Vec<(ChangeCursor, Job)> = rows
        .iter()
        .map(|row| {
            let job = job_from_row(row)?;
            let cursor = ChangeCursor {
                seq: row.try_get("change_xid")?,
                id: job.id,
            };
            Ok::<_, StoreError>((cursor, job))
        })
        .collect::<Result<_, _>>()?;
    let mut jobs: Vec<Job> = out.iter().map(|(_, j)| j.clone()).collect();
    add_deps(pool, &mut jobs).await?;
    for ((_, j), with_deps) in out.iter_mut().zip(jobs) {
        *j = with_deps;
    }
    Ok(out)
}

/// The newest change [`changes`] can read now: below the oldest
/// transaction still running, like every read of the stream.
pub(super) async fn latest_change(pool: &PgPool) -> Result<Option<ChangeCursor>, StoreError> {
    let row = sqlx::query(
        "SELECT change_xid, id FROM jobs \
         WHERE change_xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
         ORDER BY change_xid DESC, id DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(ChangeCursor {
            seq: r.try_get(0)?,
            id: JobId(r.try_get(1)?),
        })
    })
    .transpose()
}

pub(super) async fn list_batches(
    pool: &PgPool,
    filter: BatchFilter,
) -> Result<Vec<Batch>, StoreError> {
    let mut q: QueryBuilder<'_, Postgres> = QueryBuilder::new("SELECT * FROM batches WHERE true");
    if let Some(s) = filter.state {
        q.push(" AND state = ").push_bind(s.as_str());
    }
    if let Some(b) = filter.before {
        q.push(" AND id < ").push_bind(b.0);
    }
    q.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(filter.limit.clamp(1, 1_000)));
    let rows = q.build().fetch_all(pool).await?;
    rows.iter().map(batch_from_row).collect()
}

pub(super) async fn queue_counts(pool: &PgPool) -> Result<Vec<QueueCounts>, StoreError> {
    // The same IN list as the partial index `jobs_open_queue`.
    let sql = format!(
        "SELECT queue, state, count(*) FROM jobs WHERE state IN {UNFINISHED} \
         GROUP BY queue, state ORDER BY queue"
    );
    let rows = sqlx::query(&sql).fetch_all(pool).await?;
    let mut out: Vec<QueueCounts> = Vec::new();
    for row in rows {
        let queue: String = row.try_get(0)?;
        let state = parse_state(row.try_get(1)?)?;
        let n = row.try_get::<i64, _>(2)?.max(0) as u64;
        if out.last().is_none_or(|q| q.queue != queue) {
            out.push(QueueCounts {
                queue,
                ..QueueCounts::default()
            });
        }
        if let Some(q) = out.last_mut() {
            match state {
                JobState::Scheduled => q.scheduled = n,
                JobState::Queued => q.queued = n,
                JobState::Running => q.running = n,
                JobState::Retrying => q.retrying = n,
                _ => {}
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_characters_are_replaced_only_when_present() {
        let clean = json!({"a": ["b", 1]});
        assert!(matches!(storable(&clean), Cow::Borrowed(_)));
        let dirty = json!({"out\u{0}": ["x\u{0}y", {"z": "\u{0}"}]});
        assert_eq!(
            storable(&dirty).into_owned(),
            json!({"out\u{fffd}": ["x\u{fffd}y", {"z": "\u{fffd}"}]})
        );
    }
}
