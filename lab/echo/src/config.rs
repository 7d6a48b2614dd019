//! What the three servers share: their [`Config`], the [`Shutdown`] signal,
//! the [`Report`] they return, and the bookkeeping behind it (live
//! counters, connection slots, the threaded server's registry).

use std::collections::HashMap;
use std::net::{Shutdown as Side, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Settings every server honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most connections open at once. One more is accepted and closed at
    /// once (the client reads end of stream), and counted in
    /// [`Report::refused`].
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed and counted
    /// in [`Report::idle_closed`]. `None`: never.
    pub idle_timeout: Option<Duration>,
    /// After [`Shutdown::trigger`], how long open connections get to echo
    /// what they had received before they are closed by force.
    pub drain_deadline: Duration,
    /// Bytes read (and echoed) per read call; one buffer per connection.
    pub buffer_size: usize,
    /// Threads that run connections: the pool's workers (`pooled`) or the
    /// runtime's workers (`tokio`). `threaded` has one per connection.
    pub workers: usize,
}

impl Default for Config {
    /// 10,000 connections, 60 s idle timeout, 5 s drain, 4 KiB buffers, 2 workers.
    fn default() -> Self {
        Config {
            max_connections: 10_000,
            idle_timeout: Some(Duration::from_secs(60)),
            drain_deadline: Duration::from_secs(5),
            buffer_size: 4096,
            workers: 2,
        }
    }
}

impl Config {
    /// Rejects settings no server can run with (zero buffer, zero workers).
    pub fn check(&self) -> std::io::Result<()> {
        let bad = |what: &str| {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("echo config: {what} must be at least 1"),
            ))
        };
        if self.buffer_size == 0 {
            return bad("buffer_size");
        }
        if self.workers == 0 {
            return bad("workers");
        }
        if self.idle_timeout == Some(Duration::ZERO) {
            return bad("idle_timeout (use None for no timeout)");
        }
        Ok(())
    }
}

/// What a server did over its life, returned when it has stopped.
///
/// Every accepted connection ends one way: closed by its client, by the
/// idle timeout, by the drain (it was open at shutdown and finished in
/// time) or by force at the drain deadline. Refused connections are not
/// counted as accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Connections served.
    pub accepted: u64,
    /// Connections closed at once because `max_connections` were open.
    pub refused: u64,
    /// Connections closed by the idle timeout.
    pub idle_closed: u64,
    /// Connections open when the shutdown began.
    pub open_at_shutdown: u64,
    /// Of those, the ones still open at the drain deadline, closed by force.
    pub forced: u64,
}

/// A shutdown signal every server and connection can watch, from plain
/// threads ([`Shutdown::wait_timeout`]) or from tasks ([`Shutdown::wait`]).
/// Clones share the signal; triggering is one-way.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<ShutdownInner>);

#[derive(Debug, Default)]
struct ShutdownInner {
    flag: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
    notify: tokio::sync::Notify,
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the shutdown: servers stop accepting and drain. Idempotent.
    pub fn trigger(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        drop(self.0.lock.lock().unwrap_or_else(PoisonError::into_inner));
        self.0.cv.notify_all();
        self.0.notify.notify_waiters();
    }

    /// Whether [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// Blocks until triggered or `timeout` passes; true if triggered.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let guard = self.0.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (_guard, _) = self
            .0
            .cv
            .wait_timeout_while(guard, timeout, |()| !self.is_triggered())
            .unwrap_or_else(PoisonError::into_inner);
        self.is_triggered()
    }

    /// Resolves once triggered (at once if it already was).
    pub async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a trigger in between is not lost.
            notified.as_mut().enable();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }
}

/// Live counters, turned into a [`Report`] at the end.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) idle_closed: AtomicU64,
    /// Connections open now; the limit is checked against it.
    pub(crate) active: AtomicUsize,
    /// Threaded server: connections whose thread ended after the shutdown
    /// began (they were open when it did).
    pub(crate) ended_in_shutdown: AtomicU64,
}

impl Counters {
    pub(crate) fn report(&self, open_at_shutdown: usize, forced: usize) -> Report {
        Report {
            accepted: self.accepted.load(Ordering::SeqCst),
            refused: self.refused.load(Ordering::SeqCst),
            idle_closed: self.idle_closed.load(Ordering::SeqCst),
            open_at_shutdown: open_at_shutdown as u64,
            forced: forced as u64,
        }
    }

    /// True (and the connection counted) when one more fits under `max`.
    /// Only the accepting thread calls this, so check-then-add is not racy.
    pub(crate) fn admit(&self, max: usize) -> bool {
        if self.active.load(Ordering::SeqCst) >= max {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.active.fetch_add(1, Ordering::SeqCst);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// A connection's place under the limit: dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Counters>);

impl Slot {
    /// Takes over one admission made by [`Counters::admit`].
    pub(crate) fn new(counters: &Arc<Counters>) -> Slot {
        Slot(Arc::clone(counters))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The open connections of the threaded server, each as a duplicate `std`
/// handle of its socket, so that at the drain deadline the server can shut
/// both sides of every connection still open: that fails a thread's
/// pending `read` or `write` and ends it.
///
/// (Shutting only the read side would wake a thread blocked in `read`
/// without waiting for a tick, but Linux then discards what the socket had
/// received and not yet read, which is exactly what a drain must echo.
/// The threads watch the shutdown flag instead; see `threaded.rs`.)
#[derive(Debug, Default)]
pub(crate) struct Registry {
    open: Mutex<HashMap<u64, TcpStream>>,
    emptied: Condvar,
    next: AtomicU64,
}

impl Registry {
    /// Registers a connection; the guard unregisters it and frees its slot.
    pub(crate) fn add(
        self: &Arc<Self>,
        stream: &TcpStream,
        slot: Slot,
    ) -> std::io::Result<Registered> {
        let dup = stream.try_clone()?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, dup);
        Ok(Registered {
            id,
            registry: Arc::clone(self),
            _slot: slot,
        })
    }

    /// The deadline: shuts both sides of every connection still open, which
    /// fails their pending reads and writes. Returns how many there were.
    pub(crate) fn shutdown_all(&self) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for s in open.values() {
            let _ = s.shutdown(Side::Both);
        }
        open.len()
    }

    /// Waits until no connection is open or `deadline` passes; true if none is.
    pub(crate) fn wait_empty(&self, deadline: Instant) -> bool {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        while !open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            open = self
                .emptied
                .wait_timeout(open, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// A registered connection; dropping it unregisters it and frees its slot.
#[derive(Debug)]
pub(crate) struct Registered {
    id: u64,
    registry: Arc<Registry>,
    _slot: Slot,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut open = self
            .registry
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.remove(&self.id);
        if open.is_empty() {
            self.registry.emptied.notify_all();
        }
    }
}

/// Whether an `accept` error concerns one connection (skip it) rather than
/// the listener (give up).
pub(crate) fn accept_error_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12)) // ENFILE, EMFILE, ENOBUFS, ENOMEM
}
