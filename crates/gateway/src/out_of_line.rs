//! Boxing a future without giving its size to the caller's stack frame.
//!
//! `Box::pin(make_future())` inside an `async fn` builds the future on the
//! stack of the caller's `poll` and then copies it into the box. The stack
//! slot stays in that `poll`'s frame for every poll, taken or not: a
//! connection task's frames had grown to tens of kilobytes this way (a
//! boxed lean server of 8 KiB, boxed hyper connections, a boxed cache
//! path), more than the first-level data cache, so each request's hot
//! stack lines were spread wide and missed. [`boxed`] builds the future in
//! a frame of its own that exists only while the box is made.

use std::future::Future;
use std::pin::Pin;

/// `Box::pin(make())`, with `make`'s future built in this function's frame
/// rather than the caller's. For rare or once-per-connection futures whose
/// state is large.
#[inline(never)]
pub(crate) fn boxed<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::pin(make())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_boxed_future_runs_what_was_made() {
        let mut seen = Vec::new();
        let out = boxed(|| async {
            seen.push(1);
            [7u8; 4096]
        })
        .await;
        assert_eq!(seen, [1]);
        assert!(out.iter().all(|&b| b == 7));
    }
}
