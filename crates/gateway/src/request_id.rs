//! Request ids: UUID v7 (RFC 9562), time-ordered, made without a lock.
//!
//! `Uuid::now_v7` keeps one counter for the process behind a lock, draws
//! from the thread's ChaCha generator for every id and formats through a
//! generic encoder: together more than 700 instructions, a twentieth of
//! the whole proxy path. Here each thread keeps its own counter in the 74
//! bits after the timestamp (RFC 9562 §6.2, method 1): seeded at random
//! whenever the millisecond changes, incremented within it. Ids of one
//! thread are ordered; ids of two threads or two instances collide only if
//! two random 74-bit seeds land within a millisecond's count of each other.

use std::cell::Cell;
use std::time::Instant;

use bytes::BufMut as _;
use http::HeaderValue;

/// The 74 bits after the version and variant fields (`rand_a`, `rand_b`).
const COUNTER_BITS: u32 = 74;
const COUNTER_MASK: u128 = (1 << COUNTER_BITS) - 1;

thread_local! {
    /// The millisecond of this thread's last id, and its counter.
    static LAST: Cell<(u64, u128)> = const { Cell::new((u64::MAX, 0)) };
}

/// A fresh id for a request received at `received`.
pub(crate) fn new(received: Instant) -> HeaderValue {
    let millis = crate::wall_clock::unix_millis_at(received) & ((1 << 48) - 1);
    let counter = LAST.with(|last| {
        let (at, counter) = last.get();
        let next = if at == millis {
            (counter + 1) & COUNTER_MASK
        } else {
            rand::random::<u128>() & COUNTER_MASK
        };
        last.set((millis, next));
        next
    });
    let uuid = layout(millis, counter);
    crate::header_arena::header_value(|out| out.put_slice(&hyphenated(uuid)))
        .unwrap_or(HeaderValue::from_static("-"))
}

/// The UUID v7 bits: 48 bits of Unix milliseconds, version 7, the upper 12
/// bits of `counter`, variant `10`, its lower 62 bits.
fn layout(millis: u64, counter: u128) -> u128 {
    (u128::from(millis) << 80)
        | (0x7 << 76)
        | ((counter >> 62) << 64)
        | (0b10 << 62)
        | (counter & ((1 << 62) - 1))
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lowercase hex.
fn hyphenated(uuid: u128) -> [u8; 36] {
    let [a, b, c, d] = [96, 64, 32, 0].map(|shift| hex8((uuid >> shift) as u32));
    let mut text = [b'-'; 36];
    text[0..8].copy_from_slice(&a);
    text[9..13].copy_from_slice(&b[..4]);
    text[14..18].copy_from_slice(&b[4..]);
    text[19..23].copy_from_slice(&c[..4]);
    text[24..28].copy_from_slice(&c[4..]);
    text[28..36].copy_from_slice(&d);
    text
}

/// The eight lowercase hex digits of `x`, all at once: a loop over
/// nibbles, with its shifts and bounds checks, cost five times as much.
fn hex8(x: u32) -> [u8; 8] {
    // One nibble per byte, the most significant in the first byte.
    let mut v = u64::from(x);
    v = (v | v << 16) & 0x0000_ffff_0000_ffff;
    v = (v | v << 8) & 0x00ff_00ff_00ff_00ff;
    v = (v | v << 4) & 0x0f0f_0f0f_0f0f_0f0f;
    // 0x01 in each byte whose nibble is 10 or more: those become a–f.
    let letters = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (v + 0x3030_3030_3030_3030 + letters * (b'a' - b'0' - 10) as u64).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;

    #[test]
    fn hex_digits_of_every_nibble() {
        assert_eq!(&hex8(0x0123_4567), b"01234567");
        assert_eq!(&hex8(0x89ab_cdef), b"89abcdef");
        assert_eq!(&hex8(0), b"00000000");
        assert_eq!(&hex8(u32::MAX), b"ffffffff");
    }

    #[test]
    fn text_is_the_hyphenated_form_of_the_bits() {
        for _ in 0..1000 {
            let bits: u128 = rand::random();
            let ours = hyphenated(bits);
            let theirs = uuid::Uuid::from_u128(bits).hyphenated().to_string();
            assert_eq!(std::str::from_utf8(&ours).unwrap(), theirs);
        }
    }

    #[test]
    fn ids_are_version_7_with_the_arrival_time() {
        let now = Instant::now();
        let id = new(now);
        let parsed = uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = parsed.get_timestamp().unwrap().to_unix();
        let at = Duration::new(secs, nanos);
        let system = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(
            system.abs_diff(at) < Duration::from_secs(2),
            "{at:?} {system:?}"
        );
    }

    #[test]
    fn ids_of_one_thread_are_distinct_and_ordered() {
        let start = Instant::now();
        let ids: Vec<String> = (0..10_000u64)
            .map(|i| {
                // Several ids per millisecond, over a few milliseconds.
                let at = start + Duration::from_micros(i * 3);
                new(at).to_str().unwrap().to_owned()
            })
            .collect();
        let distinct: HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        // Within a millisecond the counter only grows (unless a seed lands
        // within a few hundred of the 74-bit top: left to chance).
        for pair in ids.windows(2) {
            let a = uuid::Uuid::parse_str(&pair[0]).unwrap().as_u128();
            let b = uuid::Uuid::parse_str(&pair[1]).unwrap().as_u128();
            if a >> 80 == b >> 80 {
                assert!(b > a, "{} then {}", pair[0], pair[1]);
            }
        }
    }

    #[test]
    fn threads_draw_their_own_seeds() {
        let at = Instant::now();
        let here = new(at);
        let there = std::thread::spawn(move || new(at)).join().unwrap();
        assert_ne!(here, there);
    }
}
