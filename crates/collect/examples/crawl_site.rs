//! A fast synthetic site for the crawl benchmark (`bench/collect.sh crawl`).
//!
//! `cargo run --release -p sluice-collect --example crawl_site -- [ADDR] [PAGES]`
//! serves `/` (links to the sections), `/s/K` (links to 100 pages each) and
//! `/p/N` for N below PAGES (default 10,000), each page linking two other
//! pages, its section, a page under `/private/` (disallowed by robots.txt)
//! and an off-domain URL. `GET /__hits` answers what was fetched:
//! allowed pages, the distinct ones, duplicates, disallowed and unknown
//! requests; `POST /__reset` zeroes the counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

struct Counts {
    pages: u64,
    sections: u64,
    /// Hits per allowed URL: 0 is `/`, then sections, then pages.
    hits: Vec<AtomicU64>,
    disallowed: AtomicU64,
    unknown: AtomicU64,
}

impl Counts {
    fn hit(&self, i: usize) {
        self.hits[i].fetch_add(1, Ordering::Relaxed);
    }
}

const FILLER: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. ";

fn page(title: &str, links: &[String]) -> Html<String> {
    let mut s = String::with_capacity(4096);
    s.push_str("<!doctype html><html><head><meta charset=\"utf-8\"><title>");
    s.push_str(title);
    s.push_str("</title></head><body><h1>");
    s.push_str(title);
    s.push_str("</h1><p>");
    for _ in 0..12 {
        s.push_str(FILLER);
    }
    s.push_str("</p><ul>");
    for l in links {
        s.push_str("<li><a href=\"");
        s.push_str(l);
        s.push_str("\">link</a></li>");
    }
    s.push_str("</ul></body></html>");
    Html(s)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8000".into());
    let pages: u64 = args.next().and_then(|p| p.parse().ok()).unwrap_or(10_000);
    let sections = pages.div_ceil(100);
    let counts = Arc::new(Counts {
        pages,
        sections,
        hits: (0..1 + sections + pages)
            .map(|_| AtomicU64::new(0))
            .collect(),
        disallowed: AtomicU64::new(0),
        unknown: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route(
            "/robots.txt",
            get(|| async { "User-agent: *\nDisallow: /private/\n" }),
        )
        .route(
            "/",
            get(|State(c): State<Arc<Counts>>| async move {
                c.hit(0);
                let links: Vec<String> = (0..c.sections).map(|k| format!("/s/{k}")).collect();
                page("Home", &links)
            }),
        )
        .route(
            "/s/{k}",
            get(
                |State(c): State<Arc<Counts>>, Path(k): Path<u64>| async move {
                    if k >= c.sections {
                        c.unknown.fetch_add(1, Ordering::Relaxed);
                        return StatusCode::NOT_FOUND.into_response();
                    }
                    c.hit(1 + k as usize);
                    let links: Vec<String> = (k * 100..((k + 1) * 100).min(c.pages))
                        .map(|n| format!("/p/{n}"))
                        .collect();
                    page(&format!("Section {k}"), &links).into_response()
                },
            ),
        )
        .route(
            "/p/{n}",
            get(
                |State(c): State<Arc<Counts>>, Path(n): Path<u64>| async move {
                    if n >= c.pages {
                        c.unknown.fetch_add(1, Ordering::Relaxed);
                        return StatusCode::NOT_FOUND.into_response();
                    }
                    c.hit((1 + c.sections + n) as usize);
                    let links = [
                        format!("/p/{}", (n + 1) % c.pages),
                        format!("/p/{}#part", (n * 7 + 3) % c.pages),
                        format!("/s/{}", n / 100),
                        format!("/private/{n}"),
                        format!("http://offsite.invalid/{n}"),
                    ];
                    page(&format!("Page {n}"), &links).into_response()
                },
            ),
        )
        .route(
            "/__hits",
            get(|State(c): State<Arc<Counts>>| async move {
                let mut requests = 0;
                let mut distinct = 0;
                for h in &c.hits {
                    let h = h.load(Ordering::Relaxed);
                    requests += h;
                    distinct += u64::from(h > 0);
                }
                axum::Json(serde_json::json!({
                    "allowed": c.hits.len(),
                    "requests": requests,
                    "distinct": distinct,
                    "duplicates": requests - distinct,
                    "disallowed": c.disallowed.load(Ordering::Relaxed),
                    "unknown": c.unknown.load(Ordering::Relaxed),
                }))
            }),
        )
        .route(
            "/__reset",
            post(|State(c): State<Arc<Counts>>| async move {
                for h in &c.hits {
                    h.store(0, Ordering::Relaxed);
                }
                c.disallowed.store(0, Ordering::Relaxed);
                c.unknown.store(0, Ordering::Relaxed);
                "reset\n"
            }),
        )
        .fallback(
            |State(c): State<Arc<Counts>>, uri: axum::http::Uri| async move {
                let counter = if uri.path().starts_with("/private/") {
                    &c.disallowed
                } else {
                    &c.unknown
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(axum::body::Body::from("not found"))
                    .unwrap_or_default()
            },
        )
        .with_state(counts);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("crawl_site: {pages} pages on http://{addr}/");
    axum::serve(listener, app).await
}
