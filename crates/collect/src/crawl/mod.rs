//! The crawler behind `sluice crawl`: from seed URLs, fetch pages
//! concurrently (bounded overall and per host, with a politeness delay),
//! obey robots.txt, follow links and sitemaps within the allowed domains,
//! and write one record per page. The frontier and seen set live in SQLite
//! so an interrupted crawl resumes without refetching finished pages.
//!
//! Modules:
//! - `canon`: URL canonicalization and domain scope.
//! - `robots`: the robots.txt parser (groups, longest match, Crawl-delay,
//!   Sitemap).
//! - `links`: streaming link and title extraction (`lol_html`).
//! - `fetch`: one GET with retries, backoff, jitter and Retry-After.
//! - `frontier`: the queue, the seen set and per-host limits.
//! - `store`: the SQLite state (frontier, seen set, SQLite records).
//! - `sink`: the record outputs ([`Output`]).
//!
//! As a pipeline source (`kind = "crawl"`, see `sources::crawl`) the pages
//! go through a [`Handoff`] instead of an [`Output`]: the links a page adds
//! are queued in the store at once, but the page is marked done only when
//! every sink has committed its record, so a restart fetches again exactly
//! the pages whose records were not written.
//!
//! Budgets: a seed has depth 0, a page linked from a page of depth `d` has
//! depth `d + 1`, and a URL found in a sitemap has depth 1; URLs deeper than
//! `max_depth` are not queued. `max_pages` caps the pages fetched (each
//! gives one record, whatever its status; robots denials, robots.txt and
//! sitemap fetches do not count), across resumed runs.

mod canon;
mod fetch;
mod frontier;
mod links;
mod robots;
mod sink;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

use fetch::RetryPolicy;
use frontier::{Frontier, Host, Hosts, Item, Seen, origin};
use robots::Robots;
use sink::Sink;
pub use sink::{Output, read_jsonl};
use store::{State, Store};

use crate::record::{Ack, AckCounts, Acked, Payload, Record};

/// The product token matched against robots.txt `User-agent` lines.
pub const ROBOTS_TOKEN: &str = "sluice";

/// Everything a crawl needs. [`CrawlOptions::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct CrawlOptions {
    /// Seed URLs (absolute `http://` or `https://`).
    pub seeds: Vec<String>,
    /// Deepest link depth queued (seeds are 0); `None`: no limit.
    pub max_depth: Option<u32>,
    /// Pages to fetch at most, across resumed runs; `None`: no limit.
    pub max_pages: Option<u64>,
    /// Requests in flight at once, over all hosts.
    pub concurrency: usize,
    /// Requests in flight at once to one host.
    pub per_host: usize,
    /// Least gap between request starts to one host (robots.txt's
    /// Crawl-delay raises it for its host).
    pub delay: Duration,
    /// Domains whose hosts (and subdomains) may be fetched; empty: the
    /// seeds' hosts.
    pub allow_domains: Vec<String>,
    /// Where records go.
    pub output: Output,
    /// The state database; `None`: [`Output::default_state`].
    pub state: Option<PathBuf>,
    /// Continue the crawl in the state database instead of starting anew.
    pub resume: bool,
    /// Obey robots.txt (Allow/Disallow, Crawl-delay) and read its sitemaps.
    pub robots: bool,
    /// Content types (`text/html`, `text/*`) whose bodies are read and
    /// hashed; links are extracted from the HTML ones. Others are recorded
    /// without reading the body.
    pub content_types: Vec<String>,
    /// Put the body (as UTF-8, lossily) in each record.
    pub include_body: bool,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Limit on one request, body included.
    pub timeout: Duration,
    /// Retries after the first attempt (network errors, 429, 5xx).
    pub retries: u32,
    /// First retry backoff; doubles each retry, with jitter.
    pub backoff: Duration,
    /// Longest wait for one retry or Retry-After, and the largest
    /// Crawl-delay obeyed.
    pub max_wait: Duration,
    /// Redirects followed from one URL.
    pub max_redirects: u32,
    /// Bytes of one body read at most; the rest is not read.
    pub max_body: u64,
    /// PEM files of CA certificates trusted for `https://` besides the
    /// built-in (Mozilla) roots, e.g. a private CA or a self-signed server.
    pub ca_certs: Vec<PathBuf>,
    /// Live counters for a progress display.
    pub progress: Progress,
}

