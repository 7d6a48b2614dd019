//! Experiment `backpressure`: a fast producer and a slow consumer, three ways.
//!
//! The producer makes `--burst` messages (each carrying `--payload` bytes
//! and its creation time) every millisecond; the consumer takes
//! `--service` per message, one at a time, so it keeps up with about a
//! tenth of the offered load by default. Between them:
//!
//! - `bounded`: `mpsc::channel(bound)`; `send().await` waits while the
//!   channel is full, so the producer slows to the consumer's pace.
//! - `semaphore`: each message is a spawned task that needs one of `bound`
//!   permits (`Semaphore::acquire_owned`) before it is spawned and holds it
//!   until it is done; the tasks share the slow consumer (a mutex held for
//!   the service time).
//! - `unbounded`: `mpsc::unbounded_channel`; `send` never waits, so the
//!   backlog, the memory and the latency grow for as long as the run lasts.
//!
//! Every `--sample` a sampler records the backlog (messages produced and not
//! yet taken by the consumer) and the process's `VmRSS`. Each strategy runs
//! for `--duration` on its own current-thread runtime, dropped at the end
//! (which frees whatever is still queued); `unbounded` runs last so the
//! memory it leaves to the allocator does not flatter the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Args;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep};

use super::Experiment;
use crate::measure::median;
use crate::report::{Cell, Report, Table};

/// Options of `sluice-lab run backpressure`.
#[derive(Debug, Args)]
pub(crate) struct Backpressure {
    /// How long each strategy runs
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Messages the producer makes every millisecond
    #[arg(long, default_value_t = 10)]
    burst: usize,
    /// The consumer's time per message
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    service: Duration,
    /// Capacity of the bounded channel and permits of the semaphore
    #[arg(long, default_value_t = 64)]
    bound: usize,
    /// Bytes each message carries
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    /// How often the backlog and RSS are sampled
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    sample: Duration,
    /// Rows of the over-time table per strategy
    #[arg(long, default_value_t = 6)]
    windows: usize,
}

/// How the producer is held back (or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    Bounded,
    Semaphore,
    Unbounded,
}

impl Strategy {
    /// In the order they run: `unbounded` last (see the module docs).
    pub(crate) const ALL: [Strategy; 3] =
        [Strategy::Bounded, Strategy::Semaphore, Strategy::Unbounded];

    fn name(self) -> &'static str {
        match self {
            Strategy::Bounded => "bounded",
            Strategy::Semaphore => "semaphore",
            Strategy::Unbounded => "unbounded",
        }
    }
}

/// The settings one strategy runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup {
    pub(crate) duration: Duration,
    pub(crate) burst: usize,
    pub(crate) service: Duration,
    pub(crate) bound: usize,
    pub(crate) payload: usize,
    pub(crate) sample: Duration,
}

/// One sample of the run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Point {
    /// Since the start of the strategy's run.
    pub(crate) at: Duration,
    pub(crate) backlog: u64,
    /// VmRSS minus VmRSS before the run, bytes (zero where unreadable).
    pub(crate) rss_growth: u64,
}

/// What one strategy's run recorded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    pub(crate) produced: u64,
    pub(crate) consumed: u64,
    pub(crate) series: Vec<Point>,
    /// (when the consumer took it, since the start; its end-to-end latency)
    pub(crate) latencies: Vec<(Duration, Duration)>,
}

impl Run {
    pub(crate) fn peak_backlog(&self) -> u64 {
        self.series.iter().map(|p| p.backlog).max().unwrap_or(0)
    }

    fn peak_rss(&self) -> u64 {
        self.series.iter().map(|p| p.rss_growth).max().unwrap_or(0)
    }

    fn latency_quantile(&self, q: f64, from: Duration, to: Duration) -> Option<Duration> {
        let mut l: Vec<Duration> = self
            .latencies
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, l)| *l)
            .collect();
        if l.is_empty() {
            return None;
        }
        if q == 0.5 {
            return Some(median(l));
        }
        l.sort_unstable();
        let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
        Some(l[i])
    }
}

/// A message: its payload and when it was made.
struct Msg {
    created: Instant,
    _payload: Vec<u8>,
}

#[derive(Default)]
struct Counters {
    produced: AtomicU64,
    consumed: AtomicU64,
}

impl Counters {
    fn backlog(&self) -> u64 {
        let consumed = self.consumed.load(Ordering::SeqCst);
        self.produced
            .load(Ordering::SeqCst)
            .saturating_sub(consumed)
    }
}

/// The process's resident set, bytes, from `/proc/self/status` (`None`
/// where it is not available).
pub(crate) fn vm_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs one strategy for `setup.duration` on a fresh current-thread runtime.
pub(crate) fn run_strategy(strategy: Strategy, setup: Setup) -> Result<Run> {
    let base_rss = vm_rss();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let run = rt.block_on(scenario(strategy, setup, base_rss));
    // Dropping the runtime drops every task and whatever is still queued.
    drop(rt);
    Ok(run)
}

