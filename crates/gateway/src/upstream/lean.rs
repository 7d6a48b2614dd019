//! A lean HTTP/1.1 client connection for requests without a body: the
//! request head goes out in one write, the response head is parsed from
//! the connection's read buffer, and the response body is read straight
//! from the socket by the body itself, with no connection task, channel or
//! dispatcher in between (what hyper's client needs for full duplex, which
//! a request without a body does not).
//!
//! One request at a time per connection (never pipelined). The connection
//! goes back to its pool only when the body was read to its end, the
//! upstream allows keep-alive, and no stray byte follows the body.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::chunked::{ChunkError, ChunkedDecoder, Decoded};
use super::head::{self, Framing, HeadError, ResponseHead};
use super::pool::TargetPool;
use crate::raw_fields::Answer;

/// Smallest free space offered to a read; reads that fill it double the
/// next offer, up to [`READ_MAX`] (large bodies then take fewer reads).
const READ_MIN: usize = 8 << 10;
const READ_MAX: usize = 64 << 10;

/// Why an exchange on a lean connection failed.
#[derive(Debug)]
pub(crate) enum LeanError {
    /// Reading or writing the socket failed.
    Io(io::Error),
    /// The upstream closed the connection before the response was complete.
    Closed,
    /// The response head was refused.
    Head(HeadError),
    /// The chunked body was malformed.
    Chunked(ChunkError),
}

impl std::fmt::Display for LeanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeanError::Io(e) => write!(f, "upstream connection: {e}"),
            LeanError::Closed => {
                f.write_str("upstream closed the connection before the response was complete")
            }
            LeanError::Head(e) => e.fmt(f),
            LeanError::Chunked(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LeanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LeanError::Io(e) => Some(e),
            LeanError::Chunked(e) => Some(e),
            LeanError::Closed | LeanError::Head(_) => None,
        }
    }
}

/// A failed exchange, and whether the upstream sent nothing at all (so
/// that an idempotent request may be sent again on a fresh connection).
#[derive(Debug)]
pub(crate) struct ExchangeError {
    pub(crate) error: LeanError,
    pub(crate) nothing_received: bool,
}

/// A request without a body as the lean client writes it, borrowed: a
/// caller that may send it again (a retry) keeps it whole and copies
/// nothing per try.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeanHead<'a> {
    /// The method.
    pub(crate) method: &'a http::Method,
    /// The origin-form target (path and query).
    pub(crate) path_and_query: &'a str,
    /// The header fields, `Host` included.
    pub(crate) headers: &'a http::HeaderMap,
    /// Further fields as wire lines (`name: value\r\n` each), written
    /// after `headers`' own.
    pub(crate) extra_lines: &'a [u8],
    /// Whether the response's end-to-end fields may come back as wire
    /// lines ([`crate::raw_fields`]) rather than in its `HeaderMap`: for a
    /// caller that passes them on untouched to the lean response writer.
    pub(crate) raw_fields: bool,
}

impl<'a> LeanHead<'a> {
    /// The head of a request's parts.
    pub(crate) fn of(parts: &'a http::request::Parts) -> LeanHead<'a> {
        LeanHead {
            method: &parts.method,
            path_and_query: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            headers: &parts.headers,
            extra_lines: &[],
            raw_fields: false,
        }
    }
}

/// One HTTP/1.1 connection to a target, with its read buffer.
#[derive(Debug)]
pub(crate) struct LeanConn {
    stream: TcpStream,
    buf: BytesMut,
    read_size: usize,
    /// The request head being written, kept for the next request.
    wire: Vec<u8>,
}

impl LeanConn {
    /// Wrap a connected stream.
    pub(crate) fn new(stream: TcpStream) -> LeanConn {
        LeanConn {
            stream,
            buf: BytesMut::new(),
            read_size: READ_MIN,
            wire: Vec::new(),
        }
    }

