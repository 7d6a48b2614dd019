//! `sluice collect`: run a collection pipeline, or `sluice collect check` its config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_collect::{Config, ConfigError, Handle, Pipeline};
use tokio_util::sync::CancellationToken;

/// Arguments of `sluice collect`.
///
/// Runs a pipeline of sources → transforms → sinks from one TOML file:
/// sources `file`, `tcp`, `http_push`, `http_poll`, `nats`, `mqtt` and
/// `crawl`; transforms `parse_json`, `parse_lines`, `fields` and `filter`;
/// sinks `sqlite`, `postgres`, `jsonl` and `stdout`. Delivery is at least once: a source
/// commits its position (a file offset, an HTTP 200) only after every sink
/// has committed the record. Every key is documented in docs/collect.md.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sluice collect --config examples/collect.toml         run the pipeline
  sluice collect check --config examples/collect.toml   validate the config, print every problem
  sluice collect -c collect.toml --metrics-listen 127.0.0.1:9401
  sluice collect -c collect.toml --stats      a line per source each second on stderr

Signals: SIGTERM/SIGINT stop the sources, deliver what is in flight within
drain_timeout (default 10s) and exit 0; what was not delivered by then is read
again on the next start (file) or was refused to its sender (http_push).
SIGHUP re-reads the config: an invalid one is logged and changes nothing;
unchanged sources and sinks keep running, changed ones are drained and
restarted, removed ones drained and stopped, added ones started.")]
pub(crate) struct CollectArgs {
    /// The pipeline's TOML config file.
    #[arg(
        long,
        short,
        global = true,
        env = "SLUICE_COLLECT_CONFIG",
        default_value = "examples/collect.toml"
    )]
    config: PathBuf,
    /// Serve Prometheus metrics (sluice_collect_*) at http://ADDR/metrics.
    #[arg(long, visible_alias = "metrics-listen", value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Print a line per source and sink every second on standard error
    /// (records/s in and out, queue depth, acks pending, dead letters), and
    /// a JSON summary of every counter there at exit.
    #[arg(long)]
    stats: bool,
    #[command(subcommand)]
    action: Option<CollectAction>,
}

#[derive(Debug, Subcommand)]
enum CollectAction {
    /// Validate the config file and print every problem, not just the first.
    ///
    /// Checks syntax, unknown kinds and keys (naming the expected ones),
    /// types, units (durations like "5s", sizes like "1MiB"), inputs that
    /// name nothing, cycles between transforms, sinks without inputs,
    /// sources whose records go nowhere, and impossible values. Each problem
    /// is printed on standard output as `FILE:LINE: KEY.PATH: message`, in
    /// file order.
    ///
    /// Exit status: 0 valid, 1 invalid, 2 the file cannot be read.
    #[command(after_help = "\
Examples:
  sluice collect check --config examples/collect.toml

Output for an invalid file:
  collect.toml:3: sources.orders.kind: unknown kind `kafka`; expected one of file, tcp, http_push
  collect.toml:9: sinks.db.inputs[0]: no source or transform named `parsd`; defined: orders, parsed")]
    Check,
}

impl CollectArgs {
    pub(crate) fn is_check(&self) -> bool {
        matches!(self.action, Some(CollectAction::Check))
    }
}

/// `sluice collect check`: 0 valid, 1 invalid (problems on stdout), 2 unreadable.
pub(crate) fn check(args: &CollectArgs) -> ExitCode {
    match Config::load(&args.config) {
        Ok(cfg) => crate::check::valid(
            &args.config,
            &format!(
                "{} sources, {} transforms, {} sinks",
                cfg.sources.len(),
                cfg.transforms.len(),
                cfg.sinks.len()
            ),
        ),
        Err(e @ ConfigError::Invalid { .. }) => {
            crate::check::invalid(&args.config, &e, e.problems().len())
        }
        Err(e @ ConfigError::Read { .. }) => crate::check::unreadable(&e),
    }
}

/// `sluice collect`: run until SIGTERM/SIGINT, then drain.
pub(crate) async fn run(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let shutdown = CancellationToken::new();
    let recorder = crate::telemetry::install_metrics(&shutdown)?;
    if let Some(addr) = args.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --metrics {addr}"))?;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let recorder = recorder.clone();
                async move { recorder.render() }
            }),
        );
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        tracing::info!(listen = %addr, "metrics at /metrics");
    }
    // SIGHUP before the pipeline is up waits in the channel.
    let (hup_tx, mut hup_rx) = tokio::sync::mpsc::unbounded_channel();
    crate::signals::spawn(shutdown.clone(), move || {
        let _ = hup_tx.send(());
    })
    .context("installing signal handlers")?;
    let pipeline = Pipeline::start(config, shutdown.clone())
        .await
        .context("starting the pipeline")?;
    let handle = pipeline.handle();
    let path = args.config.clone();
    tokio::spawn(async move {
        while hup_rx.recv().await.is_some() {
            reload(&handle, &path).await;
        }
    });
    let stats = args.stats.then(|| {
        tokio::spawn(crate::collect_stats::print_every_second(
            pipeline.handle(),
            shutdown.clone(),
        ))
    });
    let handle = pipeline.handle();
    let drained = pipeline.wait().await;
    if let Some(task) = stats {
        let _ = task.await;
        crate::collect_stats::print_summary(&handle.stats(), drained);
    }
    tracing::info!(drained, "collect stopped");
    Ok(ExitCode::SUCCESS)
}

/// Re-read the config and apply it; a bad file or a refused reload is
/// logged and the running pipeline goes on as it was.
async fn reload(handle: &Handle, path: &std::path::Path) {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reload: invalid config; keeping the running pipeline");
            return;
        }
    };
    if let Err(e) = handle.reload(config).await {
        tracing::error!(error = %e, "reload refused; keeping the running pipeline");
    }
}
