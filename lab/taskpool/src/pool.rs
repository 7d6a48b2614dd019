//! The pool itself and its builder.

use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Scope, ScopedJoinHandle};

use crate::batch::{self, BatchHandle};
use crate::error::{BuildError, Closed, TryExecuteError};
use crate::handle::{self, JobError, JobHandle};
use crate::queue::{Offer, Plain, Shared, Tallied, Tally};
use crate::stats::{ShutdownReport, Stats};

/// Configures a [`ThreadPool`]: thread count, queue capacity, thread names.
#[derive(Debug, Clone)]
pub struct Builder {
    threads: usize,
    capacity: usize,
    name: String,
    stack_size: Option<usize>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// One worker per available CPU, a queue of 1,024 entries, threads named `taskpool-N`.
    pub fn new() -> Self {
        Builder {
            threads: thread::available_parallelism().map_or(1, NonZeroUsize::get),
            capacity: 1024,
            name: "taskpool".to_owned(),
            stack_size: None,
        }
    }

    /// Number of worker threads (at least 1).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Most queue entries waiting at once (at least 1). When the queue is
    /// full, [`ThreadPool::execute`] blocks and [`ThreadPool::try_execute`]
    /// refuses: that is the backpressure a fast producer feels.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Prefix of the worker threads' names (`PREFIX-0`, `PREFIX-1`, ...), as
    /// seen in panic messages, `top -H` and debuggers.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.name = prefix.into();
        self
    }

    /// Stack size of each worker thread, in bytes (std's default otherwise).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.threads == 0 {
            return Err(BuildError::Zero("threads"));
        }
        if self.capacity == 0 {
            return Err(BuildError::Zero("queue capacity"));
        }
        Ok(())
    }

    fn thread(&self, i: usize) -> thread::Builder {
        let b = thread::Builder::new().name(format!("{}-{i}", self.name));
        match self.stack_size {
            Some(size) => b.stack_size(size),
            None => b,
        }
    }

    /// Starts a pool whose jobs own their data (`'static`), like `std::thread::spawn`.
    pub fn build(self) -> Result<ThreadPool<'static>, BuildError> {
        self.check()?;
        let shared = Arc::new(Shared::new(self.capacity));
        let mut pool = ThreadPool {
            shared,
            workers: Vec::with_capacity(self.threads),
            threads: self.threads,
        };
        for i in 0..self.threads {
            let shared = Arc::clone(&pool.shared);
            // On error `pool` drops here, which shuts down the workers already started.
            let handle = self
                .thread(i)
                .spawn(move || shared.work())
                .map_err(BuildError::Spawn)?;
            pool.workers.push(Worker::Owned(handle));
        }
        Ok(pool)
    }

    /// Starts a pool inside a [`std::thread::scope`], whose jobs may borrow
    /// anything that outlives the scope: the caller's locals, slices of its
    /// vectors. The scope does not return before every worker has exited,
    /// and that is what makes the borrows sound without any `unsafe`.
    ///
    /// ```
    /// let data: Vec<u64> = (1..=1000).collect();
    /// let total = std::sync::atomic::AtomicU64::new(0);
    /// std::thread::scope(|s| {
    ///     let pool = sluice_taskpool::Builder::new().threads(2).build_scoped(s).unwrap();
    ///     for chunk in data.chunks(100) {
    ///         let total = &total;
    ///         pool.execute(move || {
    ///             total.fetch_add(chunk.iter().sum(), std::sync::atomic::Ordering::Relaxed);
    ///         }).unwrap();
    ///     }
    ///     pool.shutdown(); // or let it drop: same graceful shutdown
    /// });
    /// assert_eq!(total.into_inner(), 500_500);
    /// ```
    pub fn build_scoped<'scope, 'env>(
        self,
        scope: &'scope Scope<'scope, 'env>,
    ) -> Result<ThreadPool<'scope>, BuildError> {
        self.check()?;
        let shared = Arc::new(Shared::new(self.capacity));
        let mut pool = ThreadPool {
            shared,
            workers: Vec::with_capacity(self.threads),
            threads: self.threads,
        };
        for i in 0..self.threads {
            let shared = Arc::clone(&pool.shared);
            let handle = self
                .thread(i)
                .spawn_scoped(scope, move || shared.work())
                .map_err(BuildError::Spawn)?;
            pool.workers.push(Worker::Scoped(handle));
        }
        Ok(pool)
    }
}

enum Worker<'scope> {
    Owned(JoinHandle<()>),
    Scoped(ScopedJoinHandle<'scope, ()>),
}

impl Worker<'_> {
    /// Joins the thread; `false` if it died of a panic.
    ///
    /// A worker never joins itself. That happens when a job holds the last
    /// `Arc<ThreadPool>` and drops it: the pool's shutdown then runs on one
    /// of its own workers, which would wait for itself forever (std reports
    /// `EDEADLK` and panics instead). Skipped, that worker finishes its job,
    /// finds the queue closed and exits by itself.
    fn join(self) -> bool {
        let me = thread::current().id();
        match self {
            Worker::Owned(h) if h.thread().id() == me => true,
            Worker::Scoped(h) if h.thread().id() == me => true,
            Worker::Owned(h) => h.join().is_ok(),
            Worker::Scoped(h) => h.join().is_ok(),
        }
    }
}

