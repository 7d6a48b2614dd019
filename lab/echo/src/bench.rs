//! The load generator behind `echo-bench` and the `echo` experiment.
//!
//! One run: open `connections` sockets (at most `connect_concurrency`
//! connects in flight, so the server's backlog is not flooded), have every
//! one complete an echo (the warm-up: a connection that never got its first
//! echo back would otherwise be invisible in the figures), read the
//! server's memory, then time `duration` of load on the first `active`
//! connections while the others stay idle, read the server's memory again,
//! and close everything.
//!
//! - **Closed loop** ([`Mode::Closed`]): each active connection sends a
//!   message, waits for its echo, and sends the next. Throughput is what
//!   the server can turn around; latency is per round trip. A slow server
//!   slows the senders too, so latency looks better than users would see.
//! - **Open loop** ([`Mode::Open`]): messages go out on a fixed schedule
//!   whatever the server does (each connection's writer sends on time while
//!   its reader collects echoes in order). Latency is measured from when a
//!   message *should* have been sent, so a stall that delays sends counts
//!   against the server: the "coordinated omission" correction. The
//!   schedule runs on tokio's timer (1 ms resolution); `service` latency,
//!   from the actual send, is kept beside it.
//!
//! The load generator's own costs are kept small, since on one machine it
//! takes CPU from the server it measures: each connection's histograms are
//! made before the timed phase, a closed loop waits on one timer per
//! connection for the whole phase (not one per echo), and its reads tell
//! tokio the socket is empty once the echo is in (see `read_echo`). The
//! CPU time of the server process and of this one over the timed phase is
//! read from `/proc`, so a run reports what an echo costs each side.
//!
//! Every phase has a time limit: connecting, the warm-up
//! ([`LoadConfig::warmup_timeout`]), and the timed phase, after which
//! echoes still missing get [`GRACE`] to arrive and are then counted
//! as [`LoadReport::unfinished`]. A run always ends by itself.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, timeout, timeout_at};

use crate::readiness::read_forgetting;

/// How long echoes still in flight at the end of the timed phase may take.
pub const GRACE: Duration = Duration::from_secs(2);
/// Most connections one run may open.
pub const MAX_CONNECTIONS: usize = 100_000;
/// Longest timed phase.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// How messages are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Send, wait for the echo, send again.
    Closed,
    /// A fixed total rate in messages per second, spread evenly over the
    /// active connections.
    Open {
        /// Messages per second, all active connections together.
        rate: f64,
    },
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The echo server.
    pub addr: SocketAddr,
    /// Connections to open.
    pub connections: usize,
    /// How many of them send during the timed phase (the rest stay idle).
    pub active: usize,
    /// Bytes per message.
    pub payload: usize,
    /// Length of the timed phase.
    pub duration: Duration,
    /// Pacing.
    pub mode: Mode,
    /// The load generator's runtime threads.
    pub threads: usize,
    /// CPUs to pin those threads to, round robin (empty: no pinning).
    pub pin: Vec<usize>,
    /// Longest the connect phase and the warm-up may each take.
    pub warmup_timeout: Duration,
    /// Connects in flight at once.
    pub connect_concurrency: usize,
    /// The server's process, whose `VmRSS` is read before connecting and
    /// after the run (`None`: no memory figures).
    pub server_pid: Option<u32>,
}

impl LoadConfig {
    /// Closed loop, all connections active, 64-byte messages, 5 s, one thread.
    pub fn new(addr: SocketAddr, connections: usize) -> Self {
        LoadConfig {
            addr,
            connections,
            active: connections,
            payload: 64,
            duration: Duration::from_secs(5),
            mode: Mode::Closed,
            threads: 1,
            pin: Vec::new(),
            warmup_timeout: Duration::from_secs(30),
            connect_concurrency: 256,
            server_pid: None,
        }
    }

    fn check(&self) -> Result<(), BenchError> {
        let bad = |s: String| Err(BenchError::Config(s));
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return bad(format!("connections must be 1..={MAX_CONNECTIONS}"));
        }
        if self.active > self.connections {
            return bad("active must not exceed connections".into());
        }
        if self.payload == 0 {
            return bad("payload must be at least 1 byte".into());
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad("duration must be more than 0 and at most an hour".into());
        }
        if self.threads == 0 || self.connect_concurrency == 0 {
            return bad("threads and connect_concurrency must be at least 1".into());
        }
        if let Mode::Open { rate } = self.mode
            && (!rate.is_finite() || rate <= 0.0)
        {
            return bad("open-loop rate must be a positive number".into());
        }
        Ok(())
    }
}

