//! Process-wide telemetry set-up shared by every command: the Prometheus
//! recorder and its upkeep task.

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

/// Installs the Prometheus recorder (before any metric handle is made:
/// handles made earlier are no-ops) and folds histogram samples into buckets
/// every 5 s until `shutdown`. Buckets make latencies real Prometheus
/// histograms, aggregatable across instances, rather than summaries.
pub(crate) fn install_metrics(shutdown: &CancellationToken) -> anyhow::Result<PrometheusHandle> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        // The gateway's own duration histograms use the same bounds.
        .set_buckets(&sluice_gateway::LATENCY_BUCKETS)
        .context("setting histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    tokio::spawn({
        let recorder = recorder.clone();
        let shutdown = shutdown.clone();
        async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => recorder.run_upkeep(),
                }
            }
        }
    });
    Ok(recorder)
}
