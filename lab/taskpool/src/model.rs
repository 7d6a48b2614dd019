//! The queue's hand-off, exposed for loom's model checker (`tests/loom.rs`);
//! compiled only with `RUSTFLAGS="--cfg loom"`.
//!
//! The pool itself starts std threads (scoped ones too, which loom cannot
//! model), so the model drives the real queue directly: producers push,
//! model threads run the same worker loop the pool's threads run.

use loom::sync::Arc;

use crate::Stats;
use crate::queue::{Offer, Plain, Shared};

/// The pool's shared queue without its threads.
#[derive(Clone)]
pub struct Queue(Arc<Shared<'static>>);

impl Queue {
    /// A queue of `capacity` jobs.
    pub fn new(capacity: usize) -> Self {
        Queue(Arc::new(Shared::new(capacity)))
    }

    /// Pushes a job, blocking while the queue is full; `false` if closed.
    pub fn push(&self, job: impl FnOnce() + Send + 'static) -> bool {
        self.0.push_blocking(Box::new(Plain(job)), 1).is_ok()
    }

    /// Pushes a job if there is room; `false` if full or closed.
    pub fn try_push(&self, job: impl FnOnce() + Send + 'static) -> bool {
        matches!(self.0.offer(Box::new(Plain(job)), 1), Offer::Accepted)
    }

    /// The worker loop: runs jobs until the queue is closed and empty.
    pub fn work(&self) {
        self.0.work();
    }

    /// Blocks until the queue is empty and no job runs.
    pub fn wait_idle(&self) {
        self.0.wait_idle();
    }

    /// Closes the queue; with `drop_queued`, drops the queued jobs and
    /// returns how many.
    pub fn close(&self, drop_queued: bool) -> usize {
        self.0.close(drop_queued).len()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.0.stats()
    }
}
