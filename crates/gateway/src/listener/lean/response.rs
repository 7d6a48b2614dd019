//! Responses on the lean server path: the head written into the
//! connection's write buffer, then the body streamed with the framing the
//! request and the body allow (RFC 9112 §6): `Content-Length` when the
//! body's size is known, chunked otherwise for HTTP/1.1, delimited by
//! closing the connection for HTTP/1.0; nothing after the head for HEAD,
//! 204 and 304.
//!
//! Bytes are gathered in the buffer and written when the body has nothing
//! ready, so a small response (head and body) goes out in one write, and a
//! streamed one is not held back waiting for its next frame.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{StatusCode, Version};
use http_body::{Body as _, Frame};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::ascii::has_token;
use crate::body::{Body, BoxError};
use crate::raw_fields::{Answer, RawFields};

use super::date;

/// Data frames at least this large are written from their own buffer
/// rather than copied into the write buffer.
const COPY_MAX: usize = 16 << 10;
/// Gathered bytes are written once there are this many, ready frames or not.
const GATHER_MAX: usize = 64 << 10;

/// What a response is answering, as far as its framing is concerned.
#[derive(Clone, Copy, Debug)]
pub(super) struct Answering {
    pub(super) head_method: bool,
    pub(super) version: Version,
    /// The client wants the connection kept, and the listener does too.
    pub(super) keep_alive: bool,
    /// The client accepts trailers after a chunked body.
    pub(super) trailers: bool,
}

/// How the body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body bytes at all.
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes.
    Close,
}

