//! Model checks of the queue's hand-off between producers and workers with
//! loom: every interleaving (up to loom's preemption bound) of the real
//! queue code, looking for lost wake-ups (a deadlock), lost or doubled jobs
//! and counters that do not add up.
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" cargo test -p sluice-taskpool --release --test loom
//! ```
//!
//! Without `--cfg loom` this file is empty.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use sluice_taskpool::Stats;
use sluice_taskpool::model::Queue;

/// What every model starts from: a queue of `capacity`, a counter of the
/// jobs that ran, and `workers` threads running the pool's worker loop.
struct Model {
    q: Queue,
    ran: Arc<AtomicUsize>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl Model {
    fn start(capacity: usize, workers: usize) -> Self {
        let q = Queue::new(capacity);
        let workers = (0..workers)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || q.work())
            })
            .collect();
        Model {
            q,
            ran: Arc::new(AtomicUsize::new(0)),
            workers,
        }
    }

    /// A job that counts itself in `ran`.
    fn job(&self) -> impl FnOnce() + Send + 'static {
        let ran = self.ran.clone();
        move || {
            ran.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// How many jobs have run so far.
    fn ran(&self) -> usize {
        self.ran.load(Ordering::SeqCst)
    }

    /// Waits for the workers (they end once the queue is closed and
    /// empty); returns the queue's counters and how many jobs ran.
    fn join(self) -> (Stats, usize) {
        for w in self.workers {
            w.join().unwrap();
        }
        (self.q.stats(), self.ran.load(Ordering::SeqCst))
    }
}

/// A producer that must block on a full queue of one, and a worker that
/// must wake it: both jobs run, the worker ends after `close`.
#[test]
fn a_blocked_producer_is_woken_and_every_job_runs() {
    loom::model(|| {
        let m = Model::start(1, 1);
        assert!(m.q.push(m.job()));
        assert!(m.q.push(m.job()));
        assert_eq!(m.q.close(false), 0);
        let (s, ran) = m.join();
        assert_eq!(ran, 2);
        assert_eq!((s.submitted, s.completed, s.queued), (2, 2, 0));
    });
}

/// Two sleeping-prone workers and two jobs: neither job is lost or run
/// twice, and both workers see the close.
///
/// Three threads taking one lock many times is a large space; loom's
/// preemption bound of 2 (its documentation's advice) keeps it to minutes
/// while still covering a preemption at each pair of points.
#[test]
fn two_workers_share_jobs_without_losing_a_wake_up() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let m = Model::start(2, 2);
        assert!(m.q.push(m.job()));
        assert!(m.q.push(m.job()));
        assert_eq!(m.q.close(false), 0);
        let (s, ran) = m.join();
        assert_eq!(ran, 2);
        assert_eq!(s.completed, 2);
    });
}

/// `wait_idle` returns only after the job has run and been booked.
#[test]
fn wait_idle_sees_the_job_finished() {
    loom::model(|| {
        let m = Model::start(1, 1);
        assert!(m.q.push(m.job()));
        m.q.wait_idle();
        assert_eq!(m.ran(), 1);
        assert_eq!(m.q.stats().completed, 1);
        m.q.close(false);
        m.join();
    });
}

/// A forced close racing the worker: each job is either run or dropped,
/// never both, never neither; a closed queue refuses new jobs.
#[test]
fn a_forced_close_accounts_for_every_job() {
    loom::model(|| {
        let m = Model::start(2, 1);
        assert!(m.q.try_push(m.job()));
        assert!(m.q.try_push(m.job()));
        let dropped = m.q.close(true);
        assert!(!m.q.try_push(m.job()));
        let (s, ran) = m.join();
        assert_eq!(ran + dropped, 2);
        assert_eq!(s.completed as usize, ran);
        assert_eq!(s.cancelled as usize, dropped);
    });
}
