//! Experiment `echo`: the four echo servers of `sluice-echo` (thread per
//! connection, a taskpool behind a mio reactor, tokio, and minirt, the
//! lab's hand-written runtime) under the same load at several connection
//! counts.
//!
//! Each point starts a fresh server in a child process (this binary again,
//! with the hidden `--serve` option), so its memory can be read from
//! `/proc/PID/status` before and after connecting, and loads it with
//! `sluice_echo::bench` from this process: connect, one echo per connection
//! (warm-up), `--duration` of closed-loop echoes (or open loop with
//! `--rate`), then close. Servers are interleaved at each connection count.
//! The child ends when its standard input closes, so it cannot outlive the
//! experiment.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use sluice_echo::bench::{self, LoadConfig, LoadReport, Mode};
use sluice_echo::{Config, Kind, sys};

use super::Experiment;
use crate::report::{Cell, Report, Table};

/// Open files the experiment keeps besides the connections.
const SPARE_FDS: u64 = 256;

/// Options of `sluice-lab run echo`.
#[derive(Debug, Args)]
pub(crate) struct Echo {
    /// Connection counts to measure (comma-separated)
    #[arg(long, value_delimiter = ',', default_values_t = [10usize, 100, 1000, 5000])]
    connections: Vec<usize>,
    /// Timed phase of each point (at 5,000 connections a closed loop needs
    /// some seconds to settle after every connection sends at once)
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Servers to run (comma-separated: threaded, pooled, tokio, minirt)
    #[arg(long, value_delimiter = ',', default_values_t = Kind::ALL)]
    servers: Vec<Kind>,
    /// Bytes per message
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Read buffer per connection in every server, bytes
    #[arg(long, default_value_t = 4096)]
    buffer: usize,
    /// Worker threads of the pooled and tokio servers (minirt has one
    /// thread); default: one per CPU the server may use, so 2, or 1 with --pin
    #[arg(long)]
    workers: Option<usize>,
    /// Threads of the load generator
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Open loop at this many messages per second in total (closed loop without it)
    #[arg(long)]
    rate: Option<f64>,
    /// Pin the server to CPU 0 and the load generator to CPU 1 (needs 2 CPUs)
    #[arg(long)]
    pin: bool,
    /// (internal) run this server in the child process and print its port
    #[arg(long, hide = true)]
    serve: Option<Kind>,
    /// (internal) the child's CPU
    #[arg(long, hide = true)]
    serve_pin: Option<usize>,
}

impl Experiment for Echo {
    const NAME: &'static str = "echo";
    const ABOUT: &'static str = "echo servers (thread per connection, taskpool + mio, tokio, minirt) at 10-5,000 connections: messages/s, p50/p99, RSS per connection, CPU per echo";

