//! Connections served by a fixed `sluice-taskpool`, woken by a mio reactor.
//!
//! A pool of N threads cannot give each of thousands of connections a
//! blocking `read`: with a job per connection for its whole life (as the
//! Rust Book's web server has, for connections that carry one request), the
//! first N hold every worker and the rest wait in the queue until those
//! clients hang up. So the sockets are non-blocking, and one
//! thread (the *reactor*) waits for all of them at once in `epoll` through
//! mio. When a socket becomes readable the reactor queues a job on the pool;
//! the job reads and echoes until the socket has nothing more, and returns
//! the worker. That is the shape of tokio's runtime written out by hand,
//! with a thread pool where tokio has tasks.
//!
//! - **One job per connection at a time.** A connection has two flags:
//!   `scheduled` (a job is queued or running) and `notified` (an event came).
//!   The reactor sets `notified` and queues a job unless one is `scheduled`;
//!   the job clears `notified` before reading, and after its last read
//!   clears `scheduled` and looks at `notified` again. With sequentially
//!   consistent operations at least one side sees the other's flag, so an
//!   event that lands while a job finishes is never lost.
//! - **Short reads end the job.** mio's registrations are edge-triggered:
//!   an event means "new data came". A read that returns less than the
//!   buffer emptied the socket's queue, so any later data raises a new
//!   event; the job stops without the extra read that would fail with
//!   `WouldBlock`.
//! - **Writes that would block** keep their bytes in the connection; the
//!   job stops reading (backpressure) until a writable event lets it flush.
//! - **Limit, idle timeout and drain** live in the reactor: it refuses
//!   excess connections, closes connections quiet for too long on its
//!   100 ms tick, and on shutdown stops accepting and queues one more job
//!   per connection, which echoes what the socket holds and closes it. It
//!   keeps dispatching until all have closed or the deadline passes, then
//!   closes the rest.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use sluice_taskpool::{Builder, ThreadPool};

use crate::config::{Config, Counters, Report, Shutdown, Slot};

const LISTENER: Token = Token(0);
/// The reactor's tick: shutdown checks and idle sweeps.
const TICK: Duration = Duration::from_millis(100);

/// One connection as the reactor and the jobs share it.
struct Conn {
    state: Mutex<State>,
    /// A job is queued or running for this connection.
    scheduled: AtomicBool,
    /// An event arrived since the running job last looked.
    notified: AtomicBool,
    /// Milliseconds since the server started, at the last byte read.
    last_active: AtomicU64,
    /// The job closed it; the reactor forgets it on its next tick.
    closed: AtomicBool,
}

/// What only the job that holds the lock touches.
struct State {
    /// `None` once closed (dropping the socket removes it from epoll).
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// Echo bytes a write could not take yet.
    pending: Vec<u8>,
    /// Frees the connection's place under the limit when it is closed.
    slot: Option<Slot>,
}

impl State {
    fn close(&mut self) {
        self.stream = None;
        self.pending = Vec::new();
        self.slot = None;
    }
}

/// What one job found.
enum Pumped {
    /// Still open; wait for the next event.
    Open,
    /// End of stream or an error: close it.
    Closed,
}

