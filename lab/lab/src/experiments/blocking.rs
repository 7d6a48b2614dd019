//! Experiment `blocking`: an async HTTP service that must also do CPU work,
//! with the CPU work placed five ways.
//!
//! A small axum server (`--workers` tokio worker threads, 2 by default, so
//! the effect shows on a 2-core machine) answers `GET /ping` at once and
//! `GET /work` by running one CPU job (a calibrated busy loop of `--job`).
//! From a separate client thread, `--concurrency` keep-alive connections
//! post `/work` back to back, and one more connection pings every
//! `--ping-every`; a ping's latency is counted from when it was *due*, so a
//! stalled server is charged for every ping it delayed (no coordinated
//! omission). Where the job runs ([`Strategy`]):
//!
//! - `inline`: in the handler, on the runtime worker. The worker cannot
//!   answer anything else until the job is done: pings queue behind jobs.
//! - `spawn_blocking`: on tokio's blocking pool (up to 512 threads), one
//!   thread per job in flight; the OS time-slices them with the workers.
//! - `rayon`: on a rayon pool of `--cpu-threads`, the answer sent back over
//!   a `oneshot`; jobs beyond the pool's size wait in rayon's queue.
//! - `dedicated`: on a second tokio runtime of `--cpu-threads` workers kept
//!   for CPU work; the handler awaits its `JoinHandle`.
//! - `semaphore`: `spawn_blocking` behind a `Semaphore` of `--cpu-threads`
//!   permits, so at most that many blocking threads compute at once.
//!
//! `idle` is the baseline: the same server and pinger with no `/work` load.
//! Each strategy gets a fresh server runtime, run for `--duration` after a
//! `--warmup` that is not counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::time::{Instant, MissedTickBehavior, interval};

use super::Experiment;
use crate::report::{Cell, Report, Table};

/// Options of `sluice-lab run blocking`.
#[derive(Debug, Args)]
pub(crate) struct Blocking {
    /// How long each strategy is measured (after the warm-up)
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load before measuring starts, not counted
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Worker threads of the server's tokio runtime
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Threads (rayon, dedicated runtime) or permits (semaphore) for CPU jobs
    #[arg(long, default_value_t = 2)]
    cpu_threads: usize,
    /// CPU time of one job (a busy loop calibrated at start)
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    job: Duration,
    /// `/work` requests kept in flight (one keep-alive connection each)
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Interval between pings
    #[arg(long, default_value = "2ms", value_parser = humantime::parse_duration)]
    ping_every: Duration,
    /// Strategies to run (comma-separated; idle is always run first as the baseline)
    #[arg(long, value_delimiter = ',', default_values_t = Strategy::LOADED)]
    only: Vec<Strategy>,
}

/// Where a CPU job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Strategy {
    /// No CPU load: the baseline.
    Idle,
    Inline,
    #[value(name = "spawn_blocking")]
    SpawnBlocking,
    Rayon,
    Dedicated,
    Semaphore,
}

impl Strategy {
    const LOADED: [Strategy; 5] = [
        Strategy::Inline,
        Strategy::SpawnBlocking,
        Strategy::Rayon,
        Strategy::Dedicated,
        Strategy::Semaphore,
    ];

    fn name(self) -> &'static str {
        match self {
            Strategy::Idle => "idle",
            Strategy::Inline => "inline",
            Strategy::SpawnBlocking => "spawn_blocking",
            Strategy::Rayon => "rayon",
            Strategy::Dedicated => "dedicated",
            Strategy::Semaphore => "semaphore",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A CPU job: `iterations` turns of a xorshift loop the optimiser cannot remove.
pub(crate) fn spin(iterations: u64) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..iterations {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
    x
}

/// Iterations of [`spin`] that take about `target` of CPU on this machine.
///
/// Timed in this thread's CPU time, not wall-clock time: on a shared
/// machine a probe may wait for a core, and a wall-clock calibration would
/// then shrink the job. Falls back to wall-clock time where the thread's
/// CPU time cannot be read. The kernel updates that figure at ticks and
/// switches (a few ms), so each probe is long (about 30 ms) and the median
/// of five counts.
fn calibrate(target: Duration) -> u64 {
    const PROBE: u64 = 20_000_000;
    let mut probes: Vec<Duration> = (0..5)
        .map(|_| {
            let (cpu0, wall0) = (thread_cpu(), std::time::Instant::now());
            std::hint::black_box(spin(PROBE));
            match (cpu0, thread_cpu()) {
                (Some(a), Some(b)) if b > a => b - a,
                _ => wall0.elapsed(),
            }
        })
        .collect();
    probes.sort_unstable();
    let best = probes[probes.len() / 2].max(Duration::from_nanos(1));
    (PROBE as f64 * target.as_secs_f64() / best.as_secs_f64()).max(1.0) as u64
}

/// CPU time of the calling thread so far (first field of
/// `/proc/thread-self/schedstat`, nanoseconds), where Linux provides it.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        s.split_whitespace().next()?.parse().ok()?,
    ))
}

