//! Numbers and addresses written as ASCII straight into a byte buffer. On
//! the request path `Display` and `format!` cost more than the header work
//! around them; these writers give the same text without the formatter.
//! Also the comma-separated tokens of a field value (`Connection`, `TE`,
//! `Transfer-Encoding`), read without a `&str` conversion, and field names
//! as parsed off the wire.

use std::net::IpAddr;

use http::header::{self, HeaderName, InvalidHeaderName};

/// Write `ip` as `Display` would.
pub(crate) fn write_ip(out: &mut impl bytes::BufMut, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Into a stack buffer, then out in one piece: each `put_u8`
            // would check the buffer's room.
            let mut text = [0u8; 15];
            let mut at = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[at] = b'.';
                    at += 1;
                }
                if octet >= 100 {
                    text[at] = b'0' + octet / 100;
                    at += 1;
                }
                if octet >= 10 {
                    text[at] = b'0' + octet / 10 % 10;
                    at += 1;
                }
                text[at] = b'0' + octet % 10;
                at += 1;
            }
            out.put_slice(&text[..at]);
        }
        IpAddr::V6(v6) => out.put_slice(v6.to_string().as_bytes()),
    }
}

/// Write `n` in decimal.
pub(crate) fn write_u64(out: &mut impl bytes::BufMut, n: u64) {
    // Digits fill a stack buffer from its end, then go out in one piece.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[at..]);
}

/// Write `n` (below 1,000) as exactly three digits: a fraction's thousandths.
pub(crate) fn write_thousandths(out: &mut Vec<u8>, n: u64) {
    let n = n % 1000;
    out.extend_from_slice(&[
        b'0' + (n / 100) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]);
}

/// The comma-separated tokens of a field value, trimmed.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Whether `text` is `lower` but for ASCII case, for a `lower` spelled in
/// lowercase letters, digits and `-` and a `text` free of control
/// characters (a field name or value `httparse` accepted). Eight bytes are
/// compared at a time: setting bit 5 of such bytes lowercases letters and
/// maps nothing else onto a letter, digit or `-`.
pub(crate) fn eq_lower(text: &[u8], lower: &[u8]) -> bool {
    const CASE: u64 = 0x2020_2020_2020_2020;
    let n = text.len();
    if n != lower.len() {
        return false;
    }
    if n < 8 {
        return text.eq_ignore_ascii_case(lower);
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let mut at = 0;
    while at + 8 < n {
        if word(text, at) | CASE != word(lower, at) {
            return false;
        }
        at += 8;
    }
    // The last word may overlap the one before: no byte loop for the tail.
    word(text, n - 8) | CASE == word(lower, n - 8)
}

/// Whether a field value lists `token` (ASCII case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// The fields most messages carry, by length: looked up first, as one
/// case-insensitive comparison costs less than `HeaderName::from_bytes`'
/// lowercasing and its match over every standard name.
const COMMON_FIELDS: [(&[u8], HeaderName); 14] = [
    (b"age", header::AGE),
    (b"date", header::DATE),
    (b"etag", header::ETAG),
    (b"host", header::HOST),
    (b"vary", header::VARY),
    (b"accept", header::ACCEPT),
    (b"server", header::SERVER),
    (b"expires", header::EXPIRES),
    (b"connection", header::CONNECTION),
    (b"user-agent", header::USER_AGENT),
    (b"content-type", header::CONTENT_TYPE),
    (b"cache-control", header::CACHE_CONTROL),
    (b"last-modified", header::LAST_MODIFIED),
    (b"content-length", header::CONTENT_LENGTH),
];

/// A field name as read off the wire (any case).
pub(crate) fn field_name(name: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    for (known, header) in &COMMON_FIELDS {
        if known.len() == name.len() && known.eq_ignore_ascii_case(name) {
            return Ok(header.clone());
        }
    }
    HeaderName::from_bytes(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_match_the_http_crate() {
        for name in [
            "Date",
            "HOST",
            "content-Length",
            "Content-Type",
            "X-Custom",
            "age",
            "Etag",
            "ages",
            "Vary",
            "connection",
            "Keep-Alive",
            "user-agent",
            "Server",
            "Last-Modified",
        ] {
            assert_eq!(
                field_name(name.as_bytes()).unwrap(),
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "{name}"
            );
        }
        assert!(field_name(b"bad name").is_err());
        assert!(field_name(b"").is_err());
    }

    #[test]
    fn eq_lower_is_eq_ignore_ascii_case_on_names_and_values() {
        for (text, lower) in [
            ("Content-Length", "content-length"),
            ("CONTENT-LENGTH", "content-length"),
            ("Content-Lengt_", "content-length"),
            ("Content-Lengtm", "content-length"),
            ("Transfer-Encoding", "transfer-encoding"),
            ("Transfer-Encodinh", "transfer-encoding"),
            ("keep-alive", "keep-alive"),
            ("Keep-Alive", "keep-alive"),
            ("keep_alive", "keep-alive"),
            ("x-request-id", "x-request-id"),
            ("x-request-id", "x-request-ix"),
            ("Date", "date"),
            ("Dat", "date"),
            ("ratelimit-policy", "ratelimit-policy"),
            ("ratelimit-polic1", "ratelimit-policy"),
            ("abc.defgh", "abcndefgh"),
            ("1234567890", "1234567890"),
        ] {
            assert_eq!(
                eq_lower(text.as_bytes(), lower.as_bytes()),
                text.eq_ignore_ascii_case(lower),
                "{text} vs {lower}"
            );
        }
        // Every visible ASCII byte and tab, in every position of a long name.
        let lower = b"abcdefghij-0123456789";
        for at in 0..lower.len() {
            for b in (0x20u8..0x7f).chain([b'\t']) {
                let mut text = lower.to_vec();
                text[at] = b;
                assert_eq!(
                    eq_lower(&text, lower),
                    text.eq_ignore_ascii_case(lower),
                    "{:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }

    #[test]
    fn writes_addresses_as_display_does() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "127.0.0.1",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            write_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }

    #[test]
    fn writes_numbers_as_display_does() {
        for n in [0, 7, 10, 999, 1_000, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
        let mut out = Vec::new();
        write_thousandths(&mut out, 7);
        write_thousandths(&mut out, 45);
        write_thousandths(&mut out, 999);
        assert_eq!(out, b"007045999");
    }
}
