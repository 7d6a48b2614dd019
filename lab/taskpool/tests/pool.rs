//! Behaviour tests: panics, shutdown, backpressure, scoped borrows, batches.
//!
//! Timing is controlled with channels ("gates"), never with sleeps: a gate
//! job tells the test it has started, then blocks until the test opens it,
//! which pins a worker down at a known moment.

use std::panic;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Barrier, Once};
use std::thread;
use std::time::Duration;

use sluice_taskpool::{Builder, JobError, ShutdownReport, ThreadPool, TryExecuteError};

/// Thousands of jobs here panic on purpose. The panic hook is process-wide,
/// so wrap it once: stay quiet for this file's pool workers (named `test-N`),
/// report everything else (a failing assertion in a test thread) as usual.
fn quiet_worker_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !thread::current()
                .name()
                .is_some_and(|n| n.starts_with("test-"))
            {
                default(info);
            }
        }));
    });
}

fn pool(threads: usize, capacity: usize) -> ThreadPool<'static> {
    quiet_worker_panics();
    Builder::new()
        .threads(threads)
        .queue_capacity(capacity)
        .thread_name("test")
        .build()
        .unwrap()
}

/// Occupies one worker until the returned sender is used (or dropped).
/// Returns once the worker has really started the job.
fn block_one_worker(pool: &ThreadPool<'static>) -> Sender<()> {
    let (started_tx, started_rx) = mpsc::channel();
    let (open_tx, open_rx): (Sender<()>, Receiver<()>) = mpsc::channel();
    pool.execute(move || {
        started_tx.send(()).unwrap();
        let _ = open_rx.recv();
    })
    .unwrap();
    started_rx.recv().unwrap();
    open_tx
}

#[test]
fn a_panicking_job_hands_its_payload_to_the_handle() {
    let pool = pool(1, 8);
    let err = pool
        .submit(|| -> u8 { panic!("payload {}", 7) })
        .join()
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("payload 7"));
    assert_eq!(err.to_string(), "job panicked: payload 7");
    // A non-string payload is kept as it was.
    let err = pool
        .submit(|| std::panic::panic_any(42u32))
        .join()
        .unwrap_err();
    match err {
        JobError::Panicked(payload) => assert_eq!(payload.downcast_ref::<u32>(), Some(&42)),
        JobError::Cancelled => panic!("expected a panic"),
    }
}

#[test]
fn the_only_worker_survives_panics_and_the_counts_add_up() {
    let pool = pool(1, 16);
    let worker = pool.submit(|| thread::current().id()).join().unwrap();
    for _ in 0..5 {
        pool.execute(|| panic!("fire and forget")).unwrap();
    }
    // Same thread, still alive, after five panics: isolation, not respawn.
    assert_eq!(
        pool.submit(|| thread::current().id()).join().unwrap(),
        worker
    );
    assert_eq!(
        pool.submit(|| thread::current().name().map(str::to_owned))
            .join()
            .unwrap()
            .as_deref(),
        Some("test-0")
    );
    let report = pool.shutdown();
    assert_eq!(
        report,
        ShutdownReport {
            submitted: 8,
            completed: 3,
            panicked: 5,
            cancelled: 0,
            workers_lost: 0
        }
    );
}

#[test]
fn ten_thousand_jobs_with_one_in_ten_panicking_are_all_accounted_for() {
    let pool = pool(4, 64);
    let handles: Vec<_> = (0..10_000u64)
        .map(|i| pool.submit(move || if i % 10 == 0 { panic!("job {i}") } else { i }))
        .collect();
    let (mut ok, mut panicked) = (0, 0);
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(v) => {
                assert_eq!(v, i as u64);
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.panic_message(), Some(format!("job {i}").as_str()));
                panicked += 1;
            }
        }
    }
    assert_eq!((ok, panicked), (9_000, 1_000));
    let report = pool.shutdown();
    assert_eq!(
        (report.completed, report.panicked, report.workers_lost),
        (9_000, 1_000, 0)
    );
}

#[test]
fn graceful_shutdown_runs_every_queued_job() {
    let pool = pool(1, 32);
    let gate = block_one_worker(&pool);
    let ran = Arc::new(AtomicU64::new(0));
    for _ in 0..20 {
        let ran = Arc::clone(&ran);
        pool.execute(move || {
            ran.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    }
    assert_eq!(pool.stats().queued, 20);
    drop(gate);
    let report = pool.shutdown();
    assert_eq!(ran.load(Ordering::Relaxed), 20);
    assert_eq!(
        report,
        ShutdownReport {
            submitted: 21,
            completed: 21,
            panicked: 0,
            cancelled: 0,
            workers_lost: 0
        }
    );
}

#[test]
fn forced_shutdown_drops_queued_jobs_and_cancels_their_handles() {
    let pool = pool(1, 32);
    let gate = block_one_worker(&pool);
    let ran = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let ran = Arc::clone(&ran);
            pool.submit(move || ran.fetch_add(1, Ordering::Relaxed))
        })
        .collect();
    let batch = pool.batch((0..5).map(|_| || 1));
    let (shut_tx, shut_rx) = mpsc::channel();
    let shutter = thread::spawn(move || shut_tx.send(pool.shutdown_now()).unwrap());
    // The handles are filled when shutdown_now drops the queue, which it does
    // before it waits for the (still blocked) worker.
    for h in handles {
        assert!(matches!(h.join(), Err(JobError::Cancelled)));
    }
    assert!(
        batch
            .join()
            .iter()
            .all(|r| matches!(r, Err(JobError::Cancelled)))
    );
    drop(gate); // now the worker may finish the gate job and exit
    let report = shut_rx.recv().unwrap();
    shutter.join().unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), 0);
    assert_eq!(
        report,
        ShutdownReport {
            submitted: 16,
            completed: 1,
            panicked: 0,
            cancelled: 15,
            workers_lost: 0
        }
    );
}

