//! Link and title extraction from HTML as it streams in: chunks of the body
//! go into a `lol_html` tokenizer as they arrive, so a page is never held
//! whole just to find its links.
//!
//! Links are the `href` of `<a>` and `<area>`, resolved against the page's
//! final URL or its `<base href>`, canonicalized (see `canon`), and
//! de-duplicated in first-seen order. The title is the text of the first
//! `<title>`, entities decoded and whitespace collapsed.

use std::sync::{Arc, Mutex, PoisonError};

use lol_html::{element, send, text};
use url::Url;

/// What the handlers collect while the tokenizer runs.
#[derive(Default)]
struct Found {
    hrefs: Vec<String>,
    base: Option<String>,
    title: String,
    title_done: bool,
}

/// Output sink for the rewriter: the crawler only reads, so rewritten
/// output is thrown away.
type Discard = fn(&[u8]);

fn discard(_: &[u8]) {}

/// A streaming extractor for one page.
pub(crate) struct LinkExtractor {
    rewriter: Option<send::HtmlRewriter<'static, Discard>>,
    found: Arc<Mutex<Found>>,
}

/// Links and title of a page.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Extracted {
    /// Absolute, canonical, de-duplicated links in document order.
    pub(crate) links: Vec<Url>,
    /// The first `<title>`'s text, if there was a non-empty one.
    pub(crate) title: Option<String>,
}

fn lock(found: &Mutex<Found>) -> std::sync::MutexGuard<'_, Found> {
    found.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LinkExtractor {
    /// An extractor ready for the first chunk.
    pub(crate) fn new() -> LinkExtractor {
        let found = Arc::new(Mutex::new(Found::default()));
        let (f1, f2, f3) = (found.clone(), found.clone(), found.clone());
        let settings = send::Settings::new_send()
            .append_element_content_handler(element!("a[href], area[href]", move |el| {
                if let Some(href) = el.get_attribute("href") {
                    lock(&f1).hrefs.push(href);
                }
                Ok(())
            }))
            .append_element_content_handler(element!("base[href]", move |el| {
                let mut f = lock(&f2);
                if f.base.is_none() {
                    f.base = el.get_attribute("href");
                }
                Ok(())
            }))
            .append_element_content_handler(text!("title", move |chunk| {
                let mut f = lock(&f3);
                if !f.title_done {
                    f.title.push_str(chunk.as_str());
                    if chunk.last_in_text_node() {
                        f.title_done = true;
                    }
                }
                Ok(())
            }));
        LinkExtractor {
            rewriter: Some(send::HtmlRewriter::new(settings, discard as Discard)),
            found,
        }
    }

    /// Feeds the next chunk of the body. A malformed document stops the
    /// extraction (what was found so far is kept); it is not an error.
    pub(crate) fn write(&mut self, chunk: &[u8]) {
        if let Some(r) = self.rewriter.as_mut()
            && r.write(chunk).is_err()
        {
            self.rewriter = None;
        }
    }

    /// Ends the document and resolves what was found against `page`.
    pub(crate) fn finish(mut self, page: &Url) -> Extracted {
        if let Some(r) = self.rewriter.take() {
            let _ = r.end();
        }
        let found = std::mem::take(&mut *lock(&self.found));
        let base = found
            .base
            .as_deref()
            .and_then(|b| page.join(&decode_entities(b)).ok())
            .unwrap_or_else(|| page.clone());
        let mut seen = std::collections::HashSet::new();
        let mut links = Vec::new();
        for href in &found.hrefs {
            if let Some(url) = super::canon::resolve(&base, &decode_entities(href))
                && seen.insert(url.as_str().to_owned())
            {
                links.push(url);
            }
        }
        let title = decode_entities(&found.title)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Extracted {
            links,
            title: (!title.is_empty()).then_some(title),
        }
    }
}

/// Decodes the character references a link or title commonly holds:
/// numeric ones and `&amp; &lt; &gt; &quot; &apos; &nbsp;`. Anything else is
/// left as written.
pub(crate) fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest[1..]
            .find(|c: char| c == ';' || c == '&' || c.is_whitespace())
            .map(|i| i + 1);
        let decoded = match end {
            Some(e) if rest.as_bytes()[e] == b';' => {
                let name = &rest[1..e];
                let ch = match name {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    "nbsp" => Some('\u{a0}'),
                    _ => name
                        .strip_prefix("#x")
                        .or_else(|| name.strip_prefix("#X"))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                ch.map(|c| (c, e + 1))
            }
            _ => None,
        };
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(chunks: &[&str], page: &str) -> Extracted {
        let mut x = LinkExtractor::new();
        for c in chunks {
            x.write(c.as_bytes());
        }
        x.finish(&Url::parse(page).unwrap())
    }

    #[test]
    fn links_and_title_across_chunk_boundaries() {
        let e = extract(
            &[
                "<html><head><ti",
                "tle> A &amp; B\n  page</title></head><body><a hr",
                "ef=\"/one\">1</a> <a href='two?x=1&amp;y=2#frag'>2</a>",
                "<a href=\"/one\">again</a><a>no href</a><area href=\"http://Other.org:80/\">",
                "<a href=\"mailto:x@y\">m</a><title>second</title></body></html>",
            ],
            "http://site.test/dir/index.html",
        );
        let links: Vec<&str> = e.links.iter().map(Url::as_str).collect();
        assert_eq!(
            links,
            vec![
                "http://site.test/one",
                "http://site.test/dir/two?x=1&y=2",
                "http://other.org/"
            ]
        );
        assert_eq!(e.title.as_deref(), Some("A & B page"));
    }

    #[test]
    fn base_href_changes_resolution() {
        let e = extract(
            &["<head><base href=\"http://cdn.test/root/\"></head><a href=\"x\">x</a>"],
            "http://site.test/a/b",
        );
        assert_eq!(e.links[0].as_str(), "http://cdn.test/root/x");
        assert_eq!(e.title, None);
    }

    #[test]
    fn links_inside_comments_and_scripts_are_not_links() {
        let e = extract(
            &[
                "<!-- <a href=\"/c\">c</a> --><script>var s = '<a href=\"/s\">';</script><a href=\"/real\">r</a>",
            ],
            "http://site.test/",
        );
        let links: Vec<&str> = e.links.iter().map(Url::as_str).collect();
        assert_eq!(links, vec!["http://site.test/real"]);
    }

    #[test]
    fn entities() {
        assert_eq!(decode_entities("a&amp;b&#65;&#x42;&lt;"), "a&bAB<");
        assert_eq!(decode_entities("x&unknown;y & z"), "x&unknown;y & z");
        assert_eq!(decode_entities("plain"), "plain");
    }
}