/// Serves `listener` until `shutdown` triggers, then drains and returns
/// what happened. Blocks the calling thread, which becomes the reactor;
/// `config.workers` pool threads run the connections.
pub fn run(listener: TcpListener, config: &Config, shutdown: &Shutdown) -> io::Result<Report> {
    config.check()?;
    let pool = Builder::new()
        .threads(config.workers)
        // At most one job per connection is ever queued, so the reactor
        // never blocks on a full queue.
        .queue_capacity(config.max_connections.saturating_add(16))
        .thread_name("echo-pool")
        .build()
        .map_err(io::Error::other)?;
    listener.set_nonblocking(true)?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    let mut reactor = Reactor {
        poll: Poll::new()?,
        conns: HashMap::new(),
        next_token: 1,
        counters: Arc::new(Counters::default()),
        draining: Arc::new(AtomicBool::new(false)),
        started: Instant::now(),
        pool,
        config: config.clone(),
    };
    reactor
        .poll
        .registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut last_sweep = Instant::now();

    // Serving.
    while !shutdown.is_triggered() {
        reactor.poll_once(&mut events, Some(&mut listener))?;
        if last_sweep.elapsed() >= TICK {
            reactor.sweep();
            last_sweep = Instant::now();
        }
    }

    // Draining: no new connections; one more job per connection echoes
    // what its socket holds and closes it (or, if its client is not reading,
    // waits for writable events until the deadline).
    drop(listener);
    reactor.draining.store(true, Ordering::SeqCst);
    reactor.sweep();
    let open = reactor.conns.len();
    let deadline = Instant::now() + config.drain_deadline;
    for conn in reactor.conns.values() {
        conn.notified.store(true, Ordering::SeqCst);
        if !conn.scheduled.swap(true, Ordering::SeqCst) {
            reactor.dispatch(Arc::clone(conn));
        }
    }
    while !reactor.conns.is_empty() && Instant::now() < deadline {
        reactor.poll_once(&mut events, None)?;
        reactor.sweep();
    }
    let mut forced = 0;
    for conn in reactor.conns.values() {
        let mut st = conn.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.stream.is_some() {
            forced += 1;
            st.close();
        }
    }
    reactor.conns.clear();
    let Reactor { pool, counters, .. } = reactor;
    pool.shutdown();
    Ok(counters.report(open, forced))
}

struct Reactor {
    poll: Poll,
    conns: HashMap<usize, Arc<Conn>>,
    next_token: usize,
    counters: Arc<Counters>,
    /// Set when the drain begins; jobs then close connections they have emptied.
    draining: Arc<AtomicBool>,
    started: Instant,
    pool: ThreadPool<'static>,
    config: Config,
}

impl Reactor {
    /// Waits up to a tick for events and dispatches them.
    fn poll_once(
        &mut self,
        events: &mut Events,
        listener: Option<&mut mio::net::TcpListener>,
    ) -> io::Result<()> {
        match self.poll.poll(events, Some(TICK)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut accept = false;
        for event in events.iter() {
            if event.token() == LISTENER {
                accept = true;
            } else if let Some(conn) = self.conns.get(&event.token().0) {
                conn.notified.store(true, Ordering::SeqCst);
                if !conn.scheduled.swap(true, Ordering::SeqCst) {
                    self.dispatch(Arc::clone(conn));
                }
            }
        }
        if accept && let Some(listener) = listener {
            self.accept_all(listener);
        }
        Ok(())
    }

    fn dispatch(&self, conn: Arc<Conn>) {
        let started = self.started;
        let draining = Arc::clone(&self.draining);
        // Never blocks (see the queue capacity) and never fails while the pool is open.
        let _ = self.pool.execute(move || job(&conn, started, &draining));
    }

    fn accept_all(&mut self, listener: &mut mio::net::TcpListener) {
        loop {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionAborted | ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                // WouldBlock: all accepted. Anything else (out of files):
                // the next connection raises a new event and a new try.
                Err(_) => return,
            };
            if !self.counters.admit(self.config.max_connections) {
                drop(stream);
                continue;
            }
            self.add(stream);
        }
    }