#[test]
fn a_closed_pool_hands_jobs_back_and_still_drains() {
    let pool = pool(1, 8);
    let gate = block_one_worker(&pool);
    let h = pool.submit(|| "queued before close");
    pool.close();
    let (tx, rx) = mpsc::channel();
    let job = match pool.execute(move || tx.send(5).unwrap()) {
        Err(closed) => closed.0,
        Ok(()) => panic!("a closed pool accepted a job"),
    };
    job(); // the very closure we gave, still callable
    assert_eq!(rx.recv().unwrap(), 5);
    assert!(matches!(
        pool.try_execute(|| ()),
        Err(TryExecuteError::Closed(_))
    ));
    assert!(matches!(pool.submit(|| 1).join(), Err(JobError::Cancelled)));
    drop(gate);
    assert_eq!(h.join().unwrap(), "queued before close");
    let report = pool.shutdown();
    assert_eq!(
        (report.submitted, report.completed, report.cancelled),
        (2, 2, 0)
    );
}

#[test]
fn try_execute_refuses_when_full_and_returns_the_job() {
    let pool = pool(1, 2);
    let gate = block_one_worker(&pool);
    pool.try_execute(|| ()).unwrap();
    pool.try_execute(|| ()).unwrap();
    let (tx, rx) = mpsc::channel();
    match pool.try_execute(move || tx.send("ran").unwrap()) {
        Err(TryExecuteError::Full(job)) => job(), // the very closure we gave
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(rx.recv().unwrap(), "ran");
    assert_eq!(pool.stats().queued, 2);
    drop(gate);
    pool.wait_idle();
    assert_eq!(pool.stats().peak_queued, 2);
}

#[test]
fn execute_blocks_while_full_and_resumes_when_room_appears() {
    let pool = Arc::new(pool(1, 2));
    let gate = block_one_worker(&pool);
    pool.execute(|| ()).unwrap();
    pool.execute(|| ()).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let producer = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || {
            pool.execute(|| ()).unwrap();
            done_tx.send(()).unwrap();
        })
    };
    // Absence of progress is all this checks; a slow machine cannot make it
    // fail, only a producer that did not block.
    assert!(
        done_rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "execute did not block on a full queue"
    );
    assert_eq!(pool.stats().queued, 2);
    drop(gate);
    done_rx.recv().unwrap();
    producer.join().unwrap();
    pool.wait_idle();
    let stats = pool.stats();
    assert_eq!(
        (stats.submitted, stats.completed, stats.peak_queued),
        (4, 4, 2)
    );
}

#[test]
fn scoped_jobs_borrow_and_mutate_the_callers_data() {
    let mut data: Vec<u64> = (0..1_000).collect();
    let factor = 3; // borrowed by every job
    let report = thread::scope(|s| {
        let pool = Builder::new().threads(3).build_scoped(s).unwrap();
        for chunk in data.chunks_mut(64) {
            let factor = &factor;
            pool.execute(move || chunk.iter_mut().for_each(|x| *x *= *factor))
                .unwrap();
        }
        let sum_of_squares = pool.submit(|| (1..=10u64).map(|x| x * x).sum::<u64>());
        assert_eq!(sum_of_squares.join().unwrap(), 385);
        pool.shutdown()
    });
    // The mutable borrows ended with the scope; the data is ours again.
    assert!(data.iter().enumerate().all(|(i, &x)| x == 3 * i as u64));
    assert_eq!(report.completed, 17);
}

#[test]
fn scoped_borrows_outlive_a_panicking_job() {
    let counter = AtomicU64::new(0);
    thread::scope(|s| {
        quiet_worker_panics();
        let pool = Builder::new()
            .threads(2)
            .thread_name("test")
            .build_scoped(s)
            .unwrap();
        let c = &counter;
        let bad = pool.submit(move || {
            c.fetch_add(1, Ordering::Relaxed);
            panic!("inside the scope")
        });
        let good = pool.submit(move || c.fetch_add(1, Ordering::Relaxed));
        assert!(bad.join().unwrap_err().is_panic());
        good.join().unwrap();
    }); // dropping the pool is a graceful shutdown
    assert_eq!(counter.into_inner(), 2);
}