    fn run(self) -> Result<Report> {
        if let Some(kind) = self.serve {
            self.serve_child(kind)?;
            std::process::exit(0);
        }
        ensure!(
            !self.connections.is_empty() && !self.servers.is_empty(),
            "name at least one connection count and one server"
        );
        ensure!(
            self.connections.iter().all(|&n| n > 0),
            "connection counts must be at least 1"
        );
        if self.pin {
            ensure!(sys::cpus() >= 2, "--pin needs two CPUs");
        }

        // The server keeps two descriptors per connection (the socket and
        // the duplicate a drain uses), the load generator one; the child
        // inherits the raised limit.
        let most = self.connections.iter().copied().max().unwrap_or(0) as u64;
        let limit = sys::raise_nofile(2 * most + SPARE_FDS)?;
        let fit = usize::try_from(limit.soft.saturating_sub(SPARE_FDS) / 2).unwrap_or(usize::MAX);
        let mut notes = Vec::new();
        if limit.capped() {
            notes.push(format!(
                "open-files limit capped at {} (wanted {}): connection counts above {fit} ran at {fit}",
                limit.soft, limit.wanted
            ));
        } else {
            notes.push(format!(
                "open-files limit raised to {} (RLIMIT_NOFILE, inherited by the server)",
                limit.soft
            ));
        }

        let mut rows = Vec::new();
        for &asked in &self.connections {
            let n = asked.min(fit);
            let mut results: Vec<(Kind, Result<LoadReport>)> = Vec::new();
            for &kind in &self.servers {
                let result = self.point(kind, n);
                if let Err(e) = &result {
                    notes.push(format!("{kind} at {n} connections: {e:#}"));
                }
                results.push((kind, result));
            }
            let base = results
                .iter()
                .find(|(k, _)| *k == Kind::Threaded)
                .and_then(|(_, r)| r.as_ref().ok())
                .map(|r| Base {
                    rate: r.rate(),
                    memory: r.rss_per_connection(),
                    cpu: r.server_cpu_per_echo().map(|d| d.as_secs_f64()),
                });
            for (kind, result) in &results {
                rows.push(row(n, *kind, result.as_ref().ok(), base));
            }
        }
        notes.extend([
            "msg/s: echoes completed in the timed phase per second; closed loop unless --rate (each connection sends, waits for the echo, sends again).".to_owned(),
            "p50/p99: round-trip latency in µs (open loop: from the scheduled send, so stalls count).".to_owned(),
            "KiB/conn: server VmRSS after the run minus before connecting, over the connections; kernel socket buffers are not in RSS.".to_owned(),
            "x threaded: throughput ratio and memory ratio to the thread-per-connection server at the same count.".to_owned(),
            "CPU µs/echo: CPU time (user + system, /proc/PID/stat, 10 ms steps) over the timed phase per echo, of the server process and of the load generator; CPU x threaded is the server's against thread per connection's (below 1 is cheaper).".to_owned(),
            format!("{} CPUs; server and load generator share them{}.", sys::cpus(), if self.pin { " (server pinned to CPU 0, load generator to CPU 1)" } else { "" }),
        ]);
        Ok(Report {
            experiment: Self::NAME,
            settings: vec![
                (
                    "duration",
                    humantime::format_duration(self.duration).to_string(),
                ),
                ("payload", self.payload.to_string()),
                ("buffer", self.buffer.to_string()),
                ("workers", self.workers().to_string()),
                ("client_threads", self.client_threads.to_string()),
                (
                    "mode",
                    self.rate
                        .map_or("closed".to_owned(), |r| format!("open {r}/s")),
                ),
                ("pin", self.pin.to_string()),
            ],
            tables: vec![Table {
                title: "echo: each server at each connection count".to_owned(),
                header: vec![
                    "connections",
                    "server",
                    "msg/s",
                    "x threaded",
                    "p50 µs",
                    "p99 µs",
                    "KiB/conn",
                    "mem x threaded",
                    "server CPU µs/echo",
                    "CPU x threaded",
                    "client CPU µs/echo",
                    "errors",
                ],
                rows,
            }],
            notes,
        })
    }
}

/// The thread-per-connection figures the other servers are compared with.
#[derive(Debug, Clone, Copy)]
struct Base {
    rate: f64,
    memory: Option<f64>,
    /// Server CPU seconds per echo.
    cpu: Option<f64>,
}

fn row(n: usize, kind: Kind, r: Option<&LoadReport>, base: Option<Base>) -> Vec<Cell> {
    let num = |v: Option<f64>, d| Cell::Num(v.unwrap_or(f64::NAN), d);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let rate = r.map(LoadReport::rate);
    let mem = r.and_then(LoadReport::rss_per_connection);
    let cpu = r
        .and_then(LoadReport::server_cpu_per_echo)
        .map(|d| d.as_secs_f64());
    let client_cpu = r
        .and_then(LoadReport::client_cpu_per_echo)
        .map(|d| d.as_secs_f64());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    vec![
        Cell::Num(n as f64, 0),
        Cell::Text(kind.name().to_owned()),
        num(rate, 0),
        num(ratio(rate, base.map(|b| b.rate)), 2),
        num(r.map(|r| us(r.quantile(0.5))), 1),
        num(r.map(|r| us(r.quantile(0.99))), 1),
        num(mem.map(|b| b / 1024.0), 1),
        num(ratio(mem, base.and_then(|b| b.memory)), 2),
        num(cpu.map(|s| s * 1e6), 2),
        num(ratio(cpu, base.and_then(|b| b.cpu)), 2),
        num(client_cpu.map(|s| s * 1e6), 2),
        num(r.map(|r| (r.errors + r.unfinished) as f64), 0),
    ]
}