/// A fixed set of worker threads fed by one bounded FIFO queue.
///
/// `'scope` is how long jobs may borrow: `'static` for a pool from
/// [`Builder::build`], the scope's lifetime for [`Builder::build_scoped`].
///
/// Dropping the pool is a graceful [`shutdown`](ThreadPool::shutdown) whose
/// report is discarded.
pub struct ThreadPool<'scope> {
    shared: Arc<Shared<'scope>>,
    workers: Vec<Worker<'scope>>,
    threads: usize,
}

impl<'scope> ThreadPool<'scope> {
    /// A pool with [`Builder::new`]'s defaults and `threads` workers.
    ///
    /// # Panics
    /// If `threads` is 0 or the OS refuses a thread; use [`Builder`] to handle that.
    pub fn new(threads: usize) -> ThreadPool<'static> {
        match Builder::new().threads(threads).build() {
            Ok(pool) => pool,
            Err(e) => panic!("sluice_taskpool::ThreadPool::new: {e}"),
        }
    }

    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues a job, blocking while the queue is full. A panic in the job is
    /// counted in [`Stats::panicked`] and its payload dropped; use
    /// [`submit`](Self::submit) to receive it.
    pub fn execute<F>(&self, job: F) -> Result<(), Closed<F>>
    where
        F: FnOnce() + Send + 'scope,
    {
        // Boxed before the lock is taken; a refused box is unboxed again.
        self.shared
            .push_blocking(Box::new(Plain(job)), 1)
            .map_err(|b| Closed(b.0))
    }

    /// Queues a job if there is room now; otherwise hands it back at once.
    pub fn try_execute<F>(&self, job: F) -> Result<(), TryExecuteError<F>>
    where
        F: FnOnce() + Send + 'scope,
    {
        match self.shared.offer(Box::new(Plain(job)), 1) {
            Offer::Accepted => Ok(()),
            Offer::Full(b) => Err(TryExecuteError::Full(b.0)),
            Offer::Closed(b) => Err(TryExecuteError::Closed(b.0)),
        }
    }

    /// Queues a job that returns a value, blocking while the queue is full.
    /// The handle yields the value, the panic payload, or
    /// [`JobError::Cancelled`] (also what a closed pool gives).
    pub fn submit<F, T>(&self, job: F) -> JobHandle<T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let (promise, handle) = handle::pair();
        let job = Tallied(move || match panic::catch_unwind(AssertUnwindSafe(job)) {
            Ok(value) => {
                promise.fulfil(Ok(value));
                Tally::ONE_OK
            }
            Err(payload) => {
                promise.fulfil(Err(JobError::Panicked(payload)));
                Tally::ONE_PANIC
            }
        });
        // Refused by a closed pool: the job (and its promise) drops here,
        // which fills the handle with `Cancelled`.
        let _ = self.shared.push_blocking(Box::new(job), 1);
        handle
    }

    /// Queues many jobs at once and returns a handle whose
    /// [`join`](BatchHandle::join) gives their results in the order given.
    ///
    /// The jobs are cut into about four chunks per worker, each one queue
    /// entry, which makes a batch far cheaper per job than a loop of
    /// `submit` (see the crate docs for figures). Blocks while the queue is
    /// full. Jobs refused by a closed pool come back as `Cancelled`.
    pub fn batch<I, F, T>(&self, jobs: I) -> BatchHandle<T>
    where
        I: IntoIterator<Item = F>,
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let jobs: Vec<F> = jobs.into_iter().collect();
        let chunk_len = jobs.len().div_ceil(self.threads * 4).max(1);
        let (handle, chunks) = batch::split(jobs, chunk_len);
        for chunk in chunks {
            let weight = chunk.len();
            if self.shared.push_blocking(Box::new(chunk), weight).is_err() {
                // Closed: this chunk and the rest drop unrun, their jobs read `Cancelled`.
                break;
            }
        }
        handle
    }

    /// Blocks until the queue is empty and no job is running (like
    /// `threadpool`'s `join`). The pool stays open; jobs queued meanwhile by
    /// other threads are waited for too.
    pub fn wait_idle(&self) {
        self.shared.wait_idle();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Stops accepting jobs, from any thread holding a reference (an
    /// `Arc<ThreadPool>`, say): from now on `execute` and `try_execute` hand
    /// jobs back as closed, and `submit`/`batch` jobs read `Cancelled`.
    /// Queued jobs still run. Shutdown later joins the workers and reports.
    pub fn close(&self) {
        drop(self.shared.close(false));
    }

    /// Graceful shutdown: refuse new jobs, run every queued one, join the
    /// workers, and report.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.finish(false)
    }

    /// Forced shutdown: refuse new jobs, drop the queued ones (their handles
    /// read [`JobError::Cancelled`]), let running jobs finish, join the
    /// workers, and report. A running job is never interrupted: threads
    /// cannot be killed safely, so a job that never returns still hangs this.
    pub fn shutdown_now(mut self) -> ShutdownReport {
        self.finish(true)
    }

    fn finish(&mut self, drop_queued: bool) -> ShutdownReport {
        let dropped = self.shared.close(drop_queued);
        drop(dropped); // outside the lock: cancels handles, runs captures' Drop
        let lost = self
            .workers
            .drain(..)
            .map(Worker::join)
            .filter(|ok| !ok)
            .count();
        self.shared.report(lost)
    }
}

impl Drop for ThreadPool<'_> {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.finish(false);
        }
    }
}

impl std::fmt::Debug for ThreadPool<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.threads)
            .field("stats", &self.stats())
            .finish()
    }
}
