//! [`join`] two futures, or [`join_all`] of many: run them all, in one
//! task, and return every output.
//!
//! Each input sits in a [`MaybeDone`]: the future while it runs, then its
//! output. Polling the join polls whichever are still running. The
//! futures are stored inline and polled where they lie, so `Join` must
//! hand out pinned references to its fields: *pin projection*. Without a
//! helper crate (pin-project) that takes `unsafe`, justified below: `Join`
//! never moves a field out while it is pinned and has no `Drop` that could.

#![allow(unsafe_code)]

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future, then its output, then nothing (the output was taken).
enum MaybeDone<F: Future> {
    Running(F),
    Done(F::Output),
    Taken,
}

impl<F: Future> MaybeDone<F> {
    /// Polls the future if it still runs; true once the output is there.
    fn poll_done(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        // SAFETY: the `Running` future is never moved: it is polled in
        // place through `Pin::new_unchecked` below, and replaced (dropped
        // in place) only by assigning the whole enum, which the pin
        // contract allows. Nothing else gets a `&mut` to it.
        let this = unsafe { self.get_unchecked_mut() };
        if let MaybeDone::Running(future) = this {
            // SAFETY: `future` is inside the pinned `MaybeDone` and stays
            // there until dropped (above).
            let future = unsafe { Pin::new_unchecked(future) };
            if let Poll::Ready(output) = future.poll(cx) {
                *this = MaybeDone::Done(output);
            }
        }
        !matches!(this, MaybeDone::Running(_))
    }

    /// Takes the output.
    ///
    /// # Panics
    ///
    /// If there is none (still running, or already taken).
    fn take(self: Pin<&mut Self>) -> F::Output {
        // SAFETY: only the `Done` variant is moved out of, and it holds an
        // output, which is not pinned (pinning the future says nothing
        // about what it returns); a running future is left where it is.
        let this = unsafe { self.get_unchecked_mut() };
        match this {
            MaybeDone::Done(_) => match mem::replace(this, MaybeDone::Taken) {
                MaybeDone::Done(output) => output,
                _ => unreachable!("matched Done above"),
            },
            _ => panic!("join: output taken twice, or before it was there"),
        }
    }
}

/// The future of [`join`].
#[must_use = "futures do nothing unless awaited"]
pub struct Join<A: Future, B: Future> {
    a: MaybeDone<A>,
    b: MaybeDone<B>,
}

/// Runs `a` and `b` concurrently in the same task; resolves to both outputs.
pub fn join<A: Future, B: Future>(a: A, b: B) -> Join<A, B> {
    Join {
        a: MaybeDone::Running(a),
        b: MaybeDone::Running(b),
    }
}

impl<A: Future, B: Future> Future for Join<A, B> {
    type Output = (A::Output, B::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of `a` and `b`: they are only ever
        // reached pinned (here), `Join` moves neither out while pinned and
        // implements no `Drop`; `Join` is `Unpin` only when both are.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let mut a = unsafe { Pin::new_unchecked(&mut this.a) };
        // SAFETY: see above.
        let mut b = unsafe { Pin::new_unchecked(&mut this.b) };
        let a_done = a.as_mut().poll_done(cx);
        let b_done = b.as_mut().poll_done(cx);
        if a_done && b_done {
            Poll::Ready((a.take(), b.take()))
        } else {
            Poll::Pending
        }
    }
}

/// The future of [`join_all`].
#[must_use = "futures do nothing unless awaited"]
pub struct JoinAll<F: Future> {
    // Boxed: a `Vec` could reallocate and move its elements; a boxed slice
    // never does. The box is what is pinned, so `JoinAll` itself is `Unpin`.
    items: Pin<Box<[MaybeDone<F>]>>,
}

/// Runs every future concurrently in the same task; resolves to their
/// outputs in order. Every poll polls each one still running, so it suits
/// tens of futures; for thousands, spawn them.
pub fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> JoinAll<F> {
    let items: Box<[MaybeDone<F>]> = futures.into_iter().map(MaybeDone::Running).collect();
    JoinAll {
        items: Box::into_pin(items),
    }
}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut all_done = true;
        for i in 0..self.items.len() {
            // SAFETY: an element of a pinned slice is pinned too: it is
            // never moved (the slice is boxed, never resized) until dropped.
            let item = unsafe { self.items.as_mut().map_unchecked_mut(|s| &mut s[i]) };
            all_done &= item.poll_done(cx);
        }
        if !all_done {
            return Poll::Pending;
        }
        let outputs = (0..self.items.len())
            // SAFETY: as above.
            .map(|i| unsafe { self.items.as_mut().map_unchecked_mut(|s| &mut s[i]) }.take())
            .collect();
        Poll::Ready(outputs)
    }
}
