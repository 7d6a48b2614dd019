//! WAL checkpoints for the SQLite store, kept off the writer's critical path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses 1,000
//! WAL pages, on the connection that commits: here that is the store's only
//! writer, so every claim, completion and submission waited behind its
//! fsyncs (15–30 ms every ~0.1 s at 1,000 jobs/s; docs/benchmarks.md). It is
//! switched off, and checkpoints happen in two steps instead:
//!
//! 1. **Background** ([`run_background`]): a task with its own connection
//!    runs `wal_checkpoint(PASSIVE)` every [`BACKGROUND_EVERY`]. A passive
//!    checkpoint never blocks the writer, and it does the bulk of the work:
//!    copying pages into the database file and both fsyncs.
//! 2. **Catch-up** ([`Catchup`], on the writer): a passive checkpoint that
//!    runs while the writer keeps appending never copies the *last* frames,
//!    and SQLite restarts the WAL from its beginning only once every frame
//!    is copied. Without a restart the WAL grows without bound (119 MB over
//!    20,000 jobs, tried and measured). So after a background checkpoint,
//!    the writer itself runs one at its next idle moment (its queue empty):
//!    only the few frames written since remain, nobody is waiting, and the
//!    next transaction starts the WAL over. If the writer is never idle, it
//!    catches up anyway after [`FORCE_AFTER`], as SQLite would have.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::SqliteConnection;
use tokio::sync::mpsc;

/// How often the background task checkpoints.
pub(super) const BACKGROUND_EVERY: Duration = Duration::from_millis(500);

/// Longest the writer goes without a checkpoint of its own, idle or not.
pub(super) const FORCE_AFTER: Duration = Duration::from_secs(10);

/// Without any background checkpoint (its connection busy or failing), the
/// writer still catches up when idle this long after its last one.
const IDLE_FALLBACK: Duration = Duration::from_secs(2);

/// After a WAL restart, a WAL file larger than this is truncated to it, so
/// one burst does not keep a large file around.
pub(super) const JOURNAL_SIZE_LIMIT: u64 = 64 << 20;

/// What `PRAGMA wal_checkpoint` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Checkpointed {
    /// Whether another checkpointer or a reader cut it short.
    pub(super) busy: bool,
    /// Frames in the WAL.
    pub(super) log: i64,
    /// Frames of those copied into the database file.
    pub(super) copied: i64,
}

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` on `conn`, timing it in
/// `sluice_jobs_store_checkpoint_seconds{by}`.
pub(super) async fn passive(
    conn: &mut SqliteConnection,
    by: &'static str,
) -> Result<Checkpointed, sqlx::Error> {
    let started = Instant::now();
    let (busy, log, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(conn)
        .await?;
    metrics::histogram!("sluice_jobs_store_checkpoint_seconds", "by" => by)
        .record(started.elapsed().as_secs_f64());
    Ok(Checkpointed {
        busy: busy != 0,
        log,
        copied,
    })
}

/// The writer's side: when its own catch-up checkpoint is due.
#[derive(Debug)]
pub(super) struct Catchup {
    /// Set by the background task after each checkpoint that did work.
    background_done: Arc<AtomicBool>,
    last: Instant,
}

impl Catchup {
    /// A catch-up schedule and the flag the background task sets.
    pub(super) fn new() -> (Self, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        let catchup = Self {
            background_done: Arc::clone(&flag),
            last: Instant::now(),
        };
        (catchup, flag)
    }

    /// Whether the writer should checkpoint now; `idle` means no operation
    /// is waiting for it.
    pub(super) fn due(&self, idle: bool) -> bool {
        let age = self.last.elapsed();
        if age >= FORCE_AFTER {
            return true;
        }
        idle && (self.background_done.load(Ordering::Relaxed) || age >= IDLE_FALLBACK)
    }

    /// Runs the writer's checkpoint on its connection (outside any
    /// transaction) and resets the schedule, whatever the outcome.
    pub(super) async fn run(&mut self, conn: &mut SqliteConnection) {
        self.background_done.store(false, Ordering::Relaxed);
        self.last = Instant::now();
        if let Err(e) = passive(conn, "writer").await {
            tracing::warn!(error = %e, "WAL checkpoint on the writer failed");
        }
    }
}

/// The background checkpointer: runs until the store's last sender is gone,
/// then checkpoints once more so a closed store leaves little WAL behind.
pub(super) async fn run_background<T: Send + 'static>(
    mut conn: SqliteConnection,
    store: mpsc::WeakSender<T>,
    done: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(BACKGROUND_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if store.upgrade().is_none() {
            break;
        }
        match passive(&mut conn, "background").await {
            // Nothing new in the WAL: the writer need not catch up.
            Ok(c) if c.log > 0 => done.store(true, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "background WAL checkpoint failed"),
        }
    }
    let _ = passive(&mut conn, "background").await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_writer_catches_up_after_a_background_checkpoint() {
        let (c, flag) = Catchup::new();
        assert!(!c.due(true), "nothing copied in the background yet");
        flag.store(true, Ordering::Relaxed);
        assert!(c.due(true));
        assert!(!c.due(false), "a busy writer waits for an idle moment");
    }

    #[test]
    fn a_busy_writer_is_forced_after_the_limit() {
        let (mut c, _flag) = Catchup::new();
        c.last = Instant::now() - FORCE_AFTER;
        assert!(c.due(false));
        c.last = Instant::now() - IDLE_FALLBACK;
        assert!(!c.due(false));
        assert!(
            c.due(true),
            "idle past the fallback without any background run"
        );
    }
}
