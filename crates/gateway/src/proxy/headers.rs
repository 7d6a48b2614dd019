//! Header rules for proxying (RFC 9110 §7.6): hop-by-hop headers removed in
//! both directions, forwarding headers added, a request id made when missing.

use std::net::IpAddr;
use std::time::Instant;

use bytes::BufMut;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::config::ProxyHeadersConfig;

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1).
/// A `static`, not a `const`: a `const` array is built and dropped (seven
/// name drops) at every use. [`field_bit`] spells the same list.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

// Names and values the proxy adds, built at compile time: `from_static`
// called at run time validates (and for names, looks up) on every request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const UPGRADE_TOKEN: HeaderValue = HeaderValue::from_static("upgrade");
const PROTO_HTTP: HeaderValue = HeaderValue::from_static("http");
const PROTO_HTTPS: HeaderValue = HeaderValue::from_static("https");
const VIA_10: HeaderValue = HeaderValue::from_static("1.0 sluice");
const VIA_11: HeaderValue = HeaderValue::from_static("1.1 sluice");
const VIA_2: HeaderValue = HeaderValue::from_static("2 sluice");
/// `TE: trailers`, sent upstream when the client accepts trailers.
pub(crate) const TE_TRAILERS: HeaderValue = HeaderValue::from_static("trailers");

/// The request id header, made when the client sent none.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The comma-separated items of every `name` header (RFC 9110 §5.6.1
/// lists), untrimmed; values that are not visible ASCII are skipped.
fn list_items(headers: &HeaderMap, name: impl header::AsHeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
}

/// Which of the fields the proxy reads or rewrites a head carries, from
/// one pass over its names. Looking up a field costs a hash and a probe
/// even when it is absent, and most of these are absent from most
/// messages. A field reported present may since have been removed (the
/// lookup then finds nothing); one reported absent is absent, as long as
/// nothing but the proxy's own rules changed the head since.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Present(u16);

impl Present {
    /// Bits 0–6 follow [`HOP_BY_HOP`]; the rest are named below.
    const X_FORWARDED_FOR: u16 = 1 << 7;
    const VIA: u16 = 1 << 8;
    const CONTENT_LENGTH: u16 = 1 << 9;
    /// `X-Forwarded-Proto` or `X-Forwarded-Host`.
    const X_FORWARDED_OTHER: u16 = 1 << 10;

    /// The fields `headers` carries.
    pub(crate) fn of(headers: &HeaderMap) -> Present {
        let mut bits = 0;
        for name in headers.keys() {
            bits |= field_bit(name);
        }
        Present(bits)
    }

    fn hop_by_hop(self) -> u8 {
        (self.0 & 0x7f) as u8
    }

    /// `Connection` may be present (it may name other fields to remove).
    pub(crate) fn connection(self) -> bool {
        self.0 & 1 != 0
    }

    /// `TE` may be present.
    pub(crate) fn te(self) -> bool {
        self.0 & (1 << 3) != 0
    }

    /// `Upgrade` may be present.
    pub(crate) fn upgrade(self) -> bool {
        self.0 & (1 << 6) != 0
    }

    /// `Content-Length` may be present.
    pub(crate) fn content_length(self) -> bool {
        self.0 & Self::CONTENT_LENGTH != 0
    }

    fn x_forwarded_for(self) -> bool {
        self.0 & Self::X_FORWARDED_FOR != 0
    }

    fn via(self) -> bool {
        self.0 & Self::VIA != 0
    }
}

/// The [`Present`] bit of `name`, 0 for a field the proxy does not track:
/// a match on the spelling, cheaper than comparing with each name in turn.
fn field_bit(name: &HeaderName) -> u16 {
    match name.as_str() {
        "connection" => 1,
        "keep-alive" => 1 << 1,
        "proxy-connection" => 1 << 2,
        "te" => 1 << 3,
        "trailer" => 1 << 4,
        "transfer-encoding" => 1 << 5,
        "upgrade" => 1 << 6,
        "x-forwarded-for" => Present::X_FORWARDED_FOR,
        "x-forwarded-proto" | "x-forwarded-host" => Present::X_FORWARDED_OTHER,
        "via" => Present::VIA,
        "content-length" => Present::CONTENT_LENGTH,
        _ => 0,
    }
}

