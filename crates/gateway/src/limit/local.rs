//! The in-process limiter: one GCRA state (a TAT in an `AtomicU64`) per key
//! in a `moka` cache bounded to `max_keys` entries with LRU eviction.
//!
//! Keys are stored as their 128-bit [`KeyHasher`] hash, never as the bytes a
//! client sent, so an entry costs the same whatever the key's length and the
//! table is bounded in bytes as well as in count. Two keys share a state only
//! if their keyed hashes collide, which a client cannot arrange.
//!
//! Forgetting a key is always safe in one direction only: its next request
//! starts cold, which is at most as strict as the state it lost. Keys also
//! expire once idle for the limit's horizon (after which their state is
//! indistinguishable from cold) or [`MIN_IDLE`], whichever is longer: a key
//! that comes back finds its entry, where a fresh insert costs moka about a
//! thousand instructions more than a hit. A high rate has a horizon of
//! microseconds, so without the floor nearly every request re-inserted.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use super::gcra::{Gcra, Outcome};
use super::key::{KeyHasher, Prehashed};

/// Shortest idle expiry: a key seen again within it is a cache hit.
const MIN_IDLE: Duration = Duration::from_secs(60);

/// Longest idle expiry handed to moka (which refuses absurd durations);
/// a key idle longer than this restarts cold, which only loosens its limit.
const MAX_IDLE: Duration = Duration::from_secs(365 * 86_400);

/// Nanoseconds on a process-wide monotonic clock, starting at 1 so that a
/// stored TAT of 0 always means "cold".
pub(crate) fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// A bounded table of per-key GCRA states for one route.
#[derive(Debug)]
pub(crate) struct LocalTable {
    gcra: Gcra,
    hasher: KeyHasher,
    keys: Cache<u128, Arc<AtomicU64>, Prehashed>,
}

impl LocalTable {
    /// A table for `gcra` (in nanosecond ticks) holding at most `max_keys` keys.
    pub(crate) fn new(gcra: Gcra, max_keys: u64) -> LocalTable {
        let idle = Duration::from_nanos(gcra.horizon()).clamp(MIN_IDLE, MAX_IDLE);
        let keys = Cache::builder()
            .max_capacity(max_keys.max(1))
            .eviction_policy(EvictionPolicy::lru())
            .time_to_idle(idle)
            .build_with_hasher(Prehashed);
        LocalTable {
            gcra,
            hasher: KeyHasher::default(),
            keys,
        }
    }

    /// Check one request for `key` now.
    pub(crate) fn check(&self, key: &[u8]) -> Outcome {
        self.check_at(key, now_ns())
    }

    /// Check one request for `key` at `now` (nanoseconds of [`now_ns`]).
    pub(crate) fn check_at(&self, key: &[u8], now: u64) -> Outcome {
        let state = self
            .keys
            .get_with(self.hasher.hash(key), || Arc::new(AtomicU64::new(0)));
        let mut tat = state.load(Ordering::Acquire);
        loop {
            let (next, outcome) = self.gcra.check(tat, now);
            if !outcome.allowed {
                return outcome;
            }
            match state.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return outcome,
                Err(seen) => tat = seen,
            }
        }
    }

    /// Keys held after moka's pending maintenance (evictions) has run.
    #[cfg(test)]
    pub(crate) fn key_count(&self) -> u64 {
        self.keys.run_pending_tasks();
        self.keys.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_never_grows_beyond_max_keys() {
        let table = LocalTable::new(Gcra::new(1_000_000_000, 0), 50);
        for i in 0..5_000u32 {
            let out = table.check_at(format!("client-{i}").as_bytes(), 10);
            // Every new key starts cold, so it passes.
            assert!(out.allowed);
            if i % 500 == 0 {
                assert!(table.key_count() <= 50);
            }
        }
        assert!(table.key_count() <= 50);
        assert!(table.key_count() > 0);
    }

    #[test]
    fn a_key_is_limited_until_evicted_then_starts_cold() {
        let table = LocalTable::new(Gcra::new(1_000_000_000, 1), 2);
        let hot = b"hot";
        assert!(table.check_at(hot, 10).allowed);
        assert!(table.check_at(hot, 10).allowed);
        assert!(!table.check_at(hot, 10).allowed);
        // Push the hot key out with other keys.
        for i in 0..100u32 {
            table.check_at(&i.to_be_bytes(), 10);
            table.key_count();
        }
        // Evicted: the key is allowed again (more permissive, never stricter).
        assert!(table.check_at(hot, 10).allowed);
    }

    #[test]
    fn concurrent_checks_admit_exactly_burst_plus_one() {
        let table = Arc::new(LocalTable::new(Gcra::new(1_000_000_000_000, 9), 10));
        let allowed = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if table.check_at(b"k", 5).allowed {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.load(Ordering::Relaxed), 10);
    }

    proptest::proptest! {
        #[test]
        fn keys_of_any_length_get_their_own_exact_burst(
            a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..9000),
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..9000),
            burst in 0u32..5,
        ) {
            proptest::prop_assume!(a != b);
            let table = LocalTable::new(Gcra::new(1_000_000_000_000, burst), 8);
            let admitted = |key: &[u8]| (0..burst + 3).filter(|_| table.check_at(key, 5).allowed).count();
            proptest::prop_assert_eq!(admitted(&a), burst as usize + 1);
            // Hashing merges no buckets: b starts cold, whatever a did.
            proptest::prop_assert_eq!(admitted(&b), burst as usize + 1);
            proptest::prop_assert_eq!(admitted(&a), 0);
        }
    }

    #[test]
    fn an_entry_costs_the_same_for_any_key_length() {
        // What the table keeps per key: a fixed-size hash, not the client's bytes.
        fn stored_key<K, V, S>(_: &Cache<K, V, S>) -> usize
        where
            K: std::hash::Hash + Eq + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
            S: std::hash::BuildHasher + Clone + Send + Sync + 'static,
        {
            std::mem::size_of::<K>()
        }
        let table = LocalTable::new(Gcra::new(1_000_000_000, 0), 4);
        assert_eq!(stored_key(&table.keys), 16);
        // An 8 KiB key lands in the table like a short one.
        let long = vec![b'k'; 8 << 10];
        assert!(table.check_at(&long, 10).allowed);
        assert!(!table.check_at(&long, 10).allowed);
        assert_eq!(table.key_count(), 1);
    }

    #[test]
    fn the_clock_starts_above_zero_and_never_goes_back() {
        let a = now_ns();
        let b = now_ns();
        assert!(a >= 1 && b >= a);
    }
}