    /// Registers an admitted connection with epoll.
    fn add(&mut self, mut stream: TcpStream) {
        // From here dropping the slot frees the connection's place.
        let slot = Slot::new(&self.counters);
        let _ = stream.set_nodelay(true);
        let token = self.next_token;
        self.next_token += 1;
        if self
            .poll
            .registry()
            .register(
                &mut stream,
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return;
        }
        let conn = Arc::new(Conn {
            state: Mutex::new(State {
                stream: Some(stream),
                buf: vec![0; self.config.buffer_size],
                pending: Vec::new(),
                slot: Some(slot),
            }),
            scheduled: AtomicBool::new(false),
            notified: AtomicBool::new(false),
            last_active: AtomicU64::new(self.now_ms()),
            closed: AtomicBool::new(false),
        });
        self.conns.insert(token, conn);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Forgets closed connections and closes idle ones.
    fn sweep(&mut self) {
        let now = self.now_ms();
        let idle_ms = self
            .config
            .idle_timeout
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let counters = &self.counters;
        self.conns.retain(|_, conn| {
            if conn.closed.load(Ordering::SeqCst) {
                return false;
            }
            let Some(idle_ms) = idle_ms else { return true };
            if now.saturating_sub(conn.last_active.load(Ordering::SeqCst)) < idle_ms {
                return true;
            }
            // A job holding the lock is busy with it: not idle.
            let Ok(mut st) = conn.state.try_lock() else {
                return true;
            };
            // Re-read under the lock: a job may have read just before.
            if now.saturating_sub(conn.last_active.load(Ordering::SeqCst)) < idle_ms
                || st.stream.is_none()
            {
                return st.stream.is_some();
            }
            st.close();
            conn.closed.store(true, Ordering::SeqCst);
            counters.idle_closed.fetch_add(1, Ordering::Relaxed);
            false
        });
    }
}

/// The pool job: pump the connection until it has nothing more, then hand
/// it back to the reactor without losing an event that came meanwhile.
///
/// While draining, a connection whose socket is empty and whose echoes are
/// all written is closed.
fn job(conn: &Conn, started: Instant, draining: &AtomicBool) {
    let mut st = conn.state.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        conn.notified.store(false, Ordering::SeqCst);
        let draining = draining.load(Ordering::SeqCst);
        match pump(&mut st, conn, started, draining) {
            Pumped::Open if draining && st.pending.is_empty() => {
                st.close();
                conn.closed.store(true, Ordering::SeqCst);
                conn.scheduled.store(false, Ordering::SeqCst);
                return;
            }
            Pumped::Open => {}
            Pumped::Closed => {
                st.close();
                conn.closed.store(true, Ordering::SeqCst);
                conn.scheduled.store(false, Ordering::SeqCst);
                return;
            }
        }
        conn.scheduled.store(false, Ordering::SeqCst);
        // An event after our last read found `scheduled` set and queued
        // nothing: take it ourselves unless the reactor already did.
        if !conn.notified.load(Ordering::SeqCst) || conn.scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
    }
}

/// Flushes what is pending, then reads and echoes until the socket is empty.
/// While draining, "empty" means a read said `WouldBlock`, not a short read.
fn pump(st: &mut State, conn: &Conn, started: Instant, draining: bool) -> Pumped {
    let State {
        stream,
        buf,
        pending,
        ..
    } = st;
    let Some(stream) = stream.as_mut() else {
        return Pumped::Closed;
    };
    if !pending.is_empty() {
        match write_some(stream, pending) {
            Ok(n) => {
                pending.drain(..n);
                if !pending.is_empty() {
                    return Pumped::Open; // still full: wait for writable
                }
            }
            Err(_) => return Pumped::Closed,
        }
    }
    loop {
        match stream.read(buf) {
            Ok(0) => return Pumped::Closed,
            Ok(n) => {
                let now = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                conn.last_active.store(now, Ordering::SeqCst);
                match write_some(stream, &buf[..n]) {
                    Ok(w) if w == n => {}
                    Ok(w) => {
                        pending.extend_from_slice(&buf[w..n]);
                        return Pumped::Open;
                    }
                    Err(_) => return Pumped::Closed,
                }
                if n < buf.len() && !draining {
                    return Pumped::Open; // the socket's queue is empty
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Pumped::Open,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Pumped::Closed,
        }
    }
}

/// Writes as much of `data` as the socket takes now; `Ok(n < len)` when it is full.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        match stream.write(&data[done..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
