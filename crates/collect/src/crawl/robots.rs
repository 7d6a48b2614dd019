//! robots.txt (RFC 9309): the groups that apply to our user agent, their
//! Allow/Disallow rules with longest-match precedence, `Crawl-delay`, and
//! the file's `Sitemap` lines.
//!
//! Hand-written rather than a crate: the format is small, and the crawler
//! needs exactly these four things. Matching follows Google's reading of
//! the RFC: `*` matches any run of characters, a trailing `$` anchors the
//! end, the longest matching pattern wins, and an Allow wins a tie.

use std::time::Duration;

/// One Allow or Disallow line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    allow: bool,
    pattern: String,
}

/// The parsed robots.txt of one host, as it applies to one user agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Robots {
    rules: Vec<Rule>,
    /// `Crawl-delay` of the applicable group, if any.
    pub(crate) crawl_delay: Option<Duration>,
    /// Every `Sitemap:` URL in the file (they belong to no group).
    pub(crate) sitemaps: Vec<String>,
    /// Set when the file could not be fetched for a server-side reason:
    /// RFC 9309 says to assume everything is disallowed.
    disallow_all: bool,
}

impl Robots {
    /// Everything allowed: no robots.txt (a 4xx), or robots turned off.
    pub(crate) fn allow_all() -> Robots {
        Robots::default()
    }

    /// Everything disallowed: robots.txt unreachable (5xx, network error).
    pub(crate) fn disallow_all() -> Robots {
        Robots {
            disallow_all: true,
            ..Robots::default()
        }
    }