/// The CPU side of the server: where [`Offload::run`] sends a job.
pub(crate) enum Offload {
    Inline,
    SpawnBlocking,
    Rayon(rayon::ThreadPool),
    /// The runtime is kept in an `Option` so it can be shut down without
    /// blocking from inside the server runtime (see `Drop`).
    Dedicated(Option<tokio::runtime::Runtime>),
    Semaphore(Arc<Semaphore>),
}

impl Offload {
    /// Builds the pools `strategy` needs, with `cpu_threads` threads or permits.
    pub(crate) fn new(strategy: Strategy, cpu_threads: usize) -> Result<Offload> {
        Ok(match strategy {
            Strategy::Idle | Strategy::Inline => Offload::Inline,
            Strategy::SpawnBlocking => Offload::SpawnBlocking,
            Strategy::Rayon => Offload::Rayon(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(cpu_threads)
                    .thread_name(|i| format!("cpu-rayon-{i}"))
                    .build()
                    .context("building the rayon pool")?,
            ),
            Strategy::Dedicated => Offload::Dedicated(Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(cpu_threads)
                    .thread_name("cpu-runtime")
                    .build()
                    .context("building the CPU runtime")?,
            )),
            Strategy::Semaphore => Offload::Semaphore(Arc::new(Semaphore::new(cpu_threads))),
        })
    }

    /// Runs `job` where this strategy puts CPU work and returns its result.
    pub(crate) async fn run<F>(&self, job: F) -> u64
    where
        F: FnOnce() -> u64 + Send + 'static,
    {
        match self {
            Offload::Inline => job(),
            Offload::SpawnBlocking => tokio::task::spawn_blocking(job)
                .await
                .expect("a CPU job does not panic"),
            Offload::Rayon(pool) => {
                let (tx, rx) = oneshot::channel();
                pool.spawn(move || {
                    // The handler may have gone (client hung up): nothing to tell.
                    let _ = tx.send(job());
                });
                rx.await.expect("rayon runs every spawned job")
            }
            Offload::Dedicated(rt) => rt
                .as_ref()
                .expect("present until dropped")
                .spawn(async move { job() })
                .await
                .expect("a CPU job does not panic"),
            Offload::Semaphore(permits) => {
                let _permit = permits
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                tokio::task::spawn_blocking(job)
                    .await
                    .expect("a CPU job does not panic")
            }
        }
    }
}

impl Drop for Offload {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its workers stop, which tokio
        // forbids inside another runtime; this one may be dropped there.
        if let Offload::Dedicated(rt) = self
            && let Some(rt) = rt.take()
        {
            rt.shutdown_background();
        }
    }
}

struct Server {
    offload: Offload,
    iterations: u64,
}

fn app(offload: Offload, iterations: u64) -> Router {
    let state = Arc::new(Server {
        offload,
        iterations,
    });
    Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route(
            "/work",
            get(|State(s): State<Arc<Server>>| async move {
                let n = s.iterations;
                s.offload.run(move || spin(n)).await.to_string()
            }),
        )
        .with_state(state)
}

/// The settings one strategy runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup {
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) workers: usize,
    pub(crate) cpu_threads: usize,
    /// Iterations of [`spin`] per job.
    pub(crate) iterations: u64,
    pub(crate) concurrency: usize,
    pub(crate) ping_every: Duration,
}

/// What one strategy's run measured (warm-up excluded).
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    /// Latency of each ping, from when it was due to its response.
    pub(crate) pings: Vec<Duration>,
    /// Jobs answered during the measured window.
    pub(crate) jobs: u64,
    pub(crate) measured: Duration,
}

impl Run {
    fn quantile(&self, q: f64) -> Option<Duration> {
        let mut l = self.pings.clone();
        if l.is_empty() {
            return None;
        }
        l.sort_unstable();
        let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
        Some(l[i])
    }

    fn jobs_per_sec(&self) -> f64 {
        self.jobs as f64 / self.measured.as_secs_f64().max(1e-9)
    }
}