/// Why a run gave no figures.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The settings make no sense.
    #[error("bad load settings: {0}")]
    Config(String),
    /// The runtime could not start.
    #[error("could not start the load generator's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Some connections could not be opened.
    #[error("{failed} of {wanted} connections failed to connect (first error: {first})")]
    Connect {
        /// How many failed.
        failed: usize,
        /// How many were wanted.
        wanted: usize,
        /// The first failure.
        first: String,
    },
    /// Not every connection got its first echo back in time.
    #[error("only {done} of {wanted} connections completed their warm-up echo within {limit:?}")]
    Warmup {
        /// Connections that did.
        done: usize,
        /// Connections that should have.
        wanted: usize,
        /// The time they had.
        limit: Duration,
    },
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Connections open during the run.
    pub connections: usize,
    /// Connections that sent during the timed phase.
    pub active: usize,
    /// Echoes completed inside the timed phase.
    pub messages: u64,
    /// Length of the timed phase.
    pub elapsed: Duration,
    /// Latency of each counted echo in nanoseconds (open loop: from the
    /// scheduled send time).
    pub latency: Histogram<u64>,
    /// Open loop only: latency from the actual send (empty in closed loop).
    pub service: Histogram<u64>,
    /// Echoes that differed from what was sent, and broken connections.
    pub errors: u64,
    /// Echoes still missing [`GRACE`] after the timed phase.
    pub unfinished: u64,
    /// Server RSS before connecting, KiB.
    pub rss_before_kib: Option<u64>,
    /// Server RSS after the warm-up (all connections open, one echo each), KiB.
    pub rss_connected_kib: Option<u64>,
    /// Server RSS after the timed phase, connections still open, KiB.
    pub rss_after_kib: Option<u64>,
    /// How long connecting and the warm-up took.
    pub setup: Duration,
    /// CPU time the server process used during the timed phase (`None`
    /// without a server pid or `/proc`).
    pub server_cpu: Option<Duration>,
    /// CPU time this process (the load generator) used during the timed phase.
    pub client_cpu: Option<Duration>,
}

impl LoadReport {
    /// Echoes per second over the timed phase.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    /// A latency quantile (0.5, 0.99, ...).
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_nanos(self.latency.value_at_quantile(q))
    }

    /// The server's resident memory per open connection, in bytes: RSS
    /// after the run minus RSS before connecting, over the connections.
    /// Kernel socket buffers are not in RSS and not counted.
    pub fn rss_per_connection(&self) -> Option<f64> {
        let before = self.rss_before_kib?;
        let after = self.rss_after_kib?.max(self.rss_connected_kib.unwrap_or(0));
        Some(after.saturating_sub(before) as f64 * 1024.0 / self.connections as f64)
    }

    /// The server's CPU time per echo completed in the timed phase.
    pub fn server_cpu_per_echo(&self) -> Option<Duration> {
        per_echo(self.server_cpu, self.messages)
    }

    /// The load generator's CPU time per echo completed in the timed phase.
    pub fn client_cpu_per_echo(&self) -> Option<Duration> {
        per_echo(self.client_cpu, self.messages)
    }

    /// The figures as a JSON object.
    pub fn json(&self) -> serde_json::Value {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        serde_json::json!({
            "connections": self.connections,
            "active": self.active,
            "messages": self.messages,
            "seconds": self.elapsed.as_secs_f64(),
            "messages_per_second": self.rate(),
            "p50_us": us(self.quantile(0.5)),
            "p99_us": us(self.quantile(0.99)),
            "p999_us": us(self.quantile(0.999)),
            "max_us": us(Duration::from_nanos(self.latency.max())),
            "service_p50_us": (!self.service.is_empty()).then(|| us(Duration::from_nanos(self.service.value_at_quantile(0.5)))),
            "service_p99_us": (!self.service.is_empty()).then(|| us(Duration::from_nanos(self.service.value_at_quantile(0.99)))),
            "errors": self.errors,
            "unfinished": self.unfinished,
            "rss_before_kib": self.rss_before_kib,
            "rss_connected_kib": self.rss_connected_kib,
            "rss_after_kib": self.rss_after_kib,
            "rss_per_connection_bytes": self.rss_per_connection(),
            "setup_seconds": self.setup.as_secs_f64(),
            "server_cpu_seconds": self.server_cpu.map(|d| d.as_secs_f64()),
            "client_cpu_seconds": self.client_cpu.map(|d| d.as_secs_f64()),
            "server_cpu_us_per_echo": self.server_cpu_per_echo().map(us),
            "client_cpu_us_per_echo": self.client_cpu_per_echo().map(us),
        })
    }
}