impl CrawlOptions {
    /// The defaults for `seeds`, writing to `output`.
    pub fn new(seeds: Vec<String>, output: Output) -> CrawlOptions {
        CrawlOptions {
            seeds,
            max_depth: None,
            max_pages: None,
            concurrency: 16,
            per_host: 8,
            delay: Duration::ZERO,
            allow_domains: Vec::new(),
            output,
            state: None,
            resume: false,
            robots: true,
            content_types: vec!["text/html".into()],
            include_body: false,
            user_agent: concat!("sluice/", env!("CARGO_PKG_VERSION"), " (crawler)").into(),
            timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(60),
            max_redirects: 10,
            max_body: 10 << 20,
            ca_certs: Vec::new(),
            progress: Progress::default(),
        }
    }
}

/// Live counters, shared with whoever draws progress.
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<ProgressCounters>);

#[derive(Debug, Default)]
struct ProgressCounters {
    pages: AtomicU64,
    queued: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

impl Progress {
    /// Pages fetched so far in this run.
    pub fn pages(&self) -> u64 {
        self.0.pages.load(Ordering::Relaxed)
    }
    /// URLs waiting in the frontier.
    pub fn queued(&self) -> u64 {
        self.0.queued.load(Ordering::Relaxed)
    }
    /// Body bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.0.bytes.load(Ordering::Relaxed)
    }
    /// Pages that ended in an error.
    pub fn errors(&self) -> u64 {
        self.0.errors.load(Ordering::Relaxed)
    }
}

/// The summary of a crawl.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Pages fetched in this run (one record each).
    pub pages: u64,
    /// Body bytes read.
    pub bytes: u64,
    /// Pages that ended in an error, by kind: `connect`, `timeout`,
    /// `request`, `body`, `status_4xx`, `status_5xx`, `too_many_redirects`,
    /// `redirect_off_domain`, `redirect_denied`, `bad_redirect`.
    pub errors: BTreeMap<String, u64>,
    /// Retried attempts (network errors, 429, 5xx).
    pub retries: u64,
    /// URLs not fetched because robots.txt disallows them.
    pub robots_denied: u64,
    /// Redirects followed.
    pub redirects: u64,
    /// Pages recorded without reading the body: content type filtered out.
    pub skipped_content_type: u64,
    /// Sitemap files read.
    pub sitemaps: u64,
    /// Pages fetched by earlier runs of a resumed crawl.
    pub resumed_pages: u64,
    /// URLs still queued at the end (budget spent or interrupted).
    pub queued: u64,
    /// Whether the crawl was cancelled before it finished.
    pub interrupted: bool,
    /// Wall-clock duration of this run, in seconds.
    pub duration_secs: f64,
}

/// One fetched page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageRecord {
    /// The URL taken from the frontier (canonical).
    pub url: String,
    /// Where its redirects (if any) ended.
    pub final_url: String,
    /// HTTP status of the last response; `None` when no response came.
    pub status: Option<u16>,
    /// Link depth from the seeds.
    pub depth: u32,
    /// When the response arrived (RFC 3339, UTC).
    pub fetched_at: String,
    /// The response's media type (`text/html`), without parameters.
    pub content_type: Option<String>,
    /// The first `<title>`, for HTML.
    pub title: Option<String>,
    /// BLAKE3 of the body read, hex; `None` when the body was not read.
    pub content_hash: Option<String>,
    /// Outgoing links (canonical, de-duplicated, in document order, all
    /// domains), for HTML.
    pub links: Vec<String>,
    /// Body bytes read.
    pub bytes: u64,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// The body, with `include_body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Why a crawl could not start or went on no further.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option's value is unusable; `arg` names it.
    #[error("{arg}: {message}")]
    Invalid {
        /// The option, as the command line spells it (`--concurrency`).
        arg: String,
        /// What is wrong.
        message: String,
    },
    /// The state database failed.
    #[error("crawl state {}: {source}", path.display())]
    Store {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: sqlx::Error,
    },
    /// Writing the output failed.
    #[error("writing {}: {source}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

