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

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::body;
use crate::proxy::{self, ConnInfo};

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

/// Why the wait for more of a head ended without bytes.
enum Waited {
    Bytes,
    Closed,
    Park,
}

impl Conn {
    /// Serve simple requests on `io` until it closes, parks, or a request
    /// needs hyper. `io` must have a request's bytes ready (or its prefix).
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
        let hard_stop = self.listen.hard_stop.cancelled();
        let shutdown = self.listen.shutdown.cancelled();
        // One timer for the connection, moved as waits begin.
        let timer = tokio::time::sleep_until(Instant::now().into());
        tokio::pin!(hard_stop, shutdown, timer);
        // When the head being read began: the first request's with the
        // connection, a later one's with its first byte (or, pipelined, with
        // the end of the response before it).
        let mut head_since = if activity.served_any() {
            Instant::now()
        } else {
            activity.opened()
        };
        loop {
            let head = loop {
                match request::parse(&mut buf, head_limits) {
                    Parsed::Simple(head) => break head,
                    Parsed::Partial => {}
                    Parsed::Hyper => return Ended::Hyper(buf.freeze()),
                    Parsed::Malformed => {
                        // Boxed, as rare: the connection task stays small.
                        Box::pin(self.refuse(io, &mut buf, &mut out, StatusCode::BAD_REQUEST))
                            .await;
                        return Ended::Closed;
                    }
                    Parsed::TooLarge => {
                        let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
                        Box::pin(self.refuse(io, &mut buf, &mut out, status)).await;
                        return Ended::Closed;
                    }
                }
                let between = buf.is_empty();
                let (deadline, on_timeout) = if between {
                    // Between requests, wait briefly here, then let go of the
                    // buffers; the listener's wait applies idle_timeout.
                    let park = Instant::now() + PARK_AFTER;
                    let idle = activity.last() + limits.idle_timeout;
                    if idle <= park {
                        (idle, Waited::Closed)
                    } else {
                        (park, Waited::Park)
                    }
                } else {
                    (head_since + limits.header_read_timeout, Waited::Closed)
                };
                if buf.capacity() - buf.len() < READ_SIZE / 4 {
                    buf.reserve(READ_SIZE.max(buf.len()));
                }
                timer.as_mut().reset(deadline.into());
                let waited = tokio::select! {
                    biased;
                    read = io.read_buf(&mut buf) => match read {
                        Ok(0) | Err(_) => Waited::Closed,
                        Ok(_) => Waited::Bytes,
                    },
                    () = &mut timer => on_timeout,
                    () = &mut hard_stop => Waited::Closed,
                    // Draining: no new request. A head half read is dropped
                    // with the connection, as hyper's graceful shutdown does.
                    () = &mut shutdown => Waited::Closed,
                };
                match waited {
                    Waited::Bytes if between && activity.served_any() => {
                        head_since = Instant::now();
                        activity.touch();
                    }
                    Waited::Bytes => activity.touch(),
                    Waited::Closed => {
                        if !between {
                            tracing::debug!(peer = %self.peer, "request head not complete in time, or connection closed");
                        }
                        return Ended::Closed;
                    }
                    Waited::Park => return Ended::Parked,
                }
            };

            let in_flight = activity.request();
            let to = Answering {
                head_method: head.request.method() == http::Method::HEAD,
                version: head.request.version(),
                keep_alive: head.keep_alive,
                trailers: head.trailers,
            };
            let req = head.request.map(|()| body::empty());
            // Boxed: the handler's state is large, and unboxed it would size
            // every connection task, parked ones included.
            let handler = Box::pin(proxy::handle(Arc::clone(&self.shared), req, info));
            let resp = tokio::select! {
                biased;
                resp = handler => resp,
                () = &mut hard_stop => return Ended::Closed,
            };
            let to = Answering {
                keep_alive: to.keep_alive && !self.listen.shutdown.is_cancelled(),
                ..to
            };
            let sent = tokio::select! {
                biased;
                sent = response::send(io, &mut out, resp, to) => sent,
                () = &mut hard_stop => return Ended::Closed,
            };
            drop(in_flight);
            activity.touch();
            if out.capacity() > KEEP_WRITE_BUFFER {
                out = Vec::new();
            }
            match sent {
                Ok(true) => head_since = Instant::now(),
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
            response::send(&mut *io, out, resp, to).await?;
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
