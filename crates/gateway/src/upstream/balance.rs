//! Picking a target: round robin, least request by power of two choices,
//! or rendezvous (highest random weight) hashing, which is consistent:
//! removing a target moves only the keys that were on it.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::Balance;

use super::target::Target;

/// A balancing policy with its own state.
#[derive(Debug)]
pub(crate) struct Balancer {
    policy: Balance,
    next: AtomicUsize,
}

/// Fixed seeds so that every gateway instance hashes a key to the same target.
const HASH_STATE: std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher> =
    std::hash::BuildHasherDefault::new();

impl Balancer {
    pub(crate) fn new(policy: Balance) -> Balancer {
        Balancer {
            policy,
            next: AtomicUsize::new(0),
        }
    }

    /// Choose among `candidates` (indexes into `targets`), none empty.
    pub(crate) fn pick(
        &self,
        targets: &[Arc<Target>],
        candidates: &[usize],
        key: Option<&[u8]>,
    ) -> usize {
        debug_assert!(!candidates.is_empty());
        match (self.policy, key) {
            (Balance::Hash, Some(key)) => rendezvous(targets, candidates, key),
            (Balance::LeastRequest, _) if candidates.len() > 1 => {
                let a = candidates[rand::random_range(0..candidates.len())];
                let mut b = candidates[rand::random_range(0..candidates.len() - 1)];
                if b == a {
                    b = candidates[candidates.len() - 1];
                }
                if targets[b].in_flight() < targets[a].in_flight() {
                    b
                } else {
                    a
                }
            }
            _ => candidates[self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()],
        }
    }
}

fn rendezvous(targets: &[Arc<Target>], candidates: &[usize], key: &[u8]) -> usize {
    let score = |i: usize| {
        let mut h = HASH_STATE.build_hasher();
        key.hash(&mut h);
        targets[i].authority.as_str().hash(&mut h);
        h.finish()
    };
    candidates
        .iter()
        .copied()
        .max_by_key(|&i| score(i))
        .unwrap_or(candidates[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(n: usize) -> Vec<Arc<Target>> {
        (0..n)
            .map(|i| Arc::new(Target::new(format!("10.0.0.{i}:80").parse().unwrap())))
            .collect()
    }

    #[test]
    fn round_robin_cycles() {
        let t = targets(3);
        let b = Balancer::new(Balance::RoundRobin);
        let picks: Vec<_> = (0..6).map(|_| b.pick(&t, &[0, 1, 2], None)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn p2c_prefers_less_loaded() {
        let t = targets(2);
        let _busy: Vec<_> = (0..5).map(|_| t[0].start()).collect();
        let b = Balancer::new(Balance::LeastRequest);
        for _ in 0..50 {
            assert_eq!(b.pick(&t, &[0, 1], None), 1);
        }
    }

    #[test]
    fn hash_is_stable_and_consistent() {
        let t = targets(5);
        let b = Balancer::new(Balance::Hash);
        let all = [0, 1, 2, 3, 4];
        let mut moved = 0;
        for k in 0..1000u32 {
            let key = k.to_be_bytes();
            let first = b.pick(&t, &all, Some(&key));
            assert_eq!(first, b.pick(&t, &all, Some(&key)));
            // Take target 4 away: only keys that were on 4 may move.
            let without: Vec<_> = all.iter().copied().filter(|&i| i != 4).collect();
            let second = b.pick(&t, &without, Some(&key));
            if first != 4 {
                assert_eq!(first, second);
            } else {
                moved += 1;
            }
        }
        assert!(
            moved > 100 && moved < 300,
            "about a fifth of the keys were on target 4, got {moved}"
        );
    }
}
