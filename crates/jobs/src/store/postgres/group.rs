//! Completions and heartbeats of one process, grouped into one
//! transaction: a commit costs a WAL flush, and a burst of completions
//! from one runner then pays for one. A task takes every waiting request
//! (up to `max_group`), applies heartbeats then completions in one
//! transaction, commits and only then answers each; a failed transaction
//! answers every request in it with the error. Serializing them in one
//! task also means a runner's heartbeat never races its own completions
//! for the same rows.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Db, attempts};
use crate::model::JobId;
use crate::store::{Completion, Heartbeat, StoreError};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Op {
    Complete(Completion, Reply<bool>),
    Heartbeat(Heartbeat, Reply<Vec<JobId>>),
}

/// The sending side; the task ends when the store is dropped.
pub(super) struct Handle {
    ops: mpsc::Sender<Op>,
}

impl Handle {
    pub(super) fn start(db: Db, max_group: usize) -> Self {
        let (ops, rx) = mpsc::channel(4 * max_group);
        tokio::spawn(run(db, rx, max_group));
        Self { ops }
    }

    async fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(make(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub(super) async fn complete(&self, done: Completion) -> Result<bool, StoreError> {
        self.send(|r| Op::Complete(done, r)).await
    }

    pub(super) async fn heartbeat(&self, hb: Heartbeat) -> Result<Vec<JobId>, StoreError> {
        self.send(|r| Op::Heartbeat(hb, r)).await
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Op>, max_group: usize) {
    let mut ops = Vec::with_capacity(max_group);
    while rx.recv_many(&mut ops, max_group).await > 0 {
        metrics::histogram!("sluice_jobs_store_group_ops").record(ops.len() as f64);
        let mut done = Vec::new();
        let mut done_replies = Vec::new();
        let mut beats = Vec::new();
        let mut beat_replies = Vec::new();
        for op in ops.drain(..) {
            match op {
                Op::Complete(c, r) => {
                    done.push(c);
                    done_replies.push(r);
                }
                Op::Heartbeat(h, r) => {
                    beats.push(h);
                    beat_replies.push(r);
                }
            }
        }
        let (done, beats) = (Arc::new(done), Arc::new(beats));
        let started = std::time::Instant::now();
        let result = db
            .transact(move |c, fx, now| {
                let (done, beats) = (done.clone(), beats.clone());
                Box::pin(async move {
                    let mut lost = Vec::with_capacity(beats.len());
                    for hb in beats.iter() {
                        lost.push(attempts::heartbeat(c, fx, hb, now).await?);
                    }
                    let ok = attempts::complete_many(c, fx, &done, now).await?;
                    Ok((ok, lost))
                })
            })
            .await;
        metrics::histogram!("sluice_jobs_store_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok((ok, lost)) => {
                for (r, v) in done_replies.into_iter().zip(ok) {
                    let _ = r.send(Ok(v));
                }
                for (r, v) in beat_replies.into_iter().zip(lost) {
                    let _ = r.send(Ok(v));
                }
            }
            Err(e) => {
                metrics::counter!("sluice_jobs_store_group_failures_total").increment(1);
                tracing::warn!(error = %e, "group commit failed");
                for r in done_replies {
                    let _ = r.send(Err(e.clone()));
                }
                for r in beat_replies {
                    let _ = r.send(Err(e.clone()));
                }
            }
        }
    }
    tracing::debug!("postgres group task stopped");
}
