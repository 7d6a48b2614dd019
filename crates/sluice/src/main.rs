//! `sluice`: one binary for sluice's systems. This file parses the command
//! line, installs tracing and the Prometheus recorder, handles signals, and
//! hands off to the libraries; no business logic lives here.

mod check;
mod collect_cmd;
mod collect_stats;
mod crawl_cmd;
mod gateway_cmd;
mod jobs_cmd;
mod signals;
mod telemetry;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// A proxy allocates a little on every request (headers, bodies, futures);
// mimalloc's thread-local free lists make that markedly cheaper than glibc's
// malloc in the bench's profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sluice — an async API gateway, task scheduler and data collector in one binary.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log filter, as in RUST_LOG (e.g. "info", "sluice_gateway=debug").
    #[arg(long, global = true, env = "SLUICE_LOG", default_value = "info")]
    log: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API gateway (reverse proxy), or check its config.
    Gateway(gateway_cmd::GatewayArgs),
    /// Run a data-collection pipeline (sources → transforms → sinks), or check its config.
    Collect(collect_cmd::CollectArgs),
    /// Crawl web pages from seed URLs, politely, resumably; one record per page.
    Crawl(crawl_cmd::CrawlArgs),
    /// Run everything in one process: jobs API, dashboard and workers behind
    /// the gateway on 127.0.0.1:8080, stored in ./sluice-data.
    Up(up::UpArgs),
    /// Run the jobs server: REST API, event stream, dashboard and workers.
    Server(jobs_cmd::serve::ServerArgs),
    /// Run jobs from a shared queue (no API), e.g. on PostgreSQL.
    Worker(jobs_cmd::serve::WorkerArgs),
    /// Submit a batch of jobs from a file; prints the batch id.
    Submit(jobs_cmd::submit::SubmitArgs),
    /// Follow a batch with live progress bars until it finishes.
    Watch(jobs_cmd::watch::WatchArgs),
    /// Show a job or a batch.
    Status(jobs_cmd::inspect::StatusArgs),
    /// Cancel a job or a batch.
    Cancel(jobs_cmd::inspect::CancelArgs),
    /// List jobs, e.g. `--state failed`.
    Jobs(jobs_cmd::inspect::JobsArgs),
}

fn init_tracing(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Gateway(ref args) = cli.command {
        if args.is_check() {
            return gateway_cmd::check(args);
        }
        init_tracing(&cli);
        return report(gateway_cmd::run(args).map(|()| ExitCode::SUCCESS));
    }
    if let Command::Collect(ref args) = cli.command
        && args.is_check()
    {
        return collect_cmd::check(args);
    }
    init_tracing(&cli);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report(Err(anyhow::anyhow!("starting the tokio runtime: {e}"))),
    };
    report(rt.block_on(async move {
        match cli.command {
            Command::Gateway(_) => unreachable!("handled above"),
            Command::Collect(a) => collect_cmd::run(a).await,
            Command::Crawl(a) => crawl_cmd::run(a).await,
            Command::Up(a) => up::run(a).await,
            Command::Server(a) => jobs_cmd::serve::server(a).await,
            Command::Worker(a) => jobs_cmd::serve::worker(a).await,
            Command::Submit(a) => jobs_cmd::submit::run(a).await,
            Command::Watch(a) => jobs_cmd::watch::run(a).await,
            Command::Status(a) => jobs_cmd::inspect::status(a).await,
            Command::Cancel(a) => jobs_cmd::inspect::cancel(a).await,
            Command::Jobs(a) => jobs_cmd::inspect::jobs(a).await,
        }
    }))
}

/// Prints a command's error (with its causes) and picks the exit status.
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}
