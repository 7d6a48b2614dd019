//! Timing helpers shared by the experiments: interleaved repetitions and medians.
//!
//! The machine is shared and noisy. Running contender A five times, then B
//! five times, lets a burst of someone else's load land on one of them;
//! interleaving (A B C, A B C, ...) spreads it across all, and the median
//! discards the worst runs.

use std::time::{Duration, Instant};

/// What one run cost: wall-clock time, and CPU time of the whole process.
///
/// On a loaded machine wall-clock time includes the time our threads
/// waited for a core; CPU time does not, so it is the steadier figure of
/// what a pool costs. It does include a pool's spinning and its wake-ups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Sample {
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
}

/// Runs `f` once and measures it.
pub(crate) fn time(f: impl FnOnce()) -> Sample {
    let cpu0 = cpu_time();
    let start = Instant::now();
    f();
    let wall = start.elapsed();
    Sample {
        wall,
        cpu: cpu_time().saturating_sub(cpu0),
    }
}

/// CPU time of all the process's live threads so far, in nanoseconds, from
/// the first field of `/proc/self/task/*/schedstat` (zero where that is
/// not available). Threads that exited are not counted: the experiments
/// keep their pools alive across runs.
fn cpu_time() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// The median of some durations (the lower middle one for an even count).
pub(crate) fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples
        .get(samples.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

/// Runs every contender `runs` times, interleaved, and returns each one's
/// median wall-clock time and median CPU time (each median taken on its own).
pub(crate) fn interleaved<C>(
    runs: usize,
    contenders: &mut [C],
    mut run: impl FnMut(&mut C) -> Sample,
) -> Vec<Sample> {
    let mut samples: Vec<Vec<Sample>> = contenders
        .iter()
        .map(|_| Vec::with_capacity(runs))
        .collect();
    for _ in 0..runs {
        for (c, s) in contenders.iter_mut().zip(&mut samples) {
            s.push(run(c));
        }
    }
    samples
        .into_iter()
        .map(|s| Sample {
            wall: median(s.iter().map(|x| x.wall).collect()),
            cpu: median(s.iter().map(|x| x.cpu).collect()),
        })
        .collect()
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
        let ms = Duration::from_millis;
        let medians = interleaved(2, &mut names, |n| {
            order.push(*n);
            let wall = ms(if *n == "a" { 1 } else { 2 });
            Sample {
                wall,
                cpu: wall * 2,
            }
        });
        assert_eq!(order, ["a", "b", "a", "b"]);
        assert_eq!(
            medians[0],
            Sample {
                wall: ms(1),
                cpu: ms(2)
            }
        );
        assert_eq!(
            medians[1],
            Sample {
                wall: ms(2),
                cpu: ms(4)
            }
        );
    }

    #[test]
    fn time_measures_wall_and_cpu() {
        let s = time(|| {
            let mut x = 0u64;
            for i in 0..20_000_000u64 {
                x = std::hint::black_box(x ^ i);
            }
        });
        assert!(s.wall > Duration::ZERO);
        // schedstat may be missing (then zero); where present, it moved.
        if std::path::Path::new("/proc/self/schedstat").exists() {
            assert!(s.cpu > Duration::ZERO);
        }
    }
}
