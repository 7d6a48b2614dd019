//! The crawler against a synthetic site served in-process by axum on
//! 127.0.0.1:0: linked pages, robots.txt with Disallow and Crawl-delay, a
//! sitemap index, 429 and 503 pages that recover after Retry-After,
//! redirects, a crawler trap, off-domain links, slow pages and a crawl
//! cancelled mid-way and resumed. Assertions count the server's hits (and,
//! for the politeness rules, compare the server's own arrival times).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use sluice_collect::crawl::{self, CrawlOptions, Output, PageRecord, Stats};
use tokio_util::sync::CancellationToken;

/// One request the server saw.
#[derive(Clone, Debug)]
struct Hit {
    host: String,
    path: String,
    at: Instant,
}

#[derive(Clone, Default)]
struct Hits {
    all: Arc<Mutex<Vec<Hit>>>,
    /// Requests being answered now, and the most at once.
    busy: Arc<Mutex<(usize, usize)>>,
}

/// One request being answered; counted until dropped.
struct Busy(Arc<Mutex<(usize, usize)>>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.lock().unwrap().0 -= 1;
    }
}

impl Hits {
    fn all(&self) -> Vec<Hit> {
        self.all.lock().unwrap().clone()
    }
    fn busy(&self) -> Busy {
        let mut b = self.busy.lock().unwrap();
        b.0 += 1;
        b.1 = b.1.max(b.0);
        Busy(Arc::clone(&self.busy))
    }
    /// The most requests answered at once.
    fn most_at_once(&self) -> usize {
        self.busy.lock().unwrap().1
    }
    fn count(&self, path: &str) -> usize {
        self.all().iter().filter(|h| h.path == path).count()
    }
    /// Hits per path, robots.txt and sitemaps left out.
    fn pages(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for h in self.all() {
            if h.path != "/robots.txt" && !h.path.contains("sitemap") {
                *m.entry(h.path).or_default() += 1;
            }
        }
        m
    }
}

/// What the site answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn html(title: &str, links: &[String]) -> Reply {
    let mut body = format!("<!doctype html><html><head><title>{title}</title></head><body>");
    for l in links {
        body.push_str(&format!("<a href=\"{l}\">{l}</a>\n"));
    }
    body.push_str("</body></html>");
    Reply {
        status: 200,
        headers: vec![("content-type", "text/html; charset=utf-8".into())],
        body,
        delay: Duration::ZERO,
    }
}

fn status(code: u16) -> Reply {
    Reply {
        status: code,
        headers: vec![("content-type", "text/plain".into())],
        body: String::new(),
        delay: Duration::ZERO,
    }
}

fn text(content_type: &str, body: &str) -> Reply {
    Reply {
        status: 200,
        headers: vec![("content-type", content_type.into())],
        body: body.into(),
        delay: Duration::ZERO,
    }
}

fn redirect(code: u16, to: &str) -> Reply {
    Reply {
        status: code,
        headers: vec![("location", to.into())],
        body: String::new(),
        delay: Duration::ZERO,
    }
}

/// (site address, path with query, how many times it was hit before) → reply.
type Site = dyn Fn(SocketAddr, &str, usize) -> Reply + Send + Sync;

/// The site as an axum app for `addr`, and its hit log.
fn app(
    addr: SocketAddr,
    site: impl Fn(SocketAddr, &str, usize) -> Reply + Send + Sync + 'static,
) -> (axum::Router, Hits) {
    let hits = Hits::default();
    let site: Arc<Site> = Arc::new(site);
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let (site, hits) = (site.clone(), h.clone());
        async move {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string());
            let host = req
                .headers()
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let before = {
                let mut all = hits.all.lock().unwrap();
                let before = all.iter().filter(|x| x.path == path).count();
                all.push(Hit {
                    host,
                    path: path.clone(),
                    at: Instant::now(),
                });
                before
            };
            let _busy = hits.busy();
            let reply = site(addr, &path, before);
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            let mut resp = Response::new(Body::from(reply.body));
            *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
            for (k, v) in reply.headers {
                resp.headers_mut()
                    .insert(k, HeaderValue::from_str(&v).unwrap());
            }
            resp
        }
    });
    (app, hits)
}

async fn serve(
    site: impl Fn(SocketAddr, &str, usize) -> Reply + Send + Sync + 'static,
) -> (SocketAddr, Hits) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (app, hits) = app(addr, site);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, hits)
}

