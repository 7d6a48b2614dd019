//! HTTP/1.1 message heads for the lean upstream client: the request head
//! written in one buffer, and the response head parsed with `httparse`,
//! with the body framing it implies (RFC 9112 §6.3).

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::ascii::{field_name, has_token, tokens};

/// Largest response head (status line and fields) accepted; a larger one
/// is a bad response (502).
pub(crate) const MAX_HEAD: usize = 64 << 10;
/// Most response header fields accepted (hyper's default too).
const MAX_FIELDS: usize = 100;
/// Where the fields of a typical head are noted: on the stack, and small,
/// as it is zeroed for every head. Heads with more fields use the heap.
const INLINE_SPANS: usize = 24;

/// Where a field's name and value lie in the buffer.
type Span = (u32, u32, u32, u32);

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 204, 304, or `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the upstream closes the connection.
    Close,
}

/// `Keep-Alive` (RFC 7230 §A.1.2): hop-by-hop, and not kept.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    /// The end-to-end fields: `Transfer-Encoding`, `Keep-Alive` and a
    /// `Connection` that names no other field are read, not kept.
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request afterwards.
    pub(crate) keep_alive: bool,
}

/// Why a response head was refused.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// Not valid HTTP/1.x.
    Malformed(httparse::Error),
    /// Larger than [`MAX_HEAD`].
    TooLarge,
    /// A field name or value the `http` crate refuses.
    BadField,
    /// `Content-Length` that is not one number.
    BadLength,
    /// A 101 to a request that asked for no upgrade.
    UnexpectedUpgrade,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Malformed(e) => write!(f, "malformed response head: {e}"),
            HeadError::TooLarge => write!(f, "response head larger than {MAX_HEAD} bytes"),
            HeadError::BadField => f.write_str("invalid response header field"),
            HeadError::BadLength => f.write_str("invalid Content-Length in response"),
            HeadError::UnexpectedUpgrade => {
                f.write_str("101 response to a request without Upgrade")
            }
        }
    }
}

/// Write the request line and fields for a request without a body.
///
/// `Content-Length` other than `0` is dropped: the body is empty, and a
/// stale length would make the upstream wait for bytes that never come.
pub(crate) fn encode_request(
    out: &mut Vec<u8>,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH && value.as_bytes() != b"0" {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Parse a response head at the start of `buf` and take it off the
/// buffer: `Ok(None)` (nothing taken) when more bytes are needed. Interim
/// (1xx) responses are returned like any other; the caller skips them.
///
/// Field values are slices of the buffer's own bytes (no copy and no
/// allocation per field): the head is split off the read buffer, which
/// gets its memory back once the response's fields are dropped.
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    request_method: &Method,
) -> Result<Option<ResponseHead>, HeadError> {
    // Where each field's name and value lie in `buf`: the parsed fields
    // borrow `buf`, which must be split before values can share it.
    let mut inline: [Span; INLINE_SPANS] = [(0, 0, 0, 0); INLINE_SPANS];
    let mut heap: Vec<Span> = Vec::new();
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let (used, code, version, count) = {
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut fields,
        );
        let used = match parsed {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(HeadError::TooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(e) => return Err(HeadError::Malformed(e)),
        };
        if used > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let base = buf.as_ptr() as usize;
        let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
        let spans: &mut [Span] = if resp.headers.len() <= INLINE_SPANS {
            &mut inline
        } else {
            heap.resize(resp.headers.len(), (0, 0, 0, 0));
            &mut heap
        };
        for (span, f) in spans.iter_mut().zip(resp.headers.iter()) {
            *span = (
                offset(f.name.as_bytes()),
                f.name.len() as u32,
                offset(f.value),
                f.value.len() as u32,
            );
        }
        (
            used,
            resp.code.unwrap_or(0),
            resp.version,
            resp.headers.len(),
        )
    };
    let status =
        StatusCode::from_u16(code).map_err(|_| HeadError::Malformed(httparse::Error::Status))?;
    let version = if version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let spans = if count <= INLINE_SPANS {
        &inline[..count]
    } else {
        &heap[..]
    };
    let head = buf.split_to(used).freeze();
    // Room for what the proxy adds on the way back (Via, X-Request-Id,
    // rate-limit fields) without a rehash.
    let mut headers = crate::header_pool::take(count + 6);
    let mut chunked = false;
    let mut has_te = false;
    let mut length: Option<u64> = None;
    let mut close = false;
    let mut keep_alive_token = false;
    for &(n0, nl, v0, vl) in spans {
        let (n0, v0) = (n0 as usize, v0 as usize);
        let name_bytes = &head[n0..n0 + nl as usize];
        let value = head.slice(v0..v0 + vl as usize);
        let name = field_name(name_bytes).map_err(|_| HeadError::BadField)?;
        // Fields about this connection alone are read here and not kept:
        // the proxy would strip them (RFC 9110 §7.6.1), and the body's
        // framing is taken from them now.
        if name == header::TRANSFER_ENCODING {
            has_te = true;
            // Only the last coding decides: chunked must come last.
            chunked = last_token_is(&value, b"chunked");
            continue;
        } else if name == header::CONTENT_LENGTH {
            length = Some(merge_length(length, &value)?);
        } else if name == header::CONNECTION {
            close |= has_token(&value, b"close");
            keep_alive_token |= has_token(&value, b"keep-alive");
            // A `Connection` that names other fields stays, for the proxy
            // to remove them too.
            if tokens(&value).all(|t| {
                t.is_empty()
                    || t.eq_ignore_ascii_case(b"close")
                    || t.eq_ignore_ascii_case(b"keep-alive")
            }) {
                continue;
            }
        } else if name == KEEP_ALIVE {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(value).map_err(|_| HeadError::BadField)?;
        headers.append(name, value);
    }
    let no_body = *request_method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut framing = if no_body {
        Framing::Empty
    } else if has_te {
        if length.is_some() {
            // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length,
            // which must not be passed on.
            headers.remove(header::CONTENT_LENGTH);
            close = true;
        }
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(HeadError::UnexpectedUpgrade);
    }
    if status.is_informational() {
        framing = Framing::Empty;
    }
    let keep_alive =
        !close && framing != Framing::Close && (version == Version::HTTP_11 || keep_alive_token);
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// One `Content-Length` field merged with those before it: every value
/// (comma lists included) must be the same number.
fn merge_length(prev: Option<u64>, value: &[u8]) -> Result<u64, HeadError> {
    let mut out = prev;
    for item in value.split(|&b| b == b',') {
        let item = item.trim_ascii();
        if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
            return Err(HeadError::BadLength);
        }
        let n: u64 = std::str::from_utf8(item)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(HeadError::BadLength)?;
        match out {
            Some(p) if p != n => return Err(HeadError::BadLength),
            _ => out = Some(n),
        }
    }
    out.ok_or(HeadError::BadLength)
}

fn last_token_is(value: &[u8], token: &[u8]) -> bool {
    tokens(value)
        .filter(|t| !t.is_empty())
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(wire: &str, method: Method) -> ResponseHead {
        let mut buf = BytesMut::from(format!("{wire}rest").as_bytes());
        let head = parse_response(&mut buf, &method).unwrap().unwrap();
        assert_eq!(&buf[..], b"rest", "the head, and only it, is taken");
        head
    }

    #[test]
    fn request_head_is_one_buffer_without_a_stale_length() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("a.test"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        encode_request(&mut out, &Method::GET, "/p?q=1", &headers);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /p?q=1 HTTP/1.1\r\nhost: a.test\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = parse("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", Method::GET);
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(12), true));
        let h = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
            Method::HEAD,
        );
        assert_eq!(h.framing, Framing::Empty);
        assert_eq!(h.headers[header::CONTENT_LENGTH], "12");
        let h = parse("HTTP/1.1 204 No Content\r\n\r\n", Method::GET);
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true));
        let h = parse(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, Framing::Empty);
        let h = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
        let h = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        assert!(!h.headers.contains_key(header::CONTENT_LENGTH));
        let h = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            Method::GET,
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = parse("HTTP/1.1 200 OK\r\n\r\n", Method::GET);
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            Method::GET,
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, false));
        let h = parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Method::GET);
        assert_eq!((h.version, h.keep_alive), (Version::HTTP_10, false));
        let h = parse(
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\n",
            Method::GET,
        );
        assert!(h.keep_alive);
        let h = parse("HTTP/1.1 100 Continue\r\n\r\n", Method::GET);
        assert_eq!(
            (h.status, h.framing),
            (StatusCode::CONTINUE, Framing::Empty)
        );
        let h = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, Framing::Length(4));
    }

    #[test]
    fn connection_fields_are_read_not_kept() {
        let h = parse(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
             Transfer-Encoding: chunked\r\nDate: x\r\n\r\n",
            Method::GET,
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
        let names: Vec<_> = h.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["date"]);
        // A `Connection` naming another field stays, so that the proxy
        // removes that field too; `close` is still read.
        let h = parse(
            "HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n\
             Content-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(!h.keep_alive);
        assert_eq!(h.headers[header::CONNECTION], "close, X-Secret");
        assert_eq!(h.headers["x-secret"], "1");
    }

    #[test]
    fn bad_heads_are_refused() {
        let err = |wire: &str| {
            parse_response(&mut BytesMut::from(wire.as_bytes()), &Method::GET).unwrap_err()
        };
        assert!(matches!(
            err("HTTP/1.1 2x0 OK\r\n\r\n"),
            HeadError::Malformed(_)
        ));
        assert!(matches!(
            err("SPDY/3 200 OK\r\n\r\n"),
            HeadError::Malformed(_)
        ));
        assert!(matches!(
            err("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n"),
            HeadError::BadLength
        ));
        assert!(matches!(
            err("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            HeadError::BadLength
        ));
        assert!(matches!(
            err("HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            HeadError::UnexpectedUpgrade
        ));
        let big = format!("HTTP/1.1 200 OK\r\nx-big: {}\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(err(&big), HeadError::TooLarge));
        let many: String = (0..MAX_FIELDS + 1)
            .map(|i| format!("x-{i}: 1\r\n"))
            .collect();
        assert!(matches!(
            err(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
            HeadError::TooLarge
        ));
        assert!(
            parse_response(
                &mut BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]),
                &Method::GET
            )
            .unwrap()
            .is_none()
        );
    }
}
