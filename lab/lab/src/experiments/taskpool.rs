//! Experiment `taskpool`: sluice-taskpool against the `threadpool` crate and
//! rayon, on three workloads.
//!
//! - **tiny**: `--jobs` jobs that each add their index to a shared atomic,
//!   submitted one by one from this thread, then wait for all. The work is
//!   nothing, so this measures what a pool costs per job: boxing, queueing,
//!   waking, and the wait at the end.
//! - **fanout**: `--cpu-jobs` jobs of `--cpu-work` rounds of integer mixing
//!   each. The speed-up over running them in sequence is what the pool is
//!   for; on a loaded machine it is the first figure to suffer.
//! - **batch**: `--jobs` tiny jobs whose results are wanted back in order.
//!   sluice uses `batch`, rayon `par_iter().map().collect()`, threadpool
//!   (which has no results) a channel of `(index, value)` pairs, as its
//!   documentation suggests.
//!
//! Every job captures its index, so each boxed closure really allocates
//! (a closure capturing nothing is zero-sized, and boxing it is free).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError, mpsc};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::{Args, ValueEnum};
use rayon::prelude::*;

use super::Experiment;
use crate::measure::{Sample, interleaved, time};
use crate::report::{Cell, Report, Table};

/// The workloads, selectable with `--workload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    Tiny,
    Fanout,
    Batch,
}

/// Options of `sluice-lab run taskpool`.
#[derive(Debug, Args)]
pub(crate) struct Taskpool {
    /// Jobs in the tiny and batch workloads
    #[arg(long, default_value_t = 1_000_000)]
    jobs: u64,
    /// Worker threads in every pool
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Repetitions of each contender (interleaved; the median is reported)
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Queue capacity of sluice-taskpool (threadpool's queue is unbounded)
    #[arg(long, default_value_t = 1024)]
    capacity: usize,
    /// Jobs in the fan-out workload
    #[arg(long, default_value_t = 10_000)]
    cpu_jobs: u64,
    /// Rounds of integer mixing per fan-out job (20,000 is some tens of µs)
    #[arg(long, default_value_t = 20_000)]
    cpu_work: u64,
    /// Workloads to run (comma-separated)
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Workload::Tiny, Workload::Fanout, Workload::Batch])]
    workload: Vec<Workload>,
    /// Run only the contenders whose names contain one of these (comma-separated), e.g. `sluice,threadpool`
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl Experiment for Taskpool {
    const NAME: &'static str = "taskpool";
    const ABOUT: &'static str = "sluice-taskpool vs threadpool and rayon: 1M tiny jobs, CPU fan-out, batch with ordered results";

    fn run(self) -> Result<Report> {
        ensure!(
            self.threads > 0 && self.runs > 0 && self.capacity > 0,
            "threads, runs and capacity must be at least 1"
        );
        let pools = Pools::new(&self)?;
        let mut tables = Vec::new();
        for workload in &self.workload {
            let table = match workload {
                Workload::Tiny => self.tiny(&pools),
                Workload::Fanout => self.fanout(&pools),
                Workload::Batch => self.batch(&pools),
            };
            tables.extend(table);
        }
        ensure!(
            !tables.is_empty(),
            "--only {:?} chose no contender of these workloads",
            self.only
        );
        Ok(Report {
            experiment: Self::NAME,
            settings: vec![
                ("jobs", self.jobs.to_string()),
                ("threads", self.threads.to_string()),
                ("runs", self.runs.to_string()),
                ("capacity", self.capacity.to_string()),
                ("cpu_jobs", self.cpu_jobs.to_string()),
                ("cpu_work", self.cpu_work.to_string()),
            ],
            tables,
            notes: vec![
                "ns/job = median wall time of the runs / jobs; CPU ns/job = median CPU time of all the \
                 process's threads (schedstat) / jobs; x threadpool = over threadpool's figure (below 1 \
                 is cheaper); speed-up = sequential wall time / contender wall time."
                    .to_owned(),
                "Wall-clock figures move with the machine's load; count instructions with \
                 bench/lab-taskpool-instructions.sh for a repeatable per-job cost."
                    .to_owned(),
            ],
        })
    }
}

