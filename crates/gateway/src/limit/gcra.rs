//! The generic cell rate algorithm (GCRA) as pure integer math.
//!
//! A key's whole state is one number, its theoretical arrival time (TAT).
//! Time is counted in abstract *ticks*: the local limiter uses nanoseconds
//! of a monotonic clock, the Redis script microseconds of the server's
//! clock. Nothing here reads a clock, so the same functions decide locally
//! and interpret what Redis decided, and property tests can drive them.
//!
//! Semantics: `burst` is the number of requests allowed at once *on top of*
//! the steady one, so a cold key admits `burst + 1` requests at the same
//! instant, then one more every `interval`.

/// The parameters of one limit, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Spacing between two requests at the sustained rate (the emission interval); at least 1.
    interval: u64,
    /// How far ahead of `now` the TAT may run and still admit: `burst * interval`.
    tolerance: u64,
}

/// What one check concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Whether the request may pass.
    pub(crate) allowed: bool,
    /// Further requests that would pass right now (after this one, if it passed).
    pub(crate) remaining: u64,
    /// Ticks until `remaining` grows by one; for a denied request, until one would pass.
    pub(crate) next_in: u64,
    /// Ticks until a request would pass: 0 when allowed.
    pub(crate) retry_after: u64,
}

impl Gcra {
    /// A limit admitting one request per `interval` ticks after an initial `burst + 1`.
    pub(crate) fn new(interval: u64, burst: u32) -> Gcra {
        let interval = interval.max(1);
        Gcra {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst)),
        }
    }

    /// The emission interval in ticks.
    pub(crate) fn interval(&self) -> u64 {
        self.interval
    }

    /// How far ahead of `now` the TAT may run and still admit, in ticks.
    pub(crate) fn tolerance(&self) -> u64 {
        self.tolerance
    }

    /// How long a key's state matters after its last request: once `now`
    /// has passed `TAT`, a key is as good as cold, and `TAT` never runs more
    /// than this far ahead of the last check.
    pub(crate) fn horizon(&self) -> u64 {
        self.tolerance.saturating_add(self.interval)
    }

    /// Check one request arriving at `now` against the stored `tat` (0 for a
    /// cold key). Returns the TAT to store (unchanged when denied) and the outcome.
    pub(crate) fn check(&self, tat: u64, now: u64) -> (u64, Outcome) {
        let tat = tat.max(now);
        let backlog = tat - now;
        if backlog > self.tolerance {
            return (tat, self.outcome(false, backlog));
        }
        let next = tat.saturating_add(self.interval);
        (next, self.outcome(true, next - now))
    }

    /// Interpret a decision from its `backlog`: how far the stored TAT is
    /// ahead of `now` after the decision (Redis returns exactly this).
    pub(crate) fn outcome(&self, allowed: bool, backlog: u64) -> Outcome {
        // A request passes when backlog <= tolerance, so with `slack` ticks
        // to spare, floor(slack / interval) + 1 more would pass — which is
        // floor((tolerance + interval - backlog) / interval).
        let room = self.horizon();
        if backlog >= room {
            // Nothing passes now; the first one passes when backlog has
            // shrunk to `tolerance`.
            let wait = backlog - self.tolerance;
            return Outcome {
                allowed,
                remaining: 0,
                next_in: wait,
                retry_after: if allowed { 0 } else { wait },
            };
        }
        let slack = room - backlog;
        let remaining = slack / self.interval;
        let next_in = self.interval - slack % self.interval;
        Outcome {
            allowed,
            remaining,
            next_in,
            // Denied with less than one interval of backlog over the
            // tolerance: the next free slot is the retry time.
            retry_after: if allowed { 0 } else { next_in },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cold_key_admits_burst_plus_one_at_once() {
        let g = Gcra::new(10, 4);
        let mut tat = 0;
        let mut admitted = Vec::new();
        for _ in 0..10 {
            let (next, out) = g.check(tat, 1_000);
            tat = next;
            admitted.push((out.allowed, out.remaining));
        }
        assert_eq!(
            admitted,
            [
                (true, 4),
                (true, 3),
                (true, 2),
                (true, 1),
                (true, 0),
                (false, 0),
                (false, 0),
                (false, 0),
                (false, 0),
                (false, 0)
            ]
        );
        // The sixth would pass one interval after the burst.
        let (_, out) = g.check(tat, 1_000);
        assert_eq!(out.retry_after, 10);
        assert!(g.check(tat, 1_009).1.retry_after == 1);
        assert!(g.check(tat, 1_010).1.allowed);
    }

    #[test]
    fn burst_zero_is_one_per_interval() {
        let g = Gcra::new(100, 0);
        let (tat, out) = g.check(0, 5);
        assert!(out.allowed);
        assert_eq!((out.remaining, out.next_in), (0, 100));
        let (_, out) = g.check(tat, 104);
        assert_eq!((out.allowed, out.retry_after), (false, 1));
        assert!(g.check(tat, 105).1.allowed);
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let g = Gcra::new(u64::MAX, u32::MAX);
        let (tat, out) = g.check(0, u64::MAX - 1);
        assert!(out.allowed);
        assert_eq!(tat, u64::MAX);
        let (_, out) = g.check(tat, u64::MAX);
        assert!(out.allowed || out.retry_after > 0);
    }

    /// Run `times` (sorted) against a fresh state; return which passed.
    fn run(g: &Gcra, start_tat: u64, times: &[u64]) -> Vec<bool> {
        let mut tat = start_tat;
        times
            .iter()
            .map(|&now| {
                let (next, out) = g.check(tat, now);
                tat = next;
                out.allowed
            })
            .collect()
    }

    proptest! {
        /// In any window [t0, t0 + len] at most burst + 1 + len / interval pass,
        /// whatever the state was before (a warm key is only ever stricter).
        #[test]
        fn never_admits_more_than_the_window_allows(
            interval in 1u64..1_000,
            burst in 0u32..20,
            start_tat in 0u64..50_000,
            mut gaps in proptest::collection::vec(0u64..400, 1..300),
            window_start in 0usize..300,
            window_len in 0u64..20_000,
        ) {
            let g = Gcra::new(interval, burst);
            let mut t = 10_000u64;
            let times: Vec<u64> = gaps.drain(..).map(|d| { t += d; t }).collect();
            let passed = run(&g, start_tat, &times);
            let from = times[window_start.min(times.len() - 1)];
            let in_window = times
                .iter()
                .zip(&passed)
                .filter(|(t, p)| **p && **t >= from && **t <= from + window_len)
                .count() as u64;
            prop_assert!(in_window <= u64::from(burst) + 1 + window_len / interval);
        }

        /// retry_after is exact: one tick earlier is still denied, at it the request passes.
        #[test]
        fn retry_after_is_exact(
            interval in 1u64..10_000,
            burst in 0u32..50,
            requests in 1usize..200,
            now in 0u64..1_000_000,
        ) {
            let g = Gcra::new(interval, burst);
            let mut tat = 0;
            for _ in 0..requests {
                tat = g.check(tat, now).0;
            }
            let (_, out) = g.check(tat, now);
            if !out.allowed {
                prop_assert!(out.retry_after > 0);
                prop_assert_eq!(out.retry_after, out.next_in);
                prop_assert!(!g.check(tat, now + out.retry_after - 1).1.allowed);
                prop_assert!(g.check(tat, now + out.retry_after).1.allowed);
            } else {
                prop_assert_eq!(out.retry_after, 0);
            }
        }

        /// `remaining` counts exactly the requests that pass next at the same
        /// instant, and `next_in` is exactly when one more becomes available.
        #[test]
        fn remaining_and_next_in_are_exact(
            interval in 1u64..10_000,
            burst in 0u32..50,
            requests in 1usize..60,
            now in 0u64..1_000_000,
        ) {
            let g = Gcra::new(interval, burst);
            let mut tat = 0;
            let mut last = None;
            for _ in 0..requests {
                let (next, out) = g.check(tat, now);
                tat = next;
                last = Some(out);
            }
            let out = last.unwrap();
            let count_at = |at: u64| {
                let mut t = tat;
                let mut n = 0u64;
                loop {
                    let (next, o) = g.check(t, at);
                    if !o.allowed { return n; }
                    t = next;
                    n += 1;
                }
            };
            prop_assert_eq!(count_at(now), out.remaining);
            prop_assert!(out.next_in >= 1);
            prop_assert_eq!(count_at(now + out.next_in - 1), out.remaining);
            prop_assert_eq!(count_at(now + out.next_in), out.remaining + 1);
        }

        /// Checks at arbitrary later times: a denial's retry_after is exact too.
        #[test]
        fn retry_after_is_exact_at_any_time(
            interval in 1u64..10_000,
            burst in 0u32..20,
            requests in 1usize..100,
            later in 0u64..100_000,
        ) {
            let g = Gcra::new(interval, burst);
            let mut tat = 0;
            for _ in 0..requests {
                tat = g.check(tat, 1).0;
            }
            let now = 1 + later;
            let (_, out) = g.check(tat, now);
            if out.allowed {
                prop_assert_eq!(out.retry_after, 0);
            } else {
                prop_assert!(!g.check(tat, now + out.retry_after - 1).1.allowed);
                prop_assert!(g.check(tat, now + out.retry_after).1.allowed);
            }
        }
    }
}
