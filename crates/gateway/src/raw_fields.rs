//! An upstream response's end-to-end header fields kept as the bytes they
//! go back on the wire as, for the lean HTTP/1.1 server path.
//!
//! A plain proxied response is read off one socket and written to another.
//! Building a `HeaderMap` in between (a name lookup, a hash, a validated
//! value and an insert per field, then a walk over the map to write it out)
//! was the largest single cost of such a request. When nothing on the way
//! reads or changes the upstream's fields (no cache, no upgrade, a client
//! on the lean path), the upstream client instead copies the lines it keeps
//! into one buffer, and the lean response writer writes that buffer, then
//! the proxy's `Via` hop and `X-Request-Id` (carried beside it as
//! [`OwnFields`], not inserted into a map), then whatever else the proxy
//! adds (`RateLimit`), which stays in the response's `HeaderMap`. (A route's
//! `RateLimit` fields join an upstream's, one list item per policy, as in
//! the map.)
//!
//! The block travels beside the response, in an [`Answer`] (a response
//! extension would cost a map and two allocations per request). Anything
//! that must see a `HeaderMap` after all (hyper writing the response)
//! first moves the block into the map with [`Answer::into_response`].

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response};

use crate::body::Body;

/// Field lines (`name: value\r\n` each, nothing else) with what the
/// response writer needs to know of them.
#[derive(Clone, Debug)]
pub(crate) struct RawFields {
    /// The lines, in the upstream's order and spelling.
    pub(crate) block: Bytes,
    /// A `Date` line is among them: the writer adds none.
    pub(crate) has_date: bool,
    /// A `Content-Length` line is among them (a HEAD, 204 or 304 answer
    /// keeps the upstream's): the writer adds none.
    pub(crate) has_length: bool,
    /// The proxy's own fields that every proxied response gets, written
    /// right after the block: two map inserts fewer per request.
    pub(crate) own: OwnFields,
}

/// The proxy's `Via` hop and `X-Request-Id`, when they ride with a block.
#[derive(Clone, Debug, Default)]
pub(crate) struct OwnFields {
    /// This hop's `Via` entry (after any `Via` in the block).
    pub(crate) via: Option<HeaderValue>,
    /// The request's id.
    pub(crate) request_id: Option<HeaderValue>,
}

impl OwnFields {
    /// The fields in the order they are written.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (HeaderName, &HeaderValue)> {
        let via = self.via.as_ref().map(|v| (http::header::VIA, v));
        let id = self
            .request_id
            .as_ref()
            .map(|v| (crate::proxy::headers::REQUEST_ID, v));
        via.into_iter().chain(id)
    }
}

/// A response, and the upstream's fields as wire lines when they came so
/// (they are then not in its map, which holds the proxy's own fields).
#[derive(Debug)]
pub(crate) struct Answer {
    /// The response.
    pub(crate) response: Response<Body>,
    /// The upstream's fields, when not in the response's map.
    pub(crate) raw: Option<RawFields>,
}

impl Answer {
    /// A response with every field in its map.
    pub(crate) fn new(response: Response<Body>) -> Answer {
        Answer {
            response,
            raw: None,
        }
    }

    /// The response with the raw lines moved into its map, for a writer
    /// that only knows maps. The upstream's fields go first, as the lean
    /// writer puts them: a `Via` the proxy added follows the upstream's own.
    pub(crate) fn into_response(self) -> Response<Body> {
        let Answer {
            mut response,
            raw: Some(raw),
        } = self
        else {
            return self.response;
        };
        let own = std::mem::take(response.headers_mut());
        let map = response.headers_mut();
        raw.append_to(map);
        let mut last = None;
        for (name, value) in own {
            // `None` repeats the previous name (a field with several values).
            if let Some(name) = name {
                last = Some(name);
            }
            if let Some(name) = &last {
                map.append(name.clone(), value);
            }
        }
        response
    }
}

impl RawFields {
    /// Append every line to `map` as a field. The lines came from a head
    /// that `httparse` accepted, so each is valid; one that the `http`
    /// crate refuses even so is skipped rather than passed on.
    pub(crate) fn append_to(&self, map: &mut HeaderMap) {
        self.append_block_to(map);
        for (name, value) in self.own.iter() {
            map.append(name, value.clone());
        }
    }

    fn append_block_to(&self, map: &mut HeaderMap) {
        for line in self.block.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let value = line[colon + 1..].trim_ascii_start();
            let start = value.as_ptr() as usize - self.block.as_ptr() as usize;
            let value = self.block.slice(start..start + value.len());
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_maybe_shared(value),
            ) {
                map.append(name, value);
            }
        }
    }
}