/// Write `resp` for a request described by `to`. Ok(true) when the
/// connection can carry another request; an error or Ok(false) means it
/// must be closed (the body failed, or its framing needs the close).
pub(super) async fn send<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut Vec<u8>,
    answer: Answer,
    to: Answering,
) -> io::Result<bool> {
    let Answer { response, raw } = answer;
    let (parts, mut body) = response.into_parts();
    let fields = Fields {
        raw: raw.as_ref(),
        map: &parts.headers,
    };
    let (framing, keep_alive) = encode_head(out, parts.status, fields, &body, to);
    crate::header_pool::give(parts.headers);
    if framing == Framing::None || body.is_end_stream() {
        if framing == Framing::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        io.write_all(out).await?;
        out.clear();
        let complete = match framing {
            Framing::None | Framing::Chunked => true,
            Framing::Length(n) => n == 0,
            Framing::Close => false,
        };
        return Ok(keep_alive && complete);
    }
    let mut sent: u64 = 0;
    // More bytes than announced were dropped: the connection cannot go on.
    let mut overflow = false;
    let mut trailers: Option<HeaderMap> = None;
    loop {
        let frame = match next_frame(io, out, &mut body).await? {
            None => break,
            Some(Err(e)) => {
                // Cut the response short: the client sees it incomplete
                // (no last chunk, or fewer bytes than announced).
                tracing::debug!(error = %e, "response body failed");
                io.write_all(out).await?;
                out.clear();
                return Ok(false);
            }
            Some(Ok(frame)) => frame,
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        let data = match framing {
            Framing::Length(n) => {
                // Never more than announced: the rest would be read as the
                // next response.
                let room = n.saturating_sub(sent);
                let take = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
                overflow |= take < data.len();
                data.slice(..take)
            }
            _ => data,
        };
        sent += data.len() as u64;
        if framing == Framing::Chunked {
            push_number(out, data.len() as u64, 16);
            out.extend_from_slice(b"\r\n");
        }
        if data.len() >= COPY_MAX {
            io.write_all(out).await?;
            out.clear();
            io.write_all(&data).await?;
        } else {
            out.extend_from_slice(&data);
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= GATHER_MAX {
            io.write_all(out).await?;
            out.clear();
        }
    }
    let complete = match framing {
        Framing::Chunked => {
            out.extend_from_slice(b"0\r\n");
            if to.trailers
                && let Some(t) = &trailers
            {
                write_fields(out, t);
            }
            out.extend_from_slice(b"\r\n");
            true
        }
        Framing::Length(n) => sent == n && !overflow,
        Framing::None | Framing::Close => false,
    };
    io.write_all(out).await?;
    out.clear();
    Ok(keep_alive && complete)
}

/// The body's next frame; while it has none ready, what is gathered in
/// `out` is written, so the client is not kept waiting for it.
async fn next_frame<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut Vec<u8>,
    body: &mut Body,
) -> io::Result<Option<Result<Frame<Bytes>, BoxError>>> {
    let mut written = 0;
    let frame = poll_fn(|cx: &mut Context<'_>| {
        if let Poll::Ready(frame) = Pin::new(&mut *body).poll_frame(cx) {
            return Poll::Ready(Ok(frame));
        }
        while written < out.len() {
            match Pin::new(&mut *io).poll_write(cx, &out[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Pending
    })
    .await;
    out.drain(..written);
    frame
}

/// A response's fields: the upstream's as wire lines, if they came so,
/// then those in the map (all of them, or the proxy's own).
#[derive(Clone, Copy)]
struct Fields<'a> {
    raw: Option<&'a RawFields>,
    map: &'a HeaderMap,
}

/// Write the status line and fields; returns the body's framing and
/// whether the connection may be kept.
fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    fields: Fields<'_>,
    body: &Body,
    to: Answering,
) -> (Framing, bool) {
    // RFC 9110 §2.5: answer with the highest 1.x version, whatever the client's.
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");

    let mut keep_alive = to.keep_alive;
    let exact = body.size_hint().exact();
    let no_body = to.head_method
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        Framing::None
    } else if let Some(n) = exact {
        Framing::Length(n)
    } else if to.version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        keep_alive = false;
        Framing::Close
    };
    // One pass over the fields: the framing ones are written here, not
    // copied; what the rest says about the connection and the date is
    // noted on the way.
    let mut has_length = false;
    let mut has_date = false;
    if let Some(raw) = fields.raw {
        // Lines already checked and stripped of framing and hop-by-hop
        // fields by the upstream client: copied as they are.
        out.extend_from_slice(&raw.block);
        has_length = raw.has_length;
        has_date = raw.has_date;
        for (name, value) in raw.own.iter() {
            write_field(out, &name, value.as_bytes());
        }
    }
    for (name, value) in fields.map {
        if *name == header::TRANSFER_ENCODING {
            continue;
        }
        if *name == header::CONNECTION {
            // A handler's own `Connection: close` (a fixed route's) is honoured.
            if has_token(value.as_bytes(), b"close") {
                keep_alive = false;
            }
            continue;
        }
        if *name == header::CONTENT_LENGTH {
            // The length a HEAD answer announces is the upstream's (the body
            // here is empty); otherwise the body's own is written below.
            if !no_body {
                continue;
            }
            has_length = true;
        } else if *name == header::DATE {
            has_date = true;
        }
        write_field(out, name, value.as_bytes());
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_number(out, n, 10);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None => {
            // A fixed answer to HEAD: the length its body would have.
            if to.head_method
                && !has_length
                && let Some(n) = exact.filter(|&n| n > 0)
            {
                out.extend_from_slice(b"content-length: ");
                push_number(out, n, 10);
                out.extend_from_slice(b"\r\n");
            }
        }
        Framing::Close => {}
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        date::write(out);
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if to.version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (framing, keep_alive)
}

