//! The executor: a run queue, the task slab, the timer heap and the
//! reactor, driven by [`Runtime::block_on`] on one thread.
//!
//! One turn of the loop:
//!
//! 1. poll `block_on`'s own future if its waker fired;
//! 2. poll every task whose waker fired (the run queue, swapped out under
//!    one lock, so tasks woken meanwhile wait for the next turn);
//! 3. fire the timers whose deadline has passed (their wakers queue tasks);
//! 4. with nothing queued, park in `epoll` (mio `Poll::poll`) until a socket
//!    is ready, the next timer's deadline, or a wake-up from another thread;
//!    otherwise look at the sockets without waiting every 61 polls, so a
//!    busy executor still serves its sockets.
//!
//! [`Shared`] is the part wakers reach from any thread: the run queue
//! behind a `Mutex`, and the `mio::Waker` that breaks the `epoll` wait. A
//! waker on the executor's own thread, while it runs, skips the
//! `mio::Waker` system call: `parked` says whether anyone is in `epoll`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake as _, Waker};
use std::time::{Duration, Instant};

use crate::reactor::Reactor;
use crate::task::{self, JoinHandle, Slot};
use crate::timer::Timers;
use crate::wake::TaskWaker;

/// Look at the sockets after this many task polls even when tasks keep
/// the queue busy (tokio's current-thread runtime uses the same number).
const EVENT_INTERVAL: u32 = 61;

/// What wakers reach, from any thread.
pub(crate) struct Shared {
    /// Keys of woken tasks, in wake order.
    queue: Mutex<VecDeque<usize>>,
    /// Set by `block_on`'s waker; `block_on` polls its future when it is.
    pub(crate) main_woken: AtomicBool,
    /// True while the executor is in (or about to enter) `epoll`.
    parked: AtomicBool,
    /// Breaks the `epoll` wait; `None` in tests of the wakers alone.
    waker: Option<mio::Waker>,
}

impl Shared {
    /// Queues the task at `key` and unparks the executor.
    pub(crate) fn schedule(&self, key: usize) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(key);
        self.unpark();
    }

    /// Marks `block_on`'s future as woken and unparks the executor.
    pub(crate) fn wake_main(&self) {
        self.main_woken.store(true, Ordering::SeqCst);
        self.unpark();
    }

    /// Breaks the `epoll` wait if the executor is in it (or about to be).
    ///
    /// The executor stores `parked = true` and only then looks at the queue
    /// and `main_woken`; a waker writes those and only then loads `parked`.
    /// With sequentially consistent operations (the queue's mutex orders
    /// the same way) one of the two sees the other: either the executor sees
    /// the work and does not sleep, or the waker sees it parked and wakes it.
    fn unpark(&self) {
        if self.parked.load(Ordering::SeqCst)
            && let Some(waker) = &self.waker
        {
            // Fails only if the eventfd cannot be written: then the
            // executor wakes at its next timer, nothing is lost for good.
            let _ = waker.wake();
        }
    }

    fn take_queue(&self, into: &mut VecDeque<usize>) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *queue, into);
    }

    fn has_work(&self) -> bool {
        self.main_woken.load(Ordering::SeqCst)
            || !self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
    }

    #[cfg(test)]
    pub(crate) fn new_for_test() -> Arc<Shared> {
        Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            main_woken: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            waker: None,
        })
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("main_woken", &self.main_woken)
            .field("parked", &self.parked)
            .finish_non_exhaustive()
    }
}

/// The executor's state on its own thread.
pub(crate) struct Core {
    tasks: RefCell<Tasks>,
    pub(crate) timers: Timers,
    pub(crate) reactor: Reactor,
    pub(crate) shared: Arc<Shared>,
}

/// The task table: slots addressed by key, each with its waker. A slot's
/// waker outlives its task and serves the next task in the slot, so a
/// spawn allocates no waker once the table has grown; a stale waker of the
/// old task can only cause one spurious poll of the new one.
#[derive(Default)]
struct Tasks {
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
}

