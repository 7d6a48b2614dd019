//! A job's attempts: promotion of due jobs, claims, completions (grouped),
//! heartbeats and releases, the move to a final state and the settling of
//! dependents it causes.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::XID;
use super::batches::Effects;
use super::rows::{parse_state, storable};
use crate::model::{
    AttemptError, BatchId, DependencyPolicy, ErrorKind, JobId, JobState, Timestamp,
};
use crate::store::{ClaimRequest, ClaimedJob, Completion, Heartbeat, Lease, Outcome, StoreError};

/// Most rows one promotion or rescue pass touches; the rest wait for the
/// next pass, so one transaction stays short.
pub(super) const SWEEP_LIMIT: i64 = 1_000;

/// Moves due `scheduled` and `retrying` jobs to `queued`. Rows another
/// claimer is promoting are skipped, not waited for.
async fn promote_due(
    c: &mut PgConnection,
    fx: &mut Effects,
    now: Timestamp,
) -> Result<(), StoreError> {
    let sql = format!(
        "WITH due AS (SELECT id, batch_id, state FROM jobs \
                      WHERE state IN ('scheduled', 'retrying') AND pending_deps = 0 AND run_at <= $1 \
                      LIMIT $2 FOR UPDATE SKIP LOCKED) \
         UPDATE jobs j SET state = 'queued', updated_at = $1, change_xid = {XID} \
         FROM due WHERE j.id = due.id RETURNING due.batch_id, due.state"
    );
    let rows = sqlx::query(&sql)
        .bind(now.0)
        .bind(SWEEP_LIMIT)
        .fetch_all(&mut *c)
        .await?;
    for row in rows {
        let batch = row.try_get::<Option<Uuid>, _>(0)?.map(BatchId);
        fx.moved(batch, parse_state(row.try_get(1)?)?, JobState::Queued);
    }
    Ok(())
}

/// Promotes due jobs, then claims up to each queue's limit: one statement
/// per queue picks the best queued rows with `FOR UPDATE SKIP LOCKED`, so
/// claimers in any number of processes take disjoint jobs without waiting.
pub(super) async fn claim(
    c: &mut PgConnection,
    fx: &mut Effects,
    req: &ClaimRequest,
    now: Timestamp,
) -> Result<Vec<ClaimedJob>, StoreError> {
    // A claim need not wait for its WAL flush: if the database crashes
    // before it reaches disk, the job is simply queued again and the
    // worker's completion is refused as stale (at least once, as ever).
    // Nothing durable can depend on a lost claim: the WAL is flushed in
    // order, so the completion's synchronous commit flushes the claim too.
    // That saves a runner one disk flush per claim.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *c)
        .await?;
    promote_due(c, fx, now).await?;
    // `now` was read when the transaction began; a dependency whose
    // completion committed after that (and before the claim's statement
    // saw the job queued) finished "later" than this claim. A job's start
    // is never recorded before its dependencies' finish: the claim takes
    // the later of the two.
    let expires = now.plus(req.lease);
    let sql = format!(
        "WITH picked AS (SELECT id FROM jobs WHERE state = 'queued' AND queue = $4 \
                         ORDER BY priority DESC, run_at, id LIMIT $5 FOR UPDATE SKIP LOCKED) \
         UPDATE jobs j SET state = 'running', attempt = attempt + 1, \
                lease_token = lease_token + 1, worker = $1, lease_expires_at = $2, \
                started_at = COALESCE(j.started_at, GREATEST($3, \
                    (SELECT max(d.finished_at) FROM job_deps jd JOIN jobs d ON d.id = jd.depends_on \
                     WHERE jd.job_id = j.id))), \
                updated_at = $3, change_xid = {XID} \
         FROM picked WHERE j.id = picked.id \
         RETURNING j.id, j.batch_id, j.queue, j.kind, j.args, j.priority, j.attempt, \
                   j.max_attempts, j.timeout_ms, j.backoff, j.lease_token"
    );
    let mut claimed = Vec::new();
    for (queue, limit) in &req.queues {
        if *limit == 0 {
            continue;
        }
        let rows = sqlx::query(&sql)
            .bind(&req.worker)
            .bind(expires.0)
            .bind(now.0)
            .bind(queue)
            .bind(i64::from(*limit))
            .fetch_all(&mut *c)
            .await?;
        for row in rows {
            let batch_id = row.try_get::<Option<Uuid>, _>("batch_id")?.map(BatchId);
            fx.moved(batch_id, JobState::Queued, JobState::Running);
            let Json(backoff) = row.try_get("backoff")?;
            claimed.push(ClaimedJob {
                lease: Lease {
                    job_id: JobId(row.try_get("id")?),
                    token: row.try_get("lease_token")?,
                },
                batch_id,
                queue: row.try_get("queue")?,
                kind: row.try_get("kind")?,
                args: row.try_get("args")?,
                priority: row.try_get("priority")?,
                attempt: row.try_get::<i32, _>("attempt")?.max(0) as u32,
                max_attempts: row.try_get::<i32, _>("max_attempts")?.max(0) as u32,
                timeout: Duration::from_millis(row.try_get::<i64, _>("timeout_ms")?.max(0) as u64),
                backoff,
            });
        }
    }
    // RETURNING order is unspecified; workers start the best first.
    claimed.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.lease.job_id.cmp(&b.lease.job_id))
    });
    Ok(claimed)
}

