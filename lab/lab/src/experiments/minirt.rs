//! Experiment `minirt`: the lab's hand-written runtime (`sluice-minirt`)
//! against tokio's current-thread runtime, both on this one thread.
//!
//! - **spawn**: spawn `--ops` tasks that return their index (in rounds of
//!   1,024, awaiting each round's handles), so one op is a spawn, a poll
//!   and a join.
//! - **yield**: one task yields `--ops` times: a wake and a trip through
//!   the run queue each.
//! - **pingpong**: two tasks bounce a number `--ops` times over two
//!   unbounded channels (minirt's `channel`, tokio's `mpsc::unbounded_channel`);
//!   one op is a round trip: two sends, two receives, two wake-ups.
//! - **timers**: `--timers` tasks sleep until a deadline 1-50 ms out; how
//!   late each wakes (both runtimes sleep in `epoll` with millisecond
//!   timeouts; tokio's wheel also has 1 ms slots).
//! - **idle**: a runtime waits `--idle` with one timer half-way: CPU time
//!   of the thread and how often it woke (voluntary context switches).
//!
//! Runtimes are built before the timing; each contender's runs are
//! interleaved and the median reported. Instruction counts, the steadier
//! figure, come from `bench/lab-minirt-instructions.sh`.

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::{Args, ValueEnum};

use super::Experiment;
use crate::measure::{Sample, interleaved, time};
use crate::report::{Cell, Report, Table};

/// Tasks spawned per round in the spawn workload.
const ROUND: u64 = 1024;

/// The workloads, selectable with `--workload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    Spawn,
    Yield,
    Pingpong,
    Timers,
    Idle,
}

/// Options of `sluice-lab run minirt`.
#[derive(Debug, Args)]
pub(crate) struct Minirt {
    /// Operations per run of spawn, yield and pingpong
    #[arg(long, default_value_t = 200_000)]
    ops: u64,
    /// Repetitions of each contender (interleaved; the median is reported)
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Sleeping tasks in the timers workload
    #[arg(long, default_value_t = 1000)]
    timers: u64,
    /// How long the idle workload waits (its timer fires half-way)
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// Workloads to run (comma-separated)
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Workload::Spawn, Workload::Yield, Workload::Pingpong, Workload::Timers, Workload::Idle])]
    workload: Vec<Workload>,
    /// Run only these contenders (comma-separated: minirt, tokio)
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl Experiment for Minirt {
    const NAME: &'static str = "minirt";
    const ABOUT: &'static str = "the hand-written runtime vs tokio current-thread: spawn, yield, channel ping-pong, timer lateness, idle CPU";

    fn run(self) -> Result<Report> {
        ensure!(
            self.ops > 0 && self.runs > 0 && self.timers > 0,
            "ops, runs and timers must be at least 1"
        );
        ensure!(
            self.only.iter().all(|o| CONTENDERS.contains(&o.as_str())),
            "--only takes minirt and/or tokio, not {:?}",
            self.only
        );
        let rts = Runtimes::new(&self)?;
        let mut tables = Vec::new();
        let per_op: Vec<Workload> = self
            .workload
            .iter()
            .copied()
            .filter(|w| matches!(w, Workload::Spawn | Workload::Yield | Workload::Pingpong))
            .collect();
        if !per_op.is_empty() {
            tables.push(self.per_op_table(&rts, &per_op));
        }
        if self.workload.contains(&Workload::Timers) {
            tables.push(self.timers_table(&rts));
        }
        if self.workload.contains(&Workload::Idle) {
            tables.push(self.idle_table(&rts));
        }
        Ok(Report {
            experiment: Self::NAME,
            settings: vec![
                ("ops", self.ops.to_string()),
                ("runs", self.runs.to_string()),
                ("timers", self.timers.to_string()),
                ("idle", humantime::format_duration(self.idle).to_string()),
            ],
            tables,
            notes: vec![
                "ns/op = median wall time / ops; CPU ns/op = median CPU time of the process / ops; \
                 x tokio = over tokio's figure (below 1 is cheaper). Both runtimes run on this one thread."
                    .to_owned(),
                "Late: how long after its deadline each sleeping task ran (µs). Idle: CPU time of \
                 the waiting thread and its voluntary context switches (each a sleep in epoll)."
                    .to_owned(),
                "Wall-clock figures move with the machine's load; bench/lab-minirt-instructions.sh \
                 counts instructions per op with callgrind."
                    .to_owned(),
            ],
        })
    }
}

