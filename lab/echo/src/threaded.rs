//! Thread per connection on `std::net`: the server everyone writes first.
//!
//! The accept loop hands each connection a new thread that loops on a
//! blocking `read` and `write_all`. The kernel does the scheduling: a thread
//! sleeps in `read` until its client sends, and each echo costs a wake-up
//! and a context switch. The code is the simplest of the three; its price is
//! a thread (a stack, a kernel task, a scheduler entry) per connection.
//!
//! - **Limit**: checked before spawning; an excess connection is dropped at
//!   once, so its client reads end of stream.
//! - **Idle timeout and shutdown**: a thread blocked in `read` hears of
//!   neither by itself, so reads wait at most a *tick* (`SO_RCVTIMEO`, set
//!   once per connection; a quarter of the drain deadline or half the idle
//!   timeout, at most 1 s). On each timeout the thread checks the shutdown
//!   flag and how long its client has been quiet. That is the price of
//!   blocking I/O: every idle connection wakes once per tick.
//! - **Drain**: the accept loop stops. A thread that sees the flag (after
//!   an echo, or at a tick) reads what its socket still holds without
//!   blocking, echoes it and closes. At the deadline the server shuts both
//!   sides of every connection still open (through duplicate handles in
//!   the registry), which fails their pending reads and writes.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::config::{
    Config, Counters, Registered, Registry, Report, Shutdown, Slot, accept_error_is_transient,
};

/// How long the accept loop sleeps when no connection is waiting (a
/// shutdown wakes it sooner).
const ACCEPT_POLL: Duration = Duration::from_millis(2);

/// Serves `listener` until `shutdown` triggers, then drains and returns
/// what happened. Blocks the calling thread.
pub fn run(listener: TcpListener, config: &Config, shutdown: &Shutdown) -> io::Result<Report> {
    config.check()?;
    listener.set_nonblocking(true)?;
    let counters = Arc::new(Counters::default());
    let registry = Arc::new(Registry::default());
    while !shutdown.is_triggered() {
        match listener.accept() {
            Ok((stream, _)) => {
                if counters.admit(config.max_connections) {
                    start(stream, config, shutdown, &registry, &counters);
                }
            }
            Err(e) if accept_error_is_transient(&e) => {
                shutdown.wait_timeout(ACCEPT_POLL);
            }
            Err(e) => return Err(e),
        }
    }
    drop(listener);
    let forced = if registry.wait_empty(Instant::now() + config.drain_deadline) {
        0
    } else {
        registry.shutdown_all()
    };
    // Forced connections fail at once; wait for their threads to notice.
    registry.wait_empty(Instant::now() + Duration::from_secs(5));
    // Counted by the threads themselves: a thread may see the flag at a
    // tick and close before this thread could have counted the registry.
    let open = counters.ended_in_shutdown.load(Ordering::SeqCst);
    Ok(counters.report(usize::try_from(open).unwrap_or(usize::MAX), forced))
}

/// How long a blocked read waits before its thread looks at the clock and
/// the shutdown flag.
fn tick(config: &Config) -> Duration {
    let mut tick = (config.drain_deadline / 4).min(Duration::from_secs(1));
    if let Some(idle) = config.idle_timeout {
        tick = tick.min(idle / 2);
    }
    tick.max(Duration::from_millis(5))
}

/// Registers the connection and starts its thread. The caller admitted
/// it; from here the slot is given back when the guard drops, whether the
/// thread ends or never starts.
fn start(
    stream: TcpStream,
    config: &Config,
    shutdown: &Shutdown,
    registry: &Arc<Registry>,
    counters: &Arc<Counters>,
) {
    let Ok(guard) = registry.add(&stream, Slot::new(counters)) else {
        return;
    };
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.set_read_timeout(Some(tick(config))));
    if setup.is_err() {
        return;
    }
    let conn = Conn {
        stream,
        buf: vec![0u8; config.buffer_size],
        idle: config.idle_timeout,
        shutdown: shutdown.clone(),
        counters: Arc::clone(counters),
        _guard: guard,
    };
    // If the thread cannot start, the closure and the guard in it drop here.
    let _ = std::thread::Builder::new()
        .name("echo-conn".to_owned())
        .spawn(move || conn.serve());
}

/// What a connection's thread owns.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    idle: Option<Duration>,
    shutdown: Shutdown,
    counters: Arc<Counters>,
    _guard: Registered,
}

impl Conn {
    /// Serves the connection, then counts it if the shutdown had begun.
    fn serve(mut self) {
        self.serve_until_done();
        if self.shutdown.is_triggered() {
            self.counters
                .ended_in_shutdown
                .fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Read, echo, repeat, until end of stream, an error, the idle timeout
    /// or the shutdown.
    fn serve_until_done(&mut self) {
        let mut last_read = Instant::now();
        loop {
            if self.shutdown.is_triggered() {
                self.drain();
                return;
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => return,
                Ok(n) => {
                    if self.stream.write_all(&self.buf[..n]).is_err() {
                        return;
                    }
                    last_read = Instant::now();
                }
                // A tick passed with nothing to read.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if self.idle.is_some_and(|idle| last_read.elapsed() >= idle) {
                        self.counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Echoes what the socket holds now, then returns (and so closes).
    fn drain(&mut self) {
        loop {
            if self.stream.set_nonblocking(true).is_err() {
                return;
            }
            let n = match self.stream.read(&mut self.buf) {
                Ok(0) | Err(_) => return, // end of stream, error, or nothing left (WouldBlock)
                Ok(n) => n,
            };
            if self.stream.set_nonblocking(false).is_err()
                || self.stream.write_all(&self.buf[..n]).is_err()
            {
                return;
            }
        }
    }
}
