//! Idle tracking for a connection: the IO wrapper stamps the time of each
//! read or write, requests in flight are counted, and the connection task
//! closes it after `idle_timeout` with no request in flight and no byte
//! either way. The IO wrapper also holds the connection's cap slots, so an
//! upgraded (WebSocket) connection, which outlives hyper's connection task,
//! keeps counting against the caps until it closes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When a connection last moved a byte, as milliseconds since it opened,
/// and how many requests it has in flight and has started in all.
#[derive(Clone, Debug)]
pub(super) struct Activity {
    opened: Instant,
    last_ms: Arc<AtomicU64>,
    in_flight: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
}

/// Counts one request as in flight until dropped (with its response body).
#[derive(Debug)]
pub(super) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            started: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Mark a request as started; it counts as in flight until the guard drops.
    pub(super) fn request(&self) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(&self.in_flight))
    }

    /// Whether a request is being served now.
    pub(super) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    /// Whether any request has started on this connection yet.
    pub(super) fn any_request(&self) -> bool {
        self.started.load(Ordering::Relaxed) > 0
    }

    /// Time since the connection opened.
    pub(super) fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last byte moved.
    pub(super) fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }
}

/// An IO stream that records activity and holds `H` (the connection's cap
/// slots) for as long as the stream lives, upgraded or not.
pub(super) struct IdleIo<S, H> {
    inner: S,
    activity: Activity,
    _hold: H,
}

impl<S, H> IdleIo<S, H> {
    pub(super) fn new(inner: S, activity: Activity, hold: H) -> Self {
        IdleIo {
            inner,
            activity,
            _hold: hold,
        }
    }
}

impl<S: AsyncRead + Unpin, H: Unpin> AsyncRead for IdleIo<S, H> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin, H: Unpin> AsyncWrite for IdleIo<S, H> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
