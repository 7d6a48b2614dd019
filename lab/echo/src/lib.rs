//! Four TCP echo servers and a load generator: the lab's second stage,
//! "a TCP echo server from sync to async" (see `docs/roadmap.md`).
//!
//! The same server is written four ways, behind one [`Config`]
//! (connection limit, idle timeout, drain deadline, buffer size, workers),
//! one [`Shutdown`] signal and one [`Report`]:
//!
//! - [`threaded`]: a thread per connection on `std::net`, blocking reads;
//! - [`pooled`]: a fixed [`sluice_taskpool`] pool, woken by a mio reactor;
//! - [`tokio_server`]: a tokio task per connection;
//! - [`minirt_server`]: a task per connection on `sluice-minirt`, the
//!   lab's hand-written single-threaded runtime.
//!
//! ```no_run
//! use sluice_echo::{Config, Kind, Running};
//!
//! let server = Running::start(Kind::Tokio, "127.0.0.1:0".parse().unwrap(), Config::default())?;
//! println!("echoing on {}", server.addr());
//! let report = server.stop()?; // drains, then reports
//! assert_eq!(report.forced, 0);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`bench`](mod@bench) is the load generator behind the `echo-bench` binary and the
//! `echo` experiment of `sluice-lab`: closed and open loop, warm-up,
//! latency histograms, CPU pinning, server memory from `/proc`.
//!
//! # Modules
//!
//! - `config`: [`Config`], [`Shutdown`], [`Report`], and the bookkeeping
//!   behind them (counters, connection slots, the threaded server's registry).
//! - [`threaded`], [`pooled`], [`tokio_server`], [`minirt_server`]: the servers.
//! - [`bench`](mod@bench): the load generator.
//! - `readiness`: the socket read both the tokio server and the load
//!   generator use, which tells tokio when it has emptied the socket.
//! - [`sys`]: RSS and CPU time from `/proc`, the open-files limit, CPU pinning.

mod config;

pub mod bench;
pub mod minirt_server;
pub mod pooled;
mod readiness;
pub mod sys;
pub mod threaded;
pub mod tokio_server;

pub use config::{Config, Report, Shutdown};

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::str::FromStr;
use std::thread::JoinHandle;

/// The four servers, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// [`threaded`]: a thread per connection.
    Threaded,
    /// [`pooled`]: a thread pool behind a mio reactor.
    Pooled,
    /// [`tokio_server`]: a tokio task per connection.
    Tokio,
    /// [`minirt_server`]: a minirt task per connection, on one thread.
    Minirt,
}

impl Kind {
    /// All four, in the order the experiment shows them.
    pub const ALL: [Kind; 4] = [Kind::Threaded, Kind::Pooled, Kind::Tokio, Kind::Minirt];

    /// The lowercase name (`threaded`, `pooled`, `tokio`, `minirt`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Threaded => "threaded",
            Kind::Pooled => "pooled",
            Kind::Tokio => "tokio",
            Kind::Minirt => "minirt",
        }
    }

    /// Serves `listener` with this server until `shutdown` triggers, then
    /// drains. Blocks the calling thread.
    pub fn run(
        self,
        listener: TcpListener,
        config: &Config,
        shutdown: &Shutdown,
    ) -> io::Result<Report> {
        match self {
            Kind::Threaded => threaded::run(listener, config, shutdown),
            Kind::Pooled => pooled::run(listener, config, shutdown),
            Kind::Tokio => tokio_server::run(listener, config, shutdown),
            Kind::Minirt => minirt_server::run(listener, config, shutdown),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A server name that is none of `threaded`, `pooled`, `tokio`, `minirt`.
#[derive(Debug, thiserror::Error)]
#[error("unknown echo server {0:?} (expected threaded, pooled, tokio or minirt)")]
pub struct UnknownKind(String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// Binds a listener with `SO_REUSEADDR` and a listen backlog of `backlog`
/// (std's `bind` uses 128, too few when thousands of clients connect at
/// once; the kernel caps it at `net.core.somaxconn`).
pub fn bind(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// A server running on its own thread: its address, and the way to stop it.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    shutdown: Shutdown,
    thread: JoinHandle<io::Result<Report>>,
}

impl Running {
    /// Binds `addr` (port 0 picks a free one) with a backlog of 4,096 and
    /// starts `kind` on a new thread.
    pub fn start(kind: Kind, addr: SocketAddr, config: Config) -> io::Result<Running> {
        config.check()?;
        let listener = bind(addr, 4096)?;
        let addr = listener.local_addr()?;
        let shutdown = Shutdown::new();
        let signal = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name(format!("echo-{kind}"))
            .spawn(move || kind.run(listener, &config, &signal))?;
        Ok(Running {
            addr,
            shutdown,
            thread,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's shutdown signal (to trigger it from elsewhere).
    pub fn shutdown_signal(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Triggers the shutdown, waits for the drain, returns the report.
    pub fn stop(self) -> io::Result<Report> {
        self.shutdown.trigger();
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the echo server's thread panicked")))
    }
}
