//! Header values the proxy makes per request (request id, `X-Forwarded-For`,
//! an upstream response's field lines) carved out of a per-thread shared buffer.
//!
//! `HeaderValue::from_bytes` copies into a fresh allocation, and cloning
//! that value (the request id goes upstream and back to the client) makes
//! a second one for the shared count. Here each worker thread fills one
//! 4 KiB `BytesMut` and splits values off its front: a split is a
//! reference-count increment, a clone another, and the allocator is called
//! once per buffer, not twice per request. A value keeps its whole buffer
//! alive, which costs at most 4 KiB for a value held long after its
//! request; the proxy holds none that long.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use http::HeaderValue;

/// Bytes per buffer: about a hundred request ids.
const BUFFER: usize = 4096;

/// The most one value is expected to take; longer ones still work (the
/// buffer grows), they just start a new buffer sooner.
const PIECE: usize = 128;

thread_local! {
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A header value of the bytes `write` appends to an empty buffer, or `None`
/// when they are not a valid header value (a control character).
pub(crate) fn header_value(write: impl FnOnce(&mut BytesMut)) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes(write)).ok()
}

/// The bytes `write` appends to an empty buffer, as shared bytes.
pub(crate) fn bytes(write: impl FnOnce(&mut BytesMut)) -> Bytes {
    ARENA.with_borrow_mut(|arena| {
        if arena.capacity() < PIECE {
            *arena = BytesMut::with_capacity(BUFFER);
        }
        write(arena);
        // `split` leaves the spare capacity behind for the next value;
        // the first split of a buffer makes it shared, later ones only count.
        arena.split().freeze()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn values_are_independent_and_exact() {
        let a = header_value(|b| b.put_slice(b"first")).unwrap();
        let b = header_value(|b| b.put_slice(b"second")).unwrap();
        let a2 = a.clone();
        assert_eq!(a, "first");
        assert_eq!(b, "second");
        assert_eq!(a2, "first");
    }

    #[test]
    fn a_long_value_and_many_values_span_buffers() {
        let long = vec![b'x'; PIECE * 3];
        let v = header_value(|b| b.put_slice(&long)).unwrap();
        assert_eq!(v.as_bytes(), &long[..]);
        let all: Vec<HeaderValue> = (0..500)
            .map(|i| header_value(|b| b.put_slice(format!("id-{i}").as_bytes())).unwrap())
            .collect();
        for (i, v) in all.iter().enumerate() {
            assert_eq!(v.to_str().unwrap(), format!("id-{i}"));
        }
    }

    #[test]
    fn an_invalid_value_is_refused_and_does_not_leak_into_the_next() {
        assert!(header_value(|b| b.put_slice(b"bad\nvalue")).is_none());
        assert_eq!(header_value(|b| b.put_slice(b"ok")).unwrap(), "ok");
    }
}
