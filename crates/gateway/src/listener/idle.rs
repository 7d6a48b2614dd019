//! What a connection is doing, as seen from its IO: the IO wrapper stamps
//! each read and write, requests in flight are counted, and from these the
//! connection task decides when to close the connection (no first request in
//! time, a request head that takes too long, idle too long) and when an idle
//! HTTP/1 connection can be parked (hyper's connection state and buffers
//! dropped, the socket kept).
//!
//! The IO wrapper also holds the connection's cap slots, so an upgraded
//! (WebSocket) connection, which outlives hyper's connection task, keeps
//! counting against the caps until it closes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long an HTTP/1 connection must be quiet before it is parked. Short,
/// so that a burst of new connections does not hold many hyper buffers at
/// once (the allocator keeps the peak); long enough that a busy client's
/// back-to-back requests share one hyper connection. Parking and rebuilding
/// cost a few microseconds, against a request's tens.
pub(super) const PARK_AFTER: Duration = Duration::from_millis(100);

/// The end of a request head, as the last four bytes read.
const HEAD_END: u32 = u32::from_be_bytes(*b"\r\n\r\n");

/// A connection's activity, shared by its task, its IO and its requests.
#[derive(Clone, Debug)]
pub(super) struct Activity(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    opened: Instant,
    /// Milliseconds since `opened` of the last byte moved either way.
    last_ms: AtomicU64,
    /// Milliseconds since `opened`, plus one, of the first byte read while no
    /// request was in flight: a request head has started to arrive. 0: none.
    head_ms: AtomicU64,
    in_flight: AtomicUsize,
    started: AtomicUsize,
    /// Reads that returned data, and their count when the latest request started.
    reads: AtomicU64,
    reads_at_start: AtomicU64,
    /// The last four bytes read, oldest first.
    tail: AtomicU32,
    /// The last write could not be completed: the client is not reading.
    write_blocked: AtomicBool,
    /// The connection is being parked: the IO hands its stream back instead
    /// of shutting it down.
    parking: AtomicBool,
    /// Wakes the connection task when a head starts and its timer is not
    /// due soon enough to time it.
    waker: AtomicWaker,
    notified: AtomicBool,
    /// The connection task's armed deadline (ms since `opened`; MAX: none)
    /// and the head timeout it judges with, so that a starting head wakes
    /// the task only when the armed timer would be too late for it.
    armed_ms: AtomicU64,
    head_timeout_ms: AtomicU64,
}

/// Counts one request as in flight until dropped (with its response body).
#[derive(Debug)]
pub(super) struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        // No wake-up: while a request is in flight the connection task
        // looks again every `PARK_AFTER`, which is soon enough for what the
        // end of a request starts (the idle and park clocks). Waking it here
        // cost a full poll of the connection per request.
        self.0.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The limits a connection's activity is judged against.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// For the first request, and for an HTTP/1 request head once it has started.
    pub(super) header_read_timeout: Duration,
    /// No request in flight and no byte moved.
    pub(super) idle_timeout: Duration,
}

