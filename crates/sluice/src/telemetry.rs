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
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
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