impl Core {
    fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let (task, handle) = task::wrap(future);
        let mut tasks = self.tasks.borrow_mut();
        tasks.live += 1;
        let waker = match tasks.free.pop() {
            Some(key) => {
                let slot = &mut tasks.slots[key];
                slot.future = Some(task);
                Arc::clone(&slot.waker)
            }
            None => {
                let key = tasks.slots.len();
                let waker = TaskWaker::new(key, Arc::clone(&self.shared));
                tasks.slots.push(Slot {
                    future: Some(task),
                    waker: Arc::clone(&waker),
                });
                waker
            }
        };
        drop(tasks);
        waker.wake_by_ref();
        handle
    }

    /// Polls the task at `key` once, if it is still there.
    fn run_task(&self, key: usize) {
        let (mut future, waker) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(slot) = tasks.slots.get_mut(key) else {
                return;
            };
            // Cleared even when there is nothing to poll: a task that woke
            // itself as it finished leaves its free slot marked scheduled,
            // and the next task spawned there would never be queued.
            slot.waker.clear();
            let Some(future) = slot.future.take() else {
                return; // a stale wake-up for a finished task
            };
            (future, Waker::from(Arc::clone(&slot.waker)))
        };
        let mut cx = Context::from_waker(&waker);
        let ready = future.as_mut().poll(&mut cx).is_ready();
        let mut tasks = self.tasks.borrow_mut();
        if ready {
            tasks.free.push(key);
            tasks.live -= 1;
            drop(tasks);
            // Dropped outside the borrow: its destructor may spawn or wake.
            drop(future);
        } else {
            tasks.slots[key].future = Some(future);
        }
    }

    /// Waits for sockets, a timer or a wake-up; `block` says whether it may wait.
    fn park(&self, block: bool) -> io::Result<()> {
        let timeout = if block {
            self.timers
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
        } else {
            Some(Duration::ZERO)
        };
        self.shared.parked.store(true, Ordering::SeqCst);
        let timeout = if self.shared.has_work() {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        let waited = self.reactor.wait(timeout);
        // Wakers run by the events below need not write the eventfd.
        self.shared.parked.store(false, Ordering::SeqCst);
        waited?;
        self.reactor.dispatch();
        Ok(())
    }
}

thread_local! {
    /// The runtime `block_on` is running on this thread.
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// Runs `f` with the runtime of this thread's `block_on`.
///
/// # Panics
///
/// Outside [`Runtime::block_on`]: spawning, timers and sockets need a
/// running executor.
pub(crate) fn with_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> R {
    CURRENT.with(|current| {
        let current = current.borrow();
        let core = current.as_ref().expect(
            "minirt: no runtime on this thread (spawn, sleep and sockets work only inside Runtime::block_on)",
        );
        f(core)
    })
}

/// Spawns `future` on the runtime of the current `block_on` and returns a
/// handle that resolves to its output. The task runs whether or not the
/// handle is awaited. The future need not be `Send`: it never leaves this
/// thread.
///
/// # Panics
///
/// Outside [`Runtime::block_on`].
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    with_core(|core| core.spawn(future))
}

/// A single-threaded runtime: executor, timers and reactor.
pub struct Runtime {
    core: Rc<Core>,
}

impl Runtime {
    /// A runtime with its own `epoll` instance.
    pub fn new() -> io::Result<Runtime> {
        let reactor = Reactor::new()?;
        let waker = reactor.waker()?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            main_woken: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            waker: Some(waker),
        });
        Ok(Runtime {
            core: Rc::new(Core {
                tasks: RefCell::new(Tasks::default()),
                timers: Timers::default(),
                reactor,
                shared,
            }),
        })
    }

    /// Runs `future` to completion on this thread, running spawned tasks,
    /// timers and sockets meanwhile. Tasks still pending when it returns
    /// stay in the runtime, to run in the next `block_on` (or be dropped
    /// with the runtime).
    ///
    /// # Panics
    ///
    /// Inside another `block_on` on the same thread; if a task panics (the
    /// panic goes through); if `epoll` itself fails.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _enter = Enter::new(&self.core);
        let core = &*self.core;
        let mut future = pin!(future);
        let waker = crate::raw_waker::main_waker(Arc::clone(&core.shared));
        let mut cx = Context::from_waker(&waker);
        core.shared.main_woken.store(true, Ordering::SeqCst);
        let mut batch = VecDeque::new();
        let mut since_events = 0u32;
        loop {
            if core.shared.main_woken.swap(false, Ordering::SeqCst)
                && let Poll::Ready(output) = future.as_mut().poll(&mut cx)
            {
                return output;
            }
            core.shared.take_queue(&mut batch);
            let ran = !batch.is_empty();
            for key in batch.drain(..) {
                core.run_task(key);
                since_events += 1;
            }
            if !core.timers.is_empty() {
                core.timers.fire(Instant::now());
            }
            if !ran || since_events >= EVENT_INTERVAL {
                since_events = 0;
                // Block only when this turn found nothing to do; `park`
                // checks again after announcing itself parked.
                core.park(!ran)
                    .unwrap_or_else(|e| panic!("minirt: epoll wait failed: {e}"));
            }
        }
    }

    /// How many spawned tasks have not finished.
    pub fn tasks(&self) -> usize {
        self.core.tasks.borrow().live
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Tasks hold sockets that hold the core: drop them (closing the
        // sockets) before the core, or the cycle would keep both alive.
        let tasks = std::mem::take(&mut *self.core.tasks.borrow_mut());
        drop(tasks);
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("tasks", &self.tasks())
            .finish_non_exhaustive()
    }
}

/// Makes a runtime this thread's current one for the length of a `block_on`.
struct Enter;

impl Enter {
    fn new(core: &Rc<Core>) -> Enter {
        CURRENT.with(|current| {
            let mut current = current.borrow_mut();
            assert!(
                current.is_none(),
                "minirt: block_on inside block_on on one thread would deadlock"
            );
            *current = Some(Rc::clone(core));
        });
        Enter
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|current| current.borrow_mut().take());
    }
}
