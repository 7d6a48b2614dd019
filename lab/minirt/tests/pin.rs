//! Why a self-referential future must not move, and what `Pin` does about it.
//!
//! `SelfRef` is what the compiler builds for an `async` block that keeps a
//! reference to its own local across an `.await`: a buffer, and a pointer
//! into that buffer, taken on the first poll. The pointer is kept as an
//! address (so the test needs no `unsafe` to show the problem): after a
//! move the buffer is elsewhere and the address names the old place;
//! dereferencing it would read memory that is no longer the buffer.

use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use sluice_minirt::{Runtime, yield_now};

/// A future with a pointer into itself, set on its first poll.
struct SelfRef {
    buf: [u8; 16],
    /// Where `buf` was when the pointer was taken. A `Cell`, so that it can
    /// be set through the `&Self` a pinned reference hands out.
    ptr: Cell<Option<usize>>,
    /// Makes `SelfRef: !Unpin`: once pinned it can never be moved by safe code.
    _pinned: PhantomPinned,
}

impl SelfRef {
    fn new() -> SelfRef {
        SelfRef {
            buf: *b"self-referential",
            ptr: Cell::new(None),
            _pinned: PhantomPinned,
        }
    }

    /// Whether the pointer still points at `buf`.
    fn pointer_is_valid(&self) -> bool {
        self.ptr.get() == Some(self.buf.as_ptr() as usize)
    }
}

impl Future for SelfRef {
    /// Whether the self-reference was still valid when it completed.
    type Output = bool;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<bool> {
        match self.ptr.get() {
            None => {
                self.ptr.set(Some(self.buf.as_ptr() as usize));
                Poll::Pending
            }
            Some(_) => Poll::Ready(self.pointer_is_valid()),
        }
    }
}

fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_moved_self_reference_points_at_the_old_place() {
    // What `poll(&mut self)` would allow: take the self-reference, then move.
    let first = SelfRef::new();
    first.ptr.set(Some(first.buf.as_ptr() as usize));
    assert!(first.pointer_is_valid());
    let moved = Box::new(first); // a move: the bytes are copied to the heap
    assert!(
        !moved.pointer_is_valid(),
        "after a move the pointer still names the old location"
    );
}

#[test]
fn a_pinned_self_reference_stays_valid_when_its_box_moves() {
    let mut pinned: Pin<Box<SelfRef>> = Box::pin(SelfRef::new());
    assert_eq!(poll_once(pinned.as_mut()), Poll::Pending); // takes the pointer
    // Moving the `Pin<Box<_>>` moves the box's pointer, not the future.
    let mut in_a_vec = vec![pinned];
    let mut moved_again = in_a_vec.pop().unwrap();
    assert_eq!(poll_once(moved_again.as_mut()), Poll::Ready(true));
}

#[test]
fn an_async_block_that_borrows_its_own_local_across_an_await() {
    // The compiler turns this block into a struct like SelfRef: `data`, and
    // `slice` pointing into `data`, both live in it across the await.
    let rt = Runtime::new().unwrap();
    let sum = rt.block_on(async {
        let data = [1u32, 2, 3, 4];
        let slice = &data[1..];
        yield_now().await;
        slice.iter().sum::<u32>()
    });
    assert_eq!(sum, 9);
    // `pin!` pins on the stack: from here the future can only be polled
    // through the pin, never moved (see the README's compile_fail examples).
    let mut fut = pin!(async {
        let data = [5u8; 4];
        let r = &data;
        yield_now().await;
        r.len()
    });
    assert_eq!(poll_once(fut.as_mut()), Poll::Pending);
}
