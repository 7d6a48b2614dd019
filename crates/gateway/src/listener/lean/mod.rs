//! The lean HTTP/1.1 server path, for plain (non-TLS) connections: the
//! connection task reads request heads into its own buffer, serves the
//! simple ones (no body, no upgrade) with the proxy handler, and writes the
//! responses itself. hyper's server connection (its dispatcher, parser,
//! encoder and buffers) costs more per request than the proxying around it
//! on a small request; most requests through a gateway are simple.
//!
//! The first request that is not simple, and everything after it, goes to
//! hyper: the bytes already read are handed over in front of the stream
//! ([`super::rewind`]), so hyper serves bodies, upgrades and anything else
//! as it always has. Malformed or oversized heads are answered here (400,
//! 431, with the gateway's JSON error body) and the connection closed.
//!
//! Timeouts follow the listener's rules: a head must arrive within
//! `header_read_timeout` of its first byte (of the connection's opening for
//! the first), a request in flight is never cut, and a connection with no
//! request for [`PARK_AFTER`] goes back to the listener with its buffers
//! dropped, to wait holding the socket alone (which also applies
//! `idle_timeout`). On drain, the request in flight is answered and the
//! connection closed.

mod date;
mod request;
mod response;

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::future::Either;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::body;
use crate::conn_timer::ConnTimer;
use crate::proxy::{self, ConnInfo};
use crate::race::first_of;
use crate::raw_fields::Answer;
use crate::stop_signal::Signal;

use super::idle::{Activity, PARK_AFTER};
use super::{Conn, Transport};

pub(super) use request::HeadLimits;
use request::Parsed;
use response::Answering;

/// Bytes read at a time (and the buffer's first size): a typical request
/// head, with room for a few pipelined ones.
const READ_SIZE: usize = 4096;
/// The write buffer is let go after a large response, so that a long-lived
/// connection does not keep the largest it ever sent.
const KEEP_WRITE_BUFFER: usize = 16 << 10;
/// After refusing a head, how long and how much more of it is read before
/// the close (see `refuse`).
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 << 10;

/// How the lean path left a connection.
pub(super) enum Ended {
    /// Closed (or to be closed: the caller drops the stream).
    Closed,
    /// Idle between requests: wait for the client's next bytes, holding
    /// nothing but the stream, and serve them here again.
    Parked,
    /// A request for hyper: these bytes were read and must be served first.
    Hyper(bytes::Bytes),
}

/// How a wait for more of a head ended.
enum Waited {
    Bytes,
    /// The timer fired: its deadline may have moved since it was set.
    Timer,
    Closed,
}

/// What is due when a wait's deadline passes.
#[derive(Clone, Copy)]
enum Due {
    Park,
    Close,
}