/// Every contender's name, for `--only` to choose from.
const CONTENDERS: &[&str] = &[
    "sequential",
    "sluice execute",
    "sluice submit+join",
    "sluice scoped",
    "sluice batch",
    "threadpool",
    "rayon spawn",
    "rayon scope",
    "rayon par_iter",
];

/// The pools under test, built once so start-up is not measured, and only
/// if a chosen contender uses them: under callgrind an idle pool's threads
/// would add instructions of their own.
struct Pools {
    sluice: Option<sluice_taskpool::ThreadPool<'static>>,
    threadpool: Option<threadpool::ThreadPool>,
    rayon: Option<rayon::ThreadPool>,
}

impl Pools {
    fn new(o: &Taskpool) -> Result<Self> {
        let needs = |prefix: &str| {
            CONTENDERS
                .iter()
                .any(|c| c.starts_with(prefix) && o.wanted(c))
        };
        Ok(Pools {
            sluice: needs("sluice")
                .then(|| {
                    sluice_taskpool::Builder::new()
                        .threads(o.threads)
                        .queue_capacity(o.capacity)
                        .thread_name("lab-sluice")
                        .build()
                })
                .transpose()
                .context("sluice-taskpool")?,
            threadpool: needs("threadpool").then(|| {
                threadpool::Builder::new()
                    .num_threads(o.threads)
                    .thread_name("lab-threadpool".into())
                    .build()
            }),
            rayon: needs("rayon")
                .then(|| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(o.threads)
                        .thread_name(|i| format!("lab-rayon-{i}"))
                        .build()
                })
                .transpose()
                .context("rayon")?,
        })
    }

    // A contender runs only if chosen, and then its pool was built.
    fn sluice(&self) -> &sluice_taskpool::ThreadPool<'static> {
        self.sluice
            .as_ref()
            .expect("built when a sluice contender is chosen")
    }

    fn threadpool(&self) -> &threadpool::ThreadPool {
        self.threadpool
            .as_ref()
            .expect("built when threadpool is chosen")
    }

    fn rayon(&self) -> &rayon::ThreadPool {
        self.rayon
            .as_ref()
            .expect("built when a rayon contender is chosen")
    }
}

/// The shared sum every job adds to; checked after each run.
static SUM: AtomicU64 = AtomicU64::new(0);

/// A latch for rayon's `spawn`, which, unlike the others, has no way to
/// wait for its jobs: the last job to finish opens it.
static DONE: AtomicU64 = AtomicU64::new(0);
static LATCH: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

fn open_latch() {
    *LATCH.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
    LATCH.1.notify_all();
}

fn wait_latch() {
    let mut open = LATCH.0.lock().unwrap_or_else(PoisonError::into_inner);
    while !*open {
        open = LATCH.1.wait(open).unwrap_or_else(PoisonError::into_inner);
    }
    *open = false;
}

/// A tiny job's result: a multiply and a shift, kept from being optimised away.
fn tiny(i: u64) -> u64 {
    black_box(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7)
}

/// A CPU job: `rounds` of xorshift-multiply mixing, about a nanosecond each.
fn cpu(seed: u64, rounds: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    }
    black_box(x)
}

type Run<'a> = Box<dyn FnMut() -> Sample + 'a>;

