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
use sluice_taskpool::model::Queue;

fn counting(ran: &Arc<AtomicUsize>) -> impl FnOnce() + Send + 'static {
    let ran = ran.clone();
    move || {
        ran.fetch_add(1, Ordering::SeqCst);
    }
}

/// A producer that must block on a full queue of one, and a worker that
/// must wake it: both jobs run, the worker ends after `close`.
#[test]
fn a_blocked_producer_is_woken_and_every_job_runs() {
    loom::model(|| {
        let q = Queue::new(1);
        let ran = Arc::new(AtomicUsize::new(0));
        let worker = {
            let q = q.clone();
            thread::spawn(move || q.work())
        };
        assert!(q.push(counting(&ran)));
        assert!(q.push(counting(&ran)));
        assert_eq!(q.close(false), 0);
        worker.join().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        let s = q.stats();
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
        let q = Queue::new(2);
        let ran = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || q.work())
            })
            .collect();
        assert!(q.push(counting(&ran)));
        assert!(q.push(counting(&ran)));
        assert_eq!(q.close(false), 0);
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        assert_eq!(q.stats().completed, 2);
    });
}

/// `wait_idle` returns only after the job has run and been booked.
#[test]
fn wait_idle_sees_the_job_finished() {
    loom::model(|| {
        let q = Queue::new(1);
        let ran = Arc::new(AtomicUsize::new(0));
        let worker = {
            let q = q.clone();
            thread::spawn(move || q.work())
        };
        assert!(q.push(counting(&ran)));
        q.wait_idle();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(q.stats().completed, 1);
        q.close(false);
        worker.join().unwrap();
    });
}

/// A forced close racing the worker: each job is either run or dropped,
/// never both, never neither; a closed queue refuses new jobs.
#[test]
fn a_forced_close_accounts_for_every_job() {
    loom::model(|| {
        let q = Queue::new(2);
        let ran = Arc::new(AtomicUsize::new(0));
        let worker = {
            let q = q.clone();
            thread::spawn(move || q.work())
        };
        assert!(q.try_push(counting(&ran)));
        assert!(q.try_push(counting(&ran)));
        let dropped = q.close(true);
        assert!(!q.try_push(counting(&ran)));
        worker.join().unwrap();
        let s = q.stats();
        assert_eq!(ran.load(Ordering::SeqCst) + dropped, 2);
        assert_eq!(s.completed as usize, ran.load(Ordering::SeqCst));
        assert_eq!(s.cancelled as usize, dropped);
    });
}