fn invalid(arg: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        arg: arg.into(),
        message: message.into(),
    }
}

/// What page tasks share.
struct Ctx {
    client: reqwest::Client,
    /// Follows robots.txt redirects (RFC 9309: up to five).
    robots_client: reqwest::Client,
    policy: RetryPolicy,
    robots: bool,
    content_types: Vec<String>,
    include_body: bool,
    max_body: u64,
    max_redirects: u32,
    max_wait: Duration,
    allow_domains: Vec<String>,
    seen: Seen,
    retries: AtomicU64,
}

impl Ctx {
    fn in_scope(&self, url: &Url) -> bool {
        url.host_str().is_some_and(|h| {
            self.allow_domains
                .iter()
                .any(|d| canon::host_in_domain(h, d))
        })
    }

    fn wanted_type(&self, essence: &str) -> bool {
        self.content_types.iter().any(|t| {
            t == "*/*"
                || t.eq_ignore_ascii_case(essence)
                || t.strip_suffix("/*").is_some_and(|prefix| {
                    essence
                        .split_once('/')
                        .is_some_and(|(top, _)| top.eq_ignore_ascii_case(prefix))
                })
        })
    }
}

/// What one page task found.
struct Visit {
    item: Item,
    /// `None`: robots.txt disallows the URL; nothing was fetched.
    record: Option<PageRecord>,
    error_kind: Option<&'static str>,
    /// Links to offer to the frontier.
    follow: Vec<Url>,
    /// Same-origin redirect targets this page claimed and recorded.
    claimed: Vec<String>,
    /// A cross-origin redirect target, to queue as its own URL.
    reschedule: Option<Url>,
    redirects: u64,
    skipped: bool,
    /// URLs from this host's sitemaps (the first task on a host reads them).
    sitemap_urls: Vec<Url>,
    sitemaps: u64,
    /// A same-origin redirect target denied by robots.txt.
    denied_redirect: bool,
}

/// Where a crawl run as a pipeline source sends its page records, and
/// hears back which were committed.
pub(crate) struct Handoff {
    /// The source's name: the records' `source`, and the metrics' label.
    pub(crate) source: Arc<str>,
    /// Page records, each with an [`Ack`]; bounded, so a slow pipeline
    /// slows the crawl down.
    pub(crate) records: mpsc::Sender<Record>,
    /// Given to each record's [`Ack`].
    pub(crate) ack_tx: mpsc::UnboundedSender<Acked>,
    /// Where the acknowledgements arrive.
    pub(crate) ack_rx: mpsc::UnboundedReceiver<Acked>,
    /// The source's acknowledgement counts.
    pub(crate) counts: Arc<AckCounts>,
}

/// How a finished page's record is written and its URL marked done.
enum Delivery {
    /// `sluice crawl`: the record is written, then the URL marked, at once.
    Sink(Sink),
    /// A pipeline source: the URL is marked when the record is acknowledged.
    Handoff {
        handoff: Handoff,
        /// URLs to mark when the record with this sequence number is acked.
        pending: HashMap<u64, Vec<(String, State)>>,
        next_seq: u64,
    },
}

impl Delivery {
    fn pending(&self) -> usize {
        match self {
            Delivery::Sink(_) => 0,
            Delivery::Handoff { pending, .. } => pending.len(),
        }
    }

    /// The next acknowledgement (never, for `sluice crawl`).
    async fn next_ack(&mut self) -> Option<Acked> {
        match self {
            Delivery::Sink(_) => std::future::pending().await,
            Delivery::Handoff { handoff, .. } => handoff.ack_rx.recv().await,
        }
    }
}

/// The crawl's counters in the `metrics` facade, labelled by source (the
/// pipeline source's name, or `crawl` for `sluice crawl`).
struct Meters {
    pages: metrics::Counter,
    bytes: metrics::Counter,
    robots_denied: metrics::Counter,
    source: String,
}

impl Meters {
    fn new(source: &str) -> Meters {
        let s = source.to_owned();
        Meters {
            pages: metrics::counter!("sluice_collect_crawl_pages_total", "source" => s.clone()),
            bytes: metrics::counter!("sluice_collect_crawl_bytes_total", "source" => s.clone()),
            robots_denied: metrics::counter!("sluice_collect_crawl_robots_denied_total", "source" => s.clone()),
            source: s,
        }
    }

