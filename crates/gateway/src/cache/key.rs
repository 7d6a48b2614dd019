//! Cache keys. The primary key is the request target: lowercase host (no
//! port) followed by the normalized path and query, e.g.
//! `api.example.com/items?page=2` (RFC 9111 §2). A response with `Vary`
//! is stored under a secondary key: the primary key plus the request's
//! values of each header it names (RFC 9111 §4.1).

use std::sync::Arc;

use http::{HeaderMap, HeaderName};

/// The primary key of `path_and_query` on `host` (which may be empty).
pub(crate) fn primary(host: &str, path_and_query: &str) -> String {
    let mut k = String::with_capacity(host.len() + path_and_query.len());
    k.push_str(host);
    k.push_str(path_and_query);
    k
}

/// Split a primary (or secondary) key into host and path-with-query.
pub(crate) fn split(key: &str) -> (&str, &str) {
    let key = key.split_once('\n').map_or(key, |(p, _)| p);
    match key.find('/') {
        Some(i) => key.split_at(i),
        None => (key, ""),
    }
}

/// The header names a response's `Vary` lists, lowercased, sorted, deduplicated;
/// `None` for `Vary: *`, which never matches a later request.
pub(crate) fn vary_names(response: &HeaderMap) -> Option<Arc<[HeaderName]>> {
    let mut names = Vec::new();
    for v in response.get_all(http::header::VARY) {
        let Ok(v) = v.to_str() else { return None };
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                return None;
            };
            names.push(name);
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    Some(names.into())
}

/// The secondary key: `primary`, then one line per varied header with the
/// request's values (whitespace-normalized, several fields joined by `,`).
pub(crate) fn secondary(primary: &str, names: &[HeaderName], request: &HeaderMap) -> String {
    if names.is_empty() {
        return primary.to_owned();
    }
    let mut k = primary.to_owned();
    for name in names {
        k.push('\n');
        k.push_str(name.as_str());
        k.push(':');
        let mut first = true;
        for v in request.get_all(name) {
            if !first {
                k.push(',');
            }
            first = false;
            let v = String::from_utf8_lossy(v.as_bytes());
            // RFC 9111 §4.1: values may be normalized before comparing.
            let mut words = v.split_ascii_whitespace();
            if let Some(w) = words.next() {
                k.push_str(w);
                for w in words {
                    k.push(' ');
                    k.push_str(w);
                }
            }
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn keys_split_back_into_host_and_target() {
        let p = primary("example.com", "/a/b?x=1");
        assert_eq!(split(&p), ("example.com", "/a/b?x=1"));
        assert_eq!(split("/a"), ("", "/a"));
        let s = secondary(
            &p,
            &vary_names(&headers(&[("vary", "Accept")])).unwrap(),
            &headers(&[("accept", "x/y")]),
        );
        assert_eq!(split(&s), ("example.com", "/a/b?x=1"));
    }

    #[test]
    fn vary_star_never_matches() {
        assert!(vary_names(&headers(&[("vary", "accept, *")])).is_none());
    }

    #[test]
    fn vary_values_are_normalized_and_distinguished() {
        let names = vary_names(&headers(&[
            ("vary", "Accept-Encoding, accept"),
            ("vary", "Accept"),
        ]))
        .unwrap();
        assert_eq!(names.len(), 2);
        let a = secondary("h/", &names, &headers(&[("accept-encoding", "gzip,  br")]));
        let b = secondary("h/", &names, &headers(&[("accept-encoding", " gzip, br ")]));
        let c = secondary("h/", &names, &headers(&[("accept-encoding", "br")]));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
