//! `echo-bench`: load an echo server, or run one of the lab's four.
//!
//! ```text
//! echo-bench serve --server tokio --addr 127.0.0.1:7007 --for 10m
//! echo-bench load --addr 127.0.0.1:7007 --connections 1000 --duration 5s --server-pid PID
//! echo-bench load --addr 127.0.0.1:7007 --connections 100 --rate 20000 --json
//! ```
//!
//! `load` always ends by itself: connecting and the warm-up have a time
//! limit, and so does the timed phase (`--duration`, plus a grace period
//! for echoes in flight). `serve` ends after `--for`, or at end of standard
//! input with `--until-eof`, and then drains.

use std::io::Read as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use sluice_echo::bench::{self, LoadConfig, Mode};
use sluice_echo::{Config, Kind, Running, sys};

#[derive(Debug, Parser)]
#[command(
    name = "echo-bench",
    about = "Load generator for TCP echo servers, and the lab's four servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load a running echo server and print throughput, latency and memory
    Load(Load),
    /// Run one of the lab's echo servers
    Serve(Serve),
}

#[derive(Debug, Args)]
struct Load {
    /// The server's address
    #[arg(long)]
    addr: SocketAddr,
    /// Connections to open
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Connections that send during the timed phase (default: all)
    #[arg(long)]
    active: Option<usize>,
    /// Bytes per message
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Length of the timed phase
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Open loop at this many messages per second (all connections together); closed loop without it
    #[arg(long)]
    rate: Option<f64>,
    /// Load generator threads
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Pin the load generator's threads to these CPUs (comma-separated)
    #[arg(long, value_delimiter = ',')]
    pin: Vec<usize>,
    /// Time limit of the connect phase and of the warm-up, each
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    warmup_timeout: Duration,
    /// The server's process id, to read its memory from /proc/PID/status
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct Serve {
    /// threaded, pooled, tokio or minirt
    #[arg(long)]
    server: Kind,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:7007")]
    addr: SocketAddr,
    /// Most connections open at once
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Close connections quiet for this long ("0s": never)
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Time open connections get to finish after shutdown
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// Read buffer per connection, bytes
    #[arg(long, default_value_t = 4096)]
    buffer: usize,
    /// Pool or runtime worker threads (pooled, tokio)
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Pin the whole server to this CPU
    #[arg(long)]
    pin: Option<usize>,
    /// Stop after this long
    #[arg(long = "for", default_value = "10m", value_parser = humantime::parse_duration)]
    run_for: Duration,
    /// Also stop at end of standard input
    #[arg(long)]
    until_eof: bool,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Load(args) => load(args),
        Command::Serve(args) => serve(args),
    }
}

fn load(args: Load) -> Result<()> {
    let limit = sys::raise_nofile(args.connections as u64 + 64)?;
    if limit.capped() {
        eprintln!(
            "note: open-files limit capped at {} (wanted {}); connections may fail",
            limit.soft, limit.wanted
        );
    }
    let mut config = LoadConfig::new(args.addr, args.connections);
    config.active = args.active.unwrap_or(args.connections);
    config.payload = args.payload;
    config.duration = args.duration;
    config.mode = args.rate.map_or(Mode::Closed, |rate| Mode::Open { rate });
    config.threads = args.threads;
    config.pin = args.pin;
    config.warmup_timeout = args.warmup_timeout;
    config.server_pid = args.server_pid;
    let report = bench::run(&config)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
        return Ok(());
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{} connections ({} active), {:.1} s: {:.0} echoes/s",
        report.connections,
        report.active,
        report.elapsed.as_secs_f64(),
        report.rate()
    );
    println!(
        "latency p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs{}",
        us(report.quantile(0.5)),
        us(report.quantile(0.99)),
        us(report.quantile(0.999)),
        us(Duration::from_nanos(report.latency.max())),
        if config.mode == Mode::Closed {
            ""
        } else {
            " (from the scheduled send)"
        }
    );
    if let Some(per) = report.rss_per_connection() {
        println!(
            "server RSS {} KiB before, {} KiB after: {:.1} KiB per connection",
            report.rss_before_kib.unwrap_or(0),
            report.rss_after_kib.unwrap_or(0),
            per / 1024.0
        );
    }
    let per_echo = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.2} µs", us(d)));
    println!(
        "CPU per echo: server {}, load generator {}",
        per_echo(report.server_cpu_per_echo()),
        per_echo(report.client_cpu_per_echo())
    );
    if report.errors + report.unfinished > 0 {
        println!("errors {}, unfinished {}", report.errors, report.unfinished);
    }
    Ok(())
}

fn serve(args: Serve) -> Result<()> {
    if let Some(core) = args.pin
        && !sys::pin_current_thread(core)
    {
        bail!("could not pin to CPU {core}");
    }
    let limit = sys::raise_nofile(2 * args.max_connections as u64 + 64)?;
    if limit.capped() {
        eprintln!(
            "note: open-files limit capped at {} (wanted {})",
            limit.soft, limit.wanted
        );
    }
    let config = Config {
        max_connections: args.max_connections,
        idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
        drain_deadline: args.drain,
        buffer_size: args.buffer,
        workers: args.workers,
    };
    let server = Running::start(args.server, args.addr, config)
        .with_context(|| format!("starting the {} server on {}", args.server, args.addr))?;
    eprintln!(
        "{} echo server on {} (pid {})",
        args.server,
        server.addr(),
        std::process::id()
    );
    if args.until_eof {
        let signal = server.shutdown_signal().clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            signal.trigger();
        });
    }
    server.shutdown_signal().wait_timeout(args.run_for);
    let report = server.stop()?;
    eprintln!("{report:?}");
    Ok(())
}
