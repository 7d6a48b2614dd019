//! `sluice up`: the whole system in one process on embedded defaults.
//!
//! SQLite in `./sluice-data`, a runner, the jobs API and dashboard on an
//! internal loopback port, and the gateway in front of them on
//! 127.0.0.1:8080 (rate-limited API, cached dashboard assets, admin API on
//! 127.0.0.1:9901). `--demo` also serves a small demo HTTP service behind
//! the gateway and submits a batch that exercises every part.

mod demo;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use sluice_gateway::{Config, Gateway};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::jobs_cmd::serve::{start_runner, stop_runner};
use crate::jobs_cmd::settings::RunSettings;

/// Arguments of `sluice up`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sluice up --demo          start everything and submit a demo batch
  sluice up --data /var/lib/sluice --listen 127.0.0.1:9000

Then open the dashboard at http://127.0.0.1:8080/, or from another terminal:
  sluice submit examples/jobs/hello.json --watch
  sluice jobs --state failed

SIGTERM/SIGINT (Ctrl-C) stop accepting, let running jobs finish within
--shutdown-deadline, and exit 0.")]
pub(crate) struct UpArgs {
    /// Also serve a demo HTTP service and submit a demo batch.
    #[arg(long)]
    demo: bool,
    /// Directory of the SQLite database and the gateway's access log.
    #[arg(long, env = "SLUICE_DATA", default_value = "./sluice-data")]
    data: PathBuf,
    /// Address of the gateway: dashboard and API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the gateway's admin API (metrics, health, upstreams).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Jobs run at once.
    #[arg(long, default_value_t = 64)]
    workers: usize,
    #[command(flatten)]
    run: RunSettings,
}

/// `sluice up`.
pub(crate) async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "--listen {}: `sluice up` serves an unauthenticated API and stays on loopback; \
             use `sluice server --token …` behind your own gateway to expose it",
            args.listen
        );
    }
    let shutdown = CancellationToken::new();
    let metrics = crate::telemetry::install_metrics(&shutdown)?;
    crate::signals::spawn(shutdown.clone(), || {}).context("installing signal handlers")?;

    let db = args.data.join("sluice.db");
    let store = crate::jobs_cmd::serve::open_store(&db.display().to_string()).await?;
    let registry = Arc::new(args.run.registry());

    // Bind every listener before anything starts, so a taken port fails
    // the start instead of half of it.
    let gateway_listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding --listen {}", args.listen))?;
    let admin_listener = TcpListener::bind(args.admin)
        .await
        .with_context(|| format!("binding --admin {}", args.admin))?;
    let jobs_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the jobs API's internal port")?;
    let jobs_addr = jobs_listener.local_addr()?;
    let demo = if args.demo {
        Some(demo::Service::start(shutdown.clone()).await?)
    } else {
        None
    };

    let config = gateway_config(&args, jobs_addr, demo.as_ref().map(|d| d.addr), &args.data)?;
    let gateway = Gateway::new(config, shutdown.clone()).context("starting the gateway")?;
    gateway.set_metrics_handle(metrics.clone());

    let runner = start_runner(&store, &registry, &args.run, args.workers)?;
    let app = crate::jobs_cmd::app::router(store.clone(), registry.clone(), Vec::new(), metrics);
    let api = tokio::spawn(sluice_jobs::api::serve(
        jobs_listener,
        app,
        shutdown.clone().cancelled_owned(),
    ));
    let admin = tokio::spawn({
        let gw = gateway.clone();
        let shutdown = shutdown.clone();
        async move { gw.serve_admin(admin_listener, shutdown).await }
    });
    let proxy = tokio::spawn({
        let gw = gateway.clone();
        let shutdown = shutdown.clone();
        async move { gw.serve(gateway_listener, shutdown).await }
    });

    print_banner(&args);
    if demo.is_some() {
        let client = sluice_jobs::Client::new(store.clone(), registry.clone());
        match demo::submit_batch(&client, args.listen, &args.data).await {
            Ok(id) => println!(
                "\ndemo batch {id} submitted:\n  watch it:  cargo run --release -- watch {id}\n  or open    http://{}/#/batches/{id}\n",
                args.listen
            ),
            Err(e) => eprintln!("warning: the demo batch was not submitted: {e:#}"),
        }
    }

    shutdown.cancelled().await;
    tracing::info!("stopping: draining the gateway and the API, letting running jobs finish");
    let _ = proxy.await;
    let _ = admin.await;
    let _ = api.await;
    stop_runner(runner).await;
    Ok(ExitCode::SUCCESS)
}

fn print_banner(args: &UpArgs) {
    println!(
        "sluice is up
  dashboard   http://{listen}/
  jobs API    http://{listen}/v1/   (OpenAPI: http://{listen}/openapi.json)
  events      http://{listen}/v1/events
  gateway     http://{admin}/metrics   http://{admin}/upstreams
  data        {data}
Ctrl-C stops.",
        listen = args.listen,
        admin = args.admin,
        data = args.data.display(),
    );
}

/// The built-in gateway config with this run's addresses filled in.
fn gateway_config(
    args: &UpArgs,
    jobs: SocketAddr,
    demo: Option<SocketAddr>,
    data: &Path,
) -> anyhow::Result<Config> {
    let (demo_upstream, demo_route) = match demo {
        Some(addr) => (
            format!(
                "[upstreams.demo]\ntargets = [\"{addr}\"]\nbalance = \"round_robin\"\n\
                 health = {{ path = \"/healthz\", interval = \"5s\" }}"
            ),
            "[[routes]]\nname = \"demo\"\npath_prefix = \"/demo/\"\nupstream = \"demo\"\n\
             strip_prefix = true\ncache = true\ntimeout = \"10s\"\n\
             rate_limit = { key = \"client_ip\", rate = \"500/s\", burst = 500 }"
                .to_owned(),
        ),
        None => (String::new(), String::new()),
    };
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let text = include_str!("gateway.toml")
        .replace("{listen}", &args.listen.to_string())
        .replace("{admin}", &args.admin.to_string())
        .replace("{jobs}", &jobs.to_string())
        .replace("{demo_upstream}", &demo_upstream)
        .replace("{demo_route}", &demo_route)
        .replace(
            "{access_log}",
            &data
                .join("access.log")
                .display()
                .to_string()
                .replace('\\', "/"),
        );
    Config::parse(&text, "sluice up (built-in gateway config)")
        .map_err(|e| anyhow::anyhow!("built-in gateway config: {e}"))
}
