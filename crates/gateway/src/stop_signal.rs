//! Waiting for a [`CancellationToken`] at the cost of a load per poll.
//!
//! The lean connection loop races every request's handler against the
//! listener's hard stop, and every wait for a head against its shutdown.
//! Polling `WaitForCancellationFuture` takes the token's lock and the
//! `Notify` lock on every poll, even when nothing changed: about ten atomic
//! operations per request. [`Signal`] polls the token's future only when
//! that future's own waker has fired, which sets a flag; otherwise a poll
//! is one load and a waker comparison.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// The waker handed to the token's future: it records that the future may
/// be ready and wakes the task that waits on the signal.
#[derive(Debug, Default)]
struct Fired {
    flag: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Fired {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flag.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// A future that completes once `token` is cancelled, cheap to poll while it
/// is not. Pin it once (per connection) and poll it as often as needed.
pub(crate) struct Signal<'a> {
    token: &'a CancellationToken,
    inner: Pin<Box<WaitForCancellationFuture<'a>>>,
    fired: Arc<Fired>,
    inner_waker: Waker,
    /// The task waker last registered with `fired`.
    task: Option<Waker>,
    done: bool,
}

impl<'a> Signal<'a> {
    /// Wait for `token`.
    pub(crate) fn new(token: &'a CancellationToken) -> Signal<'a> {
        let fired = Arc::new(Fired::default());
        Signal {
            token,
            inner: Box::pin(token.cancelled()),
            inner_waker: Waker::from(Arc::clone(&fired)),
            fired,
            task: None,
            done: false,
        }
    }

    /// Whether the token is cancelled: a load once the signal has been
    /// polled (its waker is registered then), the token's lock before.
    pub(crate) fn is_cancelled(&self) -> bool {
        if self.done || self.fired.flag.load(Ordering::Acquire) {
            return self.token.is_cancelled();
        }
        self.task.is_none() && self.token.is_cancelled()
    }
}

impl Future for Signal<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(());
        }
        // Register the task before looking at the flag, so a wake between
        // the two is not lost. A task's waker rarely changes: the
        // comparison and the load are what most polls cost.
        if this.task.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
            this.fired.task.register(cx.waker());
            if this.task.is_none() {
                // The inner future has not registered its waker yet.
                this.fired.flag.store(true, Ordering::Release);
            }
            this.task = Some(cx.waker().clone());
        }
        // Cleared by a swap, not a store, so a wake that lands in between
        // leaves the flag set for the next poll.
        if !this.fired.flag.load(Ordering::Acquire)
            || !this.fired.flag.swap(false, Ordering::AcqRel)
        {
            return Poll::Pending;
        }
        let mut inner_cx = Context::from_waker(&this.inner_waker);
        if this.inner.as_mut().poll(&mut inner_cx).is_ready() {
            this.done = true;
            return Poll::Ready(());
        }
        // A wake takes the task's waker out of `fired`: put it back.
        this.fired.task.register(cx.waker());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(signal: &mut Pin<&mut Signal<'_>>, waker: &Waker) -> Poll<()> {
        signal.as_mut().poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn pending_until_cancelled_then_woken_and_ready() {
        let token = CancellationToken::new();
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let mut signal = std::pin::pin!(Signal::new(&token));
        for _ in 0..3 {
            assert!(poll(&mut signal, &waker).is_pending());
        }
        assert!(!signal.is_cancelled());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        token.cancel();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the task is woken");
        assert!(signal.is_cancelled());
        assert!(poll(&mut signal, &waker).is_ready());
        assert!(poll(&mut signal, &waker).is_ready(), "stays ready");
    }

    #[test]
    fn a_token_cancelled_before_the_first_poll_is_ready_at_once() {
        let token = CancellationToken::new();
        token.cancel();
        let signal = Signal::new(&token);
        assert!(signal.is_cancelled(), "seen before any poll");
        let count = Arc::new(Count::default());
        let mut signal = std::pin::pin!(signal);
        assert!(poll(&mut signal, &Waker::from(count)).is_ready());
    }

    #[test]
    fn a_new_task_waker_is_the_one_woken() {
        let token = CancellationToken::new();
        let first = Arc::new(Count::default());
        let second = Arc::new(Count::default());
        let mut signal = std::pin::pin!(Signal::new(&token));
        assert!(poll(&mut signal, &Waker::from(Arc::clone(&first))).is_pending());
        assert!(poll(&mut signal, &Waker::from(Arc::clone(&second))).is_pending());
        token.cancel();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_cancel_from_another_thread_ends_the_wait() {
        let token = CancellationToken::new();
        let canceller = token.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            canceller.cancel();
        });
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), Signal::new(&token));
        assert!(waited.await.is_ok());
    }
}