async fn scenario(strategy: Strategy, setup: Setup, base_rss: Option<u64>) -> Run {
    let start = Instant::now();
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let record = {
        let latencies = latencies.clone();
        move |m: Msg| {
            let now = Instant::now();
            latencies
                .lock()
                .expect("no panics while locked")
                .push((now - start, now - m.created));
        }
    };

    let series = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let counters = counters.clone();
        let series = series.clone();
        tokio::spawn(async move {
            let mut tick = interval(setup.sample);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let rss_growth = match (vm_rss(), base_rss) {
                    (Some(now), Some(base)) => now.saturating_sub(base),
                    _ => 0,
                };
                series.lock().expect("no panics while locked").push(Point {
                    at: start.elapsed(),
                    backlog: counters.backlog(),
                    rss_growth,
                });
            }
        })
    };

    let make = |payload: usize| Msg {
        created: Instant::now(),
        _payload: vec![1u8; payload],
    };
    let mut ticks = interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let end = start + setup.duration;
    let service = setup.service;

    match strategy {
        Strategy::Bounded => {
            let (tx, mut rx) = mpsc::channel::<Msg>(setup.bound);
            let c = counters.clone();
            tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    c.consumed.fetch_add(1, Ordering::SeqCst);
                    sleep(service).await;
                    record(m);
                }
            });
            'produce: while Instant::now() < end {
                ticks.tick().await;
                for _ in 0..setup.burst {
                    let m = make(setup.payload);
                    tokio::select! {
                        r = tx.send(m) => if r.is_err() { break 'produce },
                        () = tokio::time::sleep_until(end) => break 'produce,
                    }
                    counters.produced.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        Strategy::Semaphore => {
            let permits = Arc::new(Semaphore::new(setup.bound));
            let consumer = Arc::new(tokio::sync::Mutex::new(record));
            'produce: while Instant::now() < end {
                ticks.tick().await;
                for _ in 0..setup.burst {
                    let m = make(setup.payload);
                    let permit = tokio::select! {
                        p = permits.clone().acquire_owned() => p.expect("the semaphore is open"),
                        () = tokio::time::sleep_until(end) => break 'produce,
                    };
                    counters.produced.fetch_add(1, Ordering::SeqCst);
                    let c = counters.clone();
                    let consumer = consumer.clone();
                    tokio::spawn(async move {
                        let record = consumer.lock().await;
                        c.consumed.fetch_add(1, Ordering::SeqCst);
                        sleep(service).await;
                        record(m);
                        drop(permit);
                    });
                }
            }
        }
        Strategy::Unbounded => {
            let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
            let c = counters.clone();
            tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    c.consumed.fetch_add(1, Ordering::SeqCst);
                    sleep(service).await;
                    record(m);
                }
            });
            while Instant::now() < end {
                ticks.tick().await;
                for _ in 0..setup.burst {
                    if tx.send(make(setup.payload)).is_err() {
                        break;
                    }
                    counters.produced.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
    sampler.abort();
    let series = std::mem::take(&mut *series.lock().expect("no panics while locked"));
    let latencies = std::mem::take(&mut *latencies.lock().expect("no panics while locked"));
    Run {
        produced: counters.produced.load(Ordering::SeqCst),
        consumed: counters.consumed.load(Ordering::SeqCst),
        series,
        latencies,
    }
}

impl Experiment for Backpressure {
    const NAME: &'static str = "backpressure";
    const ABOUT: &'static str = "fast producer, slow consumer through an unbounded channel, a bounded channel and a Semaphore: peak backlog, peak RSS, p50/p99 latency over time";

    fn run(self) -> Result<Report> {
        ensure!(self.bound > 0, "--bound must be at least 1");
        ensure!(self.burst > 0, "--burst must be at least 1");
        ensure!(self.windows > 0, "--windows must be at least 1");
        let setup = Setup {
            duration: self.duration,
            burst: self.burst,
            service: self.service,
            bound: self.bound,
            payload: self.payload,
            sample: self.sample,
        };
        let mut runs = Vec::new();
        for s in Strategy::ALL {
            runs.push((s, run_strategy(s, setup)?));
        }
        let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let all = Duration::MAX;
        let base = runs
            .iter()
            .find(|(s, _)| *s == Strategy::Bounded)
            .map(|(_, r)| r.clone())
            .unwrap_or_default();
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let mut summary = Vec::new();
        let mut over_time = Vec::new();
        for (s, r) in &runs {
            let p99 = ms(r.latency_quantile(0.99, Duration::ZERO, all));
            let base_p99 = ms(base.latency_quantile(0.99, Duration::ZERO, all));
            summary.push(vec![
                Cell::Text(s.name().to_owned()),
                Cell::Num(r.produced as f64, 0),
                Cell::Num(r.consumed as f64, 0),
                Cell::Num(r.peak_backlog() as f64, 0),
                Cell::Num(mib(r.peak_rss()), 1),
                Cell::Num(ms(r.latency_quantile(0.5, Duration::ZERO, all)), 1),
                Cell::Num(p99, 1),
                Cell::Num(
                    ratio(r.peak_backlog() as f64, base.peak_backlog() as f64),
                    1,
                ),
                Cell::Num(ratio(r.peak_rss() as f64, base.peak_rss() as f64), 1),
                Cell::Num(ratio(p99, base_p99), 1),
            ]);
            let window = self.duration / self.windows as u32;
            for w in 0..self.windows {
                let from = window * w as u32;
                let to = from + window;
                let last = r.series.iter().rev().find(|p| p.at < to);
                over_time.push(vec![
                    Cell::Text(s.name().to_owned()),
                    Cell::Num(to.as_secs_f64(), 2),
                    Cell::Num(last.map_or(f64::NAN, |p| p.backlog as f64), 0),
                    Cell::Num(last.map_or(f64::NAN, |p| mib(p.rss_growth)), 1),
                    Cell::Num(ms(r.latency_quantile(0.5, from, to)), 1),
                    Cell::Num(ms(r.latency_quantile(0.99, from, to)), 1),
                ]);
            }
        }
        let offered = self.burst as f64 * 1000.0;
        let capacity = 1.0 / self.service.as_secs_f64().max(1e-9);
        Ok(Report {
            experiment: Self::NAME,
            settings: vec![
                (
                    "duration",
                    humantime::format_duration(self.duration).to_string(),
                ),
                ("burst", self.burst.to_string()),
                (
                    "service",
                    humantime::format_duration(self.service).to_string(),
                ),
                ("bound", self.bound.to_string()),
                ("payload", self.payload.to_string()),
            ],
            tables: vec![
                Table {
                    title: "backpressure: each strategy over the whole run".to_owned(),
                    header: vec![
                        "strategy",
                        "produced",
                        "consumed",
                        "peak backlog",
                        "peak RSS MiB",
                        "p50 ms",
                        "p99 ms",
                        "backlog x bounded",
                        "RSS x bounded",
                        "p99 x bounded",
                    ],
                    rows: summary,
                },
                Table {
                    title: "over time: backlog and RSS at the end of each window, latency of the messages consumed in it".to_owned(),
                    header: vec!["strategy", "until s", "backlog", "RSS MiB", "p50 ms", "p99 ms"],
                    rows: over_time,
                },
            ],
            notes: vec![
                format!("offered about {offered:.0} msg/s; the consumer manages at most {capacity:.0} msg/s (a tokio sleep of `service` per message, which rounds up to the timer's millisecond)."),
                "backlog: messages produced and not yet taken by the consumer. Bounded: at most bound + 1 (the one the consumer has just taken, counted a moment later); semaphore: at most bound.".to_owned(),
                "peak RSS MiB: the process's VmRSS over its value before the strategy started.".to_owned(),
                "latency: creation to the end of its service; only consumed messages count, so unbounded's backlog at the end is not in its p99.".to_owned(),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            duration: Duration::from_millis(300),
            burst: 10,
            service: Duration::from_millis(1),
            bound: 16,
            payload: 64,
            sample: Duration::from_millis(2),
        }
    }

    #[test]
    fn bounded_never_exceeds_its_capacity() {
        let r = run_strategy(Strategy::Bounded, setup()).unwrap();
        assert!(!r.series.is_empty());
        assert!(r.consumed > 0);
        assert!(r.peak_backlog() <= 16 + 1, "{}", r.peak_backlog());
        // The producer was held back: it made far fewer than it offered.
        assert!(
            r.produced <= r.consumed + 17,
            "{} {}",
            r.produced,
            r.consumed
        );
    }

    #[test]
    fn semaphore_never_exceeds_its_permits() {
        let r = run_strategy(Strategy::Semaphore, setup()).unwrap();
        assert!(!r.series.is_empty());
        assert!(r.consumed > 0);
        assert!(r.peak_backlog() <= 16, "{}", r.peak_backlog());
        assert!(
            r.produced <= r.consumed + 16,
            "{} {}",
            r.produced,
            r.consumed
        );
    }

    #[test]
    fn unbounded_grows_past_the_bound() {
        let r = run_strategy(Strategy::Unbounded, setup()).unwrap();
        assert!(r.consumed > 0);
        assert!(
            r.peak_backlog() > 4 * 16,
            "backlog {} (produced {}, consumed {})",
            r.peak_backlog(),
            r.produced,
            r.consumed
        );
        assert!(r.produced > r.consumed + 4 * 16);
    }

    #[test]
    fn vm_rss_reads_proc() {
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(vm_rss().unwrap() > 0);
        }
    }
}