fn per_echo(cpu: Option<Duration>, echoes: u64) -> Option<Duration> {
    let echoes = u32::try_from(echoes).ok().filter(|&n| n > 0)?;
    Some(cpu? / echoes)
}

/// CPU time of the server (if its pid is known) and of this process.
fn cpu_now(server: Option<u32>) -> (Option<Duration>, Option<Duration>) {
    (
        server.and_then(crate::sys::cpu_time),
        crate::sys::cpu_time(std::process::id()),
    )
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 100 s at 3 significant figures; larger values are clamped.
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    h.saturating_record(ns.max(1_000));
}

/// The message a connection sends: its bytes depend on the connection, so a
/// server that crossed two connections' streams would be caught.
fn message(conn: usize, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(31) ^ conn.wrapping_mul(7)) as u8)
        .collect()
}

/// Runs a load on a runtime of its own. Blocks until done (always bounded).
pub fn run(config: &LoadConfig) -> Result<LoadReport, BenchError> {
    config.check()?;
    let pins = Arc::new(config.pin.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(config.threads)
        .thread_name("echo-bench")
        .enable_all();
    if !pins.is_empty() {
        builder.on_thread_start(move || {
            let i = next.fetch_add(1, Ordering::Relaxed);
            crate::sys::pin_current_thread(pins[i % pins.len()]);
        });
    }
    let runtime = builder.build().map_err(BenchError::Runtime)?;
    let report = runtime.block_on(run_async(config.clone()));
    runtime.shutdown_timeout(Duration::from_secs(1));
    report
}

async fn run_async(config: LoadConfig) -> Result<LoadReport, BenchError> {
    let rss = |pid: Option<u32>| pid.and_then(crate::sys::rss_kib);
    let rss_before_kib = rss(config.server_pid);
    let setup_start = Instant::now();

    // Connect, a bounded number at a time.
    let limit = Arc::new(Semaphore::new(config.connect_concurrency));
    let mut connecting = Vec::with_capacity(config.connections);
    let connect_deadline = Instant::now() + config.warmup_timeout;
    for _ in 0..config.connections {
        let limit = Arc::clone(&limit);
        let addr = config.addr;
        connecting.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.map_err(|e| e.to_string())?;
            let stream = timeout_at(connect_deadline, TcpStream::connect(addr))
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            Ok::<_, String>(stream)
        }));
    }
    let mut streams = Vec::with_capacity(config.connections);
    let mut failed = 0;
    let mut first = None;
    for c in connecting {
        match c.await.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(s) => streams.push(s),
            Err(e) => {
                failed += 1;
                first.get_or_insert(e);
            }
        }
    }
    if failed > 0 {
        return Err(BenchError::Connect {
            failed,
            wanted: config.connections,
            first: first.unwrap_or_default(),
        });
    }

    // Warm-up: every connection completes one echo, then waits for the start.
    let (warm_tx, mut warm_rx) = mpsc::unbounded_channel::<bool>();
    let (start_tx, start_rx) = watch::channel::<Option<Instant>>(None);
    let config = Arc::new(config);
    let mut tasks = Vec::with_capacity(config.connections);
    for (i, stream) in streams.into_iter().enumerate() {
        let warm_tx = warm_tx.clone();
        let start_rx = start_rx.clone();
        let config = Arc::clone(&config);
        tasks.push(tokio::spawn(connection(
            i, stream, config, warm_tx, start_rx,
        )));
    }
    drop(warm_tx);
    let warm_deadline = Instant::now() + config.warmup_timeout;
    let mut warmed = 0;
    while warmed < config.connections {
        match timeout_at(warm_deadline, warm_rx.recv()).await {
            Ok(Some(true)) => warmed += 1,
            Ok(Some(false) | None) | Err(_) => break,
        }
    }
    if warmed < config.connections {
        for t in &tasks {
            t.abort();
        }
        return Err(BenchError::Warmup {
            done: warmed,
            wanted: config.connections,
            limit: config.warmup_timeout,
        });
    }
    let setup = setup_start.elapsed();
    let rss_connected_kib = rss(config.server_pid);

    // The timed phase. A task reads both processes' CPU time as it ends, so
    // the grace period and the tear-down are not counted.
    let cpu_start = cpu_now(config.server_pid);
    let start = Instant::now();
    let _ = start_tx.send(Some(start));
    let (end, server_pid) = (start + config.duration, config.server_pid);
    let cpu_end = tokio::spawn(async move {
        tokio::time::sleep_until(end).await;
        cpu_now(server_pid)
    });
    let mut report = LoadReport {
        connections: config.connections,
        active: config.active,
        messages: 0,
        elapsed: config.duration,
        latency: histogram(),
        service: histogram(),
        errors: 0,
        unfinished: 0,
        rss_before_kib,
        rss_connected_kib,
        rss_after_kib: None,
        setup,
        server_cpu: None,
        client_cpu: None,
    };
    // Active connections return after the timed phase plus grace; idle ones
    // return their stream at once and are kept open until the memory reading.
    let mut keep_open = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Outcome::Idle(stream)) => keep_open.push(stream),
            Ok(Outcome::Done(part)) => {
                report.messages += part.messages;
                report.errors += part.errors;
                report.unfinished += part.unfinished;
                let _ = report.latency.add(&part.latency);
                if let Some(service) = &part.service {
                    let _ = report.service.add(service);
                }
                keep_open.push(part.stream);
            }
            Err(_) => report.errors += 1,
        }
    }
    if let Ok(end) = cpu_end.await {
        let spent = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
        report.server_cpu = spent(cpu_start.0, end.0);
        report.client_cpu = spent(cpu_start.1, end.1);
    }
    report.rss_after_kib = rss(config.server_pid);
    drop(keep_open);
    Ok(report)
}

