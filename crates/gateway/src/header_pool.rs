//! Header maps recycled per thread.
//!
//! Every proxied request builds two `HeaderMap`s (the client's request
//! head and the upstream's response head), each two allocations, and drops
//! them again once they are written out. The lean paths hand a written
//! map back here, cleared, and take one when they parse the next head:
//! `clear` keeps the map's tables, so a busy thread stops allocating them.

use std::cell::RefCell;

use http::HeaderMap;

/// Maps kept per thread: enough for the heads in flight on one worker.
/// A request holds two (its own and its response's) from the parse of its
/// head to the write of its answer, and a worker's connections send their
/// requests in bursts: with 16 kept, 64 busy connections found the pool
/// empty for 39% of their heads (callgrind, bench/gateway-instructions.sh).
/// 128 maps of the usual size (a dozen fields) are about 170 KiB.
const KEEP: usize = 128;

/// A map that grew past this many entries is let go, not kept: one odd
/// request must not pin a large table for good.
const KEEP_CAPACITY: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for at least `capacity` entries.
pub(crate) fn take(capacity: usize) -> HeaderMap {
    let map = POOL.with_borrow_mut(Vec::pop);
    match map {
        Some(mut map) => {
            map.reserve(capacity);
            map
        }
        None => HeaderMap::with_capacity(capacity),
    }
}

/// Give a map back once its head has been written.
pub(crate) fn give(mut map: HeaderMap) {
    if map.capacity() == 0 || map.capacity() > KEEP_CAPACITY {
        return;
    }
    // An empty map's table is already clear, and clearing walks all of
    // it: the lean path's response maps usually come back empty, their
    // fields having travelled as wire lines.
    if !map.is_empty() {
        map.clear();
    }
    POOL.with_borrow_mut(|pool| {
        if pool.len() < KEEP {
            pool.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_given_map_comes_back_empty_with_its_room() {
        let mut m = take(8);
        m.insert("x-a", HeaderValue::from_static("1"));
        let room = m.capacity();
        give(m);
        let again = take(4);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), room);
    }

    #[test]
    fn large_and_empty_maps_are_not_kept() {
        while POOL.with_borrow(Vec::len) > 0 {
            let _ = take(0);
        }
        give(HeaderMap::new());
        give(HeaderMap::with_capacity(KEEP_CAPACITY * 4));
        assert_eq!(POOL.with_borrow(Vec::len), 0);
        let fresh = take(10);
        assert!(fresh.capacity() >= 10);
    }
}
