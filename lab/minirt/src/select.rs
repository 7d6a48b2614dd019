//! [`select`] two futures: the first to finish wins, the other is dropped
//! with the `Select`. Biased: `a` is polled first on every poll, so if both
//! are ready, `a` wins (as with `tokio::select! { biased; .. }`).
//!
//! Like `join`, it polls its inputs in place, which takes a pin projection
//! (see `join.rs`). Dropping the loser cancels it: anything it was in the
//! middle of is lost, which is what "cancel safety" is about (see
//! `lab/lab/src/experiments/select.rs`).

#![allow(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Which of two futures finished first, with its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first (`a`) finished first.
    Left(A),
    /// The second (`b`) finished first.
    Right(B),
}

/// The future of [`select`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Select<A, B> {
    a: A,
    b: B,
}

/// Resolves to the output of whichever of `a` and `b` finishes first
/// (`a` if both are ready at the same poll).
pub fn select<A: Future, B: Future>(a: A, b: B) -> Select<A, B> {
    Select { a, b }
}

impl<A: Future, B: Future> Future for Select<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of `a` and `b`: reached only pinned
        // (here), never moved out, no `Drop` impl; `Select` is `Unpin`
        // only when both are.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        if let Poll::Ready(out) = unsafe { Pin::new_unchecked(&mut this.a) }.poll(cx) {
            return Poll::Ready(Either::Left(out));
        }
        // SAFETY: see above.
        if let Poll::Ready(out) = unsafe { Pin::new_unchecked(&mut this.b) }.poll(cx) {
            return Poll::Ready(Either::Right(out));
        }
        Poll::Pending
    }
}