/// One HTTP/1.1 keep-alive connection from the client side.
struct Conn(hyper::client::conn::http1::SendRequest<Empty<Bytes>>);

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Result<Conn> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .context("HTTP/1 handshake")?;
        tokio::spawn(conn);
        Ok(Conn(send))
    }

    async fn get(&mut self, path: &str) -> Result<Bytes> {
        let req = Request::get(path)
            .header(hyper::header::HOST, "127.0.0.1")
            .body(Empty::new())?;
        let res = self
            .0
            .send_request(req)
            .await
            .with_context(|| format!("GET {path}"))?;
        ensure!(
            res.status().is_success(),
            "GET {path}: status {}",
            res.status()
        );
        Ok(res.into_body().collect().await?.to_bytes())
    }
}

/// Runs one strategy: a fresh server runtime, the client on this thread's
/// own current-thread runtime.
pub(crate) fn run_strategy(strategy: Strategy, setup: Setup) -> Result<Run> {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(setup.workers)
        .thread_name("server")
        .enable_all()
        .build()
        .context("building the server runtime")?;
    let offload = Offload::new(strategy, setup.cpu_threads)?;
    let listener = server_rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let router = app(offload, setup.iterations);
    server_rt.spawn(async move { axum::serve(listener, router).await });

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the client runtime")?;
    let run = client_rt.block_on(load(addr, strategy, setup));
    drop(client_rt);
    // Jobs may still be running on blocking threads or in rayon; do not wait for them.
    server_rt.shutdown_background();
    run
}

async fn load(addr: std::net::SocketAddr, strategy: Strategy, setup: Setup) -> Result<Run> {
    let start = Instant::now();
    let measure_from = start + setup.warmup;
    let end = measure_from + setup.duration;
    let jobs = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    if strategy != Strategy::Idle {
        for _ in 0..setup.concurrency {
            let mut conn = Conn::open(addr).await?;
            let jobs = jobs.clone();
            workers.push(tokio::spawn(async move {
                while Instant::now() < end {
                    conn.get("/work").await?;
                    let now = Instant::now();
                    if now >= measure_from && now < end {
                        jobs.fetch_add(1, Ordering::Relaxed);
                    }
                }
                anyhow::Ok(())
            }));
        }
    }
    let mut ping = Conn::open(addr).await?;
    let mut pings = Vec::new();
    let mut ticks = interval(setup.ping_every);
    // Burst: pings delayed by a stall are sent at once afterwards, each
    // still charged from when it was due.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    loop {
        let due = ticks.tick().await;
        if due >= end {
            break;
        }
        let body = ping.get("/ping").await?;
        if body.as_ref() != b"pong" {
            bail!("/ping answered {body:?}");
        }
        if due >= measure_from {
            pings.push(due.elapsed());
        }
    }
    for w in workers {
        w.await.context("a /work client panicked")??;
    }
    Ok(Run {
        pings,
        jobs: jobs.load(Ordering::Relaxed),
        measured: setup.duration,
    })
}

impl Experiment for Blocking {
    const NAME: &'static str = "blocking";
    const ABOUT: &'static str = "an HTTP /ping under CPU load: the job inline, spawn_blocking, rayon + oneshot, a dedicated runtime, a Semaphore; ping p50/p99 vs idle, jobs/s";