    fn error(&self, kind: &'static str) {
        metrics::counter!("sluice_collect_crawl_errors_total", "source" => self.source.clone(), "kind" => kind)
            .increment(1);
    }
}

/// Runs a crawl until the frontier is empty, a budget is spent, or
/// `shutdown` is cancelled (then in-flight pages are dropped and stay
/// queued for `resume`).
pub async fn crawl(opts: CrawlOptions, shutdown: CancellationToken) -> Result<Stats, Error> {
    run(opts, shutdown, None).await
}

/// [`crawl`], with the records going to `handoff` when given.
pub(crate) async fn run(
    opts: CrawlOptions,
    shutdown: CancellationToken,
    handoff: Option<Handoff>,
) -> Result<Stats, Error> {
    let started_at = Instant::now();
    if opts.seeds.is_empty() {
        return Err(invalid("URL", "give at least one seed URL"));
    }
    if opts.concurrency == 0 {
        return Err(invalid("--concurrency", "must be at least 1"));
    }
    if opts.per_host == 0 {
        return Err(invalid("--per-host", "must be at least 1"));
    }
    if opts.max_pages == Some(0) {
        return Err(invalid("--max-pages", "must be at least 1"));
    }
    if opts.content_types.is_empty() || opts.content_types.iter().any(|t| !t.contains('/')) {
        return Err(invalid(
            "--content-type",
            "give media types like text/html or text/*",
        ));
    }
    let mut seeds = Vec::new();
    for s in &opts.seeds {
        seeds.push(canon::parse_seed(s).map_err(|m| invalid("URL", m))?);
    }
    let mut allow_domains = Vec::new();
    for d in &opts.allow_domains {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        if d.is_empty() || d.contains('/') || d.contains(':') {
            return Err(invalid(
                "--allow-domain",
                format!("`{d}` is not a domain name (give e.g. example.com, no scheme or path)"),
            ));
        }
        allow_domains.push(d);
    }
    if allow_domains.is_empty() {
        allow_domains = seeds
            .iter()
            .filter_map(|u| u.host_str().map(str::to_owned))
            .collect();
    }
    // Built in a block: a closure borrowing `opts` must not live across an
    // await, or the crawl future stops being `Send`.
    let extra_roots =
        crate::tls::load_ca_certs(&opts.ca_certs).map_err(|m| invalid("--ca-cert", m))?;
    let (client, robots_client) = {
        let build = |redirects| {
            crate::tls::trusting(reqwest::Client::builder(), &extra_roots)
                .user_agent(&opts.user_agent)
                .timeout(opts.timeout)
                .redirect(redirects)
                .pool_max_idle_per_host(opts.per_host)
                .build()
                .map_err(Error::Client)
        };
        (
            build(reqwest::redirect::Policy::none())?,
            build(reqwest::redirect::Policy::limited(5))?,
        )
    };
    let ctx = Arc::new(Ctx {
        client,
        robots_client,
        policy: RetryPolicy {
            retries: opts.retries,
            backoff: opts.backoff,
            max_wait: opts.max_wait,
        },
        robots: opts.robots,
        content_types: opts.content_types.clone(),
        include_body: opts.include_body,
        max_body: opts.max_body,
        max_redirects: opts.max_redirects,
        max_wait: opts.max_wait,
        allow_domains,
        seen: Seen::default(),
        retries: AtomicU64::new(0),
    });

    let state_path = opts
        .state
        .clone()
        .unwrap_or_else(|| opts.output.default_state());
    let mut store = Store::open(&state_path, !opts.resume).await?;
    let meters = Meters::new(handoff.as_ref().map_or("crawl", |h| &*h.source));
    let mut delivery = match handoff {
        None => Delivery::Sink(Sink::open(&opts.output, opts.resume)?),
        Some(handoff) => Delivery::Handoff {
            handoff,
            pending: HashMap::new(),
            next_seq: 0,
        },
    };
    let loaded = store.load().await?;
    let mut frontier = Frontier::new(ctx.seen.clone());
    for url in &loaded.finished {
        frontier.seen.claim(url);
    }
    for item in loaded.queued {
        frontier.restore(item);
    }
    let mut new_seeds = Vec::new();
    for url in seeds {
        let item = Item {
            url,
            depth: 0,
            hops: 0,
        };
        if frontier.offer(item.clone()) {
            new_seeds.push(item);
        }
    }
    store.queue(&new_seeds).await?;

    let mut stats = Stats {
        resumed_pages: loaded.fetched,
        ..Stats::default()
    };
    let max_depth = opts.max_depth;
    let depth_ok = move |d: u32| max_depth.is_none_or(|max| d <= max);
    let budget = opts.max_pages.unwrap_or(u64::MAX);
    let mut started = loaded.fetched;
    let mut hosts = Hosts::default();
    let mut inflight: JoinSet<Visit> = JoinSet::new();
    let progress = opts.progress.0.clone();
    let cancelled = shutdown.cancelled_owned();
    tokio::pin!(cancelled);
    loop {
        while !stats.interrupted && inflight.len() < opts.concurrency && started < budget {
            let Some(item) = frontier.pop() else { break };
            let host = hosts.get(&item.url, opts.per_host, opts.delay);
            started += 1;
            inflight.spawn(visit(ctx.clone(), host, item));
        }
        progress
            .queued
            .store(frontier.len() as u64, Ordering::Relaxed);
        if inflight.is_empty() && delivery.pending() == 0 {
            break;
        }
        let joined = tokio::select! {
            biased;
            () = &mut cancelled, if !stats.interrupted => {
                stats.interrupted = true;
                inflight.abort_all();
                while inflight.join_next().await.is_some() {}
                // A pipeline source still hears back about the records it
                // handed over (the pipeline drains them), so their pages
                // are not fetched again.
                continue;
            }
            Some(acked) = delivery.next_ack(), if delivery.pending() > 0 => {
                acknowledged(&mut delivery, &mut store, acked).await?;
                continue;
            }
            Some(joined) = inflight.join_next(), if !inflight.is_empty() => joined,
        };
        let v = match joined {
            Ok(v) => v,
            Err(e) => {
                // A panicked page task: its URL stays queued in the store.
                tracing::error!(error = %e, "crawl page task failed");
                *stats.errors.entry("panic".into()).or_default() += 1;
                continue;
            }
        };
        stats.sitemaps += v.sitemaps;
        stats.redirects += v.redirects;
        let mut new = Vec::new();
        if depth_ok(1) {
            for url in v.sitemap_urls {
                if ctx.in_scope(&url) {
                    let item = Item {
                        url,
                        depth: 1,
                        hops: 0,
                    };
                    if frontier.offer(item.clone()) {
                        new.push(item);
                    }
                }
            }
        }
        let Some(record) = v.record else {
            stats.robots_denied += 1;
            meters.robots_denied.increment(1);
            started -= 1;
            store
                .commit(&[(v.item.url.as_str(), State::Denied)], &new, None)
                .await?;
            continue;
        };
        if v.denied_redirect {
            stats.robots_denied += 1;
            meters.robots_denied.increment(1);
        }
        if depth_ok(v.item.depth + 1) {
            for url in v.follow {
                if ctx.in_scope(&url) {
                    let item = Item {
                        url,
                        depth: v.item.depth + 1,
                        hops: 0,
                    };
                    if frontier.offer(item.clone()) {
                        new.push(item);
                    }
                }
            }
        }
        if let Some(url) = v.reschedule {
            let item = Item {
                url,
                depth: v.item.depth,
                hops: v.item.hops + 1,
            };
            if frontier.offer(item.clone()) {
                new.push(item);
            }
        }
        stats.pages += 1;
        stats.bytes += record.bytes;
        if v.skipped {
            stats.skipped_content_type += 1;
        }
        if let Some(kind) = v.error_kind {
            *stats.errors.entry(kind.into()).or_default() += 1;
            progress.errors.fetch_add(1, Ordering::Relaxed);
            meters.error(kind);
        }
        progress.pages.fetch_add(1, Ordering::Relaxed);
        progress.bytes.fetch_add(record.bytes, Ordering::Relaxed);
        meters.pages.increment(1);
        meters.bytes.increment(record.bytes);
        let mut finished = vec![(v.item.url.as_str(), State::Fetched)];
        finished.extend(v.claimed.iter().map(|u| (u.as_str(), State::Redirected)));
        match &mut delivery {
            Delivery::Sink(sink) => {
                sink.write(&record)?;
                store
                    .commit(&finished, &new, sink.in_store().then_some(&record))
                    .await?;
            }
            Delivery::Handoff {
                handoff,
                pending,
                next_seq,
            } => {
                // The links are queued now, so the frontier survives a
                // restart; the page itself waits for its acknowledgement.
                if !new.is_empty() {
                    store.commit(&[], &new, None).await?;
                }
                *next_seq += 1;
                let seq = *next_seq;
                pending.insert(
                    seq,
                    finished
                        .iter()
                        .map(|(u, s)| ((*u).to_owned(), *s))
                        .collect(),
                );
                let out = page_record(handoff, &record, seq);
                tokio::select! {
                    biased;
                    // Interrupted while the pipeline is full: the record
                    // is dropped, its ack fails and the page stays queued.
                    () = &mut cancelled, if !stats.interrupted => {
                        stats.interrupted = true;
                        inflight.abort_all();
                        while inflight.join_next().await.is_some() {}
                    }
                    _ = handoff.records.send(out) => {}
                }
            }
        }
    }
    stats.retries = ctx.retries.load(Ordering::Relaxed);
    stats.queued = frontier.len() as u64;
    stats.duration_secs = started_at.elapsed().as_secs_f64();
    Ok(stats)
}