/// Remove hop-by-hop headers and every header named in `Connection`.
/// With `keep_upgrade`, `Connection: upgrade` and `Upgrade` survive (WebSocket).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let present = Present::of(headers);
    strip_hop_by_hop_present(headers, keep_upgrade, present);
}

/// [`strip_hop_by_hop`] for a head whose fields were already scanned.
pub(crate) fn strip_hop_by_hop_present(
    headers: &mut HeaderMap,
    keep_upgrade: bool,
    present: Present,
) {
    // Most messages carry none of the fixed set or one (`Connection:
    // keep-alive`), so only those found are removed by hash.
    let present = present.hop_by_hop();
    if present == 0 {
        return;
    }
    // Bit 0 is `Connection` (HOP_BY_HOP[0]).
    let named: Vec<HeaderName> = if present & 1 != 0 {
        list_items(headers, header::CONNECTION)
            .map(str::trim)
            // `keep-alive` and `close` are options, not header names to drop
            // (a `Keep-Alive` header is dropped as hop-by-hop anyway).
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect()
    } else {
        Vec::new()
    };
    let upgrade = keep_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    for name in &named {
        headers.remove(name);
    }
    if let Some(up) = upgrade {
        headers.insert(header::UPGRADE, up);
        headers.insert(header::CONNECTION, UPGRADE_TOKEN);
    }
}

/// Whether the client's `TE` accepts trailers. `TE` is hop-by-hop, but
/// `TE: trailers` is what gRPC servers require of every request, so the
/// proxy sends its own `TE: trailers` upstream when the client sent one
/// (trailers are passed back, so the promise holds end to end).
pub(crate) fn accepts_trailers(headers: &HeaderMap) -> bool {
    list_items(headers, header::TE).any(|t| {
        t.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
    })
}

/// Whether a request asks to switch to WebSocket. Other upgrades are not
/// proxied: passing `Upgrade: h2c` on would let a client open a raw HTTP/2
/// tunnel to an upstream that supports it, past routing ("h2c smuggling").
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    list_items(headers, header::UPGRADE).any(|p| {
        let name = p.trim().split('/').next().unwrap_or("");
        name.eq_ignore_ascii_case("websocket")
    }) && list_items(headers, header::CONNECTION).any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The client's address as far as we can trust it: the TCP peer, unless the
/// peer is a trusted proxy, in which case walk `X-Forwarded-For` (or
/// `Forwarded`) from the right, skipping trusted hops.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = list_items(headers, X_FORWARDED_FOR)
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if chain.is_empty() {
        chain = headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([',', ';']))
            .filter_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                if !k.trim().eq_ignore_ascii_case("for") {
                    return None;
                }
                let v = v.trim().trim_matches('"');
                let v = v
                    .strip_prefix('[')
                    .map_or(v, |s| s.split(']').next().unwrap_or(s));
                v.parse()
                    .ok()
                    .or_else(|| v.rsplit_once(':').and_then(|(h, _)| h.parse().ok()))
            })
            .collect();
    }
    for ip in chain.iter().rev() {
        if !is_trusted(ip) {
            return *ip;
        }
    }
    chain.first().copied().unwrap_or(peer)
}

/// The fields a request gets on its way upstream (`X-Forwarded-For`,
/// `-Proto`, `-Host` and `Via`), settled once, then either inserted into
/// its map or, for the lean upstream client, written as wire lines after
/// the map's own fields: four inserts (a hash and a probe each, about 250
/// instructions) cost more than the rest of the rule.
#[derive(Clone, Debug)]
pub(crate) struct Forwarding {
    /// The client, as far as it is trusted.
    pub(crate) peer: IpAddr,
    /// Whether the client connection is TLS.
    pub(crate) tls: bool,
    /// The client's `Host`.
    pub(crate) host: Option<HeaderValue>,
    /// The client's HTTP version, for `Via`.
    pub(crate) version: http::Version,
    /// Which of the fields to add (`[proxy_headers]`).
    pub(crate) adds: ProxyHeadersConfig,
}