    fn run(self) -> Result<Report> {
        ensure!(self.workers > 0, "--workers must be at least 1");
        ensure!(self.cpu_threads > 0, "--cpu-threads must be at least 1");
        ensure!(self.concurrency > 0, "--concurrency must be at least 1");
        ensure!(
            !self.ping_every.is_zero(),
            "--ping-every must be more than 0"
        );
        let iterations = calibrate(self.job);
        let setup = Setup {
            duration: self.duration,
            warmup: self.warmup,
            workers: self.workers,
            cpu_threads: self.cpu_threads,
            iterations,
            concurrency: self.concurrency,
            ping_every: self.ping_every,
        };
        let mut runs = vec![(Strategy::Idle, run_strategy(Strategy::Idle, setup)?)];
        for s in self.only.iter().filter(|s| **s != Strategy::Idle) {
            runs.push((*s, run_strategy(*s, setup)?));
        }
        let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
        let idle_p50 = ms(runs[0].1.quantile(0.5));
        let idle_p99 = ms(runs[0].1.quantile(0.99));
        let ideal = self.cpu_threads.min(available_cores()) as f64 / self.job.as_secs_f64();
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let rows = runs
            .iter()
            .map(|(s, r)| {
                let p50 = ms(r.quantile(0.5));
                let p99 = ms(r.quantile(0.99));
                let loaded = *s != Strategy::Idle;
                vec![
                    Cell::Text(s.name().to_owned()),
                    Cell::Num(r.pings.len() as f64, 0),
                    Cell::Num(p50, 2),
                    Cell::Num(p99, 2),
                    Cell::Num(ms(r.pings.iter().max().copied()), 1),
                    Cell::Num(ratio(p50, idle_p50), 1),
                    Cell::Num(ratio(p99, idle_p99), 1),
                    Cell::Num(if loaded { r.jobs_per_sec() } else { f64::NAN }, 0),
                    Cell::Num(
                        if loaded {
                            ratio(r.jobs_per_sec(), ideal)
                        } else {
                            f64::NAN
                        },
                        2,
                    ),
                ]
            })
            .collect();
        let expected_pings = (self.duration.as_secs_f64() / self.ping_every.as_secs_f64()) as u64;
        Ok(Report {
            experiment: Self::NAME,
            settings: vec![
                (
                    "duration",
                    humantime::format_duration(self.duration).to_string(),
                ),
                ("workers", self.workers.to_string()),
                ("cpu_threads", self.cpu_threads.to_string()),
                ("job", humantime::format_duration(self.job).to_string()),
                ("iterations", iterations.to_string()),
                ("concurrency", self.concurrency.to_string()),
                (
                    "ping_every",
                    humantime::format_duration(self.ping_every).to_string(),
                ),
            ],
            tables: vec![Table {
                title: "blocking: /ping latency while /work runs CPU jobs, per strategy".to_owned(),
                header: vec![
                    "strategy",
                    "pings",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "p50 x idle",
                    "p99 x idle",
                    "jobs/s",
                    "x ideal",
                ],
                rows,
            }],
            notes: vec![
                format!("pings: answered in the measured window, about {expected_pings} due; latency from when each ping was due (a stalled server is charged for every ping it held up)."),
                format!("jobs/s: /work answers per second; x ideal: over min(cpu_threads, cores) / job = {ideal:.0}/s (inline and spawn_blocking do not use cpu_threads)."),
                "The client (pinger and /work connections) runs on its own thread and shares the machine's cores with the server.".to_owned(),
            ],
        })
    }
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// Runs a job that holds its thread until released, then checks whether
    /// another task on the same one-worker runtime could run meanwhile.
    /// Returns whether the other task finished within `look` while the job
    /// was held.
    fn others_run_while_a_job_holds(strategy: Strategy, look: Duration) -> bool {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let offload = Arc::new(Offload::new(strategy, 1).unwrap());
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let o = offload.clone();
        let job = rt.spawn(async move {
            o.run(move || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                7
            })
            .await
        });
        started_rx.recv().unwrap();
        let (other_tx, other_rx) = mpsc::channel();
        rt.spawn(async move { other_tx.send(()).unwrap() });
        // Offloaded: the worker is free, so the other task runs while the job
        // is still held. Inline: the only worker is inside the job, so the
        // other task cannot run until it is released; `look` only bounds
        // how long we watch.
        let ran = other_rx.recv_timeout(look).is_ok();
        release_tx.send(()).unwrap();
        assert_eq!(rt.block_on(job).unwrap(), 7);
        if !ran {
            // Released, the worker is free again and runs it.
            other_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        ran
    }

    #[test]
    fn inline_blocks_the_worker_and_the_others_do_not() {
        assert!(!others_run_while_a_job_holds(
            Strategy::Inline,
            Duration::from_millis(200)
        ));
        for s in [
            Strategy::SpawnBlocking,
            Strategy::Rayon,
            Strategy::Dedicated,
            Strategy::Semaphore,
        ] {
            assert!(
                others_run_while_a_job_holds(s, Duration::from_secs(10)),
                "{s}"
            );
        }
    }

    #[test]
    fn the_semaphore_caps_jobs_in_flight() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let offload = Arc::new(Offload::new(Strategy::Semaphore, 2).unwrap());
        let running = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (o, running, peak) = (offload.clone(), running.clone(), peak.clone());
                rt.spawn(async move {
                    o.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        let r = spin(200_000);
                        running.fetch_sub(1, Ordering::SeqCst);
                        r
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(rt.block_on(t).unwrap(), spin(200_000));
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!((1..=2).contains(&peak), "peak {peak}");
    }

    #[test]
    fn every_strategy_serves_pings_and_jobs_over_http() {
        let setup = Setup {
            duration: Duration::from_millis(200),
            warmup: Duration::from_millis(20),
            workers: 2,
            cpu_threads: 2,
            iterations: 10_000,
            concurrency: 2,
            ping_every: Duration::from_millis(5),
        };
        for s in [Strategy::Idle].into_iter().chain(Strategy::LOADED) {
            let r = run_strategy(s, setup).unwrap();
            assert!(!r.pings.is_empty(), "{s}: no pings");
            if s == Strategy::Idle {
                assert_eq!(r.jobs, 0);
            } else {
                assert!(r.jobs > 0, "{s}: no jobs");
            }
        }
    }
}
