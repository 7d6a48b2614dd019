//! HTTP/1.1 message heads for the lean upstream client: the request head
//! written in one buffer, and the response head parsed with `httparse`,
//! with the body framing it implies (RFC 9112 §6.3).

use std::mem::MaybeUninit;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::ascii::{eq_lower, field_name, tokens};
use crate::raw_fields::{FieldKind, OwnFields, RawFields};

use super::lean::LeanHead;

/// Largest response head (status line and fields) accepted; a larger one
/// is a bad response (502).
pub(crate) const MAX_HEAD: usize = 64 << 10;
/// Most response header fields accepted (hyper's default too).
const MAX_FIELDS: usize = 100;
/// Where the fields of a typical head are noted: on the stack, and small,
/// as it is zeroed for every head. Heads with more fields use the heap.
const INLINE_SPANS: usize = 24;

/// Where a field's name and value lie in the buffer, and what its name is
/// to the proxy (decided once, as the spans are noted).
#[derive(Clone, Copy)]
struct Span {
    name: u32,
    name_len: u32,
    value: u32,
    value_len: u32,
    kind: FieldKind,
}

impl Span {
    const EMPTY: Span = Span {
        name: 0,
        name_len: 0,
        value: 0,
        value_len: 0,
        kind: FieldKind::Other,
    };