/// What one connection's task hands back.
enum Outcome {
    /// An idle connection (its stream, kept open).
    Idle(Option<TcpStream>),
    /// An active connection's figures.
    Done(Box<Part>),
}

struct Part {
    messages: u64,
    errors: u64,
    unfinished: u64,
    latency: Histogram<u64>,
    /// Open loop only.
    service: Option<Histogram<u64>>,
    stream: Option<TcpStream>,
}

impl Part {
    /// An empty part. Made before the timed phase starts: a histogram is
    /// about 150 KiB to allocate and zero, which at 1,000 connections
    /// inside the timed window cost the load generator more than the
    /// echoes it was timing.
    fn new(mode: Mode) -> Part {
        Part {
            messages: 0,
            errors: 0,
            unfinished: 0,
            latency: histogram(),
            service: matches!(mode, Mode::Open { .. }).then(histogram),
            stream: None,
        }
    }
}

/// Sends `msg` and reads its echo; true if the echo was byte for byte the same.
async fn echo_once(stream: &mut TcpStream, msg: &[u8], back: &mut [u8]) -> io::Result<bool> {
    stream.write_all(msg).await?;
    read_echo(stream, back).await?;
    Ok(back == msg)
}

/// Fills `buf` from the socket, as `read_exact` would, but tells tokio
/// after each read that the socket is empty (`crate::readiness`): with one
/// message in flight per connection (the warm-up and the closed loop) the
/// socket holds nothing beyond the echo awaited, so after any read, short
/// or the one that completes the echo, it is empty. Without this every
/// echo after the first would start with a failed `recvfrom`: the last
/// read filled the buffer, readiness was kept, and the next message has
/// only just been sent. A server that sent more than it was sent would
/// leave bytes nobody is told of, and the connection's next echo would
/// time out and be counted unfinished: an error either way.
async fn read_echo(stream: &TcpStream, buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_forgetting(stream, &mut buf[filled..], |_| true).await? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    Ok(())
}

async fn connection(
    i: usize,
    mut stream: TcpStream,
    config: Arc<LoadConfig>,
    warm_tx: mpsc::UnboundedSender<bool>,
    mut start_rx: watch::Receiver<Option<Instant>>,
) -> Outcome {
    let msg = message(i, config.payload);
    let mut back = vec![0u8; config.payload];
    let warm = matches!(
        timeout(
            config.warmup_timeout,
            echo_once(&mut stream, &msg, &mut back)
        )
        .await,
        Ok(Ok(true))
    );
    let _ = warm_tx.send(warm);
    drop(warm_tx);
    if !warm {
        return Outcome::Idle(None);
    }
    let part = (i < config.active).then(|| Part::new(config.mode));
    let start = match start_rx.wait_for(Option::is_some).await {
        Ok(s) => s.unwrap_or_else(Instant::now),
        Err(_) => return Outcome::Idle(None),
    };
    let Some(part) = part else {
        return Outcome::Idle(Some(stream));
    };
    let end = start + config.duration;
    let part = match config.mode {
        Mode::Closed => closed_loop(stream, &msg, back, end, part).await,
        Mode::Open { rate } => {
            let per_conn = rate / config.active as f64;
            let interval = Duration::from_secs_f64(1.0 / per_conn);
            // Spread the connections' first sends over one interval.
            let phase = interval.mul_f64(i as f64 / config.active as f64);
            open_loop(stream, msg, start + phase, interval, end, part).await
        }
    };
    Outcome::Done(Box::new(part))
}