/// One `name: value` line, the room for it made once.
fn write_field(out: &mut Vec<u8>, name: &HeaderName, value: &[u8]) {
    let name = name.as_str().as_bytes();
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `name: value` lines for every field (trailers).
fn write_fields(out: &mut Vec<u8>, fields: &HeaderMap) {
    for (name, value) in fields {
        write_field(out, name, value.as_bytes());
    }
}

/// `n` in base 10 or 16 (lowercase, as chunk sizes are written), without
/// going through `fmt`.
fn push_number(out: &mut Vec<u8>, mut n: u64, base: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n % base) as usize];
        n /= base;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw_fields::OwnFields;
    use http::Response;
    use http_body_util::StreamBody;

    const KEEP_11: Answering = Answering {
        head_method: false,
        version: Version::HTTP_11,
        keep_alive: true,
        trailers: false,
    };

    /// What `send` writes for `resp`, and whether it keeps the connection.
    async fn wire(resp: Response<Body>, to: Answering) -> (String, bool) {
        wire_answer(Answer::new(resp), to).await
    }

    async fn wire_answer(answer: Answer, to: Answering) -> (String, bool) {
        let mut io = std::io::Cursor::new(Vec::new());
        let mut out = Vec::new();
        let keep = send(&mut io, &mut out, answer, to).await.unwrap();
        assert!(out.is_empty(), "everything written");
        (String::from_utf8(io.into_inner()).unwrap(), keep)
    }

    /// A body of unknown length: `frames` then, if any, `trailers`.
    fn streamed(frames: &[&'static str], trailers: Option<HeaderMap>) -> Body {
        let mut items: Vec<Result<Frame<Bytes>, BoxError>> = frames
            .iter()
            .map(|f| Ok(Frame::data(Bytes::from_static(f.as_bytes()))))
            .collect();
        if let Some(t) = trailers {
            items.push(Ok(Frame::trailers(t)));
        }
        crate::body::boxed(StreamBody::new(futures_util::stream::iter(items)))
    }

    #[tokio::test]
    async fn a_known_length_body_gets_content_length_and_a_date() {
        let mut resp = Response::new(crate::body::full("hello"));
        resp.headers_mut()
            .insert("content-length", "999".parse().unwrap());
        resp.headers_mut().insert("x-a", "1".parse().unwrap());
        let (text, keep) = wire(resp, KEEP_11).await;
        assert!(keep);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\ncontent-length: 5\r\n"), "{text}");
        assert!(!text.contains("999"), "the body's own size wins: {text}");
        assert!(text.contains("\r\nx-a: 1\r\n"), "{text}");
        assert!(text.contains("\r\ndate: "), "{text}");
        assert!(!text.contains("connection"), "{text}");
        assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    }

    #[tokio::test]
    async fn raw_upstream_lines_go_first_and_their_date_and_length_count() {
        let mut resp = Response::new(crate::body::full("hello"));
        resp.headers_mut()
            .insert("via", "1.1 sluice".parse().unwrap());
        let raw = RawFields {
            block: Bytes::from_static(b"Server: up\r\nDate: then\r\nVia: 1.1 cdn\r\n"),
            has_date: true,
            has_length: false,
            own: OwnFields::default(),
        };
        let answer = Answer {
            response: resp,
            raw: Some(raw),
        };
        let (text, keep) = wire_answer(answer, KEEP_11).await;
        assert!(keep);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nServer: up\r\nDate: then\r\nVia: 1.1 cdn\r\n\
             via: 1.1 sluice\r\ncontent-length: 5\r\n\r\nhello"
        );
        // The proxy's own fields ride after the block, before the map's.
        let mut resp = Response::new(crate::body::full("hi"));
        resp.headers_mut()
            .insert("ratelimit", "\"r\";r=1;t=1".parse().unwrap());
        let answer = Answer {
            response: resp,
            raw: Some(RawFields {
                block: Bytes::from_static(b"Via: 1.0 cdn\r\n"),
                has_date: true,
                has_length: false,
                own: OwnFields {
                    via: Some("1.1 sluice".parse().unwrap()),
                    request_id: Some("abc".parse().unwrap()),
                },
            }),
        };
        let (text, _) = wire_answer(answer, KEEP_11).await;
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nVia: 1.0 cdn\r\nvia: 1.1 sluice\r\nx-request-id: abc\r\n\
             ratelimit: \"r\";r=1;t=1\r\ncontent-length: 2\r\n\r\nhi"
        );
        // A HEAD answer keeps the upstream's announced length, and only it.
        let answer = Answer {
            response: Response::new(crate::body::empty()),
            raw: Some(RawFields {
                block: Bytes::from_static(b"Content-Length: 12\r\n"),
                has_date: false,
                has_length: true,
                own: OwnFields::default(),
            }),
        };
        let to = Answering {
            head_method: true,
            ..KEEP_11
        };
        let (text, _) = wire_answer(answer, to).await;
        assert_eq!(text.matches("ength: ").count(), 1, "{text}");
        assert!(text.contains("Content-Length: 12\r\n"), "{text}");
        assert!(text.contains("\r\ndate: "), "{text}");
    }

    #[tokio::test]
    async fn an_unknown_length_is_chunked_for_1_1_with_trailers_if_accepted() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "0".parse().unwrap());
        let resp = Response::new(streamed(&["ab", "", "cde"], Some(t.clone())));
        let (text, keep) = wire(resp, KEEP_11).await;
        assert!(keep);
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
            "{text}"
        );
        let to = Answering {
            trailers: true,
            ..KEEP_11
        };
        let (text, _) = wire(Response::new(streamed(&["ab"], Some(t))), to).await;
        assert!(
            text.ends_with("2\r\nab\r\n0\r\ngrpc-status: 0\r\n\r\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_unknown_length_to_http_1_0_is_delimited_by_the_close() {
        let to = Answering {
            version: Version::HTTP_10,
            ..KEEP_11
        };
        let (text, keep) = wire(Response::new(streamed(&["ab", "c"], None)), to).await;
        assert!(!keep);
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(!text.contains("chunked") && !text.contains("content-length"));
        assert!(text.ends_with("\r\n\r\nabc"), "{text}");
        // Known length with keep-alive: said so, as 1.0 needs.
        let (text, keep) = wire(Response::new(crate::body::full("ok")), to).await;
        assert!(keep);
        assert!(text.contains("connection: keep-alive\r\n"), "{text}");
    }

    #[tokio::test]
    async fn head_204_and_304_have_no_body() {
        let to = Answering {
            head_method: true,
            ..KEEP_11
        };
        // An upstream's HEAD answer: its length stays, its (empty) body is not sent.
        let mut resp = Response::new(crate::body::empty());
        resp.headers_mut()
            .insert("content-length", "42".parse().unwrap());
        let (text, keep) = wire(resp, to).await;
        assert!(keep);
        assert!(text.contains("content-length: 42\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        // A fixed answer's length is its body's.
        let (text, _) = wire(Response::new(crate::body::full("four")), to).await;
        assert!(text.contains("content-length: 4\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
            let mut resp = Response::new(crate::body::empty());
            *resp.status_mut() = status;
            let (text, keep) = wire(resp, KEEP_11).await;
            assert!(keep);
            assert!(!text.contains("content-length"), "{text}");
            assert!(!text.contains("chunked"), "{text}");
        }
    }

    #[tokio::test]
    async fn a_handler_asking_to_close_is_obeyed() {
        let mut resp = Response::new(crate::body::full("x"));
        resp.headers_mut()
            .insert("connection", "close".parse().unwrap());
        let (text, keep) = wire(resp, KEEP_11).await;
        assert!(!keep);
        assert_eq!(text.matches("connection").count(), 1, "{text}");
    }

    #[test]
    fn numbers_in_both_bases() {
        let mut out = Vec::new();
        for (n, base) in [
            (0, 10),
            (1234567890, 10),
            (u64::MAX, 10),
            (255, 16),
            (0, 16),
        ] {
            out.clear();
            push_number(&mut out, n, base);
            let want = if base == 10 {
                n.to_string()
            } else {
                format!("{n:x}")
            };
            assert_eq!(String::from_utf8_lossy(&out), want);
        }
    }
}