pub(super) fn error_json(attempt: i32, kind: ErrorKind, message: &str, now: Timestamp) -> Value {
    json!(AttemptError {
        attempt: attempt.max(0) as u32,
        at: now,
        kind,
        message: message.replace('\0', "\u{fffd}"),
    })
}

/// A move of one job into a final state.
pub(super) struct Ending {
    pub(super) id: JobId,
    pub(super) batch: Option<BatchId>,
    pub(super) from: JobState,
    pub(super) to: JobState,
    /// An [`AttemptError`] as JSON, appended to the job's errors.
    pub(super) error: Option<Value>,
}

/// Ends a job (locked by the caller) in a final state and settles its
/// dependents.
pub(super) async fn finish(
    c: &mut PgConnection,
    fx: &mut Effects,
    e: Ending,
    now: Timestamp,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE jobs SET state = $1, \
         errors = CASE WHEN $2::jsonb IS NULL THEN errors ELSE errors || jsonb_build_array($2::jsonb) END, \
         worker = NULL, lease_expires_at = NULL, finished_at = $3, updated_at = $3, \
         change_xid = {XID} WHERE id = $4"
    );
    sqlx::query(&sql)
        .bind(e.to.as_str())
        .bind(e.error)
        .bind(now.0)
        .bind(e.id.0)
        .execute(&mut *c)
        .await?;
    fx.moved(e.batch, e.from, e.to);
    settle_dependents(c, fx, e.id, e.to, now).await
}

/// Applies a finished job's outcome to the jobs waiting for it, following
/// each dependent's batch policy; dependents that end in turn are settled
/// too (a worklist, not recursion). Each dependent changes in one
/// statement guarded by `state = 'scheduled'`, so two of its dependencies
/// ending in concurrent transactions both count, once each.
pub(super) async fn settle_dependents(
    c: &mut PgConnection,
    fx: &mut Effects,
    id: JobId,
    state: JobState,
    now: Timestamp,
) -> Result<(), StoreError> {
    let release = format!(
        "UPDATE jobs SET pending_deps = pending_deps - 1, \
         state = CASE WHEN pending_deps <= 1 AND run_at <= $1 THEN 'queued' ELSE 'scheduled' END, \
         updated_at = $1, change_xid = {XID} WHERE id = $2 AND state = 'scheduled' RETURNING state"
    );
    let end = format!(
        "UPDATE jobs SET state = $1, errors = errors || jsonb_build_array($2::jsonb), \
         finished_at = $3, updated_at = $3, change_xid = {XID} \
         WHERE id = $4 AND state = 'scheduled' RETURNING id"
    );
    let mut work = vec![(id, state)];
    while let Some((done, done_state)) = work.pop() {
        let rows = sqlx::query(
            "SELECT d.job_id, j.batch_id, b.on_dependency_failure \
             FROM job_deps d JOIN jobs j ON j.id = d.job_id LEFT JOIN batches b ON b.id = j.batch_id \
             WHERE d.depends_on = $1 ORDER BY d.job_id",
        )
        .bind(done.0)
        .fetch_all(&mut *c)
        .await?;
        for row in rows {
            let dep = JobId(row.try_get(0)?);
            let batch = row.try_get::<Option<Uuid>, _>(1)?.map(BatchId);
            let policy = row
                .try_get::<Option<String>, _>(2)?
                .and_then(|p| DependencyPolicy::parse(&p))
                .unwrap_or_default();
            if done_state == JobState::Succeeded || policy == DependencyPolicy::Ignore {
                let r = sqlx::query(&release)
                    .bind(now.0)
                    .bind(dep.0)
                    .fetch_optional(&mut *c)
                    .await?;
                // None: already settled (cancelled, or failed by another
                // dependency): nothing waits.
                if let Some(r) = r {
                    fx.touched_job();
                    if parse_state(r.try_get(0)?)? == JobState::Queued {
                        fx.moved(batch, JobState::Scheduled, JobState::Queued);
                    }
                }
                continue;
            }
            let to = match policy {
                DependencyPolicy::Cancel => JobState::Cancelled,
                _ => JobState::Failed,
            };
            let msg = format!("dependency {done} ended {done_state}");
            let ended = sqlx::query(&end)
                .bind(to.as_str())
                .bind(error_json(0, ErrorKind::Dependency, &msg, now))
                .bind(now.0)
                .bind(dep.0)
                .fetch_optional(&mut *c)
                .await?;
            if ended.is_some() {
                fx.moved(batch, JobState::Scheduled, to);
                work.push((dep, to));
            }
        }
    }
    Ok(())
}

