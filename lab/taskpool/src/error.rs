//! Errors of submission and of building a pool. A refused job is always
//! handed back, so the caller can run it elsewhere, retry, or drop it.

use std::fmt;

/// [`crate::ThreadPool::execute`] on a closed pool; the job comes back.
pub struct Closed<F>(pub F);

/// [`crate::ThreadPool::try_execute`] refused the job; the job comes back.
pub enum TryExecuteError<F> {
    /// The queue is at capacity.
    Full(F),
    /// The pool is shutting down.
    Closed(F),
}

impl<F> TryExecuteError<F> {
    /// The job that was refused.
    pub fn into_inner(self) -> F {
        match self {
            TryExecuteError::Full(f) | TryExecuteError::Closed(f) => f,
        }
    }

    /// Whether the queue was full (as opposed to closed).
    pub fn is_full(&self) -> bool {
        matches!(self, TryExecuteError::Full(_))
    }
}

impl<F> fmt::Debug for Closed<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Closed(..)")
    }
}

impl<F> fmt::Display for Closed<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the pool is shut down")
    }
}

impl<F> std::error::Error for Closed<F> {}

impl<F> fmt::Debug for TryExecuteError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryExecuteError::Full(_) => "Full(..)",
            TryExecuteError::Closed(_) => "Closed(..)",
        })
    }
}

impl<F> fmt::Display for TryExecuteError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryExecuteError::Full(_) => "the pool's queue is full",
            TryExecuteError::Closed(_) => "the pool is shut down",
        })
    }
}

impl<F> std::error::Error for TryExecuteError<F> {}

/// Why [`crate::Builder`] could not build a pool.
#[derive(Debug)]
pub enum BuildError {
    /// `threads(0)` or `queue_capacity(0)`.
    Zero(&'static str),
    /// The OS refused a thread; workers already started are shut down.
    Spawn(std::io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Zero(what) => write!(f, "{what} must be at least 1"),
            BuildError::Spawn(e) => write!(f, "could not start a worker thread: {e}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Spawn(e) => Some(e),
            BuildError::Zero(_) => None,
        }
    }
}
