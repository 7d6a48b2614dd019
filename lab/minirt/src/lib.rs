//! minirt: futures, wakers and an executor written by hand, small enough to
//! read in one sitting; the lab's stage "hand-written futures and a minimal
//! executor" (see `docs/roadmap.md` and this crate's README).
//!
//! ```
//! use std::time::Duration;
//! use sluice_minirt::{Runtime, join, sleep, spawn};
//!
//! let rt = Runtime::new()?;
//! let (a, b) = rt.block_on(async {
//!     let task = spawn(async {
//!         sleep(Duration::from_millis(5)).await;
//!         "task"
//!     });
//!     join(task, async { 40 + 2 }).await
//! });
//! assert_eq!((a, b), ("task", 42));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Modules
//!
//! - `executor`: [`Runtime`] (`block_on`), [`spawn`], the run queue and the
//!   loop that parks in `epoll` until the next timer.
//! - `task`: how a spawned future is stored; [`JoinHandle`].
//! - `wake`: the tasks' waker, on [`std::task::Wake`].
//! - `raw_waker`: `block_on`'s waker, by hand on `RawWaker` and a vtable.
//! - `timer`: [`sleep`], [`Sleep`], the heap of deadlines.
//! - `reactor`: mio's `Poll`, each socket's readiness and waiters.
//! - `net`: [`TcpListener`], [`TcpStream`] and their futures.
//! - `join`, `select`, `yield_now`: [`join`], [`join_all`], [`select`]
//!   with [`Either`], [`yield_now`]: hand-written combinators.
//! - `channel`: [`channel`], an unbounded mpsc whose senders may be on other threads.
//! - [`echo`]: a TCP echo server on all of the above.
//! - `slab`: keys for tasks, sockets and connections.

mod channel;
mod executor;
mod join;
mod net;
mod raw_waker;
mod reactor;
mod select;
mod slab;
mod task;
mod timer;
mod wake;
mod yield_now;

pub mod echo;

pub use channel::{Receiver, Recv, Sender, channel};
pub use executor::{Runtime, spawn};
pub use join::{Join, JoinAll, join, join_all};
pub use net::{Accept, Connect, ReadFuture, TcpListener, TcpStream, WriteAll, WriteFuture};
pub use select::{Either, Select, select};
pub use task::JoinHandle;
pub use timer::{Sleep, sleep, sleep_until};
pub use yield_now::{YieldNow, yield_now};

/// The README's examples, compiled and run (or, for the `compile_fail`
/// ones, checked not to compile) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
