//! Result handles: a one-shot slot shared by the job (which fills it) and
//! the caller (who waits on it).
//!
//! The job side is a [`Promise`]. If the job runs, the promise is fulfilled
//! with the value or the panic payload. If the job is dropped without
//! running (a forced shutdown), the promise's `Drop` fills the slot with
//! [`JobError::Cancelled`], so no caller ever waits for a job that will not
//! come. That "a dropped sender tells the receiver" rule is the same one
//! `std::sync::mpsc` uses; a hand-written slot costs one allocation where a
//! `sync_channel(1)` costs more, and it teaches the pattern in forty lines.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Why a job produced no value.
pub enum JobError {
    /// The job panicked; this is the payload it panicked with (what
    /// [`std::panic::catch_unwind`] returned), ready for
    /// [`std::panic::resume_unwind`] if the caller wants to re-raise it.
    Panicked(Box<dyn Any + Send + 'static>),
    /// The job was dropped before it ran, by [`crate::ThreadPool::shutdown_now`].
    Cancelled,
}

impl JobError {
    /// The panic message, when the payload is a `&str` or a `String` (what
    /// `panic!("...")` produces).
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            JobError::Panicked(payload) => payload
                .downcast_ref::<&'static str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str)),
            JobError::Cancelled => None,
        }
    }

    /// Whether the job panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JobError::Panicked(_))
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Panicked(_) => f
                .debug_tuple("Panicked")
                .field(&self.panic_message().unwrap_or("<non-string payload>"))
                .finish(),
            JobError::Cancelled => f.write_str("Cancelled"),
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.panic_message() {
            Some(msg) => write!(f, "job panicked: {msg}"),
            None if self.is_panic() => f.write_str("job panicked"),
            None => f.write_str("job cancelled by a forced shutdown"),
        }
    }
}

impl std::error::Error for JobError {}

struct Slot<T> {
    value: Mutex<Filled<T>>,
    ready: Condvar,
}

/// The slot's contents, and whether a caller sleeps on `ready`: std's
/// `notify_one` is a system call even with nobody waiting, and most
/// results are collected after they are ready, so the job notifies only
/// when someone waits.
struct Filled<T> {
    result: Option<Result<T, JobError>>,
    waiting: bool,
}

/// The job's end of a handle. Fulfil it once, or drop it to cancel.
pub(crate) struct Promise<T> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> Promise<T> {
    pub(crate) fn fulfil(mut self, result: Result<T, JobError>) {
        if let Some(slot) = self.slot.take() {
            set(&slot, result);
        }
    }
}

impl<T> Drop for Promise<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            set(&slot, Err(JobError::Cancelled));
        }
    }
}

fn set<T>(slot: &Slot<T>, result: Result<T, JobError>) {
    let mut filled = slot.value.lock().unwrap_or_else(PoisonError::into_inner);
    filled.result = Some(result);
    if filled.waiting {
        drop(filled);
        slot.ready.notify_one();
    }
}

/// The caller's end: waits for the job's result.
///
/// Dropping a handle detaches the job; it still runs.
#[must_use = "dropping a JobHandle detaches the job; call join() to get its result"]
pub struct JobHandle<T> {
    slot: Arc<Slot<T>>,
}

pub(crate) fn pair<T>() -> (Promise<T>, JobHandle<T>) {
    let slot = Arc::new(Slot {
        value: Mutex::new(Filled {
            result: None,
            waiting: false,
        }),
        ready: Condvar::new(),
    });
    (
        Promise {
            slot: Some(Arc::clone(&slot)),
        },
        JobHandle { slot },
    )
}

impl<T> JobHandle<T> {
    /// Waits for the job and returns its value, its panic, or `Cancelled`.
    pub fn join(self) -> Result<T, JobError> {
        let mut value = self
            .slot
            .value
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(result) = value.result.take() {
                return result;
            }
            value.waiting = true;
            value = self
                .slot
                .ready
                .wait(value)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits at most `timeout`; gives the handle back if the job is not done.
    pub fn join_timeout(self, timeout: Duration) -> Result<Result<T, JobError>, JobHandle<T>> {
        let deadline = Instant::now() + timeout;
        let mut value = self
            .slot
            .value
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(result) = value.result.take() {
                return Ok(result);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                value.waiting = false;
                drop(value);
                return Err(self);
            }
            value.waiting = true;
            value = self
                .slot
                .ready
                .wait_timeout(value, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Whether the result is ready (`join` would not block).
    pub fn is_finished(&self) -> bool {
        self.slot
            .value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .result
            .is_some()
    }
}

impl<T> fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