#[test]
fn batch_results_come_back_in_submission_order() {
    let pool = pool(4, 8);
    // Uneven work so chunks finish out of order.
    let results = pool
        .batch((0..1_000u64).map(|i| {
            move || {
                if i == 500 {
                    panic!("the middle one");
                }
                for x in 0..(i % 7) * 1_000 {
                    std::hint::black_box(x);
                }
                i
            }
        }))
        .join();
    assert_eq!(results.len(), 1_000);
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, i as u64),
            Err(e) => {
                assert_eq!(i, 500);
                assert_eq!(e.panic_message(), Some("the middle one"));
            }
        }
    }
    let report = pool.shutdown();
    assert_eq!(
        (report.submitted, report.completed, report.panicked),
        (1_000, 999, 1)
    );
    assert!(pool_batch_is_empty_ok());
}

fn pool_batch_is_empty_ok() -> bool {
    let pool = pool(1, 1);
    let b = pool.batch(Vec::<fn() -> u8>::new());
    b.is_empty() && b.join().is_empty()
}

#[test]
fn wait_idle_returns_after_all_jobs_and_drop_does_not_hang() {
    let pool = pool(2, 1024);
    let n = Arc::new(AtomicU64::new(0));
    for _ in 0..1_000 {
        let n = Arc::clone(&n);
        pool.execute(move || {
            n.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    }
    pool.wait_idle();
    assert_eq!(n.load(Ordering::Relaxed), 1_000);
    assert_eq!(pool.stats().active, 0);
    drop(pool);
}

#[test]
fn the_builder_rejects_zero() {
    assert!(Builder::new().threads(0).build().is_err());
    assert!(Builder::new().queue_capacity(0).build().is_err());
}

/// Many producers against a tiny queue, mixing every way in; every job must
/// run exactly once and every count must be exact.
#[test]
fn stress_many_producers_on_a_small_queue() {
    const PRODUCERS: u64 = 8;
    const PER_PRODUCER: u64 = 5_000;
    let pool = Arc::new(pool(3, 4));
    let sum = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(PRODUCERS as usize));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (pool, sum, start) = (Arc::clone(&pool), Arc::clone(&sum), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                let mut handles = Vec::new();
                for i in 0..PER_PRODUCER {
                    let v = p * PER_PRODUCER + i;
                    let sum2 = Arc::clone(&sum);
                    match i % 4 {
                        0 => pool
                            .execute(move || {
                                sum2.fetch_add(v, Ordering::Relaxed);
                            })
                            .unwrap(),
                        1 => {
                            let mut job = move || {
                                sum2.fetch_add(v, Ordering::Relaxed);
                            };
                            // Spin on try_execute: each refusal hands the job back.
                            loop {
                                match pool.try_execute(job) {
                                    Ok(()) => break,
                                    Err(TryExecuteError::Full(j)) => {
                                        job = j;
                                        thread::yield_now();
                                    }
                                    Err(TryExecuteError::Closed(_)) => unreachable!(),
                                }
                            }
                        }
                        2 => handles.push(pool.submit(move || v)),
                        _ => pool.execute(move || panic!("job {v}")).unwrap(),
                    }
                }
                for h in handles {
                    sum.fetch_add(h.join().unwrap(), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let pool = Arc::into_inner(pool).unwrap();
    let stats = pool.stats();
    assert!(stats.peak_queued <= 4);
    let report = pool.shutdown();
    let total = PRODUCERS * PER_PRODUCER;
    let expected: u64 = (0..total).filter(|v| v % PER_PRODUCER % 4 != 3).sum();
    assert_eq!(sum.load(Ordering::Relaxed), expected);
    assert_eq!(
        report,
        ShutdownReport {
            submitted: total,
            completed: total * 3 / 4,
            panicked: total / 4,
            cancelled: 0,
            workers_lost: 0
        }
    );
}

#[test]
fn join_timeout_gives_the_handle_back_until_the_job_is_done() {
    let pool = pool(1, 8);
    let gate = block_one_worker(&pool);
    let h = pool.submit(|| "late");
    let h = h
        .join_timeout(Duration::from_millis(20))
        .expect_err("the job cannot have run: its worker is blocked");
    assert!(!h.is_finished());
    drop(gate);
    assert_eq!(
        h.join_timeout(Duration::from_secs(60))
            .map(|r| r.unwrap())
            .ok(),
        Some("late")
    );
}

#[test]
fn a_job_may_drop_the_last_reference_to_its_own_pool() {
    let pool = Arc::new(pool(2, 8));
    let inner = Arc::clone(&pool);
    let (tx, rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    pool.execute(move || {
        go_rx.recv().unwrap(); // wait until the caller's reference is gone
        drop(inner); // the pool's shutdown runs here, on one of its own workers
        tx.send("survived").unwrap();
    })
    .unwrap();
    drop(pool);
    go_tx.send(()).unwrap();
    assert_eq!(rx.recv(), Ok("survived"));
}
