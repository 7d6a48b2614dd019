//! The shared queue and the worker loop: one `Mutex` around all the pool's
//! state, three `Condvar`s for the three kinds of waiting.
//!
//! Why one mutex and not a channel? A bounded `std::sync::mpsc::sync_channel`
//! would give blocking sends for free, but it cannot hand back the caller's
//! closure when full (it only knows the boxed job), it cannot be drained and
//! counted by a forced shutdown, and every worker would still need a `Mutex`
//! around the single `Receiver`. With one mutex the queue, the counters and
//! the shutdown flag change together, so every figure in [`Stats`] and
//! [`ShutdownReport`] is exact rather than approximately consistent.
//!
//! The cost of a job is then: one allocation (the `Box`), one lock on the
//! producer's side, one on the worker's side, and a futex wake-up only when
//! someone is actually asleep. The last point matters: std's `Condvar`
//! makes a system call on every `notify_*`, waiter or not, so the state
//! counts its sleepers and the code notifies only when a sleeper needs it.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::PoisonError;

use crate::sync::{AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};

/// Back-off of an idle worker before it sleeps: busy-wait 1, 2, 4 ... 32
/// spin hints, then yield the core a few times.
const SPIN_STEPS: u32 = 6;
const YIELD_STEPS: u32 = 4;

use crate::stats::{ShutdownReport, Stats};

/// A queued unit of work. Running it says how many user jobs it ran and
/// how many of them panicked: one for `execute`/`submit`, many for a batch
/// chunk.
///
/// This is `FnOnce() -> Tally` in all but name. A trait of our own lets the
/// queue take a typed `Box<J>`, allocated before the lock is taken, and turn
/// it into a `Box<dyn Run>` only once the job is accepted; a refused job is
/// still a `Box<J>`, so the caller's closure can be handed back. A boxed
/// `dyn FnOnce` could never be turned back into the caller's type.
pub(crate) trait Run: Send {
    fn run(self: Box<Self>) -> Tally;
}

/// `execute`'s job: the caller's closure, nothing else.
pub(crate) struct Plain<F>(pub(crate) F);

impl<F: FnOnce() + Send> Run for Plain<F> {
    fn run(self: Box<Self>) -> Tally {
        (self.0)();
        Tally::ONE_OK
    }
}

/// An internal job that reports its own tally (`submit`, batch chunks).
pub(crate) struct Tallied<F>(pub(crate) F);

impl<F: FnOnce() -> Tally + Send> Run for Tallied<F> {
    fn run(self: Box<Self>) -> Tally {
        (self.0)()
    }
}

pub(crate) type Job<'scope> = Box<dyn Run + 'scope>;

/// What one queue entry did when it ran.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    pub(crate) completed: u64,
    pub(crate) panicked: u64,
}

impl Tally {
    pub(crate) const ONE_OK: Tally = Tally {
        completed: 1,
        panicked: 0,
    };
    pub(crate) const ONE_PANIC: Tally = Tally {
        completed: 0,
        panicked: 1,
    };
}

/// A job in the queue with the number of user jobs it stands for, so that a
/// forced shutdown can report exactly how many jobs it dropped.
pub(crate) struct Entry<'scope> {
    job: Job<'scope>,
    weight: u64,
}

/// Everything the pool knows, behind one mutex.
pub(crate) struct State<'scope> {
    pub(crate) queue: VecDeque<Entry<'scope>>,
    pub(crate) capacity: usize,
    /// Set by shutdown: producers are refused, workers exit once the queue is empty.
    pub(crate) closed: bool,
    /// Workers running a job right now.
    pub(crate) active: usize,
    /// Workers waiting on `not_empty`.
    pub(crate) idle_workers: usize,
    /// Producers waiting on `not_full` (reset to 0 when they are all woken).
    pub(crate) blocked_producers: usize,
    /// Threads waiting on `idle` in [`Shared::wait_idle`].
    pub(crate) idle_waiters: usize,
    pub(crate) submitted: u64,
    pub(crate) completed: u64,
    pub(crate) panicked: u64,
    pub(crate) cancelled: u64,
    pub(crate) peak_queued: usize,
    /// Times a worker found nothing to do and went to sleep.
    pub(crate) worker_sleeps: u64,
}

