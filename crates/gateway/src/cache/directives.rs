//! The `Cache-Control` response directives that `http-cache-semantics` does
//! not act on: `stale-while-revalidate` and `stale-if-error` (RFC 5861), and
//! the directives that forbid serving stale at all (RFC 9111 §4.2.4).

use std::time::Duration;

use http::HeaderMap;
use http::header::CACHE_CONTROL;

/// What a stored response allows once it is stale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    /// `stale-while-revalidate=N`: serve stale for N seconds while refreshing in the background.
    pub(crate) stale_while_revalidate: Duration,
    /// `stale-if-error=N`: serve stale for N seconds when the upstream fails.
    pub(crate) stale_if_error: Duration,
    /// `must-revalidate`, `proxy-revalidate` or `no-cache`: never serve stale.
    pub(crate) never_stale: bool,
}

impl Directives {
    /// Parse the `Cache-Control` fields of a response.
    pub(crate) fn parse(headers: &HeaderMap) -> Directives {
        let mut d = Directives::default();
        for (name, value) in cc_items(headers) {
            match name.as_str() {
                "stale-while-revalidate" => {
                    d.stale_while_revalidate = secs(value).unwrap_or_default()
                }
                "stale-if-error" => d.stale_if_error = secs(value).unwrap_or_default(),
                "must-revalidate" | "proxy-revalidate" | "no-cache" => d.never_stale = true,
                _ => {}
            }
        }
        d
    }

    /// Whether a response stale for `stale_for` may be served while it is refreshed.
    pub(crate) fn allows_swr(&self, stale_for: Duration) -> bool {
        !self.never_stale && stale_for < self.stale_while_revalidate
    }

    /// Whether a response stale for `stale_for` may stand in for an upstream error.
    pub(crate) fn allows_sie(&self, stale_for: Duration) -> bool {
        !self.never_stale && stale_for < self.stale_if_error
    }
}

/// Whether `Cache-Control` has directive `name` (case-insensitive).
pub(crate) fn has(headers: &HeaderMap, name: &str) -> bool {
    cc_items(headers).any(|(n, _)| n == name)
}

/// `Cache-Control` with `proxy-revalidate` spelled `must-revalidate`.
///
/// For a shared cache the two mean the same (RFC 9111 §5.2.2.8), but
/// `http-cache-semantics` treats `proxy-revalidate` as "never fresh".
pub(crate) fn shared_view(headers: &HeaderMap) -> HeaderMap {
    if !has(headers, "proxy-revalidate") {
        return headers.clone();
    }
    let mut out = headers.clone();
    out.remove(CACHE_CONTROL);
    let items: Vec<String> = cc_items(headers)
        .map(|(n, v)| {
            let n = if n == "proxy-revalidate" {
                "must-revalidate".to_owned()
            } else {
                n
            };
            match v {
                Some(v) => format!("{n}={v}"),
                None => n,
            }
        })
        .collect();
    if let Ok(v) = http::HeaderValue::from_str(&items.join(", ")) {
        out.insert(CACHE_CONTROL, v);
    }
    out
}

fn cc_items(headers: &HeaderMap) -> impl Iterator<Item = (String, Option<String>)> + '_ {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let item = item.trim();
            if item.is_empty() {
                return None;
            }
            let (n, v) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"').to_owned())),
                None => (item, None),
            };
            Some((n.to_ascii_lowercase(), v))
        })
}

fn secs(v: Option<String>) -> Option<Duration> {
    v?.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, v.parse().unwrap());
        h
    }

    #[test]
    fn parses_stale_windows() {
        let d = Directives::parse(&cc(
            "max-age=1, stale-while-revalidate=30, stale-if-error=\"60\"",
        ));
        assert_eq!(d.stale_while_revalidate, Duration::from_secs(30));
        assert_eq!(d.stale_if_error, Duration::from_secs(60));
        assert!(d.allows_swr(Duration::from_secs(29)));
        assert!(!d.allows_swr(Duration::from_secs(30)));
        assert!(d.allows_sie(Duration::from_secs(59)));
    }

    #[test]
    fn must_revalidate_forbids_stale() {
        let d = Directives::parse(&cc("max-age=1, Must-Revalidate, stale-if-error=60"));
        assert!(d.never_stale);
        assert!(!d.allows_sie(Duration::ZERO));
        assert!(Directives::parse(&cc("proxy-revalidate, stale-while-revalidate=9")).never_stale);
    }

    #[test]
    fn garbage_is_ignored() {
        let d = Directives::parse(&cc("stale-while-revalidate=x, ,=, stale-if-error"));
        assert_eq!(d, Directives::default());
    }

    #[test]
    fn proxy_revalidate_becomes_must_revalidate() {
        let h = shared_view(&cc("max-age=5, proxy-revalidate"));
        assert_eq!(h[CACHE_CONTROL], "max-age=5, must-revalidate");
    }
}
