//! `sluice crawl`: crawl from seed URLs, write one record per page, print a
//! JSON summary. The crawler itself is `sluice_collect::crawl`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_collect::crawl::{self, CrawlOptions, Output};
use tokio_util::sync::CancellationToken;

/// Exit status for unusable arguments (clap uses it too).
const EXIT_USAGE: u8 = 2;
/// Exit status when SIGINT/SIGTERM stopped the crawl before it finished.
const EXIT_INTERRUPTED: u8 = 3;

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 500ms, 2s, 1m)"))
}

/// Arguments of `sluice crawl`.
///
/// Crawls from the seed URLs: pages are fetched concurrently (bounded
/// overall and per host, with a politeness delay per host), robots.txt is
/// obeyed (Allow/Disallow, Crawl-delay, Sitemap), links are followed within
/// the allowed domains, and each page gives one record (url, final_url,
/// status, depth, fetched_at, title, content_hash, links, optional body).
/// The frontier and the seen set are kept in SQLite, so `--resume`
/// continues an interrupted crawl without fetching finished pages again.
/// Every option is described in docs/collect.md ("Crawler").
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sluice crawl http://127.0.0.1:8000/ --depth 3 --out pages.jsonl
  sluice crawl https://example.com/ --max-pages 500 --delay 1s --out sqlite://crawl.db
  sluice crawl https://example.com/ --out pages.jsonl --resume   continue after an interruption
  sluice crawl https://intranet.test/ --ca-cert private-ca.pem    trust a private CA too

Depth: seeds are depth 0, their links depth 1, sitemap entries depth 1.
Output: records go to --out; a JSON summary (pages, bytes, errors by kind,
retries, robots denials, duration) is printed on standard output at the end;
a progress bar is drawn on standard error when it is a terminal.

Exit status: 0 the crawl finished (pages may have failed: see the summary),
1 it could not go on (state or output error), 2 bad arguments,
3 interrupted by SIGINT/SIGTERM (the state is kept: run again with --resume).")]
pub(crate) struct CrawlArgs {
    /// Seed URLs (http:// or https://).
    #[arg(value_name = "URL", required = true)]
    urls: Vec<String>,
    /// Deepest link depth to follow (seeds are 0); unlimited when absent.
    #[arg(long, value_name = "N")]
    depth: Option<u32>,
    /// Fetch at most N pages (across resumed runs); unlimited when absent.
    #[arg(long, value_name = "N")]
    max_pages: Option<u64>,
    /// Requests in flight at once, over all hosts.
    #[arg(long, value_name = "N", default_value_t = 16)]
    concurrency: usize,
    /// Requests in flight at once to one host.
    #[arg(long, value_name = "N", default_value_t = 8)]
    per_host: usize,
    /// Least gap between request starts to one host (a longer robots.txt
    /// Crawl-delay wins).
    #[arg(long, value_name = "D", default_value = "0s", value_parser = duration)]
    delay: Duration,
    /// Follow links to this domain and its subdomains (repeatable, or
    /// comma-separated); default: the seeds' hosts.
    #[arg(long = "allow-domain", value_name = "D", value_delimiter = ',')]
    allow_domain: Vec<String>,
    /// Where records go: a JSONL file, or sqlite://PATH (table crawl_pages).
    #[arg(
        long,
        value_name = "FILE.jsonl | sqlite://PATH",
        default_value = "crawl.jsonl"
    )]
    out: String,
    /// The crawl's state database (frontier and seen set); default:
    /// FILE.jsonl.state.db beside a JSONL output, the database itself for
    /// sqlite://.
    #[arg(long, value_name = "PATH")]
    state: Option<PathBuf>,
    /// Continue the crawl kept in the state database (append to the
    /// output) instead of starting anew.
    #[arg(long)]
    resume: bool,
    /// Ignore robots.txt (and its sitemaps).
    #[arg(long)]
    no_robots: bool,
    /// Read bodies of these media types (repeatable; `text/*` allowed);
    /// links come from the HTML ones. Default: text/html.
    #[arg(long = "content-type", value_name = "T", value_delimiter = ',')]
    content_type: Vec<String>,
    /// Put each page's body in its record.
    #[arg(long)]
    include_body: bool,
    /// Limit on one request, body included.
    #[arg(long, value_name = "D", default_value = "30s", value_parser = duration)]
    timeout: Duration,
    /// Retries of a request after network errors, 429 and 5xx.
    #[arg(long, value_name = "N", default_value_t = 3)]
    retries: u32,
    /// The User-Agent header (robots.txt rules for `sluice` apply either way).
    #[arg(long, value_name = "UA")]
    user_agent: Option<String>,
    /// Also trust the CA certificates in this PEM file for https://
    /// (repeatable); the built-in Mozilla roots are always trusted.
    #[arg(long = "ca-cert", value_name = "FILE")]
    ca_cert: Vec<PathBuf>,
}

impl CrawlArgs {
    fn options(&self) -> Result<CrawlOptions, String> {
        let output = Output::parse(&self.out).map_err(|m| format!("--out: {m}"))?;
        let mut opts = CrawlOptions::new(self.urls.clone(), output);
        opts.max_depth = self.depth;
        opts.max_pages = self.max_pages;
        opts.concurrency = self.concurrency;
        opts.per_host = self.per_host;
        opts.delay = self.delay;
        opts.allow_domains = self.allow_domain.clone();
        opts.state = self.state.clone();
        opts.resume = self.resume;
        opts.robots = !self.no_robots;
        if !self.content_type.is_empty() {
            opts.content_types = self.content_type.clone();
        }
        opts.include_body = self.include_body;
        opts.timeout = self.timeout;
        opts.retries = self.retries;
        if let Some(ua) = &self.user_agent {
            opts.user_agent = ua.clone();
        }
        opts.ca_certs = self.ca_cert.clone();
        Ok(opts)
    }
}

/// Draws the progress line from the crawler's counters until `stop`.
fn progress_bar(progress: crawl::Progress, stop: CancellationToken) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
    if bar.is_hidden() || !std::io::stderr().is_terminal() {
        return;
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {pos} pages ({per_sec}), {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            bar.set_position(progress.pages());
            bar.set_message(format!(
                "{} queued, {} errors, {:.1} MiB",
                progress.queued(),
                progress.errors(),
                progress.bytes() as f64 / (1 << 20) as f64
            ));
        }
        bar.finish_and_clear();
    });
}

/// `sluice crawl`: crawl, print the stats, exit as documented.
pub(crate) async fn run(args: CrawlArgs) -> anyhow::Result<ExitCode> {
    let opts = match args.options() {
        Ok(o) => o,
        Err(m) => {
            eprintln!("error: {m}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let shutdown = CancellationToken::new();
    crate::signals::spawn(shutdown.clone(), || {
        tracing::info!("SIGHUP: nothing to reload for crawl; ignored");
    })?;
    let bar_stop = CancellationToken::new();
    progress_bar(opts.progress.clone(), bar_stop.clone());
    let result = crawl::crawl(opts, shutdown).await;
    bar_stop.cancel();
    // Let the bar clear its line before the summary.
    tokio::task::yield_now().await;
    let stats = match result {
        Ok(stats) => stats,
        Err(e @ crawl::Error::Invalid { .. }) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        Err(e) => return Err(e.into()),
    };
    println!("{}", serde_json::to_string(&stats)?);
    Ok(if stats.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    })
}