/// A page as a pipeline record: its canonical URL is the stable id, so a
/// page fetched again after a restart is written once by the SQL sinks.
fn page_record(handoff: &Handoff, page: &PageRecord, seq: u64) -> Record {
    Record {
        source: handoff.source.clone(),
        timestamp: SystemTime::now(),
        id: Some(page.url.clone()),
        payload: Payload::Json(serde_json::to_value(page).unwrap_or_default()),
        ack: Some(Ack::counted(seq, handoff.ack_tx.clone(), &handoff.counts)),
    }
}

/// Marks an acknowledged page done; a page whose record some sink did not
/// commit stays queued, to be fetched again by the next run.
async fn acknowledged(
    delivery: &mut Delivery,
    store: &mut Store,
    acked: Acked,
) -> Result<(), Error> {
    let Delivery::Handoff { pending, .. } = delivery else {
        return Ok(());
    };
    let Some(urls) = pending.remove(&acked.seq) else {
        return Ok(());
    };
    if acked.ok {
        let finished: Vec<(&str, State)> = urls.iter().map(|(u, s)| (u.as_str(), *s)).collect();
        store.commit(&finished, &[], None).await?;
    } else if let Some((url, _)) = urls.first() {
        tracing::warn!(url = %url, "page record not committed; it stays queued for the next run");
    }
    Ok(())
}

