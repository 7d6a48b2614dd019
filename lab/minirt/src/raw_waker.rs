//! The `block_on` waker, built by hand from a [`RawWaker`] and its vtable:
//! what [`std::task::Wake`] (see `wake.rs`) writes for you.
//!
//! A [`Waker`] is a data pointer plus four functions: clone, wake (which
//! consumes the waker), wake by reference, drop. Here the pointer is an
//! `Arc<Shared>` turned into a raw pointer, and the functions keep its
//! strong count right by hand: `clone` adds one, `wake` and `drop` give
//! one back, `wake_by_ref` leaves it alone. Getting any of them wrong is a
//! leak or a use after free, which is why this module is the crate's only
//! `unsafe` outside the pin projections of `join` and `select`.
//!
//! Waking sets the executor's `main_woken` flag, so `block_on` polls its
//! future again, and if the executor is parked in `epoll` it is woken
//! through `mio::Waker` (see [`Shared::wake_main`]).

#![allow(unsafe_code)]

use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::task::{RawWaker, RawWakerVTable, Waker};

use crate::executor::Shared;

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

/// A waker that wakes `block_on`'s own future; it owns one strong count of `shared`.
pub(crate) fn main_waker(shared: Arc<Shared>) -> Waker {
    let raw = RawWaker::new(Arc::into_raw(shared).cast::<()>(), &VTABLE);
    // SAFETY: the data pointer comes from `Arc::into_raw` and owns one
    // strong count; every vtable function below treats it as exactly that
    // (see each one). `Shared` is `Send + Sync`, so the waker may be
    // cloned, woken and dropped on any thread, as `Waker` allows.
    unsafe { Waker::from_raw(raw) }
}

unsafe fn clone(data: *const ()) -> RawWaker {
    // SAFETY: `data` is a live `Arc<Shared>` pointer (the waker being
    // cloned still owns its count); the new waker owns the count added here.
    unsafe { Arc::increment_strong_count(data.cast::<Shared>()) };
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: `wake` consumes the waker, so this takes back the count it owned.
    let shared = unsafe { Arc::from_raw(data.cast::<Shared>()) };
    shared.wake_main();
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: the waker stays alive and keeps its count: `ManuallyDrop`
    // stops this temporary `Arc` from giving the count back.
    let shared = ManuallyDrop::new(unsafe { Arc::from_raw(data.cast::<Shared>()) });
    shared.wake_main();
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: dropping the waker gives back the count it owned.
    drop(unsafe { Arc::from_raw(data.cast::<Shared>()) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn clone_wake_and_drop_keep_the_count_balanced() {
        let shared = Shared::new_for_test();
        let waker = main_waker(Arc::clone(&shared));
        assert_eq!(Arc::strong_count(&shared), 2);
        let copy = waker.clone();
        assert_eq!(Arc::strong_count(&shared), 3);
        copy.wake_by_ref();
        assert!(shared.main_woken.swap(false, Ordering::SeqCst));
        copy.wake(); // consumes its count
        assert!(shared.main_woken.load(Ordering::SeqCst));
        assert_eq!(Arc::strong_count(&shared), 2);
        drop(waker);
        assert_eq!(Arc::strong_count(&shared), 1);
    }

    #[test]
    fn wakes_from_another_thread() {
        let shared = Shared::new_for_test();
        let waker = main_waker(Arc::clone(&shared));
        std::thread::spawn(move || waker.wake()).join().unwrap();
        assert!(shared.main_woken.load(Ordering::SeqCst));
        assert_eq!(Arc::strong_count(&shared), 1);
    }
}
