//! Request heads for the lean server path: parsed with `httparse` from the
//! connection's read buffer, and sorted into the requests the lean path
//! serves (simple: no body, no upgrade) and those it leaves to hyper.
//!
//! Anything this parser is not sure of goes to hyper rather than being
//! judged twice: a body in any form (Transfer-Encoding, a Content-Length
//! other than 0), an upgrade, CONNECT, more fields than its stack array
//! holds when the configured limit is higher. Heads that are wrong
//! whatever reads them (malformed, too large) are answered here.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::HeaderValue;
use http::{Method, Request, Uri, Version};

use crate::ascii::{field_name, has_token, tokens};
use crate::body::Body;

/// Fields parsed on the stack; hyper's default limit too.
const MAX_FIELDS: usize = 100;
/// Where the fields of a typical head are noted: on the stack, and small,
/// as it is zeroed for every head. Heads with more fields use the heap.
const INLINE_SPANS: usize = 24;

/// How large and how many fields a request head may have.
#[derive(Clone, Copy, Debug)]
pub(in crate::listener) struct HeadLimits {
    /// Bytes of request line and fields.
    pub(super) max_size: usize,
    /// Header fields.
    pub(super) max_headers: usize,
}

/// A simple request taken off the buffer.
#[derive(Debug)]
pub(super) struct Head {
    /// The request, with the empty body every simple request has: made
    /// whole here rather than moved into a `Request<Body>` later.
    pub(super) request: Request<Body>,
    /// Whether the client wants the connection kept open afterwards.
    pub(super) keep_alive: bool,
    /// Whether the client accepts trailers (`TE: trailers`).
    pub(super) trailers: bool,
}

/// What the start of the buffer holds.
// Returned by value once per head and matched at once: boxing the large
// variant would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Parsed {
    /// A simple request, taken off the buffer.
    Simple(Head),
    /// Not a whole head yet.
    Partial,
    /// A request for hyper; nothing was taken off the buffer.
    Hyper,
    /// Not HTTP/1.x: answer 400.
    Malformed,
    /// Too many fields or too many bytes: answer 431.
    TooLarge,
}

/// Where a field's name and value lie in the buffer.
type Span = (u32, u32, u32, u32);

/// Parse the request head at the start of `buf`.
///
/// Field values, the target and custom names share the buffer's bytes (no
/// copy per field), as hyper's own parser does: the head is split off the
/// buffer, which gets its memory back once the request is dropped.
pub(super) fn parse(buf: &mut BytesMut, limits: HeadLimits) -> Parsed {
    let mut inline: [Span; INLINE_SPANS] = [(0, 0, 0, 0); INLINE_SPANS];
    let mut heap: Vec<Span> = Vec::new();
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    // More fields than the stack holds are allowed: hyper counts them.
    let stack_limited = limits.max_headers > MAX_FIELDS;
    let room = limits.max_headers.min(MAX_FIELDS);
    let (used, method, target, version, count, facts) = {
        let mut req = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut req,
            buf,
            &mut fields[..room],
        );
        let used = match parsed {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) if buf.len() >= limits.max_size => {
                return Parsed::TooLarge;
            }
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(httparse::Error::TooManyHeaders) if stack_limited => return Parsed::Hyper,
            Err(httparse::Error::TooManyHeaders) => return Parsed::TooLarge,
            Err(_) => return Parsed::Malformed,
        };
        if used > limits.max_size {
            return Parsed::TooLarge;
        }
        let Ok(method) = Method::from_bytes(req.method.unwrap_or_default().as_bytes()) else {
            return Parsed::Malformed;
        };
        if method == Method::CONNECT {
            return Parsed::Hyper;
        }
        let version = match req.version {
            Some(0) => Version::HTTP_10,
            Some(1) => Version::HTTP_11,
            _ => return Parsed::Malformed,
        };
        let Some(facts) = Facts::of(req.headers) else {
            return Parsed::Hyper;
        };
        let base = buf.as_ptr() as usize;
        // Spans fit u32: a head is at most `max_size` bytes, checked above
        // against the buffer, which holds the whole head.
        let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
        let spans: &mut [Span] = if req.headers.len() <= INLINE_SPANS {
            &mut inline
        } else {
            heap.resize(req.headers.len(), (0, 0, 0, 0));
            &mut heap
        };
        for (span, f) in spans.iter_mut().zip(req.headers.iter()) {
            *span = (
                offset(f.name.as_bytes()),
                f.name.len() as u32,
                offset(f.value),
                f.value.len() as u32,
            );
        }
        let path = req.path.unwrap_or_default();
        let target = (offset(path.as_bytes()), path.len() as u32);
        (used, method, target, version, req.headers.len(), facts)
    };
    let spans = if count <= INLINE_SPANS {
        &inline[..count]
    } else {
        &heap[..]
    };
    let head = buf.split_to(used).freeze();
    let (t0, tl) = (target.0 as usize, target.1 as usize);
    let Ok(uri) = Uri::from_maybe_shared(head.slice(t0..t0 + tl)) else {
        return Parsed::Malformed;
    };
    // Room for what the proxy adds (request id, TE, X-Forwarded-*, Via).
    let mut headers = crate::header_pool::take(count + 6);
    for &(n0, nl, v0, vl) in spans {
        let (n0, v0) = (n0 as usize, v0 as usize);
        let Ok(name) = field_name(&head[n0..n0 + nl as usize]) else {
            return Parsed::Malformed;
        };
        let Ok(value) = HeaderValue::from_maybe_shared(head.slice(v0..v0 + vl as usize)) else {
            return Parsed::Malformed;
        };
        headers.append(name, value);
    }
    let mut request = Request::new(crate::body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    let keep_alive = !facts.close && (version == Version::HTTP_11 || facts.keep_alive);
    Parsed::Simple(Head {
        request,
        keep_alive,
        trailers: facts.trailers,
    })
}

