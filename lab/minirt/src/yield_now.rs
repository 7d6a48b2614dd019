//! [`yield_now`]: the smallest hand-written future that waits. It wakes
//! its own task before returning `Pending`, so the executor queues it again
//! behind whatever is already queued.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Yields once: wakes its own task and returns `Pending`, so the executor
/// runs whatever else is queued before coming back.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