/// The state plus its condition variables; one `Arc<Shared>` per pool.
pub(crate) struct Shared<'scope> {
    pub(crate) state: Mutex<State<'scope>>,
    /// Workers wait here for a job.
    not_empty: Condvar,
    /// Producers wait here for room in the queue.
    not_full: Condvar,
    /// [`Shared::wait_idle`] waits here for an empty queue and no running job.
    idle: Condvar,
    /// A copy of the queue's length, written under the lock and read
    /// without it by workers deciding whether to keep spinning.
    queued: AtomicUsize,
}

/// Outcome of offering a job to the queue without blocking.
pub(crate) enum Offer<J> {
    Accepted,
    Full(J),
    Closed(J),
}

impl<'scope> Shared<'scope> {
    pub(crate) fn new(capacity: usize) -> Self {
        Shared {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(capacity.min(4096)),
                capacity,
                closed: false,
                active: 0,
                idle_workers: 0,
                blocked_producers: 0,
                idle_waiters: 0,
                submitted: 0,
                completed: 0,
                panicked: 0,
                cancelled: 0,
                peak_queued: 0,
                worker_sleeps: 0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            idle: Condvar::new(),
            queued: AtomicUsize::new(0),
        }
    }

    /// Spins, then yields, for a few microseconds at most, until a job is
    /// queued. The same back-off crossbeam's channels use before parking:
    /// exponentially longer busy-waits, then handing the core to another
    /// thread (on a machine with fewer cores than threads, maybe the
    /// producer we are waiting for).
    fn spin_for_work(&self) {
        // Under loom a spin is only more interleavings to explore, and the
        // model checks the sleep path, which is the one that can go wrong.
        if cfg!(loom) {
            return;
        }
        for step in 0..SPIN_STEPS + YIELD_STEPS {
            if self.queued.load(Ordering::Relaxed) > 0 {
                return;
            }
            if step < SPIN_STEPS {
                for _ in 0..1u32 << step {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Locks the state. User code never runs under this lock, so a poisoned
    /// mutex can only come from a bug in this module; the state is still
    /// consistent at every unlock point, so we carry on rather than cascade.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<'scope>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes onto a queue known to have room, and wakes a worker if one is
    /// asleep and not already covered by an earlier wake-up.
    fn push(&self, st: &mut State<'scope>, job: Job<'scope>, weight: u64) {
        st.submitted += weight;
        st.queue.push_back(Entry { job, weight });
        let len = st.queue.len();
        self.queued.store(len, Ordering::Relaxed);
        st.peak_queued = st.peak_queued.max(len);
        // `len` entries wait; up to `idle_workers` of them can be served by
        // sleepers. The earlier `len - 1` pushes already sent their wake-ups.
        if len <= st.idle_workers {
            self.not_empty.notify_one();
        }
    }

    /// Blocking push of a job standing for `weight` user jobs: waits while
    /// the queue is full. Gives the job back if the pool is (or becomes) closed.
    pub(crate) fn push_blocking<J: Run + 'scope>(
        &self,
        job: Box<J>,
        weight: u64,
    ) -> Result<(), Box<J>> {
        let mut st = self.lock();
        loop {
            if st.closed {
                return Err(job);
            }
            if st.queue.len() < st.capacity {
                self.push(&mut st, job, weight);
                return Ok(());
            }
            st.blocked_producers += 1;
            st = self
                .not_full
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Non-blocking push.
    pub(crate) fn offer<J: Run + 'scope>(&self, job: Box<J>, weight: u64) -> Offer<Box<J>> {
        let mut st = self.lock();
        if st.closed {
            Offer::Closed(job)
        } else if st.queue.len() >= st.capacity {
            Offer::Full(job)
        } else {
            self.push(&mut st, job, weight);
            Offer::Accepted
        }
    }

    /// Blocks until the queue is empty and no worker runs a job.
    pub(crate) fn wait_idle(&self) {
        let mut st = self.lock();
        while !(st.queue.is_empty() && st.active == 0) {
            st.idle_waiters += 1;
            st = self.idle.wait(st).unwrap_or_else(PoisonError::into_inner);
            st.idle_waiters -= 1;
        }
    }

    /// Closes the queue. With `drop_queued`, takes the queued entries out so
    /// the caller can drop them outside the lock (dropping a job runs user
    /// `Drop` code, and cancels its handle).
    #[must_use = "drop the returned jobs after this call, outside the lock"]
    pub(crate) fn close(&self, drop_queued: bool) -> VecDeque<Entry<'scope>> {
        let mut st = self.lock();
        st.closed = true;
        let dropped = if drop_queued {
            let dropped = std::mem::take(&mut st.queue);
            self.queued.store(0, Ordering::Relaxed);
            st.cancelled += dropped.iter().map(|e| e.weight).sum::<u64>();
            dropped
        } else {
            VecDeque::new()
        };
        let idle_now = st.queue.is_empty() && st.active == 0;
        drop(st);
        // Shutdown is rare: wake everyone and let each re-check the state.
        self.not_empty.notify_all();
        self.not_full.notify_all();
        if idle_now {
            self.idle.notify_all();
        }
        dropped
    }

    pub(crate) fn stats(&self) -> Stats {
        let st = self.lock();
        Stats {
            submitted: st.submitted,
            completed: st.completed,
            panicked: st.panicked,
            cancelled: st.cancelled,
            queued: st.queue.len(),
            peak_queued: st.peak_queued,
            active: st.active,
            worker_sleeps: st.worker_sleeps,
        }
    }

    pub(crate) fn report(&self, workers_lost: usize) -> ShutdownReport {
        let st = self.lock();
        ShutdownReport {
            submitted: st.submitted,
            completed: st.completed,
            panicked: st.panicked,
            cancelled: st.cancelled,
            workers_lost,
        }
    }

    /// The body of every worker thread.
    ///
    /// Each turn of the loop takes the lock exactly once: it books the
    /// previous job's outcome and takes the next job in the same critical
    /// section. The job itself runs with the lock released and inside
    /// `catch_unwind`, so a panicking job costs its payload, never the worker.
    pub(crate) fn work(&self) {
        let mut finished: Option<Tally> = None;
        loop {
            let entry = {
                let mut st = self.lock();
                if let Some(tally) = finished.take() {
                    st.completed += tally.completed;
                    st.panicked += tally.panicked;
                    st.active -= 1;
                    if st.idle_waiters > 0 && st.active == 0 && st.queue.is_empty() {
                        self.idle.notify_all();
                    }
                }
                let mut spun = false;
                loop {
                    if let Some(entry) = st.queue.pop_front() {
                        self.queued.store(st.queue.len(), Ordering::Relaxed);
                        st.active += 1;
                        // Wake blocked producers once, when the queue is half
                        // empty, rather than on every pop: a producer that
                        // wakes for a single free slot would sleep again at once.
                        if st.blocked_producers > 0 && st.queue.len() <= st.capacity / 2 {
                            st.blocked_producers = 0;
                            self.not_full.notify_all();
                        }
                        break entry;
                    }
                    if st.closed {
                        return;
                    }
                    if !spun {
                        // Before paying for a sleep and a wake-up (two system
                        // calls, and a trip through the scheduler), give a
                        // producer that is only a little slower than us a
                        // moment to push, watching `queued` without the lock.
                        spun = true;
                        drop(st);
                        self.spin_for_work();
                        st = self.lock();
                        continue;
                    }
                    st.worker_sleeps += 1;
                    st.idle_workers += 1;
                    st = self
                        .not_empty
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                    st.idle_workers -= 1;
                }
            };
            finished = Some(run(entry.job));
        }
    }
}

/// Runs one entry, turning a panic that escaped it into a tally. Jobs from
/// `submit` and batches catch their own panics (to hand the payload to a
/// handle); this catches the rest, from `execute`, and drops the payload.
fn run(job: Job<'_>) -> Tally {
    match panic::catch_unwind(AssertUnwindSafe(|| job.run())) {
        Ok(tally) => tally,
        Err(payload) => {
            // Dropping a payload runs user code too; a payload whose `Drop`
            // panics must not take the worker with it.
            let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
            Tally::ONE_PANIC
        }
    }
}
