//! Racing two futures that stay where they were pinned.
//!
//! `tokio::select!` and `tokio::time::timeout` take their futures by value:
//! a request handler's or a forward's state (kilobytes) is copied into
//! theirs before the first poll, once per request. The copies showed up as
//! the largest `memcpy` callers in profiles of the proxy path. Here both
//! futures are borrowed pinned, so nothing moves.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use futures_util::future::Either;

/// The output of whichever of `first` and `second` finishes first;
/// `first` is polled first, as `select!`'s `biased` would, so it wins when
/// both are ready. The poll function is the future itself, not wrapped in
/// an `async fn`: the winner's output (a response, some hundreds of bytes)
/// is moved once fewer on its way out.
pub(crate) fn first_of<'a, A: Future, B: Future>(
    mut first: Pin<&'a mut A>,
    mut second: Pin<&'a mut B>,
) -> impl Future<Output = Either<A::Output, B::Output>> + 'a {
    poll_fn(move |cx| {
        if let Poll::Ready(out) = first.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(out));
        }
        if let Poll::Ready(out) = second.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(out));
        }
        Poll::Pending
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_first_to_finish_wins_and_the_first_wins_ties() {
        let slow = pin!(tokio::time::sleep(Duration::from_secs(2)));
        let fast = pin!(tokio::time::sleep(Duration::from_secs(1)));
        assert!(matches!(first_of(slow, fast).await, Either::Right(())));
        let a = pin!(std::future::ready(1));
        let b = pin!(std::future::ready("b"));
        assert!(matches!(first_of(a, b).await, Either::Left(1)));
        let pending = pin!(std::future::pending::<()>());
        let b = pin!(std::future::ready("b"));
        assert!(matches!(first_of(pending, b).await, Either::Right("b")));
    }
}
