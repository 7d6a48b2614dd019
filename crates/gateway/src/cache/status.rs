//! The `Cache-Status` response header (RFC 9211): what the cache did with
//! one request, as one structured-field list member named `sluice`.

use std::fmt;

use http::{HeaderMap, HeaderName};

/// `cache-status`.
pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Why a request went to the upstream (RFC 9211 §2.2 `fwd` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fwd {
    /// Not handled by the cache (e.g. a `Range` request).
    Bypass,
    /// The method is not cacheable (POST, PUT, …).
    Method,
    /// Nothing stored for this URI.
    UriMiss,
    /// Something stored for this URI, but not for these `Vary` headers.
    VaryMiss,
    /// A stored response existed but could not be used (e.g. `Vary: *`).
    Miss,
    /// A fresh response was stored, but the request's `Cache-Control` refused it.
    Request,
    /// The stored response was stale and had to be revalidated or refetched.
    Stale,
}

impl Fwd {
    fn as_str(self) -> &'static str {
        match self {
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Miss => "miss",
            Fwd::Request => "request",
            Fwd::Stale => "stale",
        }
    }
}

/// One `Cache-Status` member.
#[derive(Clone, Debug, Default)]
pub(crate) struct CacheStatus {
    /// Served from the cache without going upstream.
    pub(crate) hit: bool,
    /// Why the upstream was asked, when it was.
    pub(crate) fwd: Option<Fwd>,
    /// The status the upstream answered with.
    pub(crate) fwd_status: Option<u16>,
    /// Remaining freshness in seconds; negative when served stale.
    pub(crate) ttl: Option<i64>,
    /// The response is being stored.
    pub(crate) stored: bool,
    /// This request waited for another one's upstream fetch instead of its own.
    pub(crate) collapsed: bool,
    /// Extra word: `stale-while-revalidate`, `stale-if-error`, `range`, `too-large`, `not-storable`.
    pub(crate) detail: Option<&'static str>,
}

impl CacheStatus {
    /// A hit with `ttl` seconds of freshness left.
    pub(crate) fn hit(ttl: i64) -> CacheStatus {
        CacheStatus {
            hit: true,
            ttl: Some(ttl),
            ..Default::default()
        }
    }

    /// A forward for `why`.
    pub(crate) fn fwd(why: Fwd) -> CacheStatus {
        CacheStatus {
            fwd: Some(why),
            ..Default::default()
        }
    }

    /// Append this member to `headers`, after any upstream cache's (RFC 9211 §2:
    /// the member nearest the client comes last).
    ///
    /// The value is written as bytes into the per-thread header buffer
    /// ([`crate::header_arena`]): on a cache hit, formatting it through
    /// `Display` into a `String` cost more than finding the entry.
    pub(crate) fn append_to(&self, headers: &mut HeaderMap) {
        if let Some(v) = crate::header_arena::header_value(|out| self.encode(out)) {
            headers.append(CACHE_STATUS, v);
        }
    }

    /// The member as it goes on the wire (what `Display` prints).
    fn encode(&self, out: &mut impl bytes::BufMut) {
        use crate::ascii::write_u64;
        out.put_slice(b"sluice");
        if self.hit {
            out.put_slice(b"; hit");
        }
        if let Some(fwd) = self.fwd {
            out.put_slice(b"; fwd=");
            out.put_slice(fwd.as_str().as_bytes());
        }
        if let Some(s) = self.fwd_status {
            out.put_slice(b"; fwd-status=");
            write_u64(out, u64::from(s));
        }
        if let Some(ttl) = self.ttl {
            out.put_slice(b"; ttl=");
            if ttl < 0 {
                out.put_u8(b'-');
            }
            write_u64(out, ttl.unsigned_abs());
        }
        if self.stored {
            out.put_slice(b"; stored");
        }
        if self.collapsed {
            out.put_slice(b"; collapsed");
        }
        if let Some(d) = self.detail {
            out.put_slice(b"; detail=");
            out.put_slice(d.as_bytes());
        }
    }
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(64);
        self.encode(&mut out);
        // Only ASCII is written.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn formats_as_rfc9211_members() {
        assert_eq!(CacheStatus::hit(42).to_string(), "sluice; hit; ttl=42");
        let mut s = CacheStatus::fwd(Fwd::UriMiss);
        s.fwd_status = Some(200);
        s.stored = true;
        assert_eq!(
            s.to_string(),
            "sluice; fwd=uri-miss; fwd-status=200; stored"
        );
        let mut s = CacheStatus::hit(-3);
        s.detail = Some("stale-while-revalidate");
        assert_eq!(
            s.to_string(),
            "sluice; hit; ttl=-3; detail=stale-while-revalidate"
        );
    }

    #[test]
    fn the_header_carries_the_member_after_any_upstream_one() {
        let mut h = HeaderMap::new();
        h.append(CACHE_STATUS, HeaderValue::from_static("origin; hit"));
        let mut s = CacheStatus::fwd(Fwd::Stale);
        s.fwd_status = Some(304);
        s.ttl = Some(120);
        s.collapsed = true;
        s.append_to(&mut h);
        let all: Vec<_> = h.get_all(CACHE_STATUS).iter().collect();
        assert_eq!(
            all,
            [
                "origin; hit",
                "sluice; fwd=stale; fwd-status=304; ttl=120; collapsed"
            ]
        );
    }
}
