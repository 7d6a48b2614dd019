//! `sluice gateway`: run the gateway, or `sluice gateway check` its config.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_gateway::{Config, ConfigError, Gateway};
use tokio_util::sync::CancellationToken;

/// Arguments of `sluice gateway`.
///
/// Runs the API gateway (reverse proxy) from one TOML config file, or checks
/// that file with `sluice gateway check`. Every config key is documented in
/// docs/gateway.md.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sluice gateway --config examples/gateway.toml         run the gateway
  sluice gateway check --config examples/gateway.toml   validate the config, print every problem
  SLUICE_GATEWAY_CONFIG=/etc/sluice/gateway.toml sluice gateway

Signals: SIGHUP reloads the config (as do POST /reload on the admin API and
saving the file); an invalid file keeps the running config. SIGTERM/SIGINT stop
accepting, drain in-flight requests within server.drain_timeout, and exit 0.")]
pub(crate) struct GatewayArgs {
    /// The gateway's TOML config file.
    #[arg(
        long,
        short,
        global = true,
        env = "SLUICE_GATEWAY_CONFIG",
        default_value = "examples/gateway.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    action: Option<GatewayAction>,
}

#[derive(Debug, Subcommand)]
enum GatewayAction {
    /// Validate the config file and print every problem, not just the first.
    ///
    /// Checks syntax, unknown keys (naming the expected ones), types, units
    /// (durations, sizes, rates), names that point nowhere (a route's
    /// upstream), and everything else knowable without running: patterns,
    /// ranges, listen addresses, TLS files. Each problem is printed on
    /// standard output as `FILE:LINE: KEY.PATH: message`, in file order.
    ///
    /// Exit status: 0 valid, 1 invalid (or empty), 2 the file cannot be read.
    #[command(after_help = "\
Examples:
  sluice gateway check --config examples/gateway.toml
  sluice gateway check -c gateway.toml && systemctl reload sluice-gateway

Output for an invalid file:
  gateway.toml:7: routes[1].timout: unknown key `timout`, expected one of `name`, `host`, ...
  gateway.toml:9: routes[1].upstream: no upstream named \"apy\"; defined: api")]
    Check,
}

impl GatewayArgs {
    pub(crate) fn is_check(&self) -> bool {
        matches!(self.action, Some(GatewayAction::Check))
    }
}

/// `sluice gateway check`: 0 valid, 1 invalid or empty (problems on stdout), 2 unreadable.
pub(crate) fn check(args: &GatewayArgs) -> ExitCode {
    match Config::load(&args.config) {
        Ok(cfg) => crate::check::valid(
            &args.config,
            &format!(
                "{} routes, {} upstreams",
                cfg.routes.len(),
                cfg.upstreams.len()
            ),
        ),
        Err(e @ ConfigError::Invalid { .. }) => {
            crate::check::invalid(&args.config, &e, e.problems().len())
        }
        Err(e @ ConfigError::Empty { .. }) => {
            println!("{e}");
            ExitCode::FAILURE
        }
        Err(e @ ConfigError::Read { .. }) => crate::check::unreadable(&e),
    }
}

/// `sluice gateway`: serve until SIGTERM/SIGINT.
pub(crate) fn run(args: &GatewayArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    // One worker means one thread, as an nginx worker process: the
    // current-thread scheduler runs accept, connections and timers on the
    // thread that blocks on them, with no hand-off to a second thread and
    // no work-stealing bookkeeping on each wake.
    let mut rt = if config.server.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        if config.server.workers > 0 {
            rt.worker_threads(config.server.workers);
        }
        rt
    };
    let rt = rt
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(serve(args.config.clone()))
}

async fn serve(path: PathBuf) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    // The recorder goes in first: the gateway registers its metric handles
    // when it builds its state.
    let recorder = crate::telemetry::install_metrics(&shutdown)?;
    let gw = Gateway::from_file(&path, shutdown.clone())?;
    gw.set_metrics_handle(recorder);
    let config = gw.config();
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding server.listen {}", config.server.listen))?;
    let admin = if config.admin.enabled {
        let l = tokio::net::TcpListener::bind(config.admin.listen)
            .await
            .with_context(|| format!("binding admin.listen {}", config.admin.listen))?;
        tracing::info!(listen = %config.admin.listen, "admin API listening");
        Some(tokio::spawn({
            let gw = gw.clone();
            let shutdown = shutdown.clone();
            async move { gw.serve_admin(l, shutdown).await }
        }))
    } else {
        None
    };
    let hup = gw.clone();
    crate::signals::spawn(shutdown.clone(), move || {
        let _ = hup.reload();
    })
    .context("installing signal handlers")?;
    gw.watch_config_file();
    gw.serve(listener, shutdown.clone()).await?;
    shutdown.cancel();
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    tracing::info!("gateway stopped");
    Ok(())
}
