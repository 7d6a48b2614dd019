//! Tasks and their [`JoinHandle`]s.
//!
//! A task is the spawned future wrapped in one that stores its output in a
//! [`JoinState`] shared with the handle, boxed and pinned once (it never
//! moves again). The executor keeps tasks in a slab; a task's slot also
//! keeps its waker, which the next task in that slot reuses.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::wake::TaskWaker;

/// A spawned future with its output sent to its handle.
pub(crate) type BoxTask = Pin<Box<dyn Future<Output = ()>>>;

/// One slot of the executor's task slab.
pub(crate) struct Slot {
    /// `None` while the task is being polled (taken out so that the task
    /// can spawn others, which touches the slab) or after it finished.
    pub(crate) future: Option<BoxTask>,
    pub(crate) waker: Arc<TaskWaker>,
}

/// What a task and its handle share: the output, and who waits for it.
struct JoinState<T> {
    output: Cell<Option<T>>,
    finished: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

/// Wraps `future` so that its output lands in the returned handle.
pub(crate) fn wrap<F>(future: F) -> (BoxTask, JoinHandle<F::Output>)
where
    F: Future + 'static,
    F::Output: 'static,
{
    let state = Rc::new(JoinState {
        output: Cell::new(None),
        finished: Cell::new(false),
        waiter: RefCell::new(None),
    });
    let task_state = Rc::clone(&state);
    // An `async` block does the pin projection of `future` for us, safely:
    // it is a compiler-written state machine, pinned inside the box.
    let task = Box::pin(async move {
        let output = future.await;
        task_state.output.set(Some(output));
        task_state.finished.set(true);
        let waiter = task_state.waiter.borrow_mut().take();
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    });
    (task, JoinHandle { state })
}

/// Resolves to a spawned task's output. Dropping it detaches the task,
/// which runs on.
pub struct JoinHandle<T> {
    state: Rc<JoinState<T>>,
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished (its output may already be taken).
    pub fn is_finished(&self) -> bool {
        self.state.finished.get()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(output) = self.state.output.take() {
            return Poll::Ready(output);
        }
        assert!(
            !self.state.finished.get(),
            "JoinHandle polled after it returned the output"
        );
        let mut waiter = self.state.waiter.borrow_mut();
        match &*waiter {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