impl Forwarding {
    /// Whether [`Self::lines`] may follow a head's own fields as they
    /// are: it carries none of the four fields, which the proxy would
    /// otherwise extend (`X-Forwarded-For`, `Via`) or replace.
    pub(crate) fn can_follow(present: Present) -> bool {
        present.0 & (Present::X_FORWARDED_FOR | Present::VIA | Present::X_FORWARDED_OTHER) == 0
    }

    /// Insert the fields into `headers`, extending an earlier
    /// `X-Forwarded-For` and `Via` (`present` tells whether to look).
    pub(crate) fn insert_into(self, headers: &mut HeaderMap, present: Present) {
        let adds = self.adds;
        // Up to four headers are added: grow the table once, not per insert.
        headers.reserve(4);
        if adds.x_forwarded_for {
            let xff = X_FORWARDED_FOR;
            let prev = present
                .x_forwarded_for()
                .then(|| headers.get(&xff))
                .flatten()
                .filter(|v| !v.is_empty());
            let value = crate::header_arena::header_value(|out| {
                if let Some(prev) = prev {
                    out.put_slice(prev.as_bytes());
                    out.put_slice(b", ");
                }
                crate::ascii::write_ip(out, self.peer);
            });
            if let Some(v) = value {
                headers.insert(xff, v);
            }
        }
        if adds.x_forwarded_proto {
            headers.insert(X_FORWARDED_PROTO, self.proto());
        }
        if adds.x_forwarded_host
            && let Some(host) = self.host
        {
            headers.insert(X_FORWARDED_HOST, host);
        }
        if adds.via {
            add_via(headers, self.version, present);
        }
    }

    /// The fields as wire lines, for a head that [`Self::can_follow`].
    pub(crate) fn lines(&self) -> bytes::Bytes {
        let adds = self.adds;
        crate::header_arena::bytes(|out| {
            if adds.x_forwarded_for {
                out.put_slice(b"x-forwarded-for: ");
                crate::ascii::write_ip(out, self.peer);
                out.put_slice(b"\r\n");
            }
            if adds.x_forwarded_proto {
                out.put_slice(b"x-forwarded-proto: ");
                out.put_slice(self.proto().as_bytes());
                out.put_slice(b"\r\n");
            }
            if adds.x_forwarded_host
                && let Some(host) = &self.host
            {
                out.put_slice(b"x-forwarded-host: ");
                out.put_slice(host.as_bytes());
                out.put_slice(b"\r\n");
            }
            if adds.via {
                out.put_slice(b"via: ");
                out.put_slice(via_hop(self.version).as_bytes());
                out.put_slice(b"\r\n");
            }
        })
    }

    fn proto(&self) -> HeaderValue {
        if self.tls { PROTO_HTTPS } else { PROTO_HTTP }
    }
}

/// This hop's `Via` entry for a message of `version`.
pub(crate) fn via_hop(version: http::Version) -> HeaderValue {
    match version {
        http::Version::HTTP_10 => VIA_10,
        http::Version::HTTP_2 => VIA_2,
        _ => VIA_11,
    }
}

/// Append this hop to `Via`; `present` tells whether to look for an earlier one.
pub(crate) fn add_via(headers: &mut HeaderMap, version: http::Version, present: Present) {
    let hop = via_hop(version);
    let prev = present.via().then(|| headers.get(header::VIA)).flatten();
    let value = match prev {
        Some(prev) => crate::header_arena::header_value(|out| {
            out.put_slice(prev.as_bytes());
            out.put_slice(b", ");
            out.put_slice(hop.as_bytes());
        })
        .unwrap_or(VIA_11),
        None => hop,
    };
    headers.insert(header::VIA, value);
}

