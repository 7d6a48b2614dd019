//! `crawl`: the crawler (`crate::crawl`) as a pipeline source. Each
//! fetched page becomes one JSON record (the fields of `sluice crawl`'s
//! page records), id = the page's canonical URL.
//!
//! The crawl state (frontier and seen set) lives in SQLite at `state`
//! (default `DATA_DIR/crawl/NAME.db`) and every run resumes it: links a
//! page adds are queued at once, the page is marked done when every sink
//! has committed its record. A restart (after a failure, a reload that
//! changed the source, or a new process) therefore fetches again only the
//! pages whose records were not committed; it never starts the crawl over.
//! To crawl anew, delete the state file. When the frontier is empty or
//! `max_pages` is spent the source idles until shutdown. With
//! `when_full = "drop_newest"` a dropped page is counted and stays queued,
//! so it is fetched again by the next run, not lost.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::CrawlSource;
use crate::crawl::{self, CrawlOptions, Handoff, Output};
use crate::pipeline::{SourceCtx, SourceError};

/// The state database of source `name`.
fn state_path(ctx: &SourceCtx, cfg: &CrawlSource) -> std::path::PathBuf {
    cfg.state
        .clone()
        .unwrap_or_else(|| ctx.data_dir.join("crawl").join(format!("{}.db", ctx.name)))
}

fn options(ctx: &SourceCtx, cfg: &CrawlSource) -> CrawlOptions {
    let state = state_path(ctx, cfg);
    let mut o = CrawlOptions::new(cfg.seeds.clone(), Output::Sqlite(state.clone()));
    o.max_depth = cfg.depth;
    o.max_pages = cfg.max_pages;
    o.concurrency = cfg.concurrency;
    o.per_host = cfg.per_host;
    o.delay = cfg.delay.0;
    o.allow_domains = cfg.allow_domains.clone();
    o.state = Some(state);
    o.resume = true;
    o.robots = cfg.robots;
    o.content_types = cfg.content_types.clone();
    o.include_body = cfg.include_body;
    if let Some(ua) = &cfg.user_agent {
        o.user_agent = ua.clone();
    }
    o.timeout = cfg.timeout.0;
    o.retries = cfg.retries;
    o.backoff = cfg.backoff.0;
    o.max_wait = cfg.max_wait.0;
    o.max_redirects = cfg.max_redirects;
    o.max_body = cfg.max_body.0;
    o.ca_certs = cfg.ca_cert.iter().cloned().collect();
    o
}

/// One run: resume the crawl, forward its page records, and once it is
/// finished wait for shutdown.
pub(crate) async fn run(ctx: &SourceCtx, cfg: &CrawlSource) -> Result<(), SourceError> {
    // Small: the crawl's own concurrency is the real buffer; this only
    // decouples it from the pipeline's backpressure.
    let (tx, mut rx) = mpsc::channel(cfg.concurrency.max(1));
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let handoff = Handoff {
        source: Arc::clone(&ctx.name),
        records: tx,
        ack_tx,
        ack_rx,
        counts: ctx.ack_counts(),
    };
    // The crawl stops on the pipeline's shutdown, then waits for the
    // acknowledgements of what it handed over; this task keeps forwarding
    // until the crawl returns, so nothing handed over is stranded.
    let crawl = crawl::run(options(ctx, cfg), ctx.shutdown.clone(), Some(handoff));
    tokio::pin!(crawl);
    loop {
        tokio::select! {
            result = &mut crawl => {
                let stats = result.map_err(|e| SourceError(e.to_string()))?;
                tracing::info!(
                    pages = stats.pages,
                    resumed_pages = stats.resumed_pages,
                    queued = stats.queued,
                    robots_denied = stats.robots_denied,
                    interrupted = stats.interrupted,
                    "crawl finished"
                );
                break;
            }
            Some(record) = rx.recv() => {
                // A page dropped by `drop_newest` is not marked done: it
                // stays queued and the next run fetches it again.
                let Some(record) = ctx.offer_or_retry(record)? else { continue };
                let permits = ctx.output.reserve().await?;
                ctx.count_in();
                permits.send(record);
            }
        }
    }
    ctx.shutdown.cancelled().await;
    Ok(())
}
