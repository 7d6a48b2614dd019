//! The executor, timers, combinators and wakers, through the public API.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice_minirt::{
    Either, Runtime, channel, join, join_all, select, sleep, sleep_until, spawn, yield_now,
};

fn rt() -> Runtime {
    Runtime::new().expect("a runtime")
}

#[test]
fn block_on_returns_the_output() {
    assert_eq!(rt().block_on(async { 7 }), 7);
}

#[test]
fn timers_fire_in_deadline_order_not_spawn_order() {
    let rt = rt();
    let order = Rc::new(RefCell::new(Vec::new()));
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = [30u64, 10, 20, 0, 10]
            .into_iter()
            .enumerate()
            .map(|(i, ms)| {
                let order = Rc::clone(&order);
                spawn(async move {
                    sleep_until(start + Duration::from_millis(ms)).await;
                    order.borrow_mut().push((ms, i));
                })
            })
            .collect();
        join_all(handles).await;
        // Never early.
        assert!(start.elapsed() >= Duration::from_millis(30));
    });
    // Equal deadlines keep their registration order (task 1 before task 4).
    assert_eq!(
        *order.borrow(),
        [(0, 3), (10, 1), (10, 4), (20, 2), (30, 0)]
    );
}

#[test]
fn join_handle_resolves_to_the_task_output_even_after_it_finished() {
    let rt = rt();
    let (early, late) = rt.block_on(async {
        let early = spawn(async { String::from("early") });
        // Let it finish before anyone awaits its handle.
        yield_now().await;
        yield_now().await;
        assert!(early.is_finished());
        let late = spawn(async {
            sleep(Duration::from_millis(5)).await;
            vec![1, 2, 3]
        });
        (early.await, late.await)
    });
    assert_eq!(early, "early");
    assert_eq!(late, [1, 2, 3]);
    assert_eq!(rt.tasks(), 0);
}

#[test]
fn a_detached_task_still_runs() {
    let rt = rt();
    let done = Rc::new(RefCell::new(false));
    let flag = Rc::clone(&done);
    rt.block_on(async move {
        drop(spawn(async move {
            *flag.borrow_mut() = true;
        }));
        sleep(Duration::from_millis(1)).await;
    });
    assert!(*done.borrow());
}

#[test]
fn join_waits_for_both_and_select_for_the_first() {
    let rt = rt();
    rt.block_on(async {
        let start = Instant::now();
        let (a, b) = join(
            async {
                sleep(Duration::from_millis(20)).await;
                'a'
            },
            async {
                sleep(Duration::from_millis(10)).await;
                'b'
            },
        )
        .await;
        assert_eq!((a, b), ('a', 'b'));
        assert!(start.elapsed() >= Duration::from_millis(20));

        let won = select(
            async {
                sleep(Duration::from_millis(200)).await;
                "slow"
            },
            async {
                sleep(Duration::from_millis(5)).await;
                5
            },
        )
        .await;
        assert_eq!(won, Either::Right(5));
        // Both ready at the first poll: biased to the left.
        assert_eq!(select(async { 1 }, async { 2 }).await, Either::Left(1));
    });
}

#[test]
fn yield_now_lets_other_tasks_run_in_between() {
    let rt = rt();
    let log = Rc::new(RefCell::new(Vec::new()));
    rt.block_on(async {
        let tasks: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                let log = Rc::clone(&log);
                spawn(async move {
                    for i in 0..3 {
                        log.borrow_mut().push(format!("{name}{i}"));
                        yield_now().await;
                    }
                })
            })
            .collect();
        join_all(tasks).await;
    });
    assert_eq!(*log.borrow(), ["a0", "b0", "a1", "b1", "a2", "b2"]);
}

#[test]
fn a_wake_from_another_thread_ends_the_park() {
    // The executor parks in epoll with no timer at all; only the other
    // thread's send (through the waker and mio::Waker) can wake it.
    let rt = rt();
    let (tx, mut rx) = channel::<u32>();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        for i in 0..100 {
            tx.send(i).unwrap();
        }
    });
    let got = rt.block_on(async {
        let task = spawn(async move {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        task.await
    });
    sender.join().unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[test]
fn block_on_itself_is_woken_from_another_thread() {
    let rt = rt();
    let (tx, mut rx) = channel::<&str>();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        tx.send("hello").unwrap();
    });
    assert_eq!(rt.block_on(rx.recv()), Some("hello"));
    t.join().unwrap();
}

#[test]
fn many_tasks_all_finish_with_their_own_results() {
    let rt = rt();
    let counter = Arc::new(AtomicUsize::new(0));
    let sum: u64 = rt.block_on(async {
        let handles: Vec<_> = (0..10_000u64)
            .map(|i| {
                let counter = Arc::clone(&counter);
                spawn(async move {
                    if i % 3 == 0 {
                        yield_now().await;
                    }
                    if i % 1000 == 0 {
                        sleep(Duration::from_millis(i / 1000)).await;
                    }
                    counter.fetch_add(1, Ordering::Relaxed);
                    i * 2
                })
            })
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await;
        }
        sum
    });
    assert_eq!(counter.load(Ordering::Relaxed), 10_000);
    assert_eq!(sum, 2 * (0..10_000u64).sum::<u64>());
    assert_eq!(rt.tasks(), 0);
}

#[test]
fn tasks_spawn_tasks() {
    let rt = rt();
    let depth = rt.block_on(async {
        fn nest(n: u32) -> sluice_minirt::JoinHandle<u32> {
            spawn(async move { if n == 0 { 0 } else { nest(n - 1).await + 1 } })
        }
        nest(50).await
    });
    assert_eq!(depth, 50);
}

#[test]
fn pending_tasks_survive_block_on_and_run_in_the_next() {
    let rt = rt();
    // The handle is the point here: it leaves `block_on` unawaited.
    #[allow(clippy::async_yields_async)]
    let handle = rt.block_on(async {
        spawn(async {
            sleep(Duration::from_millis(5)).await;
            9
        })
    });
    assert_eq!(rt.tasks(), 1);
    assert_eq!(rt.block_on(handle), 9);
}

#[test]
#[should_panic(expected = "no runtime on this thread")]
fn spawn_outside_block_on_says_why_it_cannot() {
    drop(spawn(async {}));
}

#[test]
fn a_closed_channel_ends_the_receiver_and_refuses_sends() {
    let rt = rt();
    let (tx, mut rx) = channel::<u8>();
    let tx2 = tx.clone();
    tx.send(1).unwrap();
    drop(tx);
    drop(tx2);
    rt.block_on(async {
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, None);
    });
    let (tx, rx) = channel::<u8>();
    drop(rx);
    assert_eq!(tx.send(5), Err(5));
}

/// A task that wakes itself in the poll where it finishes leaves a queued
/// wake-up for a slot that is free when it is popped.
struct WakeAndFinish;

impl std::future::Future for WakeAndFinish {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        cx.waker().wake_by_ref();
        std::task::Poll::Ready(())
    }
}

#[test]
fn a_stale_wake_up_does_not_stop_the_next_task_in_the_slot_from_running() {
    let rt = rt();
    let next = rt.block_on(async {
        spawn(WakeAndFinish).await;
        // The stale wake-up of the finished task's slot is popped here.
        yield_now().await;
        // The next spawn reuses that slot; it must still be queued.
        select(spawn(async { 5 }), sleep(Duration::from_secs(5))).await
    });
    assert_eq!(next, Either::Left(5));
}