/// What the proxy does with an upstream response field, by its name: read
/// for the framing, dropped as hop-by-hop, replaced by the proxy's own, or
/// passed on. Decided on the name's bytes, case-insensitively, without
/// making a `HeaderName`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldKind {
    /// `Transfer-Encoding`: read for the framing, never passed on.
    TransferEncoding,
    /// `Content-Length`: read for the framing; the writer writes its own.
    ContentLength,
    /// `Connection`: read; passed on (to be acted on) only in a map.
    Connection,
    /// `Keep-Alive`: a connection option, never passed on.
    KeepAlive,
    /// `Proxy-Connection`, `TE`, `Trailer`, `Upgrade` (RFC 9110 §7.6.1):
    /// the proxy strips them from a response.
    HopByHop,
    /// `X-Request-Id`: the proxy always sets its own.
    RequestId,
    /// `Date`.
    Date,
    /// Anything else: passed on as it is.
    Other,
}

impl FieldKind {
    /// The kind of the field named `name` (a token, as `httparse` checks).
    pub(crate) fn of(name: &[u8]) -> FieldKind {
        let is = |spelled: &[u8]| crate::ascii::eq_lower(name, spelled);
        // The length picks at most two candidates: one or two comparisons
        // per field instead of one per name.
        match name.len() {
            2 if is(b"te") => FieldKind::HopByHop,
            4 if is(b"date") => FieldKind::Date,
            7 if is(b"trailer") || is(b"upgrade") => FieldKind::HopByHop,
            10 if is(b"connection") => FieldKind::Connection,
            10 if is(b"keep-alive") => FieldKind::KeepAlive,
            12 if is(b"x-request-id") => FieldKind::RequestId,
            14 if is(b"content-length") => FieldKind::ContentLength,
            16 if is(b"proxy-connection") => FieldKind::HopByHop,
            17 if is(b"transfer-encoding") => FieldKind::TransferEncoding,
            _ => FieldKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_ignore_case_and_need_the_whole_name() {
        assert_eq!(FieldKind::of(b"Content-Length"), FieldKind::ContentLength);
        assert_eq!(
            FieldKind::of(b"TRANSFER-ENCODING"),
            FieldKind::TransferEncoding
        );
        assert_eq!(FieldKind::of(b"te"), FieldKind::HopByHop);
        assert_eq!(FieldKind::of(b"Upgrade"), FieldKind::HopByHop);
        assert_eq!(FieldKind::of(b"Proxy-Connection"), FieldKind::HopByHop);
        assert_eq!(FieldKind::of(b"X-Request-ID"), FieldKind::RequestId);
        assert_eq!(FieldKind::of(b"RateLimit-Policy"), FieldKind::Other);
        assert_eq!(FieldKind::of(b"Date"), FieldKind::Date);
        assert_eq!(FieldKind::of(b"dates"), FieldKind::Other);
        assert_eq!(FieldKind::of(b"tf"), FieldKind::Other);
        assert_eq!(FieldKind::of(b"x-request-ix"), FieldKind::Other);
        assert_eq!(FieldKind::of(b"Server"), FieldKind::Other);
    }

    #[test]
    fn a_block_moves_into_the_map_before_the_fields_there() {
        let mut resp = Response::new(crate::body::empty());
        resp.headers_mut()
            .insert("via", HeaderValue::from_static("1.1 sluice"));
        let answer = Answer {
            response: resp,
            raw: Some(RawFields {
                own: OwnFields::default(),
                block: Bytes::from_static(
                    b"Server: up\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nVia: 1.1 other\r\n",
                ),
                has_date: false,
                has_length: false,
            }),
        };
        let resp = answer.into_response();
        let h = resp.headers();
        assert_eq!(h["server"], "up");
        let cookies: Vec<_> = h.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        let via: Vec<_> = h.get_all("via").iter().collect();
        assert_eq!(via, ["1.1 other", "1.1 sluice"]);
    }

    #[test]
    fn own_fields_move_into_the_map_after_the_block() {
        let mut resp = Response::new(crate::body::empty());
        resp.headers_mut()
            .insert("ratelimit", HeaderValue::from_static("\"r\";r=1;t=1"));
        let answer = Answer {
            response: resp,
            raw: Some(RawFields {
                block: Bytes::from_static(b"Via: 1.0 cdn\r\n"),
                has_date: false,
                has_length: false,
                own: OwnFields {
                    via: Some(HeaderValue::from_static("1.1 sluice")),
                    request_id: Some(HeaderValue::from_static("abc")),
                },
            }),
        };
        let resp = answer.into_response();
        let names: Vec<_> = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("via", HeaderValue::from_static("1.0 cdn")),
                ("via", HeaderValue::from_static("1.1 sluice")),
                ("x-request-id", HeaderValue::from_static("abc")),
                ("ratelimit", HeaderValue::from_static("\"r\";r=1;t=1")),
            ]
        );
    }
}