async fn closed_loop(
    mut stream: TcpStream,
    msg: &[u8],
    mut back: Vec<u8>,
    end: Instant,
    mut part: Part,
) -> Part {
    // One timer for the whole phase: `timeout_at` around each echo would
    // add and remove a timer-wheel entry (and take its lock) per echo.
    let deadline = tokio::time::sleep_until(end + GRACE);
    tokio::pin!(deadline);
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let echoed = tokio::select! {
            biased;
            echoed = echo_once(&mut stream, msg, &mut back) => Ok(echoed),
            () = &mut deadline => Err(()),
        };
        match echoed {
            Ok(Ok(same)) => {
                let done = Instant::now();
                if !same {
                    part.errors += 1;
                }
                if done <= end {
                    part.messages += 1;
                    record(&mut part.latency, done - sent);
                }
            }
            Ok(Err(_)) => {
                part.errors += 1;
                return part;
            }
            Err(_) => {
                part.unfinished += 1;
                return part;
            }
        }
    }
    part.stream = Some(stream);
    part
}

async fn open_loop(
    stream: TcpStream,
    msg: Vec<u8>,
    first: Instant,
    interval: Duration,
    end: Instant,
    mut part: Part,
) -> Part {
    let (mut rd, mut wr) = stream.into_split();
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<(Instant, Instant)>();
    let len = msg.len();
    let expected = msg.clone();
    let writer = tokio::spawn(async move {
        let mut k: u32 = 0;
        loop {
            let due = first + interval * k;
            if due >= end {
                break;
            }
            tokio::time::sleep_until(due).await;
            // Queue the times before writing, so the reader never waits
            // for an echo it does not know about.
            if sent_tx.send((due, Instant::now())).is_err() {
                break;
            }
            if wr.write_all(&msg).await.is_err() {
                break;
            }
            k = k.saturating_add(1);
        }
        wr
    });
    let mut back = vec![0u8; len];
    while let Some((due, sent)) = sent_rx.recv().await {
        match timeout_at(end + GRACE, rd.read_exact(&mut back)).await {
            Ok(Ok(_)) => {
                let done = Instant::now();
                if back != expected {
                    part.errors += 1;
                }
                if done <= end {
                    part.messages += 1;
                    record(&mut part.latency, done - due);
                    if let Some(service) = &mut part.service {
                        record(service, done - sent);
                    }
                }
            }
            Ok(Err(_)) => {
                part.errors += 1;
                break;
            }
            Err(_) => {
                part.unfinished += 1 + sent_rx.len() as u64;
                break;
            }
        }
    }
    writer.abort();
    if let Ok(wr) = writer.await
        && let Ok(stream) = rd.reunite(wr)
    {
        part.stream = Some(stream);
    }
    part
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_differ_between_connections() {
        assert_eq!(message(1, 64).len(), 64);
        assert_ne!(message(1, 64), message(2, 64));
    }

    #[test]
    fn bad_settings_are_refused() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut c = LoadConfig::new(addr, 10);
        c.active = 11;
        assert!(matches!(run(&c), Err(BenchError::Config(_))));
        let mut c = LoadConfig::new(addr, 10);
        c.mode = Mode::Open { rate: 0.0 };
        assert!(matches!(run(&c), Err(BenchError::Config(_))));
    }

    #[test]
    fn a_missing_server_fails_the_connect_phase() {
        // Bind then drop: the port is (almost certainly) closed now.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut c = LoadConfig::new(addr, 3);
        c.warmup_timeout = Duration::from_secs(5);
        match run(&c) {
            Err(BenchError::Connect { failed, wanted, .. }) => {
                assert_eq!((failed, wanted), (3, 3));
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
    }
}
