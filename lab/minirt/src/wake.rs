//! The tasks' waker, built on [`std::task::Wake`]: the safe way to make a
//! waker, from an `Arc` of anything `Send + Sync` that knows how to wake.
//!
//! A task's waker carries the task's slab key and the executor's
//! [`Shared`] state. Waking pushes the key onto the run queue, once: the
//! `scheduled` flag makes a second wake-up before the next poll a no-op, so
//! a task woken by its socket, its timer and a channel at once is polled
//! once. The executor clears the flag just before it polls the task, so a
//! wake-up that arrives during the poll queues it again.
//!
//! The waker is `Send + Sync` (the `Wake` trait demands it): another
//! thread may wake a task, and then [`Shared::schedule`] also wakes the
//! executor out of `epoll`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Wake;

use crate::executor::Shared;

/// The waker of one task slot.
#[derive(Debug)]
pub(crate) struct TaskWaker {
    key: usize,
    scheduled: AtomicBool,
    shared: Arc<Shared>,
}

impl TaskWaker {
    /// A waker for the task at `key`, not yet scheduled.
    pub(crate) fn new(key: usize, shared: Arc<Shared>) -> Arc<TaskWaker> {
        Arc::new(TaskWaker {
            key,
            scheduled: AtomicBool::new(false),
            shared,
        })
    }

    /// Marks the task as about to be polled: wake-ups from now on queue it again.
    pub(crate) fn clear(&self) {
        self.scheduled.store(false, Ordering::SeqCst);
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::SeqCst) {
            self.shared.schedule(self.key);
        }
    }
}
