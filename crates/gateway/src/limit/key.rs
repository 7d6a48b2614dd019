//! Which bucket a request falls into: the route's `key` spec (`client_ip`,
//! `header:NAME`, `route`, or several joined by `+`) turned into bytes, and
//! those bytes hashed to a fixed size before anything stores them.
//!
//! Each part is tagged (`ip=`, `h:NAME=`, `route`) and parts are joined by
//! the unit separator 0x1F, which `http` never admits in a header value, so
//! two different requests can only share a bucket when every part agrees.
//!
//! Why hash: a key taken from a header is as long as the client makes it
//! (up to `max_header_size`), so a table bounded by key count alone would
//! not be bounded in bytes. Stored keys are therefore 128-bit hashes:
//! [`KeyHasher`] (keyed SipHash with random keys, per table) for the local
//! table, [`stable_digest`] (SHA-256, the same on every instance) for Redis.
//! Both resist crafted collisions, which could otherwise put a client into
//! another's bucket (for instance a header value aimed at the bucket of a
//! known client IP).

use std::hash::BuildHasher;
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

/// A 128-bit keyed hash of bucket keys: SipHash-1-3 with its 128-bit
/// output and a random key. Unpredictable to clients, so they cannot aim a
/// key at another's bucket, and only ever the same within one process. One
/// pass over the key (two 64-bit hashes cost twice as much).
#[derive(Clone, Debug)]
pub(crate) struct KeyHasher {
    keys: (u64, u64),
}

impl Default for KeyHasher {
    fn default() -> KeyHasher {
        KeyHasher {
            keys: (rand::random(), rand::random()),
        }
    }
}

impl KeyHasher {
    /// The stored form of `key`.
    pub(crate) fn hash(&self, key: &[u8]) -> u128 {
        use siphasher::sip128::{Hasher128, SipHasher13};
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        std::hash::Hasher::write(&mut h, key);
        h.finish128().as_u128()
    }
}

/// The table's own hasher for keys that are already [`KeyHasher`] hashes:
/// it folds the 128 bits into 64 instead of hashing them again. The input
/// is keyed and unpredictable to clients, so the fold is as safe against
/// crafted collisions as a keyed hash would be, and a third SipHash per
/// request is saved.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Prehashed;

impl BuildHasher for Prehashed {
    type Hasher = Folded;

    fn build_hasher(&self) -> Folded {
        Folded(0)
    }
}

/// The [`Prehashed`] hasher's state.
#[derive(Debug)]
pub(crate) struct Folded(u64);

impl std::hash::Hasher for Folded {
    fn write(&mut self, bytes: &[u8]) {
        // Not used for `u128` keys (they call `write_u128`); kept correct
        // for any other input by mixing each byte in.
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 ^= (v as u64) ^ ((v >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Bytes of [`stable_digest`].
pub(crate) const DIGEST_LEN: usize = 16;

/// A digest of `key` that every gateway instance computes alike (they must
/// agree on Redis key names): SHA-256, truncated to 128 bits. A collision
/// cannot be crafted without breaking SHA-256.
pub(crate) fn stable_digest(key: &[u8]) -> [u8; DIGEST_LEN] {
    let full = ring::digest::digest(&ring::digest::SHA256, key);
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&full.as_ref()[..DIGEST_LEN]);
    out
}

fn push_ip(key: &mut Vec<u8>, ip: IpAddr) {
    // An IPv4-mapped IPv6 peer is the same client as its IPv4 address.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    key.extend_from_slice(b"ip=");
    crate::ascii::write_ip(key, ip);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keyed_hashes_are_stable_and_tell_keys_apart(
            a in prop::collection::vec(any::<u8>(), 0..2048),
            b in prop::collection::vec(any::<u8>(), 0..2048),
        ) {
            let h = KeyHasher::default();
            prop_assert_eq!(h.hash(&a), h.hash(&a));
            prop_assert_eq!(stable_digest(&a), stable_digest(&a));
            if a != b {
                prop_assert_ne!(h.hash(&a), h.hash(&b));
                prop_assert_ne!(stable_digest(&a), stable_digest(&b));
            }
        }

        #[test]
        fn a_one_byte_change_anywhere_in_a_long_key_changes_both_hashes(
            key in prop::collection::vec(any::<u8>(), 1..9000),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut other = key.clone();
            let i = at.index(key.len());
            other[i] ^= flip;
            let h = KeyHasher::default();
            prop_assert_ne!(h.hash(&key), h.hash(&other));
            prop_assert_ne!(stable_digest(&key), stable_digest(&other));
        }
    }

    #[test]
    fn keyed_hashes_differ_between_hashers() {
        // Random keys: what one process (or table) computes says nothing about another's.
        let key = b"h:x-api-key=k1";
        assert_ne!(
            KeyHasher::default().hash(key),
            KeyHasher::default().hash(key)
        );
    }

    #[test]
    fn the_stable_digest_is_truncated_sha256() {
        // Known answer: instances of any version must agree on Redis key names.
        // printf 'ip=192.0.2.7' | sha256sum | cut -c1-32
        let hex: String = stable_digest(b"ip=192.0.2.7")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "49dd87659b85791cdbcebc5a897e1e3b");
    }

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
