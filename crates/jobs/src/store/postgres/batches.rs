//! What one transaction changed besides job rows, and the batch bookkeeping
//! done with it before commit: counter deltas folded into one UPDATE per
//! batch, the end of batches whose jobs are all final, their callbacks.

use std::collections::BTreeMap;

use serde_json::json;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};

use super::rows::batch_from_row;
use super::submit::insert_job;
use crate::model::{BatchId, BatchState, CallbackOn, JobId, JobState, Timestamp, can_transition};
use crate::store::StoreError;
use crate::validate::CallbackPlan;

/// A transaction's effects. Batches are kept in id order so every
/// transaction locks batch rows in the same order and two never deadlock
/// on them.
#[derive(Default)]
pub(super) struct Effects {
    deltas: BTreeMap<BatchId, Delta>,
    /// Jobs became queued: wake workers.
    pub(super) wake: bool,
    /// Some job's state, result or progress changed: wake event streams.
    pub(super) changed: bool,
}

#[derive(Default)]
struct Delta {
    counts: [i64; 8],
    cancel_requested: bool,
}

impl Effects {
    /// One job of `batch` moved `from` → `to`.
    pub(super) fn moved(&mut self, batch: Option<BatchId>, from: JobState, to: JobState) {
        debug_assert!(
            can_transition(from, to),
            "{from} -> {to} is not in TRANSITIONS"
        );
        if let Some(b) = batch {
            let d = &mut self.deltas.entry(b).or_default().counts;
            d[from.index()] -= 1;
            d[to.index()] += 1;
        }
        self.wake |= to == JobState::Queued;
        self.changed = true;
    }

    /// A job was inserted in `state`.
    pub(super) fn added(&mut self, batch: Option<BatchId>, state: JobState) {
        if let Some(b) = batch {
            self.deltas.entry(b).or_default().counts[state.index()] += 1;
        }
        self.wake |= state == JobState::Queued;
        self.changed = true;
    }

    /// A job changed without changing state (progress, pending
    /// dependencies).
    pub(super) fn touched_job(&mut self) {
        self.changed = true;
    }

    /// Check `batch` for its end at commit even if no counter moved.
    pub(super) fn touch(&mut self, batch: BatchId) {
        self.deltas.entry(batch).or_default();
    }

    /// Mark `batch` as cancelled by request, so it ends `cancelled`.
    pub(super) fn cancel_requested(&mut self, batch: BatchId) {
        self.deltas.entry(batch).or_default().cancel_requested = true;
    }

    /// Applies the counter deltas, one UPDATE per batch in id order, then
    /// ends the batches whose jobs are now all final and enqueues their
    /// callbacks. The counter UPDATE locks the batch row until commit, and
    /// the end needs `state = 'running'`: of all the transactions that
    /// finish a batch's jobs, exactly one sees the last one end.
    pub(super) async fn flush(
        &mut self,
        c: &mut PgConnection,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let deltas = std::mem::take(&mut self.deltas);
        for (batch, d) in deltas {
            let started = d.counts[JobState::Running.index()] > 0;
            let row = sqlx::query(
                "UPDATE batches SET n_scheduled = n_scheduled + $1, n_queued = n_queued + $2, \
                 n_running = n_running + $3, n_retrying = n_retrying + $4, \
                 n_succeeded = n_succeeded + $5, n_failed = n_failed + $6, \
                 n_cancelled = n_cancelled + $7, n_timed_out = n_timed_out + $8, \
                 cancel_requested = cancel_requested OR $9, \
                 started_at = CASE WHEN $10 THEN COALESCE(started_at, $11) ELSE started_at END \
                 WHERE id = $12 RETURNING *",
            )
            .bind(d.counts[0])
            .bind(d.counts[1])
            .bind(d.counts[2])
            .bind(d.counts[3])
            .bind(d.counts[4])
            .bind(d.counts[5])
            .bind(d.counts[6])
            .bind(d.counts[7])
            .bind(d.cancel_requested)
            .bind(started)
            .bind(now.0)
            .bind(batch.0)
            .fetch_optional(&mut *c)
            .await?;
            let Some(row) = row else { continue };
            let b = batch_from_row(&row)?;
            if b.state != BatchState::Running || b.counts.finished() < b.total {
                continue;
            }
            self.end_batch(c, &row, now).await?;
        }
        Ok(())
    }

    /// Ends a batch whose jobs are all final and fires the callbacks that
    /// match its end and have not fired before.
    async fn end_batch(
        &mut self,
        c: &mut PgConnection,
        row: &sqlx::postgres::PgRow,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let b = batch_from_row(row)?;
        let state = if row.try_get::<bool, _>("cancel_requested")? {
            BatchState::Cancelled
        } else if b.counts.succeeded == b.total {
            BatchState::Succeeded
        } else {
            BatchState::Failed
        };
        let Json(plans): Json<Vec<CallbackPlan>> = row.try_get("callback_plans")?;
        let Json(mut done): Json<Vec<usize>> = row.try_get("callbacks_fired")?;
        let mut fired: Vec<JobId> = b.callback_jobs.clone();
        let summary = json!({
            "batch_id": b.id,
            "name": b.name,
            "state": state.as_str(),
            "total": b.total,
            "counts": b.counts,
            "created_at": b.created_at,
            "finished_at": now,
        });
        let fired_before = fired.len();
        for (index, plan) in plans.into_iter().enumerate() {
            if done.contains(&index) {
                continue;
            }
            let fire = match plan.on {
                CallbackOn::Complete => true,
                CallbackOn::Success => state == BatchState::Succeeded,
                CallbackOn::Failure => state != BatchState::Succeeded,
            };
            if !fire {
                continue;
            }
            let mut job = plan.job;
            job.id = JobId::new();
            job.run_at = now;
            if let Some(url) = plan.webhook {
                job.args = json!({ "url": url, "payload": summary });
            }
            let r = insert_job(c, self, None, &job, 0, now).await?;
            fired.push(r.id);
            done.push(index);
        }
        sqlx::query(
            "UPDATE batches SET state = $1, finished_at = $2, callback_jobs = $3, \
             callbacks_fired = $4 WHERE id = $5 AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(now.0)
        .bind(Json(&fired))
        .bind(Json(&done))
        .bind(b.id.0)
        .execute(&mut *c)
        .await?;
        tracing::info!(batch.id = %b.id, state = state.as_str(), callbacks = fired.len() - fired_before, "batch finished");
        Ok(())
    }
}
