//! Spawning an actor under a supervisor that restarts it when it panics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use super::{Actor, Address};

/// How a supervised actor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Every [`Address`] was dropped and the mailbox drained.
    Stopped,
    /// It panicked once more after `restarts` restarts, the limit.
    GaveUp { restarts: u64 },
}

/// The supervisor of one actor: its restart count and its end.
#[derive(Debug)]
pub(crate) struct Supervised {
    restarts: Arc<AtomicU64>,
    task: JoinHandle<Exit>,
}

impl Supervised {
    /// Restarts so far.
    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// Waits for the actor to end for good.
    pub(crate) async fn join(self) -> Exit {
        // The supervisor itself runs no user code, so it cannot panic; if the
        // runtime cancels it, the actor is gone as well.
        self.task.await.unwrap_or(Exit::Stopped)
    }
}

/// Starts `factory()` with a mailbox of `capacity` under a supervisor that
/// makes a fresh actor from `factory` each time one panics, at most
/// `max_restarts` times. Must be called within a tokio runtime.
pub(crate) fn spawn<A, F>(
    mut factory: F,
    capacity: usize,
    max_restarts: u64,
) -> (Address<A::Msg>, Supervised)
where
    A: Actor,
    F: FnMut() -> A + Send + 'static,
{
    let (tx, rx) = mpsc::channel(capacity);
    // Each incarnation locks the receiver for its lifetime; a panic unwinds
    // through the guard and releases it for the next one, with the queued
    // messages still in it.
    let mailbox = Arc::new(Mutex::new(rx));
    let restarts = Arc::new(AtomicU64::new(0));
    let count = restarts.clone();
    let task = tokio::spawn(async move {
        loop {
            let mut actor = factory();
            let mailbox = mailbox.clone();
            let incarnation = tokio::spawn(async move {
                let mut rx = mailbox.lock_owned().await;
                while let Some(msg) = rx.recv().await {
                    actor.handle(msg).await;
                }
            });
            match incarnation.await {
                Err(e) if e.is_panic() => {
                    let done = count.load(Ordering::SeqCst);
                    if done >= max_restarts {
                        return Exit::GaveUp { restarts: done };
                    }
                    count.store(done + 1, Ordering::SeqCst);
                }
                // The mailbox closed (every address dropped), or the runtime
                // is shutting down.
                _ => return Exit::Stopped,
            }
        }
    });
    (Address::new(tx), Supervised { restarts, task })
}