fn path_and_query(url: &Url) -> &str {
    &url[url::Position::BeforePath..url::Position::AfterQuery]
}

/// Fetches, parses and returns `host`'s robots.txt (for `url`'s origin).
async fn fetch_robots(ctx: &Ctx, host: &Host, url: &Url) -> Robots {
    let Ok(robots_url) = url.join("/robots.txt") else {
        return Robots::allow_all();
    };
    match fetch::get(
        &ctx.robots_client,
        host,
        &robots_url,
        &ctx.policy,
        &ctx.retries,
    )
    .await
    {
        Ok((resp, _permit)) => {
            let status = resp.status();
            if status.is_success() {
                match read_capped(resp, 512 << 10).await {
                    Ok(body) => Robots::parse(&String::from_utf8_lossy(&body), ROBOTS_TOKEN),
                    Err(_) => Robots::disallow_all(),
                }
            } else if status.is_client_error() && status.as_u16() != 429 {
                // No robots.txt: everything is allowed (RFC 9309 §2.3.1.3).
                Robots::allow_all()
            } else {
                // Unreachable (5xx, 429 after retries): assume nothing is
                // allowed (RFC 9309 §2.3.1.4).
                tracing::warn!(url = %robots_url, status = status.as_u16(), "robots.txt unreachable; host disallowed");
                Robots::disallow_all()
            }
        }
        Err(e @ fetch::FetchError::Tls { .. }) => {
            // Every page of this origin fails the same way: let them be
            // tried, so each gets a record saying why, instead of being
            // counted as robots denials.
            tracing::warn!(url = %robots_url, error = %e, "certificate not trusted");
            Robots::allow_all()
        }
        Err(e) => {
            tracing::warn!(url = %robots_url, error = %e, "robots.txt unreachable; host disallowed");
            Robots::disallow_all()
        }
    }
}