/// What the fields say about the connection, for a simple request.
#[derive(Debug, Default)]
struct Facts {
    close: bool,
    keep_alive: bool,
    trailers: bool,
}

impl Facts {
    /// `None` when the request is not simple: it has a body or asks for an
    /// upgrade.
    fn of(fields: &[httparse::Header<'_>]) -> Option<Facts> {
        let mut facts = Facts::default();
        let mut length_seen = false;
        for f in fields {
            let name = f.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                // Only one `Content-Length: 0` is surely no body.
                if length_seen || f.value != b"0" {
                    return None;
                }
                length_seen = true;
            } else if name.eq_ignore_ascii_case(b"transfer-encoding")
                || name.eq_ignore_ascii_case(b"upgrade")
            {
                return None;
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in tokens(f.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        facts.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        facts.keep_alive = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        return None;
                    }
                }
            } else if name.eq_ignore_ascii_case(b"te") {
                facts.trailers |= has_token(f.value, b"trailers");
            }
        }
        Some(facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_size: 8192,
        max_headers: 100,
    };

    fn parse_str(wire: &str, limits: HeadLimits) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(wire.as_bytes());
        let parsed = parse(&mut buf, limits);
        (parsed, buf)
    }

    #[test]
    fn a_simple_get_is_taken_off_the_buffer_with_what_follows_left() {
        let (parsed, rest) = parse_str(
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\nGET /next",
            LIMITS,
        );
        let Parsed::Simple(head) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(head.request.method(), Method::GET);
        assert_eq!(head.request.uri(), "/a?b=1");
        assert_eq!(head.request.version(), Version::HTTP_11);
        assert_eq!(head.request.headers()["host"], "x");
        assert_eq!(head.request.headers().get_all("x-a").iter().count(), 2);
        assert!(head.keep_alive);
        assert!(!head.trailers);
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_field() {
        let ka = |wire: &str| match parse_str(wire, LIMITS).0 {
            Parsed::Simple(h) => h.keep_alive,
            p => panic!("{p:?}"),
        };
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n"));
        assert!(ka("HEAD / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
    }

    #[test]
    fn requests_with_a_body_or_an_upgrade_go_to_hyper_untouched() {
        for wire in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
            "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
        ] {
            let (parsed, rest) = parse_str(wire, LIMITS);
            assert!(matches!(parsed, Parsed::Hyper), "{wire:?}: {parsed:?}");
            assert_eq!(&rest[..], wire.as_bytes(), "nothing taken");
        }
    }

    #[test]
    fn partial_malformed_and_oversized_heads() {
        assert!(matches!(
            parse_str("GET / HTTP/1.1\r\nHost:", LIMITS).0,
            Parsed::Partial
        ));
        assert!(matches!(
            parse_str("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", LIMITS).0,
            Parsed::Malformed
        ));
        assert!(matches!(
            parse_str("GET / HTTP/2.0\r\n\r\n", LIMITS).0,
            Parsed::Malformed
        ));
        let small = HeadLimits {
            max_size: 64,
            max_headers: 2,
        };
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(80));
        assert!(matches!(parse_str(&long, small).0, Parsed::TooLarge));
        assert!(matches!(
            parse_str("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", small).0,
            Parsed::TooLarge
        ));
        // A limit above what the stack holds: hyper counts.
        let many = HeadLimits {
            max_size: 1 << 20,
            max_headers: 500,
        };
        let wire: String = std::iter::once("GET / HTTP/1.1\r\n".to_owned())
            .chain((0..150).map(|i| format!("X-{i}: v\r\n")))
            .chain(std::iter::once("\r\n".to_owned()))
            .collect();
        assert!(matches!(parse_str(&wire, many).0, Parsed::Hyper));
    }

    #[test]
    fn trailers_are_noticed() {
        let Parsed::Simple(h) = parse_str("GET / HTTP/1.1\r\nTE: gzip, trailers\r\n\r\n", LIMITS).0
        else {
            panic!()
        };
        assert!(h.trailers);
    }
}
