//! Timing helpers shared by the experiments: interleaved repetitions and medians.
//!
//! The machine is shared and noisy. Running contender A five times, then B
//! five times, lets a burst of someone else's load land on one of them;
//! interleaving (A B C, A B C, ...) spreads it across all, and the median
//! discards the worst runs.

use std::time::{Duration, Instant};

/// Runs `f` once and returns its wall-clock time.
pub(crate) fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// The median of some durations (the lower middle one for an even count).
pub(crate) fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples
        .get(samples.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

/// Runs every contender `runs` times, interleaved, and returns each one's median.
pub(crate) fn interleaved<C>(
    runs: usize,
    contenders: &mut [C],
    mut run: impl FnMut(&mut C) -> Duration,
) -> Vec<Duration> {
    let mut samples: Vec<Vec<Duration>> = contenders
        .iter()
        .map(|_| Vec::with_capacity(runs))
        .collect();
    for _ in 0..runs {
        for (c, s) in contenders.iter_mut().zip(&mut samples) {
            s.push(run(c));
        }
    }
    samples.into_iter().map(median).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(5), ms(1), ms(3)]), ms(3));
        assert_eq!(median(vec![ms(4), ms(1), ms(3), ms(2)]), ms(2));
        assert_eq!(median(vec![]), Duration::ZERO);
    }

    #[test]
    fn interleaved_runs_in_rounds() {
        let mut order = Vec::new();
        let mut names = ["a", "b"];
        let medians = interleaved(2, &mut names, |n| {
            order.push(*n);
            Duration::from_millis(if *n == "a" { 1 } else { 2 })
        });
        assert_eq!(order, ["a", "b", "a", "b"]);
        assert_eq!(
            medians,
            [Duration::from_millis(1), Duration::from_millis(2)]
        );
    }
}