/// Reads a whole body, up to `cap` bytes.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = cap.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    Ok(body)
}

/// The `<loc>` entries of a sitemap or sitemap index.
fn sitemap_locs(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<loc>") {
        rest = &rest[start + 5..];
        let Some(end) = rest.find("</loc>") else {
            break;
        };
        let raw = rest[..end].trim();
        let raw = raw
            .strip_prefix("<![CDATA[")
            .and_then(|r| r.strip_suffix("]]>"))
            .unwrap_or(raw);
        out.push(links::decode_entities(raw.trim()));
        rest = &rest[end + 6..];
    }
    out
}

/// Reads the sitemaps robots.txt names (following sitemap indexes, up to
/// 50 files) and returns the page URLs they list.
async fn read_sitemaps(ctx: &Ctx, host: &Host, robots: &Robots) -> (Vec<Url>, u64) {
    const MAX_FILES: u64 = 50;
    let mut queue: Vec<Url> = robots
        .sitemaps
        .iter()
        .filter_map(|s| Url::parse(s).ok().and_then(canon::canonical))
        .filter(|u| ctx.in_scope(u))
        .collect();
    let mut read = 0;
    let mut pages = Vec::new();
    let mut seen_files = std::collections::HashSet::new();
    while let Some(file) = queue.pop() {
        if read >= MAX_FILES || !seen_files.insert(file.to_string()) {
            continue;
        }
        read += 1;
        let Ok((resp, _permit)) =
            fetch::get(&ctx.robots_client, host, &file, &ctx.policy, &ctx.retries).await
        else {
            continue;
        };
        if !resp.status().is_success() {
            continue;
        }
        let Ok(body) = read_capped(resp, ctx.max_body as usize).await else {
            continue;
        };
        let xml = String::from_utf8_lossy(&body);
        let index = xml.contains("<sitemapindex");
        for loc in sitemap_locs(&xml) {
            let Some(url) = Url::parse(&loc).ok().and_then(canon::canonical) else {
                continue;
            };
            if index {
                if ctx.in_scope(&url) {
                    queue.push(url);
                }
            } else {
                pages.push(url);
            }
        }
    }
    (pages, read)
}

