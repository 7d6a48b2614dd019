//! Wall-clock time for an instant already read from the monotonic clock.
//!
//! The request path reads `Instant::now()` once when a head arrives; the
//! request id (a UUID v7) also needs Unix milliseconds. Reading the system
//! clock for them is one more `clock_gettime` per request. Each thread
//! instead keeps one pair of readings (monotonic, wall) and converts
//! instants against it, taking a fresh pair once a second so that a
//! stepped or slewed system clock is followed within a second.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a thread's pair of readings is used before a fresh one.
const RESYNC: Duration = Duration::from_secs(1);

thread_local! {
    /// The last pair: a monotonic instant and the Unix time (ms) read with it.
    static BASE: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
}

/// Unix time in milliseconds at `at`, as the system clock gave it within
/// the last second (0 for a clock set before 1970).
pub(crate) fn unix_millis_at(at: Instant) -> u64 {
    BASE.with(|cell| {
        if let Some((base, millis)) = cell.get() {
            // One subtraction in the usual case: `at` shortly after the pair.
            match offset(at, base) {
                Ok(after) if after >= RESYNC => {}
                // Before the pair too (a request received just before a
                // resync): stepped back from it.
                near => return shifted(millis, near),
            }
        }
        let (base, millis) = (Instant::now(), unix_millis(SystemTime::now()));
        cell.set(Some((base, millis)));
        shifted(millis, offset(at, base))
    })
}

/// How far `at` is after `base` (`Ok`) or before it (`Err`).
fn offset(at: Instant, base: Instant) -> Result<Duration, Duration> {
    at.checked_duration_since(base).ok_or_else(|| base - at)
}

/// `millis` moved by an [`offset`].
fn shifted(millis: u64, by: Result<Duration, Duration>) -> u64 {
    match by {
        Ok(after) => millis.saturating_add(whole_millis(after)),
        Err(before) => millis.saturating_sub(whole_millis(before)),
    }
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, whole_millis)
}

fn whole_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system_millis() -> u64 {
        unix_millis(SystemTime::now())
    }

    #[test]
    fn now_converts_to_the_system_clock() {
        let before = system_millis();
        let got = unix_millis_at(Instant::now());
        let after = system_millis();
        // The pair may have been read up to a second ago; the system clock
        // only slews, so a few milliseconds cover the drift.
        assert!(
            got + 5 >= before && got <= after + 5,
            "{before} {got} {after}"
        );
    }

    #[test]
    fn instants_before_and_after_the_pair_keep_their_distance() {
        let now = Instant::now();
        let base = unix_millis_at(now);
        let earlier = now - Duration::from_millis(250);
        // Whole milliseconds of the distance from the pair, so ±1.
        assert!(unix_millis_at(earlier).abs_diff(base - 250) <= 1);
        let later = now + Duration::from_millis(400);
        assert!(unix_millis_at(later).abs_diff(base + 400) <= 1);
    }

    #[test]
    fn an_instant_past_the_resync_takes_a_fresh_pair() {
        let now = Instant::now();
        unix_millis_at(now);
        let later = now + Duration::from_secs(5);
        let got = unix_millis_at(later);
        let (base, _) = BASE.with(Cell::get).unwrap();
        assert!(base > now, "a fresh pair was read");
        // A fresh pair is read at the real now; `later` is 5 s past it.
        let expect = system_millis() + 5_000;
        assert!(got.abs_diff(expect) < 50, "{got} {expect}");
    }
}
