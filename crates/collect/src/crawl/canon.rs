//! URL canonicalization: one spelling per page, so the seen set can tell
//! two links to the same page apart from two pages.
//!
//! The rules, and nothing more (query parameters are not sorted, percent
//! escapes are not rewritten, a trailing slash is not added or removed):
//! lowercase scheme and host, drop the default port (80 for http, 443 for
//! https), resolve `.` and `..` path segments, drop the `#fragment`, and an
//! empty path becomes `/`. Only `http` and `https` URLs are crawlable.

use url::Url;

/// The canonical form of `url`, or `None` when it is not an `http(s)` URL
/// with a host.
pub(crate) fn canonical(mut url: Url) -> Option<Url> {
    // The `url` crate's parser (WHATWG) already lowercases the scheme and
    // host, drops a default port and resolves dot segments for the
    // special schemes; what is left is the fragment and the scheme filter.
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    url.set_fragment(None);
    Some(url)
}

/// Parses `href` against `base` and canonicalizes it; `None` for anything
/// that is not a crawlable `http(s)` URL (`mailto:`, `javascript:`, junk).
pub(crate) fn resolve(base: &Url, href: &str) -> Option<Url> {
    let href = href.trim();
    if href.is_empty() || href.starts_with('#') {
        return None;
    }
    base.join(href).ok().and_then(canonical)
}

/// Parses an absolute URL given by a user (a seed), canonicalized.
pub(crate) fn parse_seed(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`{s}`: scheme `{}` cannot be crawled; use http:// or https://",
            url.scheme()
        ));
    }
    canonical(url).ok_or_else(|| format!("`{s}` has no host"))
}

/// Whether `host` is `domain` or one of its subdomains.
pub(crate) fn host_in_domain(host: &str, domain: &str) -> bool {
    let host = host.trim_end_matches('.');
    let domain = domain.trim_end_matches('.');
    host.eq_ignore_ascii_case(domain)
        || (host.len() > domain.len()
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> String {
        canonical(Url::parse(s).unwrap()).unwrap().to_string()
    }

    #[test]
    fn lowercases_drops_default_port_fragment_and_dot_segments() {
        assert_eq!(
            c("HTTP://Example.COM:80/a/./b/../c#top"),
            "http://example.com/a/c"
        );
        assert_eq!(c("https://example.com:443"), "https://example.com/");
        assert_eq!(c("http://example.com:8080/x"), "http://example.com:8080/x");
    }

    #[test]
    fn keeps_query_order_escapes_and_trailing_slash() {
        assert_eq!(c("http://h/p/?b=2&a=1"), "http://h/p/?b=2&a=1");
        assert_eq!(c("http://h/%7Euser"), "http://h/%7Euser");
        assert_ne!(c("http://h/p"), c("http://h/p/"));
    }

    #[test]
    fn resolves_relative_links_and_rejects_other_schemes() {
        let base = Url::parse("http://h/dir/page.html").unwrap();
        assert_eq!(
            resolve(&base, "x.html").unwrap().as_str(),
            "http://h/dir/x.html"
        );
        assert_eq!(resolve(&base, "../y#f").unwrap().as_str(), "http://h/y");
        assert_eq!(
            resolve(&base, "//other.org").unwrap().as_str(),
            "http://other.org/"
        );
        assert!(resolve(&base, "mailto:a@b").is_none());
        assert!(resolve(&base, "javascript:void(0)").is_none());
        assert!(resolve(&base, "#top").is_none());
        assert!(resolve(&base, "").is_none());
    }

    #[test]
    fn seeds_name_their_problem() {
        assert!(parse_seed("ftp://h/").unwrap_err().contains("scheme `ftp`"));
        assert!(
            parse_seed("not a url")
                .unwrap_err()
                .contains("is not a URL")
        );
        assert_eq!(parse_seed("http://H/").unwrap().as_str(), "http://h/");
    }

    #[test]
    fn domains_match_themselves_and_subdomains_only() {
        assert!(host_in_domain("example.com", "example.com"));
        assert!(host_in_domain("www.Example.com", "example.com"));
        assert!(!host_in_domain("badexample.com", "example.com"));
        assert!(!host_in_domain("example.com.evil", "example.com"));
    }
}