/// Fetches one frontier item: robots check, GET with retries, same-origin
/// redirects, and the body streamed through the hasher and link extractor.
async fn visit(ctx: Arc<Ctx>, host: Arc<Host>, item: Item) -> Visit {
    let mut v = Visit {
        item,
        record: None,
        error_kind: None,
        follow: Vec::new(),
        claimed: Vec::new(),
        reschedule: None,
        redirects: 0,
        skipped: false,
        sitemap_urls: Vec::new(),
        sitemaps: 0,
        denied_redirect: false,
    };
    let robots = if ctx.robots {
        let robots = host
            .robots
            .get_or_init(|| async { Arc::new(fetch_robots(&ctx, &host, &v.item.url).await) })
            .await
            .clone();
        if let Some(d) = robots.crawl_delay {
            host.at_least(d.min(ctx.max_wait));
        }
        if host.take_sitemaps() {
            (v.sitemap_urls, v.sitemaps) = read_sitemaps(&ctx, &host, &robots).await;
        }
        if !robots.allowed(path_and_query(&v.item.url)) {
            return v;
        }
        Some(robots)
    } else {
        None
    };

    let mut record = PageRecord {
        url: v.item.url.to_string(),
        final_url: v.item.url.to_string(),
        status: None,
        depth: v.item.depth,
        fetched_at: String::new(),
        content_type: None,
        title: None,
        content_hash: None,
        links: Vec::new(),
        bytes: 0,
        error: None,
        body: None,
    };
    let mut url = v.item.url.clone();
    let mut hops = v.item.hops;
    let (resp, permit) = loop {
        let got = fetch::get(&ctx.client, &host, &url, &ctx.policy, &ctx.retries).await;
        record.fetched_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let (resp, permit) = match got {
            Ok(x) => x,
            Err(e) => {
                v.error_kind = Some(e.kind());
                record.error = Some(e.to_string());
                v.record = Some(record);
                return v;
            }
        };
        record.status = Some(resp.status().as_u16());
        if !resp.status().is_redirection() {
            break (resp, permit);
        }
        let Some(location) = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
        else {
            // A 304 or a 3xx without Location: nothing to follow.
            break (resp, permit);
        };
        let Some(target) = canon::resolve(&url, location) else {
            v.error_kind = Some("bad_redirect");
            record.error = Some(format!("redirect to `{location}`, which cannot be crawled"));
            v.record = Some(record);
            return v;
        };
        record.final_url = target.to_string();
        hops += 1;
        if hops > ctx.max_redirects {
            v.error_kind = Some("too_many_redirects");
            record.error = Some(format!("more than {} redirects", ctx.max_redirects));
        } else if !ctx.in_scope(&target) {
            v.error_kind = Some("redirect_off_domain");
            record.error = Some("redirect leaves the allowed domains".into());
        } else if origin(&target) != origin(&url) {
            // Another origin has its own robots.txt and politeness: queue
            // the target as a URL of its own.
            v.redirects += 1;
            v.reschedule = Some(target);
        } else if robots
            .as_ref()
            .is_some_and(|r| !r.allowed(path_and_query(&target)))
        {
            v.denied_redirect = true;
            v.error_kind = Some("redirect_denied");
            record.error = Some("redirect target disallowed by robots.txt".into());
        } else if ctx.seen.claim(target.as_str()) {
            v.redirects += 1;
            v.claimed.push(target.to_string());
            drop((resp, permit));
            url = target;
            continue;
        } else {
            // The target is queued or fetched already: this URL is a
            // duplicate of it, recorded with the redirect's status.
            v.redirects += 1;
        }
        v.record = Some(record);
        return v;
    };

    let essence = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    record.content_type = essence.clone();
    let status = resp.status();
    if !status.is_success() {
        v.error_kind = Some(if status.is_server_error() {
            "status_5xx"
        } else {
            "status_4xx"
        });
        record.error = Some(format!("HTTP {status}"));
        v.record = Some(record);
        return v;
    }
    let essence = essence.unwrap_or_default();
    if !ctx.wanted_type(&essence) {
        v.skipped = true;
        v.record = Some(record);
        return v;
    }
    let html = essence == "text/html" || essence == "application/xhtml+xml";
    let mut extractor = html.then(links::LinkExtractor::new);
    let mut hasher = blake3::Hasher::new();
    let mut body = ctx.include_body.then(Vec::new);
    let mut resp = resp;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = ctx.max_body.saturating_sub(record.bytes) as usize;
                let chunk = &chunk[..chunk.len().min(room)];
                hasher.update(chunk);
                if let Some(x) = extractor.as_mut() {
                    x.write(chunk);
                }
                if let Some(b) = body.as_mut() {
                    b.extend_from_slice(chunk);
                }
                record.bytes += chunk.len() as u64;
                if record.bytes >= ctx.max_body {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                v.error_kind = Some(if e.is_timeout() { "timeout" } else { "body" });
                record.error = Some(format!("reading the body: {}", fetch::error_chain(&e)));
                break;
            }
        }
    }
    drop(permit);
    record.content_hash = Some(hasher.finalize().to_hex().to_string());
    if let Some(x) = extractor {
        let found = x.finish(&url);
        record.title = found.title;
        record.links = found.links.iter().map(|u| u.to_string()).collect();
        v.follow = found.links;
    }
    record.body = body.map(|b| String::from_utf8_lossy(&b).into_owned());
    v.record = Some(record);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sitemap_entries_and_indexes() {
        let xml = r#"<?xml version="1.0"?><urlset><url><loc> http://h/a?x=1&amp;y=2 </loc></url>
            <url><loc><![CDATA[http://h/b]]></loc></url></urlset>"#;
        assert_eq!(sitemap_locs(xml), vec!["http://h/a?x=1&y=2", "http://h/b"]);
        assert!(sitemap_locs("<urlset><loc>cut").is_empty());
    }
}