/// Records a group of completions. Successes (the common case) are one
/// fenced `UPDATE … FROM UNNEST`; failures go one by one. Returns, per
/// completion in order, whether its lease was current.
pub(super) async fn complete_many(
    c: &mut PgConnection,
    fx: &mut Effects,
    done: &[Completion],
    now: Timestamp,
) -> Result<Vec<bool>, StoreError> {
    let mut out = vec![false; done.len()];
    let mut seen = HashSet::new();
    let mut bulk: Vec<usize> = Vec::new();
    let mut single: Vec<usize> = Vec::new();
    for (i, d) in done.iter().enumerate() {
        // A job twice in one group: the second goes alone, after, and
        // finds the lease already used.
        if matches!(d.outcome, Outcome::Succeeded(_)) && seen.insert(d.lease.job_id) {
            bulk.push(i);
        } else {
            single.push(i);
        }
    }
    if !bulk.is_empty() {
        let ids: Vec<Uuid> = bulk.iter().map(|&i| done[i].lease.job_id.0).collect();
        let tokens: Vec<i64> = bulk.iter().map(|&i| done[i].lease.token).collect();
        let results: Vec<Value> = bulk
            .iter()
            .map(|&i| match &done[i].outcome {
                Outcome::Succeeded(v) => storable(v).into_owned(),
                Outcome::Failed { .. } => Value::Null,
            })
            .collect();
        let sql = format!(
            "UPDATE jobs j SET state = 'succeeded', result = t.result, progress = 1.0, \
             worker = NULL, lease_expires_at = NULL, finished_at = $1, updated_at = $1, \
             change_xid = {XID} \
             FROM UNNEST($2::uuid[], $3::bigint[], $4::jsonb[]) AS t(id, token, result) \
             WHERE j.id = t.id AND j.lease_token = t.token AND j.state = 'running' \
             RETURNING j.id, j.batch_id, EXISTS (SELECT 1 FROM job_deps d WHERE d.depends_on = j.id)"
        );
        let rows = sqlx::query(&sql)
            .bind(now.0)
            .bind(&ids)
            .bind(&tokens)
            .bind(&results)
            .fetch_all(&mut *c)
            .await?;
        let mut ok = HashSet::new();
        let mut waited_on = Vec::new();
        for row in rows {
            let id = JobId(row.try_get(0)?);
            let batch = row.try_get::<Option<Uuid>, _>(1)?.map(BatchId);
            fx.moved(batch, JobState::Running, JobState::Succeeded);
            ok.insert(id);
            if row.try_get::<bool, _>(2)? {
                waited_on.push(id);
            }
        }
        waited_on.sort();
        for id in waited_on {
            settle_dependents(c, fx, id, JobState::Succeeded, now).await?;
        }
        for &i in &bulk {
            out[i] = ok.contains(&done[i].lease.job_id);
        }
    }
    for i in single {
        out[i] = complete_one(c, fx, &done[i], now).await?;
    }
    Ok(out)
}