impl Echo {
    /// Workers of the pooled and tokio servers: as asked, else one per CPU
    /// the server runs on (more workers than CPUs only take turns).
    fn workers(&self) -> usize {
        self.workers
            .unwrap_or(if self.pin { 1 } else { sys::cpus() })
    }

    /// One server at one connection count.
    fn point(&self, kind: Kind, n: usize) -> Result<LoadReport> {
        let mut child = self.spawn_server(kind, n)?;
        let result = (|| {
            let stdout = child.stdout.take().context("the server's stdout")?;
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .context("reading the server's port")?;
            let port: u16 = line
                .trim()
                .parse()
                .with_context(|| format!("the server printed {line:?}, not a port"))?;
            let mut load = LoadConfig::new(SocketAddr::from(([127, 0, 0, 1], port)), n);
            load.payload = self.payload;
            load.duration = self.duration;
            load.threads = self.client_threads;
            load.mode = self.rate.map_or(Mode::Closed, |rate| Mode::Open { rate });
            load.server_pid = Some(child.id());
            load.warmup_timeout = Duration::from_secs(30);
            if self.pin {
                load.pin = vec![1];
            }
            Ok(bench::run(&load)?)
        })();
        stop(&mut child);
        result
    }

    fn spawn_server(&self, kind: Kind, n: usize) -> Result<Child> {
        let exe = std::env::current_exe().context("finding this binary to start the server")?;
        let mut cmd = Command::new(exe);
        cmd.args(["run", "echo", "--serve", kind.name()])
            .args(["--connections", &n.to_string()])
            .args(["--buffer", &self.buffer.to_string()])
            .args(["--workers", &self.workers().to_string()]);
        if self.pin {
            cmd.args(["--serve-pin", "0"]);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the server process")
    }

    /// The child's side: serve until standard input closes, then drain.
    fn serve_child(&self, kind: Kind) -> Result<()> {
        if let Some(core) = self.serve_pin
            && !sys::pin_current_thread(core)
        {
            bail!("could not pin the server to CPU {core}");
        }
        let n = self.connections.first().copied().unwrap_or(1);
        let config = Config {
            // Room for a load generator that reconnects; the point is not the limit.
            max_connections: n + 64,
            idle_timeout: None,
            // 5 s: the threaded server's idle threads then wake once a second.
            drain_deadline: Duration::from_secs(5),
            buffer_size: self.buffer,
            workers: self.workers(),
        };
        let listener = sluice_echo::bind(SocketAddr::from(([127, 0, 0, 1], 0)), 4096)?;
        let shutdown = sluice_echo::Shutdown::new();
        let signal = shutdown.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            signal.trigger();
        });
        let mut out = std::io::stdout();
        writeln!(out, "{}", listener.local_addr()?.port())?;
        out.flush()?;
        kind.run(listener, &config, &shutdown)?;
        Ok(())
    }
}

/// Closes the child's standard input (it drains and exits) and waits for it,
/// killing it if it takes more than 10 s.
fn stop(child: &mut Child) {
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_against_threaded_and_missing_figures_are_blank() {
        let base = Base {
            rate: 100.0,
            memory: Some(2048.0),
            cpu: Some(10e-6),
        };
        let cells = row(10, Kind::Tokio, None, Some(base));
        assert!(matches!(cells[2], Cell::Num(v, _) if v.is_nan()));
        assert!(matches!(cells[9], Cell::Num(v, _) if v.is_nan()));
        assert!(matches!(&cells[1], Cell::Text(s) if s == "tokio"));
    }
}
