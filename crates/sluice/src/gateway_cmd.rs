//! `sluice gateway`: run the gateway, or `sluice gateway check` its config.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_gateway::{Config, Gateway};
use tokio_util::sync::CancellationToken;

/// Arguments of `sluice gateway`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sluice gateway --config examples/gateway.toml\n  sluice gateway check --config examples/gateway.toml\n\nSignals: SIGHUP reloads the config; SIGTERM/SIGINT drain and exit 0."
)]
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
    /// Validate the config and print every problem with its key path and line; exit 1 if any.
    Check,
}

impl GatewayArgs {
    pub(crate) fn is_check(&self) -> bool {
        matches!(self.action, Some(GatewayAction::Check))
    }
}

/// `sluice gateway check`.
pub(crate) fn check(args: &GatewayArgs) -> ExitCode {
    match Config::load(&args.config) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} routes, {} upstreams)",
                args.config.display(),
                cfg.routes.len(),
                cfg.upstreams.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `sluice gateway`: serve until SIGTERM/SIGINT.
pub(crate) fn run(args: &GatewayArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if config.server.workers > 0 {
        rt.worker_threads(config.server.workers);
    }
    let rt = rt
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(serve(args.config.clone()))
}

async fn serve(path: PathBuf) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let gw = Gateway::from_file(&path, shutdown.clone())?;
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
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