    fn name<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        &head[self.name as usize..(self.name + self.name_len) as usize]
    }

    fn value<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        &head[self.value_range()]
    }

    fn value_range(&self) -> std::ops::Range<usize> {
        self.value as usize..(self.value + self.value_len) as usize
    }
}

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

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    /// The end-to-end fields: `Transfer-Encoding`, `Keep-Alive` and a
    /// `Connection` that names no other field are read, not kept. Empty
    /// when they came as [`Self::raw`].
    pub(crate) headers: HeaderMap,
    /// The fields as wire lines, when the caller asked for them so.
    pub(crate) raw: Option<RawFields>,
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
pub(crate) fn encode_request(out: &mut Vec<u8>, request: &LeanHead<'_>) {
    out.extend_from_slice(request.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(request.path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in request.headers {
        if name == header::CONTENT_LENGTH && value.as_bytes() != b"0" {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(request.extra_lines);
    out.extend_from_slice(b"\r\n");
}

/// Parse a response head at the start of `buf` and take it off the
/// buffer: `Ok(None)` (nothing taken) when more bytes are needed. Interim
/// (1xx) responses are returned like any other; the caller skips them.
///
/// Field values are slices of the buffer's own bytes (no copy and no
/// allocation per field): the head is split off the read buffer, which
/// gets its memory back once the response's fields are dropped.
///
/// With `raw`, the fields the proxy passes on untouched come back as one
/// block of wire lines ([`RawFields`]) and the map is left empty, unless a
/// `Connection` names other fields, which the proxy must remove by name:
/// such a head gets a map either way.
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    request_method: &Method,
    raw: bool,
) -> Result<Option<ResponseHead>, HeadError> {
    // Where each field's name and value lie in `buf`: the parsed fields
    // borrow `buf`, which must be split before values can share it.
    let mut inline: [Span; INLINE_SPANS] = [Span::EMPTY; INLINE_SPANS];
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
            heap.resize(resp.headers.len(), Span::EMPTY);
            &mut heap
        };
        for (span, f) in spans.iter_mut().zip(resp.headers.iter()) {
            *span = Span {
                name: offset(f.name.as_bytes()),
                name_len: f.name.len() as u32,
                value: offset(f.value),
                value_len: f.value.len() as u32,
                kind: FieldKind::of(f.name.as_bytes()),
            };
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
    let no_body = *request_method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    // First the framing and the connection's fate, read off the bytes.
    let mut chunked = false;
    let mut has_te = false;
    let mut length: Option<u64> = None;
    let mut close = false;
    let mut keep_alive_token = false;
    // A `Connection` naming other fields needs the map, for the proxy to
    // remove those.
    let mut needs_map = !raw;
    for span in spans {
        let value = span.value(&head);
        match span.kind {
            FieldKind::TransferEncoding => {
                has_te = true;
                // Only the last coding decides: chunked must come last.
                chunked = last_token_is(value, b"chunked");
            }
            FieldKind::ContentLength => length = Some(merge_length(length, value)?),
            FieldKind::Connection => {
                let options = ConnectionOptions::of(value);
                close |= options.close;
                keep_alive_token |= options.keep_alive;
                needs_map |= options.names_fields;
            }
            _ => {}
        }
    }
    // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, which
    // must not be passed on, and the connection cannot be trusted after.
    let drop_length = !no_body && has_te && length.is_some();
    close |= drop_length;
    let (headers, raw) = if needs_map {
        (map_fields(&head, spans, drop_length)?, None)
    } else {
        // As in the map: an answer without a body keeps the length it
        // announces (with Transfer-Encoding too; only a body is framed by it).
        let keep_length = no_body;
        // Room for what the proxy adds on the way back (Via, X-Request-Id,
        // rate-limit fields) without a rehash.
        let map = crate::header_pool::take(6);
        (map, Some(raw_fields(&head, spans, keep_length)))
    };
    let mut framing = if no_body {
        Framing::Empty
    } else if has_te {
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
        raw,
        framing,
        keep_alive,
    }))
}

/// What a `Connection` value says.
#[derive(Debug, Default, PartialEq, Eq)]
struct ConnectionOptions {
    close: bool,
    keep_alive: bool,
    /// It names fields (other than the options `close` and `keep-alive`)
    /// that the proxy must remove.
    names_fields: bool,
}

impl ConnectionOptions {
    /// One pass over the tokens; the usual lone `keep-alive` or `close`
    /// takes one comparison.
    fn of(value: &[u8]) -> ConnectionOptions {
        let mut out = ConnectionOptions::default();
        for token in tokens(value) {
            if eq_lower(token, b"keep-alive") {
                out.keep_alive = true;
            } else if eq_lower(token, b"close") {
                out.close = true;
            } else if !token.is_empty() {
                out.names_fields = true;
            }
        }
        out
    }
}

/// The end-to-end fields as a map. Fields about this connection alone are
/// read, not kept (`Transfer-Encoding`, `Keep-Alive`, a `Connection` of
/// options only); other hop-by-hop ones stay for the proxy to remove,
/// with the fields a `Connection` names.
fn map_fields(head: &Bytes, spans: &[Span], drop_length: bool) -> Result<HeaderMap, HeadError> {
    // Room for what the proxy adds on the way back (Via, X-Request-Id,
    // rate-limit fields) without a rehash.
    let mut headers = crate::header_pool::take(spans.len() + 6);
    for span in spans {
        let name_bytes = span.name(head);
        let value = head.slice(span.value_range());
        match span.kind {
            FieldKind::TransferEncoding | FieldKind::KeepAlive => continue,
            FieldKind::Connection if !ConnectionOptions::of(&value).names_fields => continue,
            FieldKind::ContentLength if drop_length => continue,
            _ => {}
        }
        let name = field_name(name_bytes).map_err(|_| HeadError::BadField)?;
        let value = HeaderValue::from_maybe_shared(value).map_err(|_| HeadError::BadField)?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The end-to-end fields the proxy passes on untouched, as wire lines:
/// everything but the framing, hop-by-hop fields and `X-Request-Id`
/// (which the proxy replaces). `Content-Length` stays only with
/// `keep_length` (an answer without a body announces the upstream's).
fn raw_fields(head: &Bytes, spans: &[Span], keep_length: bool) -> RawFields {
    let mut has_date = false;
    let mut has_length = false;
    let block = crate::header_arena::bytes(|out| {
        for span in spans {
            let name = span.name(head);
            match span.kind {
                FieldKind::Other => {}
                FieldKind::Date => has_date = true,
                FieldKind::ContentLength if keep_length => has_length = true,
                _ => continue,
            }
            let value = span.value(head);
            out.reserve(name.len() + value.len() + 4);
            out.put_slice(name);
            out.put_slice(b": ");
            out.put_slice(value);
            out.put_slice(b"\r\n");
        }
    });
    RawFields {
        block,
        has_date,
        has_length,
        own: OwnFields::default(),
    }
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
    use proptest::prelude::*;

    fn parse(wire: &str, method: Method) -> ResponseHead {
        parse_as(wire, method, false)
    }

    fn parse_as(wire: &str, method: Method, raw: bool) -> ResponseHead {
        let mut buf = BytesMut::from(format!("{wire}rest").as_bytes());
        let head = parse_response(&mut buf, &method, raw).unwrap().unwrap();
        assert_eq!(&buf[..], b"rest", "the head, and only it, is taken");
        head
    }

    /// The wire lines of a head parsed for raw fields.
    fn raw_lines(wire: &str, method: Method) -> String {
        let h = parse_as(wire, method, true);
        assert!(h.headers.is_empty());
        let raw = h.raw.expect("raw fields");
        String::from_utf8(raw.block.to_vec()).unwrap()
    }

    #[test]
    fn raw_fields_keep_the_end_to_end_lines_as_sent() {
        let wire = "HTTP/1.1 200 OK\r\nServer: up\r\nDate: Sun, 29 Nov 2026 10:00:00 GMT\r\n\
                    Content-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
                    Set-Cookie: a=1\r\nX-Request-Id: theirs\r\nUpgrade: h2c\r\n\
                    Trailer: x\r\nProxy-Connection: x\r\nVia: 1.1 cdn\r\nSet-Cookie: b=2\r\n\r\n";
        assert_eq!(
            raw_lines(wire, Method::GET),
            "Server: up\r\nDate: Sun, 29 Nov 2026 10:00:00 GMT\r\nSet-Cookie: a=1\r\n\
             Via: 1.1 cdn\r\nSet-Cookie: b=2\r\n"
        );
        let h = parse_as(wire, Method::GET, true);
        let raw = h.raw.unwrap();
        assert!(raw.has_date && !raw.has_length);
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(5), true));
        // An answer without a body announces the upstream's length.
        let h = parse_as(
            "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
            Method::HEAD,
            true,
        );
        let raw = h.raw.unwrap();
        assert_eq!(&raw.block[..], b"Content-Length: 12\r\n");
        assert!(raw.has_length && !raw.has_date);
        // With Transfer-Encoding, a Content-Length is not passed on.
        assert_eq!(
            raw_lines(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nx: 1\r\n\r\n",
                Method::GET
            ),
            "x: 1\r\n"
        );
    }

    #[test]
    fn a_connection_naming_fields_gets_a_map_even_when_raw_is_asked() {
        let wire = "HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nContent-Length: 0\r\n\r\n";
        let raw = parse_as(wire, Method::GET, true);
        let map = parse(wire, Method::GET);
        assert!(raw.raw.is_none());
        assert_eq!(raw.headers, map.headers);
        assert_eq!(raw.keep_alive, map.keep_alive);
    }

    #[test]
    fn raw_and_map_agree_on_framing() {
        for (wire, method) in [
            ("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", Method::GET),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
                Method::HEAD,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                Method::GET,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Method::GET,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                Method::GET,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                Method::GET,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", Method::GET),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                Method::GET,
            ),
            ("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Method::GET),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\n",
                Method::GET,
            ),
        ] {
            let raw = parse_as(wire, method.clone(), true);
            let map = parse(wire, method.clone());
            assert_eq!(
                (raw.status, raw.version, raw.framing, raw.keep_alive),
                (map.status, map.version, map.framing, map.keep_alive),
                "{wire:?}"
            );
            // The same fields, whichever way they travel, but for the
            // length of a body, which the writer announces from the body.
            let mut moved = HeaderMap::new();
            raw.raw.unwrap().append_to(&mut moved);
            let mut expected = map.headers;
            if method != Method::HEAD && map.status != StatusCode::NOT_MODIFIED {
                expected.remove(header::CONTENT_LENGTH);
            }
            assert_eq!(moved, expected, "{wire:?}");
        }
    }

    #[test]
    fn request_head_is_one_buffer_without_a_stale_length() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("a.test"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        let head = LeanHead {
            method: &Method::GET,
            path_and_query: "/p?q=1",
            headers: &headers,
            extra_lines: b"via: 1.1 sluice\r\n",
            raw_fields: false,
        };
        encode_request(&mut out, &head);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /p?q=1 HTTP/1.1\r\nhost: a.test\r\nx-a: 1\r\nx-a: 2\r\nvia: 1.1 sluice\r\n\r\n"
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

    /// A field for the equivalence property: a name from a pool that
    /// includes every name the parser treats specially, in any case, and
    /// a value that suits it.
    fn field() -> impl Strategy<Value = (String, String)> {
        const NAMES: &[&str] = &[
            "Server",
            "Date",
            "Content-Type",
            "Content-Length",
            "Transfer-Encoding",
            "Connection",
            "Keep-Alive",
            "Proxy-Connection",
            "TE",
            "Trailer",
            "Upgrade",
            "X-Request-Id",
            "Via",
            "Set-Cookie",
            "RateLimit",
            "x-a",
        ];
        const VALUES: &[&str] = &[
            "1",
            "5",
            "0",
            "7, 7",
            "close",
            "keep-alive",
            "Keep-Alive",
            "close, x-a",
            "chunked",
            "gzip, chunked",
            "gzip",
            "a=1",
            "1.1 cdn",
            "",
        ];
        (0..NAMES.len(), any::<bool>(), 0..VALUES.len()).prop_map(|(n, upper, v)| {
            let name = if upper {
                NAMES[n].to_ascii_uppercase()
            } else {
                NAMES[n].to_owned()
            };
            (name, VALUES[v].to_owned())
        })
    }

    proptest::proptest! {
        /// Whatever the head, raw fields say what the map says, less what
        /// the proxy would strip from the map anyway (hop-by-hop fields,
        /// `X-Request-Id`) and a body's length, which the writer announces.
        #[test]
        fn raw_fields_are_the_map_less_what_the_proxy_strips(
            fields in proptest::collection::vec(field(), 0..10),
            status in proptest::sample::select(vec![200u16, 204, 304, 404]),
            head in any::<bool>(),
            http10 in any::<bool>(),
        ) {
            let mut wire = format!("HTTP/1.{} {status} X\r\n", u8::from(!http10));
            for (name, value) in &fields {
                wire.push_str(&format!("{name}: {value}\r\n"));
            }
            wire.push_str("\r\n");
            let method = if head { Method::HEAD } else { Method::GET };
            let parse = |raw: bool| {
                parse_response(&mut BytesMut::from(wire.as_bytes()), &method, raw).map(Option::unwrap)
            };
            let (map, raw) = match (parse(false), parse(true)) {
                (Ok(map), Ok(raw)) => (map, raw),
                (Err(_), Err(_)) => return Ok(()),
                (m, r) => panic!("modes disagree on {wire:?}: {m:?} / {r:?}"),
            };
            prop_assert_eq!(
                (map.status, map.version, map.framing, map.keep_alive),
                (raw.status, raw.version, raw.framing, raw.keep_alive)
            );
            let Some(lines) = raw.raw else {
                prop_assert_eq!(&raw.headers, &map.headers);
                return Ok(());
            };
            prop_assert!(raw.headers.is_empty());
            let mut moved = HeaderMap::new();
            lines.append_to(&mut moved);
            let mut expected = map.headers;
            for name in ["proxy-connection", "te", "trailer", "upgrade", "x-request-id"] {
                expected.remove(name);
            }
            let no_body = head || status == 204 || status == 304;
            if !no_body {
                expected.remove(header::CONTENT_LENGTH);
            }
            prop_assert_eq!(lines.has_date, expected.contains_key(header::DATE));
            prop_assert_eq!(lines.has_length, expected.contains_key(header::CONTENT_LENGTH));
            prop_assert_eq!(moved, expected, "{:?}", wire);
        }
    }

    #[test]
    fn connection_options_are_read_in_one_pass() {
        let of = |v: &str| {
            let o = ConnectionOptions::of(v.as_bytes());
            (o.close, o.keep_alive, o.names_fields)
        };
        assert_eq!(of("keep-alive"), (false, true, false));
        assert_eq!(of("Keep-Alive"), (false, true, false));
        assert_eq!(of("close"), (true, false, false));
        assert_eq!(of(" CLOSE ,"), (true, false, false));
        assert_eq!(of("close, X-Secret"), (true, false, true));
        assert_eq!(of("keep-alive, upgrade"), (false, true, true));
        assert_eq!(of(""), (false, false, false));
    }

    #[test]
    fn bad_heads_are_refused() {
        let err = |wire: &str| {
            parse_response(&mut BytesMut::from(wire.as_bytes()), &Method::GET, false).unwrap_err()
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
                &Method::GET,
                true
            )
            .unwrap()
            .is_none()
        );
    }
}