/// The site over TLS with `cert`/`key` (HTTP/1.1 and HTTP/2 by ALPN).
async fn serve_tls(
    site: impl Fn(SocketAddr, &str, usize) -> Reply + Send + Sync + 'static,
    cert: &rcgen::CertifiedKey<rcgen::KeyPair>,
) -> (SocketAddr, Hits) {
    use tower::Service;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (app, hits) = app(addr, site);
    let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
        cert.signing_key.serialize_der().into(),
    );
    let mut config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| app.clone().call(req),
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    (addr, hits)
}

fn options(addr: SocketAddr, dir: &Path) -> CrawlOptions {
    let mut o = CrawlOptions::new(
        vec![format!("http://{addr}/")],
        Output::Jsonl(dir.join("pages.jsonl")),
    );
    o.backoff = Duration::from_millis(50);
    o
}

async fn run(opts: CrawlOptions) -> (Stats, Vec<PageRecord>) {
    let out = match &opts.output {
        Output::Jsonl(p) => p.clone(),
        Output::Sqlite(_) => panic!("jsonl only here"),
    };
    let stats = crawl::crawl(opts, CancellationToken::new()).await.unwrap();
    let records = crawl::read_jsonl(&out).unwrap();
    (stats, records)
}

fn by_path(records: &[PageRecord]) -> HashMap<String, PageRecord> {
    records
        .iter()
        .map(|r| {
            let url = url_path(&r.url);
            (url, r.clone())
        })
        .collect()
}

fn url_path(u: &str) -> String {
    let rest = u.split_once("://").unwrap().1;
    rest.find('/').map_or("/".into(), |i| rest[i..].to_string())
}

