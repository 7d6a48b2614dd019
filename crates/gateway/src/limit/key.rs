//! Which bucket a request falls into: the route's `key` spec (`client_ip`,
//! `header:NAME`, `route`, or several joined by `+`) turned into bytes.
//!
//! Each part is tagged (`ip=`, `h:NAME=`, `route`) and parts are joined by
//! the unit separator 0x1F, which `http` never admits in a header value, so
//! two different requests can only share a bucket when every part agrees.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};

/// Byte between the parts of a key; no header value can contain it.
const SEP: u8 = 0x1f;

/// One part of a key spec.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// The trusted client IP.
    ClientIp,
    /// The first value of a header; the client IP when the header is missing or empty.
    Header(HeaderName),
    /// The route itself: one bucket for everyone.
    Route,
}

/// A parsed `key = "…"` spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeySpec {
    parts: Vec<Part>,
}

impl KeySpec {
    /// Parse a spec such as `client_ip+header:x-api-key`; the error says what is wrong.
    pub(crate) fn parse(spec: &str) -> Result<KeySpec, String> {
        let mut parts = Vec::new();
        for raw in spec.split('+') {
            let raw = raw.trim();
            let part = if raw == "client_ip" {
                Part::ClientIp
            } else if raw == "route" {
                Part::Route
            } else if let Some(name) = raw.strip_prefix("header:") {
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| format!("{name:?} is not a valid header name"))?;
                Part::Header(name)
            } else {
                return Err(format!(
                    "unknown key part {raw:?}; expected client_ip, header:NAME or route, joined by +"
                ));
            };
            if parts.contains(&part) {
                return Err(format!("key part {raw:?} appears twice"));
            }
            parts.push(part);
        }
        Ok(KeySpec { parts })
    }

    /// The bucket key of one request. `client_ip` is only read when a part needs it.
    pub(crate) fn extract(&self, headers: &HeaderMap, client_ip: impl Fn() -> IpAddr) -> Vec<u8> {
        let mut key = Vec::with_capacity(48);
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                key.push(SEP);
            }
            match part {
                Part::Route => key.extend_from_slice(b"route"),
                Part::ClientIp => push_ip(&mut key, client_ip()),
                Part::Header(name) => match headers.get(name).filter(|v| !v.is_empty()) {
                    Some(value) => {
                        key.extend_from_slice(b"h:");
                        key.extend_from_slice(name.as_str().as_bytes());
                        key.push(b'=');
                        key.extend_from_slice(value.as_bytes());
                    }
                    // A client without the header is limited by its IP, in a
                    // bucket no header value can reach (the tag differs).
                    None => push_ip(&mut key, client_ip()),
                },
            }
        }
        key
    }
}

fn push_ip(key: &mut Vec<u8>, ip: IpAddr) {
    // An IPv4-mapped IPv6 peer is the same client as its IPv4 address.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    key.extend_from_slice(b"ip=");
    key.extend_from_slice(ip.to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip() -> IpAddr {
        "192.0.2.7".parse().unwrap()
    }

    #[test]
    fn parses_specs_and_refuses_bad_ones() {
        assert!(KeySpec::parse("client_ip").is_ok());
        assert!(KeySpec::parse("route").is_ok());
        assert!(KeySpec::parse("client_ip+header:X-Api-Key").is_ok());
        assert!(
            KeySpec::parse("cookie:x")
                .unwrap_err()
                .contains("unknown key part")
        );
        assert!(KeySpec::parse("header:bad name").is_err());
        assert!(KeySpec::parse("route+route").unwrap_err().contains("twice"));
        assert!(KeySpec::parse("").is_err());
    }

    #[test]
    fn keys_are_tagged_and_separated() {
        let spec = KeySpec::parse("client_ip+header:x-api-key").unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("k1"));
        assert_eq!(spec.extract(&h, ip), b"ip=192.0.2.7\x1fh:x-api-key=k1");
        let route = KeySpec::parse("route").unwrap();
        assert_eq!(route.extract(&h, || panic!("route needs no IP")), b"route");
    }

    #[test]
    fn missing_or_empty_header_falls_back_to_the_client_ip() {
        let spec = KeySpec::parse("header:x-api-key").unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(spec.extract(&h, ip), b"ip=192.0.2.7");
        h.insert("x-api-key", HeaderValue::from_static(""));
        assert_eq!(spec.extract(&h, ip), b"ip=192.0.2.7");
        // A header whose value looks like the fallback still gets its own bucket.
        h.insert("x-api-key", HeaderValue::from_static("ip=192.0.2.7"));
        assert_eq!(spec.extract(&h, ip), b"h:x-api-key=ip=192.0.2.7");
    }

    #[test]
    fn mapped_ipv6_is_the_ipv4_client() {
        let spec = KeySpec::parse("client_ip").unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(spec.extract(&HeaderMap::new(), || mapped), b"ip=192.0.2.7");
    }
}
