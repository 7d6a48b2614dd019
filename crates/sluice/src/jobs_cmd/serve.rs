//! `sluice server` and `sluice worker`: open the store, start a runner, and
//! (for the server) serve the REST API, event stream and dashboard, until
//! SIGTERM/SIGINT, then stop claiming and let running jobs finish.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use sluice_jobs::{Registry, Runner, Store};
use tokio_util::sync::CancellationToken;

use super::settings::RunSettings;

/// Where jobs are stored, by URL.
#[derive(Clone, Debug, Args)]
pub(crate) struct DbArgs {
    /// `./path/to/file.db` or `sqlite://path` (SQLite, one machine), or
    /// `postgres://user@host/db` (PostgreSQL, any number of workers).
    #[arg(long, env = "SLUICE_DB", default_value = sluice_jobs::store::sqlite::DEFAULT_PATH)]
    pub(crate) db: String,
}

/// Arguments of `sluice server`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sluice server                                       SQLite in ./sluice-data, API on 127.0.0.1:8080
  sluice server --db postgres://app@db/jobs --workers 0    API only; workers run elsewhere
  SLUICE_TOKENS=s3cret sluice server --listen 0.0.0.0:8080

The API, event stream and dashboard are served on --listen. Listening on a
non-loopback address requires a token (--token or SLUICE_TOKENS), or
--insecure. SIGTERM/SIGINT stop claiming, let running jobs finish within
--shutdown-deadline, give the rest back to the queue, and exit 0.")]
pub(crate) struct ServerArgs {
    #[command(flatten)]
    pub(crate) db: DbArgs,
    /// Address of the API and dashboard.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// Jobs run at once in this process; 0 serves the API only. Default: 64
    /// on SQLite, 512 on PostgreSQL (its commits take longer, so more jobs
    /// in flight keep it busy).
    #[arg(long)]
    pub(crate) workers: Option<usize>,
    /// API bearer tokens (comma-separated); unset: no auth (loopback only).
    #[arg(
        long = "token",
        env = "SLUICE_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) tokens: Vec<String>,
    /// Listen on a non-loopback address without a token.
    #[arg(long)]
    pub(crate) insecure: bool,
    #[command(flatten)]
    pub(crate) run: RunSettings,
}

/// Arguments of `sluice worker`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sluice worker --db postgres://app@db/jobs --concurrency 32
  sluice worker --db postgres://app@db/jobs --queues emails:4,default

Runs jobs from the shared queue without serving the API. Start as many as you
like on as many machines as you like against one PostgreSQL database. A worker
that dies (even by SIGKILL) has its running jobs run again elsewhere once its
leases expire (--lease, 15 s by default).")]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    pub(crate) db: DbArgs,
    /// Jobs run at once in this process. Default: 64 on SQLite, 512 on
    /// PostgreSQL.
    #[arg(long)]
    pub(crate) concurrency: Option<usize>,
    #[command(flatten)]
    pub(crate) run: RunSettings,
}

/// Opens the store a `--db` URL names (SQLite path or `sqlite://`,
/// `postgres://`).
pub(crate) async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    sluice_jobs::open_store(url)
        .await
        .with_context(|| format!("opening --db {}", redact(url)))
}

/// `postgres://user:secret@host/db` → `postgres://user:…@host/db`, for
/// errors.
fn redact(url: &str) -> String {
    sluice_jobs::PostgresConfig::new(url).redacted_url()
}

/// Job slots when none are asked for. A PostgreSQL runner is bound by
/// commit latency: only jobs in flight overlap it (bench/jobs.sh measured
/// 2,300–2,900 no-op jobs/s at 64 slots, 10,900–11,300 at 512).
fn default_slots(db: &str) -> usize {
    if sluice_jobs::store::is_postgres_url(db) {
        512
    } else {
        64
    }
}

/// Starts a runner, unless `concurrency` is 0.
pub(crate) fn start_runner(
    store: &Arc<dyn Store>,
    registry: &Arc<Registry>,
    run: &RunSettings,
    concurrency: usize,
) -> anyhow::Result<Option<Runner>> {
    if concurrency == 0 {
        return Ok(None);
    }
    let config = run.runner_config(concurrency)?;
    let runner =
        Runner::start(store.clone(), registry.clone(), config).context("starting workers")?;
    tracing::info!(
        worker = runner.worker_id(),
        concurrency,
        queues = ?run.queues,
        "workers running"
    );
    Ok(Some(runner))
}

/// Stops a runner gracefully and logs what happened.
pub(crate) async fn stop_runner(runner: Option<Runner>) {
    if let Some(r) = runner {
        let report = r.shutdown().await;
        if report.drained {
            tracing::info!("every running job finished");
        } else {
            tracing::warn!(
                released = report.released,
                "shutdown deadline passed; unfinished jobs went back to the queue"
            );
        }
    }
}

/// `sluice worker`.
pub(crate) async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let _metrics = crate::telemetry::install_metrics(&shutdown)?;
    crate::signals::spawn(shutdown.clone(), || {}).context("installing signal handlers")?;
    let store = open_store(&args.db.db).await?;
    let registry = Arc::new(args.run.registry());
    let slots = args
        .concurrency
        .unwrap_or_else(|| default_slots(&args.db.db));
    let runner = start_runner(&store, &registry, &args.run, slots)?;
    shutdown.cancelled().await;
    stop_runner(runner).await;
    Ok(ExitCode::SUCCESS)
}

/// `sluice server`.
pub(crate) async fn server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    sluice_jobs::api::check_exposure(args.listen, &args.tokens, args.insecure)?;
    let shutdown = CancellationToken::new();
    let metrics = crate::telemetry::install_metrics(&shutdown)?;
    crate::signals::spawn(shutdown.clone(), || {}).context("installing signal handlers")?;
    let store = open_store(&args.db.db).await?;
    let registry = Arc::new(args.run.registry());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding --listen {}", args.listen))?;
    let slots = args.workers.unwrap_or_else(|| default_slots(&args.db.db));
    let runner = start_runner(&store, &registry, &args.run, slots)?;
    let app = super::app::router(store, registry, args.tokens.clone(), metrics);
    tracing::info!(listen = %args.listen, "jobs API and dashboard on http://{}/", args.listen);
    let served = sluice_jobs::api::serve(listener, app, shutdown.clone().cancelled_owned()).await;
    shutdown.cancel();
    stop_runner(runner).await;
    served.context("serving the API")?;
    Ok(ExitCode::SUCCESS)
}
