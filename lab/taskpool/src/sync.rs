//! The synchronisation types the queue is built on: std's, or loom's when
//! compiled with `RUSTFLAGS="--cfg loom"` so that `tests/loom.rs` can check
//! every interleaving of the queue's hand-off (see `model`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