const CONTENDERS: &[&str] = &["minirt", "tokio"];

/// The runtimes under test, built once and only if chosen.
struct Runtimes {
    minirt: Option<sluice_minirt::Runtime>,
    tokio: Option<tokio::runtime::Runtime>,
}

impl Runtimes {
    fn new(o: &Minirt) -> Result<Runtimes> {
        Ok(Runtimes {
            minirt: o
                .wanted("minirt")
                .then(sluice_minirt::Runtime::new)
                .transpose()
                .context("minirt runtime")?,
            tokio: o
                .wanted("tokio")
                .then(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                })
                .transpose()
                .context("tokio runtime")?,
        })
    }

    /// The chosen contenders, in table order.
    fn chosen(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.minirt.is_some() {
            v.push("minirt");
        }
        if self.tokio.is_some() {
            v.push("tokio");
        }
        v
    }

    fn minirt(&self) -> &sluice_minirt::Runtime {
        self.minirt.as_ref().expect("built when chosen")
    }

    fn tokio(&self) -> &tokio::runtime::Runtime {
        self.tokio.as_ref().expect("built when chosen")
    }
}

impl Minirt {
    fn wanted(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }

    fn per_op_table(&self, rts: &Runtimes, workloads: &[Workload]) -> Table {
        let mut rows = Vec::new();
        for &w in workloads {
            let mut names = rts.chosen();
            let medians = interleaved(self.runs, &mut names, |name| self.one_run(rts, name, w));
            let per = |d: Duration| d.as_secs_f64() * 1e9 / self.ops as f64;
            let tokio_at = names.iter().position(|n| *n == "tokio");
            for (name, m) in names.iter().zip(&medians) {
                let ratio = |f: fn(&Sample) -> Duration| {
                    tokio_at.map_or(f64::NAN, |t| {
                        let base = per(f(&medians[t]));
                        if base > 0.0 {
                            per(f(m)) / base
                        } else {
                            f64::NAN
                        }
                    })
                };
                rows.push(vec![
                    Cell::Text(format!("{w:?}").to_lowercase()),
                    Cell::Text((*name).to_owned()),
                    Cell::Num(per(m.wall), 1),
                    Cell::Num(ratio(|s| s.wall), 2),
                    Cell::Num(
                        if m.cpu.is_zero() {
                            f64::NAN
                        } else {
                            per(m.cpu)
                        },
                        1,
                    ),
                    Cell::Num(ratio(|s| s.cpu), 2),
                ]);
            }
        }
        Table {
            title: format!(
                "per operation ({} ops, median of {} runs)",
                self.ops, self.runs
            ),
            header: vec![
                "workload",
                "runtime",
                "ns/op",
                "x tokio",
                "CPU ns/op",
                "CPU x tokio",
            ],
            rows,
        }
    }

    /// One timed run of workload `w` on runtime `name`.
    fn one_run(&self, rts: &Runtimes, name: &str, w: Workload) -> Sample {
        let ops = self.ops;
        match (name, w) {
            ("minirt", Workload::Spawn) => {
                time(|| check(rts.minirt().block_on(minirt_spawn(ops)), ops))
            }
            ("tokio", Workload::Spawn) => {
                time(|| check(rts.tokio().block_on(tokio_spawn(ops)), ops))
            }
            ("minirt", Workload::Yield) => time(|| {
                rts.minirt().block_on(async move {
                    sluice_minirt::spawn(async move {
                        for _ in 0..ops {
                            sluice_minirt::yield_now().await;
                        }
                    })
                    .await;
                });
            }),
            ("tokio", Workload::Yield) => time(|| {
                rts.tokio().block_on(async move {
                    tokio::spawn(async move {
                        for _ in 0..ops {
                            tokio::task::yield_now().await;
                        }
                    })
                    .await
                    .expect("the yield task");
                });
            }),
            ("minirt", Workload::Pingpong) => {
                time(|| check(rts.minirt().block_on(minirt_pingpong(ops)), ops))
            }
            ("tokio", Workload::Pingpong) => {
                time(|| check(rts.tokio().block_on(tokio_pingpong(ops)), ops))
            }
            _ => unreachable!("per-op workloads of the two contenders"),
        }
    }