/// One completion: the fenced row is locked, then moved to its next state.
async fn complete_one(
    c: &mut PgConnection,
    fx: &mut Effects,
    done: &Completion,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let id = done.lease.job_id;
    let Some(row) = sqlx::query(
        "SELECT batch_id, attempt, max_attempts FROM jobs \
         WHERE id = $1 AND lease_token = $2 AND state = 'running' FOR UPDATE",
    )
    .bind(id.0)
    .bind(done.lease.token)
    .fetch_optional(&mut *c)
    .await?
    else {
        return Ok(false);
    };
    let batch = row.try_get::<Option<Uuid>, _>(0)?.map(BatchId);
    let attempt: i32 = row.try_get(1)?;
    let max_attempts: i32 = row.try_get(2)?;
    let (kind, message, retry_at) = match &done.outcome {
        Outcome::Succeeded(v) => {
            let sql = format!(
                "UPDATE jobs SET state = 'succeeded', result = $1, progress = 1.0, worker = NULL, \
                 lease_expires_at = NULL, finished_at = $2, updated_at = $2, change_xid = {XID} \
                 WHERE id = $3"
            );
            sqlx::query(&sql)
                .bind(storable(v).as_ref())
                .bind(now.0)
                .bind(id.0)
                .execute(&mut *c)
                .await?;
            fx.moved(batch, JobState::Running, JobState::Succeeded);
            settle_dependents(c, fx, id, JobState::Succeeded, now).await?;
            return Ok(true);
        }
        Outcome::Failed {
            kind,
            message,
            retry_at,
        } => (*kind, message, *retry_at),
    };
    let err = error_json(attempt, kind, message, now);
    match retry_at {
        Some(at) if attempt < max_attempts => {
            let sql = format!(
                "UPDATE jobs SET state = 'retrying', run_at = $1, \
                 errors = errors || jsonb_build_array($2::jsonb), worker = NULL, \
                 lease_expires_at = NULL, updated_at = $3, change_xid = {XID} WHERE id = $4"
            );
            sqlx::query(&sql)
                .bind(at.0)
                .bind(err)
                .bind(now.0)
                .bind(id.0)
                .execute(&mut *c)
                .await?;
            fx.moved(batch, JobState::Running, JobState::Retrying);
        }
        _ => {
            let to = if kind == ErrorKind::Timeout {
                JobState::TimedOut
            } else {
                JobState::Failed
            };
            let ending = Ending {
                id,
                batch,
                from: JobState::Running,
                to,
                error: Some(err),
            };
            finish(c, fx, ending, now).await?;
        }
    }
    Ok(true)
}

/// Extends the leases still held and stores progress, all in one
/// statement; `change_xid` moves only when progress did. Returns the jobs
/// whose lease is gone.
pub(super) async fn heartbeat(
    c: &mut PgConnection,
    fx: &mut Effects,
    hb: &Heartbeat,
    now: Timestamp,
) -> Result<Vec<JobId>, StoreError> {
    if hb.leases.is_empty() {
        return Ok(Vec::new());
    }
    let expires = now.plus(hb.lease);
    let ids: Vec<Uuid> = hb.leases.iter().map(|(l, _)| l.job_id.0).collect();
    let tokens: Vec<i64> = hb.leases.iter().map(|(l, _)| l.token).collect();
    let progress: Vec<f64> = hb.leases.iter().map(|(_, p)| *p).collect();
    let sql = format!(
        "UPDATE jobs j SET lease_expires_at = $1, progress = t.progress, \
         change_xid = CASE WHEN j.progress = t.progress THEN j.change_xid ELSE {XID} END \
         FROM UNNEST($2::uuid[], $3::bigint[], $4::float8[]) AS t(id, token, progress) \
         WHERE j.id = t.id AND j.lease_token = t.token AND j.state = 'running' \
         RETURNING j.id, j.lease_token, j.change_xid = {XID}"
    );
    let rows = sqlx::query(&sql)
        .bind(expires.0)
        .bind(&ids)
        .bind(&tokens)
        .bind(&progress)
        .fetch_all(&mut *c)
        .await?;
    // Per lease, not per job: a stale lease of a job is lost even when the
    // same call carries the current one.
    let mut held = HashSet::new();
    for row in rows {
        held.insert(Lease {
            job_id: JobId(row.try_get(0)?),
            token: row.try_get(1)?,
        });
        if row.try_get::<bool, _>(2)? {
            fx.touched_job();
        }
    }
    Ok(hb
        .leases
        .iter()
        .filter(|(l, _)| !held.contains(l))
        .map(|(l, _)| l.job_id)
        .collect())
}

/// Gives leases back: `running` → `queued`, the attempt not counted.
pub(super) async fn release(
    c: &mut PgConnection,
    fx: &mut Effects,
    leases: &[Lease],
    now: Timestamp,
) -> Result<u64, StoreError> {
    if leases.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = leases.iter().map(|l| l.job_id.0).collect();
    let tokens: Vec<i64> = leases.iter().map(|l| l.token).collect();
    let sql = format!(
        "UPDATE jobs j SET state = 'queued', attempt = attempt - 1, worker = NULL, \
         lease_expires_at = NULL, updated_at = $1, change_xid = {XID} \
         FROM UNNEST($2::uuid[], $3::bigint[]) AS t(id, token) \
         WHERE j.id = t.id AND j.lease_token = t.token AND j.state = 'running' \
         RETURNING j.batch_id"
    );
    let rows = sqlx::query(&sql)
        .bind(now.0)
        .bind(&ids)
        .bind(&tokens)
        .fetch_all(&mut *c)
        .await?;
    for row in &rows {
        let batch = row.try_get::<Option<Uuid>, _>(0)?.map(BatchId);
        fx.moved(batch, JobState::Running, JobState::Queued);
    }
    Ok(rows.len() as u64)
}