impl Taskpool {
    fn wanted(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| name.contains(o.as_str()))
    }

    /// Runs the selected contenders interleaved and builds a table with
    /// ns/job, jobs/s, and ratios to `threadpool` (and to `sequential` if present).
    fn table(
        &self,
        title: String,
        jobs: u64,
        contenders: Vec<(&'static str, Run<'_>)>,
    ) -> Option<Table> {
        debug_assert!(contenders.iter().all(|(name, _)| CONTENDERS.contains(name)));
        let mut contenders: Vec<_> = contenders
            .into_iter()
            .filter(|(name, _)| self.wanted(name))
            .collect();
        if contenders.is_empty() {
            return None; // --only chose none of this workload's contenders
        }
        let medians = interleaved(self.runs, &mut contenders, |(_, run)| run());
        let per_job = |d: Duration| d.as_secs_f64() * 1e9 / jobs as f64;
        let wall: Vec<f64> = medians.iter().map(|m| per_job(m.wall)).collect();
        // Zero CPU time means "not measured" (no schedstat, or threads that exited).
        let cpu: Vec<f64> = medians
            .iter()
            .map(|m| {
                if m.cpu.is_zero() {
                    f64::NAN
                } else {
                    per_job(m.cpu)
                }
            })
            .collect();
        let find = |name: &str| contenders.iter().position(|(n, _)| *n == name);
        let (threadpool, sequential) = (find("threadpool"), find("sequential"));
        let ratio = |v: &[f64], i: usize| threadpool.map_or(f64::NAN, |t| v[i] / v[t]);
        let mut header = vec![
            "contender",
            "total ms",
            "ns/job",
            "jobs/s",
            "x threadpool",
            "CPU ns/job",
            "CPU x threadpool",
        ];
        if sequential.is_some() {
            header.push("speed-up");
        }
        let rows = contenders
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let mut row = vec![
                    Cell::Text((*name).to_owned()),
                    Cell::Num(medians[i].wall.as_secs_f64() * 1e3, 1),
                    Cell::Num(wall[i], 1),
                    Cell::Num(1e9 / wall[i], 0),
                    Cell::Num(ratio(&wall, i), 2),
                    Cell::Num(cpu[i], 1),
                    Cell::Num(ratio(&cpu, i), 2),
                ];
                if let Some(seq) = sequential {
                    row.push(Cell::Num(wall[seq] / wall[i], 2));
                }
                row
            })
            .collect();
        Some(Table {
            title,
            header,
            rows,
        })
    }

    fn tiny(&self, p: &Pools) -> Option<Table> {
        let n = self.jobs;
        let expect = n * n.saturating_sub(1) / 2;
        let check = move |what: &str| {
            let sum = SUM.swap(0, Ordering::Relaxed);
            assert_eq!(sum, expect, "{what}: wrong sum, some job did not run");
        };
        let contenders: Vec<(&str, Run<'_>)> = vec![
            (
                "sluice execute",
                Box::new(|| {
                    let d = time(|| {
                        for i in 0..n {
                            let _ = p.sluice().execute(move || {
                                SUM.fetch_add(i, Ordering::Relaxed);
                            });
                        }
                        p.sluice().wait_idle();
                    });
                    check("sluice execute");
                    d
                }),
            ),
            (
                "sluice submit+join",
                Box::new(|| {
                    let d = time(|| {
                        let handles: Vec<_> = (0..n)
                            .map(|i| {
                                p.sluice().submit(move || {
                                    SUM.fetch_add(i, Ordering::Relaxed);
                                })
                            })
                            .collect();
                        for h in handles {
                            let _ = h.join();
                        }
                    });
                    check("sluice submit");
                    d
                }),
            ),
            (
                // A pool started inside std::thread::scope for this run only
                // (thread start-up included), its jobs borrowing a local.
                "sluice scoped",
                Box::new(|| {
                    let d = time(|| {
                        let local = AtomicU64::new(0);
                        std::thread::scope(|s| {
                            let pool = sluice_taskpool::Builder::new()
                                .threads(self.threads)
                                .queue_capacity(self.capacity)
                                .thread_name("lab-scoped")
                                .build_scoped(s)
                                .expect("threads start");
                            for i in 0..n {
                                let local = &local;
                                let _ = pool.execute(move || {
                                    local.fetch_add(i, Ordering::Relaxed);
                                });
                            }
                            pool.shutdown();
                        });
                        SUM.fetch_add(local.into_inner(), Ordering::Relaxed);
                    });
                    check("sluice scoped");
                    // Its workers exit inside the run, and the CPU time of
                    // exited threads is not in schedstat: not measured.
                    Sample {
                        cpu: Duration::ZERO,
                        ..d
                    }
                }),
            ),
            (
                "threadpool",
                Box::new(|| {
                    let d = time(|| {
                        for i in 0..n {
                            p.threadpool().execute(move || {
                                SUM.fetch_add(i, Ordering::Relaxed);
                            });
                        }
                        p.threadpool().join();
                    });
                    check("threadpool");
                    d
                }),
            ),
            (
                "rayon spawn",
                Box::new(|| {
                    DONE.store(0, Ordering::Relaxed);
                    let d = time(|| {
                        for i in 0..n {
                            p.rayon().spawn(move || {
                                SUM.fetch_add(i, Ordering::Relaxed);
                                if DONE.fetch_add(1, Ordering::AcqRel) + 1 == n {
                                    open_latch();
                                }
                            });
                        }
                        if n > 0 {
                            wait_latch();
                        }
                    });
                    check("rayon spawn");
                    d
                }),
            ),
            (
                "rayon scope",
                Box::new(|| {
                    let d = time(|| {
                        p.rayon().scope(|s| {
                            for i in 0..n {
                                s.spawn(move |_| {
                                    SUM.fetch_add(i, Ordering::Relaxed);
                                });
                            }
                        });
                    });
                    check("rayon scope");
                    d
                }),
            ),
        ];
        self.table(
            format!("tiny: {n} jobs, one at a time, then wait for all"),
            n,
            contenders,
        )
    }

    fn fanout(&self, p: &Pools) -> Option<Table> {
        let (n, work) = (self.cpu_jobs, self.cpu_work);
        let expect = (0..n).fold(0u64, |acc, i| acc.wrapping_add(cpu(i, work)));
        let check = move |what: &str| {
            let sum = SUM.swap(0, Ordering::Relaxed);
            assert_eq!(sum, expect, "{what}: wrong sum, some job did not run");
        };
        let job = move |i: u64| {
            SUM.fetch_add(cpu(i, work), Ordering::Relaxed);
        };
        let contenders: Vec<(&str, Run<'_>)> = vec![
            (
                "sequential",
                Box::new(|| {
                    let d = time(|| (0..n).for_each(job));
                    check("sequential");
                    d
                }),
            ),
            (
                "sluice execute",
                Box::new(|| {
                    let d = time(|| {
                        for i in 0..n {
                            let _ = p.sluice().execute(move || job(i));
                        }
                        p.sluice().wait_idle();
                    });
                    check("sluice execute");
                    d
                }),
            ),
            (
                "sluice batch",
                Box::new(|| {
                    let d = time(|| {
                        let _ = p.sluice().batch((0..n).map(|i| move || job(i))).join();
                    });
                    check("sluice batch");
                    d
                }),
            ),
            (
                "threadpool",
                Box::new(|| {
                    let d = time(|| {
                        for i in 0..n {
                            p.threadpool().execute(move || job(i));
                        }
                        p.threadpool().join();
                    });
                    check("threadpool");
                    d
                }),
            ),
            (
                "rayon scope",
                Box::new(|| {
                    let d = time(|| {
                        p.rayon().scope(|s| {
                            for i in 0..n {
                                s.spawn(move |_| job(i));
                            }
                        });
                    });
                    check("rayon scope");
                    d
                }),
            ),
            (
                "rayon par_iter",
                Box::new(|| {
                    let d = time(|| p.rayon().install(|| (0..n).into_par_iter().for_each(job)));
                    check("rayon par_iter");
                    d
                }),
            ),
        ];
        self.table(
            format!("fanout: {n} CPU jobs of {work} rounds"),
            n,
            contenders,
        )
    }

    fn batch(&self, p: &Pools) -> Option<Table> {
        let n = self.jobs;
        let check = move |what: &str, results: &[u64]| {
            assert_eq!(results.len() as u64, n, "{what}: wrong count");
            assert!(
                results
                    .iter()
                    .enumerate()
                    .all(|(i, &v)| v == tiny(i as u64)),
                "{what}: wrong order or value"
            );
        };
        let contenders: Vec<(&str, Run<'_>)> = vec![
            (
                "sluice batch",
                Box::new(|| {
                    let mut out = Vec::new();
                    let d = time(|| {
                        out = p
                            .sluice()
                            .batch((0..n).map(|i| move || tiny(i)))
                            .join()
                            .into_iter()
                            .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
                            .collect();
                    });
                    check("sluice batch", &out);
                    d
                }),
            ),
            (
                "sluice submit+join",
                Box::new(|| {
                    let mut out = Vec::new();
                    let d = time(|| {
                        let handles: Vec<_> =
                            (0..n).map(|i| p.sluice().submit(move || tiny(i))).collect();
                        out = handles
                            .into_iter()
                            .map(|h| h.join().unwrap_or_else(|e| panic!("{e}")))
                            .collect();
                    });
                    check("sluice submit", &out);
                    d
                }),
            ),
            (
                "threadpool",
                Box::new(|| {
                    let mut out = Vec::new();
                    let d = time(|| {
                        let (tx, rx) = mpsc::channel();
                        for i in 0..n {
                            let tx = tx.clone();
                            p.threadpool().execute(move || {
                                let _ = tx.send((i, tiny(i)));
                            });
                        }
                        drop(tx);
                        out = vec![0; n as usize];
                        for (i, v) in rx {
                            out[i as usize] = v;
                        }
                    });
                    check("threadpool", &out);
                    d
                }),
            ),
            (
                "rayon par_iter",
                Box::new(|| {
                    let mut out = Vec::new();
                    let d = time(|| {
                        out = p
                            .rayon()
                            .install(|| (0..n).into_par_iter().map(tiny).collect())
                    });
                    check("rayon par_iter", &out);
                    d
                }),
            ),
        ];
        self.table(
            format!("batch: {n} tiny jobs, results in order"),
            n,
            contenders,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The experiment's counters are statics; tests take turns with them.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn small(workload: Vec<Workload>, only: Vec<String>) -> Taskpool {
        Taskpool {
            jobs: 2_000,
            threads: 2,
            runs: 1,
            capacity: 16,
            cpu_jobs: 20,
            cpu_work: 100,
            workload,
            only,
        }
    }

    #[test]
    fn every_contender_runs_and_is_checked() {
        let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        // Each contender asserts its own sum or order after its run.
        let report = small(
            vec![Workload::Tiny, Workload::Fanout, Workload::Batch],
            vec![],
        )
        .run()
        .unwrap();
        let rows: Vec<usize> = report.tables.iter().map(|t| t.rows.len()).collect();
        assert_eq!(rows, [6, 6, 4]);
        let json = report.json();
        let tiny = &json["tables"][0]["rows"];
        let threadpool = tiny
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["contender"] == "threadpool")
            .unwrap();
        assert_eq!(threadpool["x threadpool"], 1.0);
    }

    #[test]
    fn only_filters_contenders_and_skips_empty_tables() {
        let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let report = small(
            vec![Workload::Tiny, Workload::Fanout],
            vec!["sequential".to_owned()],
        )
        .run()
        .unwrap();
        assert_eq!(report.tables.len(), 1);
        assert!(
            small(vec![Workload::Tiny], vec!["nobody".to_owned()])
                .run()
                .is_err()
        );
    }
}
