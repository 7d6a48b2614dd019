//! The embedded web dashboard: plain HTML, CSS and ES modules compiled into
//! the binary (no front-end build step), served at `/` and `/ui/…`.
//!
//! The page talks to the REST API under `v1/` (relative URLs, so it also
//! works below a path prefix) and follows `v1/events` for live updates.
//!
//! Caching: assets live under `/ui/{version}/{file}`, where `version` is a
//! hash of every asset, so they can be cached for a year as immutable; the
//! index (which names the version) is revalidated on every load with an
//! ETag. ES module imports are relative (`./api.js`), so they stay inside
//! the same version directory without rewriting.
//!
//! Every response carries a strict Content-Security-Policy: scripts, styles
//! and connections from this origin only, nothing inline.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file under `/ui/{version}/`. A file the page loads must be listed
/// here; a test checks each import and link against this table.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/dom.js"),
    },
    Asset {
        name: "overview.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/overview.js"),
    },
    Asset {
        name: "batch.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/batch.js"),
    },
    Asset {
        name: "job.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/job.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/style.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/icon.svg"),
    },
];

/// The index page as written; `{{version}}` marks where the asset version goes.
const INDEX_TEMPLATE: &str = include_str!("assets/index.html");

/// Same origin only, nothing inline, no framing, no plugins. `connect-src`
/// covers both `fetch` and `EventSource`.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The first 16 hex digits of a BLAKE3 hash over every asset and the index:
/// changes whenever any of them does, so a cached asset is never stale.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = blake3::Hasher::new();
    hasher.update(INDEX_TEMPLATE.as_bytes());
    for asset in ASSETS {
        hasher.update(asset.name.as_bytes());
        hasher.update(&(asset.body.len() as u64).to_le_bytes());
        hasher.update(asset.body);
    }
    hasher.finalize().to_hex()[..16].to_owned()
});

static INDEX: LazyLock<String> = LazyLock::new(|| INDEX_TEMPLATE.replace("{{version}}", &VERSION));

/// The dashboard's routes: `GET /` (the page) and `GET /ui/{version}/{file}`
/// (its scripts, styles and icon). Merge into the API's router; they need no
/// state, so they fit a router of any state type.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(index))
        .route("/ui/{version}/{file}", get(asset))
}

/// The version string assets are served under (`/ui/{version}/…`).
pub fn version() -> &'static str {
    &VERSION
}

async fn index(headers: HeaderMap) -> Response {
    let etag = format!("\"{}\"", *VERSION);
    // Always revalidated (`no-cache`), but answered with a 304 when the
    // browser already holds this version.
    let mut response = if if_none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            INDEX.as_str(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    secure(h);
    response
}

async fn asset(Path((version, file)): Path<(String, String)>) -> Response {
    let found = ASSETS.iter().find(|a| a.name == file);
    let mut response = match found {
        Some(a) if version == *VERSION => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            a.body,
        )
            .into_response(),
        // An old page asking for an older version after an upgrade: a 404
        // (not the new file under the old name, which would be cached for a
        // year as if it were the old one). Reloading fetches the new index.
        _ => (
            StatusCode::NOT_FOUND,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            format!("no dashboard asset /ui/{version}/{file}\n"),
        )
            .into_response(),
    };
    secure(response.headers_mut());
    response
}

/// Whether `If-None-Match` lists `etag` (or `*`).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every relative file a module imports or the index links must be an
    /// embedded asset; a file added to `assets/` but not to `ASSETS` would
    /// otherwise be a 404 found only in a browser.
    #[test]
    fn every_referenced_file_is_embedded() {
        let names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        let mut referenced = Vec::new();
        for line in INDEX_TEMPLATE.lines() {
            if let Some((_, rest)) = line.split_once("ui/{{version}}/") {
                referenced.push(("index.html", rest.split('"').next().unwrap_or("")));
            }
        }
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).expect("utf-8 js");
            for line in text.lines() {
                if let Some((_, rest)) = line.split_once("from './") {
                    referenced.push((a.name, rest.split('\'').next().unwrap_or("")));
                }
            }
        }
        assert!(
            referenced.len() >= 8,
            "found too few references: {referenced:?}"
        );
        for (from, name) in referenced {
            assert!(
                names.contains(&name),
                "{from} references {name}, which is not in ASSETS"
            );
        }
    }

    /// The CSP forbids inline code: the index may hold no inline script,
    /// style or event handler attribute.
    #[test]
    fn index_has_nothing_inline() {
        let lower = INDEX_TEMPLATE.to_ascii_lowercase();
        for script in lower.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap_or("");
            assert!(tag.contains("src="), "inline <script{tag}>");
        }
        assert!(!lower.contains("<style"), "inline <style>");
        assert!(!lower.contains(" style="), "style attribute");
        assert!(!lower.contains(" onclick=") && !lower.contains(" onload="));
    }

    #[test]
    fn index_names_the_current_version() {
        assert!(!INDEX.contains("{{version}}"));
        assert!(INDEX.contains(&format!("ui/{}/app.js", version())));
        assert_eq!(version().len(), 16);
    }

    #[test]
    fn if_none_match_reads_lists_and_weak_tags() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(if_none_match(&h, "\"b\""));
        assert!(if_none_match(&h, "\"a\""));
        assert!(!if_none_match(&h, "\"c\""));
        assert!(!if_none_match(&HeaderMap::new(), "\"a\""));
    }
}