    /// Parses `text` for the product token `agent` (e.g. `sluice`).
    pub(crate) fn parse(text: &str, agent: &str) -> Robots {
        let agent = agent.to_ascii_lowercase();
        let mut sitemaps = Vec::new();
        // Groups as (user agents, rules, crawl-delay).
        let mut groups: Vec<(Vec<String>, Vec<Rule>, Option<Duration>)> = Vec::new();
        // A run of User-agent lines opens a group; the first rule line after
        // them closes the run.
        let mut in_agents = false;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            match key.as_str() {
                "user-agent" => {
                    if !in_agents {
                        groups.push((Vec::new(), Vec::new(), None));
                        in_agents = true;
                    }
                    if let Some(g) = groups.last_mut() {
                        g.0.push(value.to_ascii_lowercase());
                    }
                }
                "allow" | "disallow" => {
                    in_agents = false;
                    // An empty Disallow allows everything: it is no rule.
                    if let (Some(g), false) = (groups.last_mut(), value.is_empty()) {
                        g.1.push(Rule {
                            allow: key == "allow",
                            pattern: value.to_string(),
                        });
                    }
                }
                "crawl-delay" => {
                    in_agents = false;
                    if let (Some(g), Ok(secs)) = (groups.last_mut(), value.parse::<f64>())
                        && secs.is_finite()
                        && secs >= 0.0
                    {
                        g.2 = Some(Duration::from_secs_f64(secs.min(86_400.0)));
                    }
                }
                // Split at the first colon, so the URL keeps its own.
                "sitemap" if !value.is_empty() => sitemaps.push(value.to_string()),
                _ => {}
            }
        }
        let specific: Vec<usize> = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.0.iter().any(|ua| ua != "*" && agent_matches(ua, &agent)))
            .map(|(i, _)| i)
            .collect();
        let chosen: Vec<usize> = if specific.is_empty() {
            groups
                .iter()
                .enumerate()
                .filter(|(_, g)| g.0.iter().any(|ua| ua == "*"))
                .map(|(i, _)| i)
                .collect()
        } else {
            specific
        };
        let mut rules = Vec::new();
        let mut crawl_delay = None;
        for i in chosen {
            let (_, r, d) = &groups[i];
            rules.extend(r.iter().cloned());
            crawl_delay = crawl_delay.or(*d);
        }
        Robots {
            rules,
            crawl_delay,
            sitemaps,
            disallow_all: false,
        }
    }

    /// Whether `path` (the URL's path and query, e.g. `/a?b=1`) may be fetched.
    pub(crate) fn allowed(&self, path: &str) -> bool {
        if self.disallow_all {
            return false;
        }
        // robots.txt itself is always allowed (RFC 9309 §2.2.2).
        if path == "/robots.txt" {
            return true;
        }
        let mut best: Option<(usize, bool)> = None;
        for rule in &self.rules {
            if pattern_matches(&rule.pattern, path) {
                let len = rule.pattern.len();
                best = match best {
                    Some((l, a)) if l > len || (l == len && a) => Some((l, a)),
                    _ => Some((len, rule.allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// A group's user-agent line `ua` applies to our token when its product
/// name (before any `/version`) equals ours, ignoring case.
fn agent_matches(ua: &str, agent: &str) -> bool {
    let name = ua.split('/').next().unwrap_or(ua).trim();
    !name.is_empty() && name == agent
}

/// Matches a robots pattern (prefix match; `*` any run; trailing `$` end).
fn pattern_matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let pieces: Vec<&str> = pattern.split('*').collect();
    let mut pos = 0;
    for (i, piece) in pieces.iter().enumerate() {
        if i == 0 {
            if !path.starts_with(piece) {
                return false;
            }
            pos = piece.len();
            continue;
        }
        let last = i == pieces.len() - 1;
        if last && anchored {
            // The last piece must sit at the very end, after `pos`.
            return path.len() >= pos + piece.len() && path.ends_with(piece);
        }
        match path[pos..].find(piece) {
            Some(at) => pos += at + piece.len(),
            None => return false,
        }
    }
    !anchored || pos == path.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# comment
User-agent: other
Disallow: /

User-agent: *
Disallow: /private/
Allow: /private/open
Disallow: /*.pdf$
Crawl-delay: 2

Sitemap: http://example.com/sitemap.xml
";

    #[test]
    fn star_group_rules_and_longest_match() {
        let r = Robots::parse(FILE, "sluice");
        assert!(r.allowed("/"));
        assert!(!r.allowed("/private/x"));
        assert!(r.allowed("/private/open/page"));
        assert!(!r.allowed("/docs/a.pdf"));
        assert!(r.allowed("/docs/a.pdf?x=1"));
        assert_eq!(r.crawl_delay, Some(Duration::from_secs(2)));
        assert_eq!(r.sitemaps, vec!["http://example.com/sitemap.xml"]);
    }

    #[test]
    fn a_specific_group_replaces_the_star_group() {
        let r = Robots::parse(FILE, "other");
        assert!(!r.allowed("/anything"));
        assert_eq!(r.crawl_delay, None);
        let r = Robots::parse("User-agent: Sluice/1.0\nAllow: /\nDisallow: /x\n", "sluice");
        assert!(!r.allowed("/x"));
        assert!(r.allowed("/y"));
    }

    #[test]
    fn allow_wins_a_tie_and_empty_disallow_allows() {
        let r = Robots::parse("User-agent: *\nDisallow: /a\nAllow: /a\n", "sluice");
        assert!(r.allowed("/a"));
        let r = Robots::parse("User-agent: *\nDisallow:\n", "sluice");
        assert!(r.allowed("/anything"));
    }

    #[test]
    fn several_agents_share_one_group() {
        let r = Robots::parse(
            "User-agent: a\nUser-agent: sluice\nDisallow: /no\n",
            "sluice",
        );
        assert!(!r.allowed("/no"));
    }

    #[test]
    fn wildcards() {
        assert!(pattern_matches("/a*b", "/a/x/b/c"));
        assert!(!pattern_matches("/a*b$", "/a/x/b/c"));
        assert!(pattern_matches("/a*b$", "/a/x/b"));
        assert!(pattern_matches("/*", "/"));
        assert!(pattern_matches("*.php", "/index.php?x"));
        assert!(pattern_matches("/$", "/"));
        assert!(!pattern_matches("/$", "/a"));
    }

    #[test]
    fn unreachable_robots_disallows_everything() {
        let r = Robots::disallow_all();
        assert!(!r.allowed("/"));
        assert!(Robots::allow_all().allowed("/x"));
    }
}