    fn timers_table(&self, rts: &Runtimes) -> Table {
        let mut rows = Vec::new();
        for name in rts.chosen() {
            let late = match name {
                "minirt" => rts.minirt().block_on(minirt_timers(self.timers)),
                _ => rts.tokio().block_on(tokio_timers(self.timers)),
            };
            rows.push(vec![
                Cell::Text(name.to_owned()),
                Cell::Num(quantile(&late, 0.5), 0),
                Cell::Num(quantile(&late, 0.99), 0),
                Cell::Num(quantile(&late, 1.0), 0),
            ]);
        }
        Table {
            title: format!(
                "timer lateness ({} tasks, deadlines 1-50 ms out)",
                self.timers
            ),
            header: vec!["runtime", "late p50 µs", "late p99 µs", "late max µs"],
            rows,
        }
    }

    fn idle_table(&self, rts: &Runtimes) -> Table {
        let idle = self.idle;
        let mut rows = Vec::new();
        for name in rts.chosen() {
            let before = ThreadStat::now();
            match name {
                "minirt" => rts.minirt().block_on(async move {
                    let timer = sluice_minirt::spawn(sluice_minirt::sleep(idle / 2));
                    sluice_minirt::sleep(idle).await;
                    timer.await;
                }),
                _ => rts.tokio().block_on(async move {
                    let timer = tokio::spawn(tokio::time::sleep(idle / 2));
                    tokio::time::sleep(idle).await;
                    timer.await.expect("the timer task");
                }),
            }
            let after = ThreadStat::now();
            rows.push(vec![
                Cell::Text(name.to_owned()),
                Cell::Num(idle.as_secs_f64() * 1e3, 0),
                Cell::Num(after.cpu.saturating_sub(before.cpu).as_secs_f64() * 1e6, 0),
                Cell::Num(after.switches.saturating_sub(before.switches) as f64, 0),
            ]);
        }
        Table {
            title: "idle: one timer half-way through the wait".to_owned(),
            header: vec!["runtime", "waited ms", "CPU µs", "wake-ups"],
            rows,
        }
    }
}

/// Panics unless `sum` is 0 + 1 + ... + (ops - 1): every op ran once.
fn check(sum: u64, ops: u64) {
    assert_eq!(sum, ops * (ops - 1) / 2, "a run lost or repeated work");
}

async fn minirt_spawn(ops: u64) -> u64 {
    let mut sum = 0;
    let mut handles = Vec::with_capacity(ROUND as usize);
    let mut i = 0;
    while i < ops {
        let end = (i + ROUND).min(ops);
        handles.extend((i..end).map(|j| sluice_minirt::spawn(async move { black_box(j) })));
        for h in handles.drain(..) {
            sum += h.await;
        }
        i = end;
    }
    sum
}

async fn tokio_spawn(ops: u64) -> u64 {
    let mut sum = 0;
    let mut handles = Vec::with_capacity(ROUND as usize);
    let mut i = 0;
    while i < ops {
        let end = (i + ROUND).min(ops);
        handles.extend((i..end).map(|j| tokio::spawn(async move { black_box(j) })));
        for h in handles.drain(..) {
            sum += h.await.expect("a spawned task");
        }
        i = end;
    }
    sum
}