impl Conn {
    /// Serve simple requests on `io` until it closes, parks, or a request
    /// needs hyper. `io` must have a request's bytes ready (or its prefix).
    ///
    /// The future holds a request handler's state (some 15 KiB): the caller
    /// boxes it, so that a parked connection's task does not carry it.
    pub(super) async fn serve_lean<S: Transport>(
        &self,
        io: &mut super::rewind::Rewind<S>,
        activity: &Activity,
        info: ConnInfo,
    ) -> Ended {
        let limits = self.listen.limits;
        let head_limits = self.listen.head_limits;
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        // What hyper handed back when it parked: the start of the next head.
        let prefix = io.take_prefix();
        buf.extend_from_slice(&prefix);
        drop(prefix);
        let mut out: Vec<u8> = Vec::new();
        // Polled around every request: `Signal`s cost a load per poll
        // where the tokens' own futures take two locks.
        let hard_stop = Signal::new(&self.listen.hard_stop);
        let shutdown = Signal::new(&self.listen.shutdown);
        let start = Instant::now();
        // One timer for the connection, lent to each request for its total
        // deadline (`crate::conn_timer`). It is moved only when a wait needs
        // it sooner than it is set for; firing early costs a look at the
        // clock, moving it for every request costs more.
        let timer = tokio::time::sleep_until(start.into());
        let mut armed: Option<Instant> = None;
        tokio::pin!(hard_stop, shutdown, timer);
        // When bytes last moved (read, or a response written).
        let mut last_moved = start;
        // When the head being read began: the first request's with the
        // connection, a later one's with its first byte (or, pipelined, with
        // the end of the response before it).
        let mut head_since = if activity.served_any() {
            start
        } else {
            activity.opened()
        };
        // When the read that completed the head in the buffer came: the
        // request's start for the handler, one clock reading fewer. `None`
        // when the head was already buffered (pipelined, or handed over).
        let mut read_at: Option<Instant> = None;
        loop {
            let head = loop {
                // An empty buffer (the usual state after a response) holds no head.
                let parsed = if buf.is_empty() {
                    Parsed::Partial
                } else {
                    request::parse(&mut buf, head_limits)
                };
                match parsed {
                    Parsed::Simple(head) => break head,
                    Parsed::Partial => {}
                    Parsed::Hyper => return Ended::Hyper(buf.freeze()),
                    Parsed::Malformed => {
                        // Boxed, as rare: the connection task stays small.
                        crate::out_of_line::boxed(|| {
                            self.refuse(io, &mut buf, &mut out, StatusCode::BAD_REQUEST)
                        })
                        .await;
                        return Ended::Closed;
                    }
                    Parsed::TooLarge => {
                        let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
                        crate::out_of_line::boxed(|| self.refuse(io, &mut buf, &mut out, status))
                            .await;
                        return Ended::Closed;
                    }
                }
                let between = buf.is_empty();
                let (deadline, due) = if between {
                    // Between requests, wait briefly here, then let go of the
                    // buffers; the listener's wait applies idle_timeout.
                    let park = last_moved + PARK_AFTER;
                    let idle = activity.last() + limits.idle_timeout;
                    if idle <= park {
                        (idle, Due::Close)
                    } else {
                        (park, Due::Park)
                    }
                } else {
                    (head_since + limits.header_read_timeout, Due::Close)
                };
                if buf.capacity() - buf.len() < READ_SIZE / 4 {
                    buf.reserve(READ_SIZE.max(buf.len()));
                }
                if armed.is_none_or(|at| at > deadline) {
                    timer.as_mut().reset(deadline.into());
                    armed = Some(deadline);
                }
                let waited = tokio::select! {
                    biased;
                    read = poll_fn(|cx| io.poll_fill(cx, &mut buf)) => match read {
                        Ok(0) | Err(_) => Waited::Closed,
                        Ok(_) => Waited::Bytes,
                    },
                    () = &mut timer => Waited::Timer,
                    // Draining: no new request. A head half read is dropped
                    // with the connection, as hyper's graceful shutdown does.
                    // The hard stop comes only after the drain began, so this
                    // one wait covers both.
                    () = &mut shutdown => Waited::Closed,
                };
                match waited {
                    Waited::Bytes => {
                        let now = Instant::now();
                        read_at = Some(now);
                        last_moved = now;
                        activity.touch(now);
                        if between && activity.served_any() {
                            head_since = now;
                        }
                    }
                    Waited::Timer => {
                        armed = None;
                        if Instant::now() < deadline {
                            continue;
                        }
                        match due {
                            Due::Park => return Ended::Parked,
                            Due::Close if between => {
                                tracing::debug!(peer = %self.peer, "closing idle connection");
                            }
                            Due::Close => {
                                tracing::debug!(peer = %self.peer, "request head not complete in time");
                            }
                        }
                        return Ended::Closed;
                    }
                    Waited::Closed => return Ended::Closed,
                }
            };

            let in_flight = activity.request();
            let to = Answering {
                head_method: head.request.method() == http::Method::HEAD,
                version: head.request.version(),
                keep_alive: head.keep_alive,
                trailers: head.trailers,
            };
            let req = head.request;
            // Not boxed: this whole loop is (see `Conn::run`), so the
            // handler's large state is allocated once per busy spell rather
            // than once per request.
            let received = read_at.take().unwrap_or_else(Instant::now);
            // This path writes the response itself: upstream fields may
            // come as wire lines.
            let info = ConnInfo {
                raw_fields: true,
                ..info
            };
            // Pinned where it is made and polled there (`crate::race`).
            let resp = {
                // The connection's timer waits for the request's deadline too.
                let lent = Some(ConnTimer::new(timer.as_mut(), &mut armed));
                let shared = Arc::clone(&self.shared);
                let handler = pin!(proxy::handle(shared, req, info, received, lent));
                match first_of(handler, hard_stop.as_mut()).await {
                    Either::Left(resp) => resp,
                    Either::Right(()) => return Ended::Closed,
                }
            };
            let to = Answering {
                keep_alive: to.keep_alive && !shutdown.is_cancelled(),
                ..to
            };
            let sent = {
                let sending = pin!(response::send(io, &mut out, resp, to));
                match first_of(sending, hard_stop.as_mut()).await {
                    Either::Left(sent) => sent,
                    Either::Right(()) => return Ended::Closed,
                }
            };
            drop(in_flight);
            let now = Instant::now();
            activity.touch(now);
            last_moved = now;
            if out.capacity() > KEEP_WRITE_BUFFER {
                out = Vec::new();
            }
            match sent {
                Ok(true) => head_since = now,
                Ok(false) => {
                    // Close as hyper does: the write side first, so the client
                    // reads the whole response before the end.
                    let _ = io.shutdown().await;
                    return Ended::Closed;
                }
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "writing a response failed");
                    return Ended::Closed;
                }
            }
        }
    }

    /// Answer a head that cannot be served with `status` and its JSON
    /// error, then close.
    async fn refuse<S: Transport>(
        &self,
        io: &mut super::rewind::Rewind<S>,
        buf: &mut BytesMut,
        out: &mut Vec<u8>,
        status: StatusCode,
    ) {
        let (code, message) = if status == StatusCode::BAD_REQUEST {
            ("bad_request", "the request head is not valid HTTP/1.1")
        } else {
            (
                "header_fields_too_large",
                "the request head has too many or too large header fields",
            )
        };
        tracing::debug!(peer = %self.peer, %status, "request head refused");
        let resp = body::json_error(status, code, message);
        let to = Answering {
            head_method: false,
            version: http::Version::HTTP_11,
            keep_alive: false,
            trailers: false,
        };
        let answer = async {
            response::send(&mut *io, out, Answer::new(resp), to).await?;
            io.shutdown().await?;
            // Read on for a moment: closing with unread bytes (the rest of a
            // large head) resets the connection, which can destroy the
            // answer before the client reads it.
            let mut left = LINGER_BYTES;
            while left > 0 {
                buf.clear();
                buf.reserve(READ_SIZE);
                match io.read_buf(&mut *buf).await? {
                    0 => break,
                    n => left = left.saturating_sub(n),
                }
            }
            std::io::Result::Ok(())
        };
        let _ = tokio::time::timeout(LINGER, answer).await;
    }
}

/// The head limits of a listener's config: the same bytes and fields
/// hyper allows (`max_size` is hyper's read buffer limit).
pub(super) fn head_limits(max_size: usize, max_headers: usize) -> HeadLimits {
    HeadLimits {
        max_size,
        max_headers,
    }
}
