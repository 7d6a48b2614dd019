//! The `Date` field for responses that lack one (RFC 9110 §6.6.1): an
//! origin server must send it, and hyper adds it, so the lean path does
//! too. Formatting a date costs more than the rest of a small response
//! head; it changes once a second, so each thread keeps the last one.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// `Sun, 06 Nov 1994 08:49:37 GMT`: always 29 bytes.
const LEN: usize = 29;

thread_local! {
    /// The second it was formatted for, and the text.
    static CACHED: Cell<(u64, [u8; LEN])> = const { Cell::new((u64::MAX, [0; LEN])) };
}

/// Append the current date, as an HTTP date, to `out`.
pub(super) fn write(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let text = CACHED.with(|c| {
        let (at, text) = c.get();
        if at == secs {
            return text;
        }
        let mut fresh = [0u8; LEN];
        let formatted = httpdate::fmt_http_date(now);
        if formatted.len() == LEN {
            fresh.copy_from_slice(formatted.as_bytes());
        }
        c.set((secs, fresh));
        fresh
    });
    out.extend_from_slice(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_http_date_that_parses_to_now() {
        let mut out = Vec::new();
        write(&mut out);
        write(&mut out);
        assert_eq!(out.len(), 2 * LEN);
        let text = std::str::from_utf8(&out[..LEN]).unwrap();
        let when = httpdate::parse_http_date(text).unwrap();
        let off = SystemTime::now()
            .duration_since(when)
            .unwrap_or_default()
            .as_secs();
        assert!(off <= 2, "{text}");
    }
}
