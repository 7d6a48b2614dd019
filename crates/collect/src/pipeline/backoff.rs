//! Exponential backoff with full jitter, for sink retries and source restarts.

use std::time::Duration;

use rand::Rng;

/// Waits that double from `initial` up to `max`, each drawn uniformly from
/// half to all of the current step, so many retrying tasks spread out.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            step: initial,
        }
    }

    /// The next wait.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let lo = step / 2;
        let jitter = rand::rng().random_range(0..=(step - lo).as_millis() as u64);
        lo + Duration::from_millis(jitter)
    }

    /// Start again from `initial`.
    pub(crate) fn reset(&mut self) {
        self.step = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_within_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<_> = (0..6).map(|_| b.next_wait()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits[5] >= Duration::from_millis(500) && waits[5] <= Duration::from_secs(1));
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(100));
    }
}