#[tokio::test]
async fn linked_pages_are_fetched_exactly_once() {
    let (addr, hits) = serve(|addr, path, _| match path {
        "/" => html(
            "Home &amp; away",
            &[
                "/a".into(),
                "a#top".into(),
                "./b".into(),
                format!("http://{addr}/c"),
                "/data.json".into(),
                "mailto:x@example.org".into(),
            ],
        ),
        "/a" => html("A", &["/".into(), "/b".into(), "/a/../c".into()]),
        "/b" => html("B", &["/a".into(), "/c#frag".into()]),
        "/c" => html("C", &["/".into(), "/d".into()]),
        "/d" => html("D", &["/c".into()]),
        "/data.json" => text("application/json", "{}"),
        _ => status(404),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (stats, records) = run(options(addr, dir.path())).await;

    let pages = hits.pages();
    let expected: BTreeMap<String, usize> = ["/", "/a", "/b", "/c", "/d", "/data.json"]
        .iter()
        .map(|p| (p.to_string(), 1))
        .collect();
    assert_eq!(pages, expected, "every page exactly once");
    assert_eq!(records.len(), 6, "{records:#?}");
    let r = by_path(&records);
    assert_eq!(r["/"].depth, 0);
    assert_eq!(r["/a"].depth, 1);
    assert_eq!(r["/d"].depth, 2);
    assert_eq!(r["/"].title.as_deref(), Some("Home & away"));
    assert_eq!(r["/"].status, Some(200));
    assert_eq!(r["/"].content_type.as_deref(), Some("text/html"));
    assert_eq!(
        r["/"].links,
        vec![
            format!("http://{addr}/a"),
            format!("http://{addr}/b"),
            format!("http://{addr}/c"),
            format!("http://{addr}/data.json"),
        ]
    );
    assert_eq!(r["/"].content_hash.as_ref().map(String::len), Some(64));
    // The JSON is not in the content-type filter: recorded, body unread.
    assert_eq!(r["/data.json"].content_hash, None);
    assert_eq!(
        r["/data.json"].content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(stats.pages, 6);
    assert_eq!(stats.skipped_content_type, 1);
    assert!(stats.errors.is_empty(), "{stats:?}");
    assert!(!stats.interrupted);
    assert_eq!(stats.queued, 0);
}

#[tokio::test]
async fn content_hash_is_blake3_of_the_body_and_body_is_optional() {
    let (addr, _hits) = serve(|_, path, _| match path {
        "/" => html("T", &[]),
        _ => status(404),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(addr, dir.path());
    o.include_body = true;
    let (_, records) = run(o).await;
    let body = html("T", &[]).body;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].content_hash.as_deref(),
        Some(blake3::hash(body.as_bytes()).to_hex().as_str())
    );
    assert_eq!(records[0].body.as_deref(), Some(body.as_str()));
    assert_eq!(records[0].bytes, body.len() as u64);
}

#[tokio::test]
async fn robots_disallow_is_obeyed_and_crawl_delay_spaces_requests() {
    let (addr, hits) = serve(|_, path, _| match path {
        "/robots.txt" => text(
            "text/plain",
            "User-agent: other\nDisallow: /\n\nUser-agent: *\nDisallow: /private/\nAllow: /private/open\nCrawl-delay: 0.3\n",
        ),
        "/" => html(
            "Home",
            &[
                "/p1".into(),
                "/p2".into(),
                "/private/secret".into(),
                "/private/open".into(),
            ],
        ),
        "/p1" | "/p2" | "/private/open" => html("P", &[]),
        "/private/secret" => html("secret", &[]),
        _ => status(404),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(addr, dir.path());
    o.concurrency = 8;
    o.per_host = 8;
    let (stats, records) = run(o).await;

    assert_eq!(hits.count("/private/secret"), 0, "disallowed page fetched");
    assert_eq!(hits.count("/private/open"), 1, "longest match allows it");
    assert_eq!(hits.count("/robots.txt"), 1);
    assert_eq!(stats.robots_denied, 1);
    assert_eq!(records.len(), 4);
    // Crawl-delay: the server saw page requests at least 0.3 s apart even
    // though eight were allowed at once.
    let mut times: Vec<Instant> = hits
        .all()
        .into_iter()
        .filter(|h| h.path != "/robots.txt")
        .map(|h| h.at)
        .collect();
    times.sort();
    assert_eq!(times.len(), 4);
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(280),
            "gap {gap:?} under Crawl-delay"
        );
    }
}

#[tokio::test]
async fn no_robots_ignores_robots_txt() {
    let (addr, hits) = serve(|_, path, _| match path {
        "/robots.txt" => text("text/plain", "User-agent: *\nDisallow: /\n"),
        "/" => html("Home", &["/x".into()]),
        "/x" => html("X", &[]),
        _ => status(404),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(addr, dir.path());
    o.robots = false;
    let (stats, records) = run(o).await;
    assert_eq!(hits.count("/robots.txt"), 0);
    assert_eq!(records.len(), 2);
    assert_eq!(stats.robots_denied, 0);
}

#[tokio::test]
async fn sitemaps_from_robots_are_followed() {
    let (addr, hits) = serve(|addr, path, _| match path {
        "/robots.txt" => text(
            "text/plain",
            &format!("User-agent: *\nDisallow: /no\n\nSitemap: http://{addr}/sitemap_index.xml\n"),
        ),
        "/sitemap_index.xml" => text(
            "application/xml",
            &format!("<?xml version=\"1.0\"?><sitemapindex><sitemap><loc>http://{addr}/sitemap-1.xml</loc></sitemap></sitemapindex>"),
        ),
        "/sitemap-1.xml" => text(
            "application/xml",
            &format!("<?xml version=\"1.0\"?><urlset><url><loc>http://{addr}/hidden</loc></url><url><loc>http://{addr}/no/x</loc></url><url><loc>http://elsewhere.test/x</loc></url></urlset>"),
        ),
        "/" => html("Home", &[]),
        "/hidden" => html("Hidden", &["/deeper".into()]),
        "/deeper" => html("Deeper", &[]),
        _ => status(404),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(addr, dir.path());
    o.max_depth = Some(1);
    let (stats, records) = run(o).await;
    assert_eq!(hits.count("/hidden"), 1, "sitemap entry fetched");
    assert_eq!(hits.count("/no/x"), 0, "robots applies to sitemap entries");
    assert_eq!(hits.count("/deeper"), 0, "sitemap entries are depth 1");
    assert_eq!(stats.sitemaps, 2);
    assert_eq!(stats.robots_denied, 1);
    let r = by_path(&records);
    assert_eq!(r["/hidden"].depth, 1);
    assert_eq!(records.len(), 2);
}

#[tokio::test]
async fn pages_answering_429_and_503_recover_after_retry_after() {
    let (addr, hits) = serve(|_, path, before| match (path, before) {
        ("/", _) => html("Home", &["/busy".into(), "/down".into(), "/broken".into()]),
        ("/busy", 0) => Reply {
            headers: vec![("retry-after", "1".into())],
            ..status(429)
        },
        ("/down", 0) => Reply {
            headers: vec![("retry-after", "1".into())],
            ..status(503)
        },
        ("/busy" | "/down", _) => html("OK now", &[]),
        ("/broken", _) => status(500),
        _ => status(404),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(addr, dir.path());
    o.retries = 2;
    let (stats, records) = run(o).await;
    assert_eq!(hits.count("/busy"), 2);
    assert_eq!(hits.count("/down"), 2);
    assert_eq!(hits.count("/broken"), 3, "first attempt and two retries");
    let r = by_path(&records);
    assert_eq!(r["/busy"].status, Some(200));
    assert_eq!(r["/down"].status, Some(200));
    assert_eq!(r["/busy"].title.as_deref(), Some("OK now"));
    assert_eq!(r["/broken"].status, Some(500));
    assert_eq!(stats.retries, 4);
    assert_eq!(stats.errors.get("status_5xx"), Some(&1), "{stats:?}");
    assert_eq!(stats.errors.len(), 1, "{stats:?}");
    // Retry-After: 1 was honoured (the fast backoff would be ~50 ms).
    for p in ["/busy", "/down"] {
        let t: Vec<Instant> = hits
            .all()
            .iter()
            .filter(|h| h.path == p)
            .map(|h| h.at)
            .collect();
        assert!(
            t[1] - t[0] >= Duration::from_millis(900),
            "{p}: {:?}",
            t[1] - t[0]
        );
    }
}

#[tokio::test]
async fn redirects_are_followed_and_deduplicated() {
    let (addr, hits) = serve(|_, path, _| {
        if let Some(n) = path.strip_prefix("/chain/") {
            let n: u32 = n.parse().unwrap();
            return redirect(302, &format!("/chain/{}", n + 1));
        }
        match path {
            "/" => html(
                "Home",
                &[
                    "/r1".into(),
                    "/r2".into(),
                    "/loop1".into(),
                    "/chain/0".into(),
                    "/away".into(),
                ],
            ),
            "/r1" => redirect(301, "/target"),
            "/r2" => redirect(302, "/r3"),
            "/r3" => redirect(307, "/target#x"),
            "/target" => html("Target", &["/r1".into()]),
            "/loop1" => redirect(302, "/loop2"),
            "/loop2" => redirect(302, "/loop1"),
            "/away" => redirect(301, "http://elsewhere.test/"),
            _ => status(404),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(addr, dir.path());
    o.max_redirects = 3;
    o.concurrency = 1;
    let (stats, records) = run(o).await;
    assert_eq!(hits.count("/target"), 1, "redirect target fetched once");
    assert_eq!(hits.count("/r3"), 1);
    assert_eq!(hits.count("/loop1"), 1);
    assert_eq!(hits.count("/loop2"), 1);
    assert_eq!(hits.count("/chain/3"), 1);
    assert_eq!(hits.count("/chain/4"), 0, "redirect limit");
    let r = by_path(&records);
    let target = format!("http://{addr}/target");
    assert_eq!(r["/r1"].final_url, target);
    assert_eq!(r["/r2"].final_url, target);
    // Exactly one of the two carried the page; the other points at it.
    let carried: Vec<&PageRecord> = [&r["/r1"], &r["/r2"]]
        .into_iter()
        .filter(|p| p.status == Some(200))
        .collect();
    assert_eq!(carried.len(), 1);
    assert_eq!(carried[0].title.as_deref(), Some("Target"));
    assert!(
        !r.contains_key("/target"),
        "target recorded under the redirecting URL"
    );
    assert_eq!(
        stats.errors.get("too_many_redirects"),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(
        stats.errors.get("redirect_off_domain"),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(records.len(), 6, "{records:#?}");
}

#[tokio::test]
async fn a_crawler_trap_is_bounded_by_depth_and_by_max_pages() {
    let trap = |_: SocketAddr, path: &str, _: usize| match path.strip_prefix("/cal/") {
        Some(n) => {
            let n: i64 = n.parse().unwrap();
            html(
                &format!("day {n}"),
                &[format!("/cal/{}", n + 1), format!("/cal/{}", n - 1)],
            )
        }
        None => status(404),
    };
    let (addr, hits) = serve(trap).await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(addr, dir.path());
    o.seeds = vec![format!("http://{addr}/cal/0")];
    o.max_depth = Some(3);
    let (stats, records) = run(o).await;
    assert_eq!(records.len(), 7, "cal/-3 ..= cal/3");
    assert!(records.iter().all(|r| r.depth <= 3));
    assert_eq!(hits.count("/cal/4"), 0);
    assert_eq!(stats.pages, 7);

    let (addr, hits) = serve(trap).await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(addr, dir.path());
    o.seeds = vec![format!("http://{addr}/cal/0")];
    o.max_pages = Some(10);
    let (stats, records) = run(o).await;
    assert_eq!(records.len(), 10);
    assert_eq!(hits.pages().values().sum::<usize>(), 10);
    assert!(stats.queued > 0, "{stats:?}");
}

#[tokio::test]
async fn off_domain_links_are_recorded_but_not_followed() {
    let (addr, hits) = serve(|addr, path, _| match path {
        "/" => html(
            "Home",
            &[
                format!("http://localhost:{}/other", addr.port()),
                "/mine".into(),
            ],
        ),
        "/mine" | "/other" => html("x", &[]),
        _ => status(404),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_, records) = run(options(addr, dir.path())).await;
    assert_eq!(hits.count("/other"), 0);
    assert_eq!(hits.count("/mine"), 1);
    let r = by_path(&records);
    assert!(
        r["/"]
            .links
            .contains(&format!("http://localhost:{}/other", addr.port())),
        "{:?}",
        r["/"].links
    );

    // Allowing the domain lets the crawler go there.
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(addr, dir.path());
    o.allow_domains = vec!["127.0.0.1".into(), "localhost".into()];
    let (_, records) = run(o).await;
    assert_eq!(records.len(), 3);
    assert!(
        hits.all()
            .iter()
            .any(|h| h.path == "/other" && h.host.starts_with("localhost"))
    );
}

/// A 60-page site, 30 ms a page, two at a time.
fn slow_site(_: SocketAddr, path: &str, _: usize) -> Reply {
    match path.strip_prefix("/p/") {
        Some(n) => {
            let n: u32 = n.parse().unwrap();
            let links: Vec<String> = [2 * n + 1, 2 * n + 2]
                .into_iter()
                .filter(|c| *c < 60)
                .map(|c| format!("/p/{c}"))
                .collect();
            Reply {
                delay: Duration::from_millis(30),
                ..html(&format!("page {n}"), &links)
            }
        }
        None => status(404),
    }
}

#[tokio::test]
async fn resume_after_an_interrupted_crawl_does_not_refetch_finished_pages() {
    let (addr, hits) = serve(slow_site).await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(addr, dir.path());
    o.seeds = vec![format!("http://{addr}/p/0")];
    o.concurrency = 2;
    let progress = o.progress.clone();
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let first = tokio::spawn(crawl::crawl(o.clone(), cancel));
    while progress.pages() < 15 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    let stats = first.await.unwrap().unwrap();
    assert!(stats.interrupted);
    assert!(stats.pages >= 15 && stats.pages < 60, "{stats:?}");
    let done_first: Vec<String> = crawl::read_jsonl(&dir.path().join("pages.jsonl"))
        .unwrap()
        .iter()
        .map(|r| url_path(&r.url))
        .collect();
    assert_eq!(done_first.len() as u64, stats.pages);

    o.resume = true;
    let (stats, records) = run(o).await;
    assert!(!stats.interrupted);
    assert_eq!(stats.resumed_pages, done_first.len() as u64);
    for p in &done_first {
        assert_eq!(hits.count(p), 1, "{p} fetched again after resume");
    }
    let pages = hits.pages();
    assert_eq!(pages.len(), 60, "every page reached");
    // Each page recorded exactly once across both runs.
    let mut urls: Vec<&str> = records.iter().map(|r| r.url.as_str()).collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 60);
    assert_eq!(records.len(), 60);
}

#[tokio::test]
async fn sqlite_output_holds_one_row_per_page_and_resume_of_a_finished_crawl_fetches_nothing() {
    let (addr, hits) = serve(slow_site).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crawl.db");
    let mut o = options(addr, dir.path());
    o.seeds = vec![format!("http://{addr}/p/0")];
    o.output = Output::Sqlite(db.clone());
    let stats = crawl::crawl(o.clone(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(stats.pages, 60);
    o.resume = true;
    let again = crawl::crawl(o, CancellationToken::new()).await.unwrap();
    assert_eq!(again.pages, 0);
    assert_eq!(again.resumed_pages, 60);
    assert_eq!(hits.pages().values().sum::<usize>(), 60);

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT url) FROM crawl_pages")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (60, 60));
    let title: String = sqlx::query_scalar("SELECT title FROM crawl_pages WHERE url LIKE '%/p/7'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(title, "page 7");
}

#[tokio::test]
async fn bad_options_name_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    let out = Output::Jsonl(dir.path().join("x.jsonl"));
    let cases: Vec<(CrawlOptions, &str)> = vec![
        (
            CrawlOptions::new(vec!["ftp://h/".into()], out.clone()),
            "URL: `ftp://h/`",
        ),
        (
            CrawlOptions::new(vec!["nope".into()], out.clone()),
            "URL: `nope` is not a URL",
        ),
        (
            CrawlOptions {
                concurrency: 0,
                ..CrawlOptions::new(vec!["http://h/".into()], out.clone())
            },
            "--concurrency",
        ),
        (
            CrawlOptions {
                allow_domains: vec!["http://h/".into()],
                ..CrawlOptions::new(vec!["http://h/".into()], out.clone())
            },
            "--allow-domain",
        ),
        (
            CrawlOptions {
                content_types: vec!["html".into()],
                ..CrawlOptions::new(vec!["http://h/".into()], out.clone())
            },
            "--content-type",
        ),
    ];
    for (o, want) in cases {
        let e = crawl::crawl(o, CancellationToken::new()).await.unwrap_err();
        assert!(
            e.to_string().starts_with(want),
            "{e} should start with {want}"
        );
    }
}

#[tokio::test]
async fn per_host_bounds_requests_in_flight_to_one_host() {
    let (addr, hits) = serve(|_, path, _| match path {
        "/" => html(
            "hub",
            &(0..16).map(|i| format!("/s/{i}")).collect::<Vec<_>>(),
        ),
        p if p.starts_with("/s/") => Reply {
            delay: Duration::from_millis(50),
            ..html("spoke", &[])
        },
        _ => status(404),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(addr, dir.path());
    o.concurrency = 8;
    o.per_host = 3;
    let (stats, _) = run(o).await;
    assert_eq!(stats.pages, 17, "{stats:?}");
    let most = hits.most_at_once();
    assert!(
        most <= 3,
        "{most} requests to one host at once, per_host is 3"
    );
    assert!(most >= 2, "the spokes were fetched one at a time ({most})");
}

#[tokio::test]
async fn https_is_crawled_with_an_extra_ca_and_refused_clearly_without_it() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let (addr, hits) = serve_tls(
        |_, path, _| match path {
            "/robots.txt" => text("text/plain", "User-agent: *\nDisallow: /private\n"),
            "/" => html("Home", &["/a".into(), "/private".into()]),
            "/a" => html("A", &["/".into()]),
            _ => status(404),
        },
        &cert,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let mut o = options(addr, dir.path());
    o.seeds = vec![format!("https://{addr}/")];

    // Not trusted: the seed's record says why and names the URL; a
    // certificate is not retried, and no request got through.
    let (stats, records) = run(o.clone()).await;
    assert_eq!(records.len(), 1, "{records:#?} {stats:?}");
    let error = records[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&format!("https://{addr}/")) && error.contains("not trusted"),
        "{error}"
    );
    assert!(error.contains("--ca-cert"), "{error}");
    assert_eq!(stats.errors.get("tls").copied(), Some(1), "{stats:?}");
    assert_eq!(stats.retries, 0);
    assert!(hits.all().is_empty(), "{:?}", hits.all());

    // Trusted through --ca-cert: crawled like plain HTTP, robots.txt obeyed.
    o.ca_certs = vec![ca];
    let (stats, records) = run(o.clone()).await;
    assert!(stats.errors.is_empty(), "{stats:?}");
    assert_eq!(stats.pages, 2);
    assert_eq!(stats.robots_denied, 1);
    let pages = hits.pages();
    assert_eq!(pages.get("/"), Some(&1));
    assert_eq!(pages.get("/a"), Some(&1));
    assert!(records.iter().all(|r| r.url.starts_with("https://")));
    assert_eq!(by_path(&records)["/a"].title.as_deref(), Some("A"));

    // A CA file that cannot be read is an argument error naming it.
    o.ca_certs = vec![dir.path().join("missing.pem")];
    let e = crawl::crawl(o, CancellationToken::new()).await.unwrap_err();
    let e = e.to_string();
    assert!(
        e.starts_with("--ca-cert") && e.contains("missing.pem"),
        "{e}"
    );
}