/// What the connection task should do now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Keep going; look again at the deadline, if any (or when notified).
    Wait(Option<Instant>),
    /// Close the connection, for this reason.
    Close(&'static str),
    /// Park the idle HTTP/1 connection.
    Park,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity(Arc::new(Inner {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            head_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            reads: AtomicU64::new(0),
            reads_at_start: AtomicU64::new(0),
            tail: AtomicU32::new(0),
            write_blocked: AtomicBool::new(false),
            parking: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            notified: AtomicBool::new(false),
            armed_ms: AtomicU64::new(u64::MAX),
            head_timeout_ms: AtomicU64::new(0),
        }))
    }

    /// Mark a request as started; it counts as in flight until the guard drops.
    pub(super) fn request(&self) -> InFlight {
        let a = &self.0;
        a.started.fetch_add(1, Ordering::Relaxed);
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.head_ms.store(0, Ordering::Relaxed);
        a.reads_at_start
            .store(a.reads.load(Ordering::Relaxed), Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Stamp a byte moved at `now`, for IO that does not go through
    /// [`IdleIo`] (the lean server path, which reads the clock anyway).
    pub(super) fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.0.opened).as_millis();
        self.0
            .last_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.0.opened + Duration::from_millis(ms)
    }

    fn on_read(&self, data: &[u8]) {
        let a = &self.0;
        let now = self.now_ms();
        a.last_ms.store(now, Ordering::Relaxed);
        a.reads.fetch_add(1, Ordering::Relaxed);
        let mut tail = a.tail.load(Ordering::Relaxed);
        for b in data.iter().rev().take(4).rev() {
            tail = (tail << 8) | u32::from(*b);
        }
        a.tail.store(tail, Ordering::Relaxed);
        // Bytes with no request in flight begin the next head. Bytes read
        // while a request is in flight are its body, or a pipelined head that
        // `idle_timeout` bounds instead.
        if a.in_flight.load(Ordering::Relaxed) == 0
            && a.head_ms.load(Ordering::Relaxed) == 0
            && a.started.load(Ordering::Relaxed) > 0
        {
            a.head_ms.store(now + 1, Ordering::Relaxed);
            let head_deadline = now.saturating_add(a.head_timeout_ms.load(Ordering::Relaxed));
            if a.armed_ms.load(Ordering::Relaxed) > head_deadline {
                self.notify();
            }
        }
    }

    fn on_write(&self, result: &Poll<io::Result<usize>>) {
        let blocked = result.is_pending();
        self.0.write_blocked.store(blocked, Ordering::Relaxed);
        if matches!(result, Poll::Ready(Ok(n)) if *n > 0) {
            self.0.last_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    fn notify(&self) {
        self.0.notified.store(true, Ordering::Release);
        self.0.waker.wake();
    }

    /// Record the connection task's armed deadline and head timeout.
    pub(super) fn arm(&self, at: Option<Instant>, head_timeout: Duration) {
        let ms = at.map_or(u64::MAX, |at| {
            u64::try_from(at.saturating_duration_since(self.0.opened).as_millis())
                .unwrap_or(u64::MAX)
        });
        self.0.armed_ms.store(ms, Ordering::Relaxed);
        self.0.head_timeout_ms.store(
            u64::try_from(head_timeout.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Resolves once a request head starts arriving while the armed timer
    /// is later than its deadline.
    pub(super) async fn changed(&self) {
        std::future::poll_fn(|cx| {
            self.0.waker.register(cx.waker());
            if self.0.notified.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// When the connection opened.
    pub(super) fn opened(&self) -> Instant {
        self.0.opened
    }

    /// Whether any request has started on this connection.
    pub(super) fn served_any(&self) -> bool {
        self.0.started.load(Ordering::Relaxed) > 0
    }

    /// Time since the last byte moved.
    pub(super) fn idle_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.0.last_ms.load(Ordering::Relaxed)),
        )
    }

    /// When the last byte moved.
    pub(super) fn last(&self) -> Instant {
        self.at(self.0.last_ms.load(Ordering::Relaxed))
    }

    /// From now on, the IO hands its stream back when dropped.
    pub(super) fn start_parking(&self) {
        self.0.parking.store(true, Ordering::Relaxed);
    }

    /// The client sent something to a parked connection: it may not be
    /// parked again before hyper has read what arrived.
    pub(super) fn unpark(&self) {
        self.0.tail.store(0, Ordering::Relaxed);
    }

    /// Whether the connection is being parked; clears the flag.
    pub(super) fn take_parking(&self) -> bool {
        self.0.parking.swap(false, Ordering::Relaxed)
    }

    /// Whether hyper's HTTP/1 connection holds nothing that parking would
    /// lose: a request has been served and none is in flight, no byte has
    /// been read since the latest request started (so no body and no
    /// pipelined bytes are buffered), the last read ended a head, and the
    /// last write completed (so hyper's write buffer is empty).
    fn parkable(&self) -> bool {
        let a = &self.0;
        a.started.load(Ordering::Relaxed) > 0
            && a.in_flight.load(Ordering::Relaxed) == 0
            && a.reads.load(Ordering::Relaxed) == a.reads_at_start.load(Ordering::Relaxed)
            && a.tail.load(Ordering::Relaxed) == HEAD_END
            && !a.write_blocked.load(Ordering::Relaxed)
    }

    /// Judge the connection now. `http1` enables the request head timer and
    /// parking, which HTTP/2 (with its own framing and pings) does not get.
    pub(super) fn verdict(&self, limits: Limits, http1: bool) -> Verdict {
        let a = &self.0;
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut due = |at: Instant| -> bool {
            if at <= now {
                return true;
            }
            next = Some(next.map_or(at, |n| n.min(at)));
            false
        };
        if a.started.load(Ordering::Relaxed) == 0 {
            // hyper learns the protocol only from the first bytes; a client
            // that sends nothing, or too little, is bounded here.
            if due(a.opened + limits.header_read_timeout) {
                return Verdict::Close("no request in time");
            }
        } else if a.in_flight.load(Ordering::Relaxed) > 0 {
            // A request in flight keeps its connection open. Look again
            // soon: its end is not signalled (see `InFlight`).
            return Verdict::Wait(Some(now + PARK_AFTER));
        }
        let head = a.head_ms.load(Ordering::Relaxed);
        if http1 && head > 0 && due(self.at(head - 1) + limits.header_read_timeout) {
            return Verdict::Close("request head not complete in time");
        }
        if due(self.last() + limits.idle_timeout) {
            return Verdict::Close("idle");
        }
        if http1 && self.parkable() && due(self.last() + PARK_AFTER) {
            return Verdict::Park;
        }
        Verdict::Wait(next)
    }
}

/// What a connection holds for as long as any of its IO lives: the cap
/// slots, and the place where a parked connection's stream is handed back.
pub(super) struct Hold<S, G> {
    _guards: G,
    parked: Mutex<Option<S>>,
}

impl<S, G> Hold<S, G> {
    pub(super) fn new(guards: G) -> Arc<Self> {
        Arc::new(Hold {
            _guards: guards,
            parked: Mutex::new(None),
        })
    }

    /// The stream handed back by the last parked IO.
    pub(super) fn take_parked(&self) -> Option<S> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// An IO stream that records activity and keeps its connection's [`Hold`]
/// alive, upgraded or not. When its connection is being parked it neither
/// shuts the stream down nor closes it, but hands it back to the `Hold`.
pub(super) struct IdleIo<S, G> {
    inner: Option<S>,
    activity: Activity,
    hold: Arc<Hold<S, G>>,
}

impl<S, G> IdleIo<S, G> {
    pub(super) fn new(inner: S, activity: Activity, hold: Arc<Hold<S, G>>) -> Self {
        IdleIo {
            inner: Some(inner),
            activity,
            hold,
        }
    }

    fn inner(&mut self) -> io::Result<&mut S> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl<S, G> Drop for IdleIo<S, G> {
    fn drop(&mut self) {
        if self.activity.0.parking.load(Ordering::Relaxed)
            && let Some(s) = self.inner.take()
        {
            *self.hold.parked.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
        }
    }
}

impl<S: AsyncRead + Unpin, G> AsyncRead for IdleIo<S, G> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(self.inner()?).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.on_read(&buf.filled()[before..]);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin, G> AsyncWrite for IdleIo<S, G> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(self.inner()?).poll_write(cx, data);
        self.activity.on_write(&res);
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(self.inner()?).poll_write_vectored(cx, bufs);
        self.activity.on_write(&res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.inner()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.activity.0.parking.load(Ordering::Relaxed) {
            // Parking: the stream goes back to the connection task, open.
            return Poll::Ready(Ok(()));
        }
        Pin::new(self.inner()?).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };

    #[test]
    fn a_new_connection_waits_for_its_first_request() {
        let a = Activity::new();
        match a.verdict(LIMITS, true) {
            Verdict::Wait(Some(at)) => {
                assert!(at <= Instant::now() + LIMITS.header_read_timeout);
                assert!(at > Instant::now() + LIMITS.header_read_timeout / 2);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_request_in_flight_is_only_looked_at_again_soon() {
        let a = Activity::new();
        let r = a.request();
        // No idle or head deadline while in flight, however long it takes;
        // only the periodic look that replaces a wake-up at its end.
        match a.verdict(LIMITS, true) {
            Verdict::Wait(Some(at)) => assert!(at <= Instant::now() + PARK_AFTER),
            v => panic!("{v:?}"),
        }
        drop(r);
        assert!(
            !a.0.notified.load(Ordering::Relaxed),
            "the end of a request wakes nobody"
        );
    }

    #[test]
    fn a_starting_head_wakes_the_task_only_when_its_timer_is_too_late() {
        let a = Activity::new();
        drop(a.request());
        a.arm(
            Some(Instant::now() + PARK_AFTER),
            LIMITS.header_read_timeout,
        );
        a.on_read(b"GET");
        assert!(
            !a.0.notified.load(Ordering::Relaxed),
            "the armed timer comes first"
        );
        let b = Activity::new();
        drop(b.request());
        b.arm(
            Some(Instant::now() + LIMITS.header_read_timeout * 3),
            LIMITS.header_read_timeout,
        );
        b.on_read(b"GET");
        assert!(
            b.0.notified.load(Ordering::Relaxed),
            "the head deadline comes first"
        );
    }

    #[test]
    fn a_head_started_after_a_request_sets_the_head_deadline() {
        let a = Activity::new();
        drop(a.request());
        // Idle after a request: the next deadline is parking, not the head timer.
        assert!(
            !a.parkable(),
            "no head was read, so nothing says hyper's buffer is empty"
        );
        a.on_read(b"GET / HT");
        assert!(a.0.head_ms.load(Ordering::Relaxed) > 0);
        assert!(!a.parkable());
        match a.verdict(LIMITS, true) {
            Verdict::Wait(Some(at)) => {
                assert!(at <= Instant::now() + LIMITS.header_read_timeout);
            }
            v => panic!("{v:?}"),
        }
        // HTTP/2 has no head timer: only idle_timeout applies.
        match a.verdict(LIMITS, false) {
            Verdict::Wait(Some(at)) => {
                assert!(at > Instant::now() + LIMITS.header_read_timeout);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn parkable_only_after_a_whole_head_and_no_later_read() {
        let a = Activity::new();
        a.on_read(b"GET / HTTP/1.1\r\nHost: x\r\n");
        a.on_read(b"\r\n");
        drop(a.request());
        assert!(a.parkable());
        // A pipelined partial head read with the request: not parkable.
        let b = Activity::new();
        b.on_read(b"GET / HTTP/1.1\r\n\r\nGET /next HT");
        drop(b.request());
        assert!(!b.parkable());
        // Body bytes read after the request started: not parkable.
        let c = Activity::new();
        c.on_read(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n");
        let r = c.request();
        c.on_read(b"\r\n\r\n");
        drop(r);
        assert!(!c.parkable());
        // A blocked write: not parkable.
        let d = Activity::new();
        d.on_read(b"GET / HTTP/1.1\r\n\r\n");
        drop(d.request());
        d.on_write(&Poll::Pending);
        assert!(!d.parkable());
    }
}