    /// Whether an idle connection can take a request: the upstream has
    /// neither closed it nor sent anything unasked. Checks readiness the
    /// IO driver already knows of first, so a live connection costs no
    /// system call.
    pub(crate) fn is_usable(&mut self) -> bool {
        // `try_read_buf` answers `WouldBlock` from the driver's readiness
        // alone when nothing is pending: no system call, and no waker to
        // register as `poll_read_ready` would (a lock each time).
        self.buf.reserve(1);
        matches!(self.stream.try_read_buf(&mut self.buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Write the head of `request` (which has no body) and read the final
    /// response head, skipping interim (1xx) responses.
    pub(crate) async fn exchange(
        &mut self,
        request: LeanHead<'_>,
    ) -> Result<ResponseHead, ExchangeError> {
        let fail = |error, nothing_received| ExchangeError {
            error,
            nothing_received,
        };
        let method = request.method;
        self.wire.clear();
        head::encode_request(&mut self.wire, &request);
        let written = self.stream.write_all(&self.wire).await;
        // An idle connection keeps no more than a usual head's worth.
        if self.wire.capacity() > 16 << 10 {
            self.wire = Vec::new();
        }
        if let Err(e) = written {
            return Err(fail(LeanError::Io(e), true));
        }
        let mut received = false;
        loop {
            if !self.buf.is_empty() {
                match head::parse_response(&mut self.buf, method, request.raw_fields) {
                    Ok(Some(head)) => {
                        if head.status.is_informational() {
                            continue;
                        }
                        return Ok(head);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(fail(LeanError::Head(e), false)),
                }
            }
            match poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) => return Err(fail(LeanError::Closed, !received)),
                Ok(_) => received = true,
                Err(e) => return Err(fail(LeanError::Io(e), !received)),
            }
        }
    }

    /// Read whatever the socket has into the buffer; `Ok(0)` is the end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
            self.buf.reserve(self.read_size);
        }
        let offered = self.buf.capacity() - self.buf.len();
        let n = ready!(crate::socket::poll_read_buf(
            &self.stream,
            cx,
            &mut self.buf
        ))?;
        if n == offered {
            self.read_size = (self.read_size * 2).min(READ_MAX);
        }
        Poll::Ready(Ok(n))
    }
}

/// What is left of a response body.
#[derive(Debug)]
enum Remaining {
    Length(u64),
    Chunked(ChunkedDecoder),
    Close,
    Done,
}

/// A response body read from a [`LeanConn`], which it returns to the pool
/// once read to its end (and drops, closing it, if dropped before).
#[derive(Debug)]
pub(crate) struct LeanBody {
    conn: Option<LeanConn>,
    remaining: Remaining,
    keep_alive: bool,
    pool: Weak<TargetPool>,
}

impl LeanBody {
    /// The body `head` announced, to be read from `conn`. A body that is
    /// already complete (no body, `Content-Length: 0`) gives the connection
    /// back at once.
    pub(crate) fn new(conn: LeanConn, head: &ResponseHead, pool: Weak<TargetPool>) -> LeanBody {
        let remaining = match head.framing {
            Framing::Empty => Remaining::Done,
            Framing::Length(n) => Remaining::Length(n),
            Framing::Chunked => Remaining::Chunked(ChunkedDecoder::new()),
            Framing::Close => Remaining::Close,
        };
        let mut body = LeanBody {
            conn: Some(conn),
            remaining,
            keep_alive: head.keep_alive,
            pool,
        };
        if matches!(body.remaining, Remaining::Done) {
            body.finish();
        }
        body
    }

    /// The body has ended: give the connection back if it can serve again.
    fn finish(&mut self) {
        self.remaining = Remaining::Done;
        let Some(conn) = self.conn.take() else { return };
        // Bytes past the end of the body would be read as the next
        // response: such a connection is not reused.
        if self.keep_alive
            && conn.buf.is_empty()
            && let Some(pool) = self.pool.upgrade()
        {
            pool.checkin_lean(conn);
        }
    }

    /// The body failed: the connection is closed, never reused.
    fn fail(&mut self, e: LeanError) -> Poll<Option<Result<Frame<Bytes>, crate::body::BoxError>>> {
        self.conn = None;
        self.remaining = Remaining::Done;
        Poll::Ready(Some(Err(Box::new(e))))
    }
}

impl http_body::Body for LeanBody {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.remaining {
                Remaining::Done => return Poll::Ready(None),
                Remaining::Length(left) => {
                    if !conn.buf.is_empty() {
                        let take = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.buf.len());
                        let data = conn.buf.split_to(take).freeze();
                        *left -= take as u64;
                        if *left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Remaining::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Some(Decoded::Data(data))) => {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(Some(Decoded::Trailers(trailers))) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Some(Decoded::End)) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(None) => {}
                    Err(e) => return this.fail(LeanError::Chunked(e)),
                },
                Remaining::Close => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    if matches!(this.remaining, Remaining::Close) {
                        // The close is the end of this body; the
                        // connection is spent.
                        this.conn = None;
                        this.remaining = Remaining::Done;
                        return Poll::Ready(None);
                    }
                    return this.fail(LeanError::Closed);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.fail(LeanError::Io(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.remaining, Remaining::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Remaining::Length(n) => SizeHint::with_exact(n),
            Remaining::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// A response head and its body as an `http` response, with the head's
/// fields as wire lines if they came so.
pub(crate) fn into_response(head: ResponseHead, body: LeanBody) -> Answer {
    use http_body_util::BodyExt as _;
    // A finished body has already given its connection back.
    let body = if body.is_end_stream() {
        crate::body::empty()
    } else {
        body.boxed()
    };
    let mut resp = http::Response::new(body);
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    *resp.headers_mut() = head.headers;
    Answer {
        response: resp,
        raw: head.raw,
    }
}
