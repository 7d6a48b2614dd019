//! Response headers that tell clients about a limit, after
//! draft-ietf-httpapi-ratelimit-headers (-11): `RateLimit-Policy` states
//! the configured quota, `RateLimit` the quota left now, and a 429 carries
//! `Retry-After` in whole seconds, rounded up.
//!
//! ```text
//! RateLimit-Policy: "api";q=100;w=1;sluice-burst=50
//! RateLimit: "api";r=0;t=1
//! Retry-After: 1
//! ```
//!
//! `t` is the number of seconds until one more request becomes available,
//! rounded up, so within `t` seconds the client can use no more than `r`,
//! and a 429's `Retry-After` never points before the end of that window.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::config::Rate;

/// `RateLimit-Policy`.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The fixed `RateLimit-Policy` value of one route's limit.
pub(crate) fn policy(name: &str, rate: &Rate, burst: u32) -> HeaderValue {
    // `w` must be whole seconds: widen the window to whole seconds and scale
    // the quota with it (`10/500ms` is advertised as q=20;w=1).
    let per_ns = rate.per.as_nanos().max(1);
    let w = ceil_secs(rate.per).max(1);
    let q = u128::from(rate.count) * u128::from(w) * 1_000_000_000 / per_ns;
    let value = format!("{};q={q};w={w};sluice-burst={burst}", sf_string(name));
    // sf_string leaves only visible ASCII, so this cannot fail.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("\"default\";q=0"))
}

/// The `RateLimit` value: `remaining` requests left, one more in `next_in`.
/// `quoted` is the policy name already quoted by [`sf_string`] (each
/// limiter keeps it, so the per-request work is two numbers, no formatter).
/// The value is carved from the per-thread header buffer
/// ([`crate::header_arena`]): no allocation per request.
pub(crate) fn remaining_for(quoted: &str, remaining: u64, next_in: Duration) -> HeaderValue {
    crate::header_arena::header_value(|v| {
        use bytes::BufMut;
        v.put_slice(quoted.as_bytes());
        v.put_slice(b";r=");
        crate::ascii::write_u64(v, remaining);
        v.put_slice(b";t=");
        crate::ascii::write_u64(v, ceil_secs(next_in));
    })
    .unwrap_or_else(|| HeaderValue::from_static("\"default\";r=0"))
}

/// Add the policy and remaining-quota headers, keeping any an upstream set
/// (the draft allows one list item per policy).
pub(crate) fn append(headers: &mut HeaderMap, policy: &HeaderValue, remaining: HeaderValue) {
    headers.append(RATELIMIT_POLICY, policy.clone());
    headers.append(RATELIMIT, remaining);
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub(crate) fn retry_after(headers: &mut HeaderMap, wait: Duration) {
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(ceil_secs(wait).max(1)),
    );
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// An RFC 8941 sf-string: quoted, `"` and `\` escaped, anything outside
/// visible ASCII and space replaced by `_`.
pub(crate) fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_follows_the_draft() {
        let r: Rate = "100/s".parse().unwrap();
        assert_eq!(policy("api", &r, 50), "\"api\";q=100;w=1;sluice-burst=50");
        let r: Rate = "10/500ms".parse().unwrap();
        assert_eq!(policy("api", &r, 0), "\"api\";q=20;w=1;sluice-burst=0");
        let r: Rate = "2/h".parse().unwrap();
        assert_eq!(
            policy("a\"b\\c\u{e9}", &r, 1),
            "\"a\\\"b\\\\c_\";q=2;w=3600;sluice-burst=1"
        );
    }

    #[test]
    fn remaining_and_retry_after_round_up() {
        assert_eq!(
            remaining_for(&sf_string("api"), 3, Duration::from_millis(1)),
            "\"api\";r=3;t=1"
        );
        assert_eq!(
            remaining_for(&sf_string("api"), 0, Duration::from_secs(60)),
            "\"api\";r=0;t=60"
        );
        let mut h = HeaderMap::new();
        retry_after(&mut h, Duration::from_nanos(1));
        assert_eq!(h[header::RETRY_AFTER], "1");
        retry_after(&mut h, Duration::from_millis(59_001));
        assert_eq!(h[header::RETRY_AFTER], "60");
    }
}