/// Whether a client's request id is kept: not empty, at most 200 bytes.
fn usable_request_id(v: &HeaderValue) -> bool {
    !v.is_empty() && v.len() <= 200
}

/// The request id the client sent, if any and usable, without touching
/// `headers`: the id to log when the proxy makes none (`request_id = false`).
pub(crate) fn given_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(REQUEST_ID)
        .filter(|v| usable_request_id(v))
        .cloned()
}

/// The request id the client sent, or a new UUID v7 (time-ordered by
/// `received`, the request's arrival) stored in `headers`.
pub(crate) fn ensure_request_id(headers: &mut HeaderMap, received: Instant) -> HeaderValue {
    // One lookup (hashing the name once) whether the client sent an id or not.
    match headers.entry(REQUEST_ID) {
        header::Entry::Occupied(mut given) => {
            let v = given.get();
            if usable_request_id(v) {
                return v.clone();
            }
            let id = crate::request_id::new(received);
            given.insert(id.clone());
            id
        }
        header::Entry::Vacant(slot) => {
            let id = crate::request_id::new(received);
            slot.insert(id.clone());
            id
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_bits_follow_the_hop_by_hop_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(field_bit(name), 1 << i);
        }
        assert_eq!(field_bit(&header::HOST), 0);
        assert_eq!(field_bit(&REQUEST_ID), 0);
        let mut h = HeaderMap::new();
        h.insert(header::VIA, HeaderValue::from_static("1.0 a"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        let p = Present::of(&h);
        assert!(p.via() && p.content_length() && !p.te() && !p.upgrade());
        assert!(!p.x_forwarded_for());
        assert_eq!(p.hop_by_hop(), 0);
    }

    #[test]
    fn strips_hop_by_hop_and_named() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("te").is_none());
        assert_eq!(h.get("x-kept").unwrap(), "1");
    }

    #[test]
    fn keeps_upgrade_when_asked() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        let mut h2c = HeaderMap::new();
        h2c.insert(
            "connection",
            HeaderValue::from_static("Upgrade, HTTP2-Settings"),
        );
        h2c.insert("upgrade", HeaderValue::from_static("h2c"));
        assert!(!is_upgrade(&h2c));
    }

    #[test]
    fn client_ip_trusts_only_configured_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 6.6.6.6, 10.0.0.9"),
        );
        // From an untrusted peer, the header is ignored entirely.
        let untrusted: IpAddr = "5.5.5.5".parse().unwrap();
        assert_eq!(client_ip(untrusted, &h, &trusted), untrusted);
        // From a trusted peer, walk from the right past trusted hops.
        let proxy: IpAddr = "10.1.1.1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "6.6.6.6".parse::<IpAddr>().unwrap()
        );
        let mut f = HeaderMap::new();
        f.insert(
            "forwarded",
            HeaderValue::from_static("for=\"[2001:db8::1]:4711\";proto=https"),
        );
        assert_eq!(
            client_ip(proxy, &f, &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarding_lines_say_what_the_inserts_say() {
        for (peer, tls, host, version) in [
            ("10.0.0.7", false, None, http::Version::HTTP_11),
            (
                "2001:db8::1",
                true,
                Some("example.com:8443"),
                http::Version::HTTP_2,
            ),
            ("127.0.0.1", false, Some("a.test"), http::Version::HTTP_10),
        ] {
            // Every combination of `[proxy_headers]` switches.
            for bits in 0..16u8 {
                let adds = ProxyHeadersConfig {
                    x_forwarded_for: bits & 1 != 0,
                    x_forwarded_proto: bits & 2 != 0,
                    x_forwarded_host: bits & 4 != 0,
                    via: bits & 8 != 0,
                    ..ProxyHeadersConfig::default()
                };
                let fwd = Forwarding {
                    peer: peer.parse().unwrap(),
                    tls,
                    host: host.map(HeaderValue::from_static),
                    version,
                    adds,
                };
                let mut inserted = HeaderMap::new();
                fwd.clone().insert_into(&mut inserted, Present::default());
                let written: String = inserted
                    .iter()
                    .map(|(n, v)| format!("{n}: {}\r\n", v.to_str().unwrap()))
                    .collect();
                assert_eq!(String::from_utf8(fwd.lines().to_vec()).unwrap(), written);
                assert_eq!(inserted.contains_key("via"), adds.via);
                assert_eq!(
                    inserted.contains_key("x-forwarded-for"),
                    adds.x_forwarded_for
                );
                assert_eq!(
                    inserted.contains_key("x-forwarded-proto"),
                    adds.x_forwarded_proto
                );
                assert_eq!(
                    inserted.contains_key("x-forwarded-host"),
                    adds.x_forwarded_host && host.is_some()
                );
            }
        }
        let mut h = HeaderMap::new();
        assert!(Forwarding::can_follow(Present::of(&h)));
        for name in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "X-Forwarded-Host",
            "via",
        ] {
            h.clear();
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("x"),
            );
            assert!(!Forwarding::can_follow(Present::of(&h)), "{name}");
        }
    }

    #[test]
    fn forwarding_appends_to_earlier_hops() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("via", HeaderValue::from_static("1.0 edge"));
        let peer: IpAddr = "10.0.0.7".parse().unwrap();
        let present = Present::of(&h);
        Forwarding {
            peer,
            tls: true,
            host: Some(HeaderValue::from_static("example.com")),
            version: http::Version::HTTP_11,
            adds: ProxyHeadersConfig::default(),
        }
        .insert_into(&mut h, present);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.2.3.4, 10.0.0.7");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "example.com");
        assert_eq!(h.get("via").unwrap(), "1.0 edge, 1.1 sluice");
        let mut fresh = HeaderMap::new();
        Forwarding {
            peer,
            tls: false,
            host: None,
            version: http::Version::HTTP_2,
            adds: ProxyHeadersConfig::default(),
        }
        .insert_into(&mut fresh, Present::default());
        assert_eq!(fresh.get("x-forwarded-for").unwrap(), "10.0.0.7");
        assert_eq!(fresh.get("via").unwrap(), "2 sluice");
    }

    #[test]
    fn trailers_token_is_found_among_others() {
        let mut h = HeaderMap::new();
        assert!(!accepts_trailers(&h));
        h.insert("te", HeaderValue::from_static("gzip;q=0.5, Trailers"));
        assert!(accepts_trailers(&h));
        h.insert("te", HeaderValue::from_static("gzip, deflate;q=0.5"));
        assert!(!accepts_trailers(&h));
    }

    #[test]
    fn request_id_is_kept_or_made() {
        let mut h = HeaderMap::new();
        let made = ensure_request_id(&mut h, Instant::now());
        assert_eq!(made.len(), 36);
        assert_eq!(h.get(REQUEST_ID).unwrap(), &made);
        let parsed = uuid::Uuid::parse_str(made.to_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        // Its time is the arrival's on the system clock.
        let (secs, _) = parsed.get_timestamp().unwrap().to_unix();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(secs) <= 1, "{secs} {now}");
        assert_ne!(
            ensure_request_id(&mut HeaderMap::new(), Instant::now()),
            made
        );
        let mut given = HeaderMap::new();
        given.insert(REQUEST_ID, HeaderValue::from_static("abc"));
        assert_eq!(ensure_request_id(&mut given, Instant::now()), "abc");
        // An empty or overlong id is replaced, every copy of it.
        let mut bad = HeaderMap::new();
        bad.insert(REQUEST_ID, HeaderValue::from_static(""));
        bad.append(REQUEST_ID, HeaderValue::from_static("second"));
        let replaced = ensure_request_id(&mut bad, Instant::now());
        assert_eq!(replaced.len(), 36);
        assert_eq!(bad.get_all(REQUEST_ID).iter().count(), 1);
        assert_eq!(bad.get(REQUEST_ID).unwrap(), &replaced);
    }
}