/// Two tasks bounce a counter: the pinger sends i, the ponger sends it back.
async fn minirt_pingpong(ops: u64) -> u64 {
    let (ping_tx, mut ping_rx) = sluice_minirt::channel::<u64>();
    let (pong_tx, mut pong_rx) = sluice_minirt::channel::<u64>();
    let ponger = sluice_minirt::spawn(async move {
        while let Some(v) = ping_rx.recv().await {
            if pong_tx.send(v).is_err() {
                break;
            }
        }
    });
    let pinger = sluice_minirt::spawn(async move {
        let mut sum = 0;
        for i in 0..ops {
            ping_tx.send(i).expect("the ponger is alive");
            sum += pong_rx.recv().await.expect("the ponger answers");
        }
        sum
    });
    let sum = pinger.await;
    ponger.await;
    sum
}

async fn tokio_pingpong(ops: u64) -> u64 {
    let (ping_tx, mut ping_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let ponger = tokio::spawn(async move {
        while let Some(v) = ping_rx.recv().await {
            if pong_tx.send(v).is_err() {
                break;
            }
        }
    });
    let pinger = tokio::spawn(async move {
        let mut sum = 0;
        for i in 0..ops {
            ping_tx.send(i).expect("the ponger is alive");
            sum += pong_rx.recv().await.expect("the ponger answers");
        }
        sum
    });
    let sum = pinger.await.expect("the pinger");
    ponger.await.expect("the ponger");
    sum
}

/// The deadline of sleeping task `i` of a run that started at `start`.
fn deadline(start: Instant, i: u64) -> Instant {
    start + Duration::from_millis(1 + i % 50) + Duration::from_micros(i * 37 % 1000)
}

/// Lateness of each task in µs, sorted.
async fn minirt_timers(n: u64) -> Vec<f64> {
    collect_lateness(n, |d| {
        sluice_minirt::spawn(async move {
            sluice_minirt::sleep_until(d).await;
            Instant::now().saturating_duration_since(d)
        })
    })
    .await
}

async fn tokio_timers(n: u64) -> Vec<f64> {
    collect_lateness(n, |d| {
        let h = tokio::spawn(async move {
            tokio::time::sleep_until(d.into()).await;
            Instant::now().saturating_duration_since(d)
        });
        async move { h.await.expect("a timer task") }
    })
    .await
}

async fn collect_lateness<F, Fut>(n: u64, spawn: F) -> Vec<f64>
where
    F: Fn(Instant) -> Fut,
    Fut: Future<Output = Duration>,
{
    let start = Instant::now();
    let pending: Vec<Fut> = (0..n).map(|i| spawn(deadline(start, i))).collect();
    let mut late = Vec::with_capacity(pending.len());
    for p in pending {
        late.push(p.await.as_secs_f64() * 1e6);
    }
    late.sort_by(f64::total_cmp);
    late
}

/// The `q` quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// This thread's CPU time and voluntary context switches, from /proc.
struct ThreadStat {
    cpu: Duration,
    switches: u64,
}

impl ThreadStat {
    fn now() -> ThreadStat {
        let cpu = std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .map_or(Duration::ZERO, Duration::from_nanos);
        let switches = std::fs::read_to_string("/proc/thread-self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0);
        ThreadStat { cpu, switches }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_is_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.0);
        assert_eq!(quantile(&v, 0.99), 4.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn both_runtimes_do_every_op_once() {
        let rt = sluice_minirt::Runtime::new().unwrap();
        check(rt.block_on(minirt_spawn(3000)), 3000);
        check(rt.block_on(minirt_pingpong(500)), 500);
        let tk = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        check(tk.block_on(tokio_spawn(3000)), 3000);
        check(tk.block_on(tokio_pingpong(500)), 500);
    }

    #[test]
    fn no_timer_fires_early() {
        let rt = sluice_minirt::Runtime::new().unwrap();
        let late = rt.block_on(minirt_timers(100));
        assert_eq!(late.len(), 100);
        assert!(late.iter().all(|&l| l >= 0.0));
    }
}
