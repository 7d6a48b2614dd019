//! A thread pool on `std::thread` and one `Mutex` + `Condvar` queue, written
//! to be read: the first stage of sluice's lab (see `docs/roadmap.md`).
//!
//! # What it does
//!
//! ```
//! use sluice_taskpool::{Builder, JobError, TryExecuteError};
//!
//! let pool = Builder::new().threads(2).queue_capacity(64).thread_name("demo").build().unwrap();
//!
//! // Fire and forget; blocks while the queue is full (backpressure).
//! pool.execute(|| println!("hello from a worker")).unwrap();
//!
//! // A result, or the panic that happened instead.
//! assert_eq!(pool.submit(|| 6 * 7).join().unwrap(), 42);
//! let err = pool.submit(|| -> u32 { panic!("boom") }).join().unwrap_err();
//! assert_eq!(err.panic_message(), Some("boom"));
//!
//! // Many jobs, results in order, far cheaper per job than a loop of submit.
//! let squares = pool.batch((0..10u64).map(|i| move || i * i)).join();
//! assert_eq!(squares[3].as_ref().unwrap(), &9);
//!
//! // Never blocks: a full queue hands the job back.
//! match pool.try_execute(|| ()) {
//!     Ok(()) | Err(TryExecuteError::Full(_)) => {}
//!     Err(TryExecuteError::Closed(_)) => unreachable!(),
//! }
//!
//! let report = pool.shutdown(); // graceful: runs what is queued
//! assert_eq!(report.panicked, 1);
//! assert_eq!(report.submitted, report.completed + report.panicked);
//! ```
//!
//! Jobs that borrow from the caller's stack run on a pool started inside
//! [`std::thread::scope`]; see [`Builder::build_scoped`].
//!
//! # How it works
//!
//! - **One queue, one lock** (`queue.rs`). A `VecDeque` of boxed jobs, the
//!   counters and the "closed" flag sit behind one `Mutex`. Producers push under it; each worker takes
//!   it once per job, to book the last job's outcome and take the next.
//!   Nothing else is shared, so every figure in [`Stats`] is exact.
//! - **Three condition variables**: workers wait for "not empty", blocked
//!   producers for "not full", [`ThreadPool::wait_idle`] for "idle". The
//!   state counts who sleeps on each, because std's `notify_one` is a system
//!   call even when nobody waits; the pool notifies only when a sleeper
//!   needs waking, and wakes blocked producers once the queue is half empty
//!   instead of once per free slot.
//! - **Spin, then sleep**: a worker that finds the queue empty first watches
//!   a lock-free copy of its length for a few microseconds (spin hints,
//!   then `yield_now`), as crossbeam's channels do before parking. Without
//!   it, workers slightly faster than their producer sleep after every job
//!   and each job pays a wake-up: measured, 850 instead of 160 ns per tiny
//!   job. [`Stats::worker_sleeps`] counts the sleeps that remain.
//! - **Panic isolation**: each job runs inside `catch_unwind`, outside the
//!   lock. A panicking job costs its own result, never the worker (the Rust
//!   Book's pool loses a thread per panic; `threadpool` spawns a new one).
//!   This relies on unwinding: under `panic = "abort"` a job's panic ends the
//!   process, as it would anywhere.
//! - **Handles** (`handle.rs`) are a one-shot slot: a `Mutex` + `Condvar`.
//!   The job side fills it with the value or the panic payload; if the job
//!   is dropped unrun, its `Drop` fills in [`JobError::Cancelled`], so no
//!   caller waits forever.
//! - **Batches** (`batch.rs`) cut many jobs into four chunks per worker; a
//!   chunk is one queue entry, so the queue hand-off and wake-up are paid per
//!   chunk instead of per job.
//! - **Scoped pools** need no `unsafe` (this workspace forbids it). A pool
//!   started with [`Builder::build_scoped`] spawns its workers with
//!   `std::thread::Scope::spawn_scoped`, so the type system knows they end
//!   before the scope does, and jobs may borrow anything the scope may. The
//!   price is a thread start per worker per scope (tens of µs). rayon's and
//!   crossbeam's `scope` run borrowed jobs on long-lived threads instead;
//!   that needs a lifetime-erasing `unsafe` block and a guard that waits
//!   for the jobs even while unwinding.
//! - **Shutdown** closes the queue, then either lets workers drain it
//!   ([`ThreadPool::shutdown`], and `Drop`) or takes the queued jobs out and
//!   drops them ([`ThreadPool::shutdown_now`]); both join every worker and
//!   return a [`ShutdownReport`] where
//!   `submitted == completed + panicked + cancelled`.
//!
//! # Caveats (each one a lesson)
//!
//! - **A job that waits for jobs of its own pool can deadlock it.** With
//!   every worker blocked in `join` on a child that sits in the queue,
//!   nobody is left to run the children; a full bounded queue makes it worse,
//!   since the parent then blocks in `execute` itself. Work-stealing pools
//!   (rayon's `join` and `scope`) run the child on the waiting thread
//!   instead; this one does not.
//! - **`wait_idle` inside a job never returns**: the job counts as running.
//! - **A job that never returns hangs shutdown**, graceful or forced:
//!   threads cannot be killed safely, so the pool waits for it.
//! - **`panic = "abort"`** turns a job's panic into the end of the process;
//!   isolation needs unwinding.
//! - A job may drop the last `Arc<ThreadPool>`: the shutdown that follows
//!   runs on a worker, which then skips joining itself.
//!
//! # What it costs
//!
//! Per job: one allocation, two lock acquisitions, and a futex wake-up when
//! a worker was asleep: 387 instructions against `threadpool`'s 484, and 61
//! per job in a batch. `cargo run --release -p sluice-lab -- run taskpool`
//! measures that against `threadpool` and rayon; the figures and commands
//! are in `docs/benchmarks.md` ("Lab: taskpool").
//!
//! # Modules
//!
//! - `pool`: [`ThreadPool`] and [`Builder`], the public face.
//! - `queue`: the shared state and the worker loop.
//! - `handle`: [`JobHandle`] and [`JobError`], the one-shot result slot.
//! - `batch`: [`BatchHandle`] and the chunking of batches.
//! - `stats`: [`Stats`] and [`ShutdownReport`].
//! - `error`: [`Closed`], [`TryExecuteError`], [`BuildError`].
//! - `sync`: std's `Mutex`/`Condvar`/atomics, or loom's under `--cfg loom`.
//! - `model` (only under `--cfg loom`): the queue without threads, for
//!   `tests/loom.rs`.

mod batch;
mod error;
mod handle;
#[cfg(loom)]
#[doc(hidden)]
pub mod model;
mod pool;
mod queue;
mod stats;
mod sync;

pub use batch::BatchHandle;
pub use error::{BuildError, Closed, TryExecuteError};
pub use handle::{JobError, JobHandle};
pub use pool::{Builder, ThreadPool};
pub use stats::{ShutdownReport, Stats};
