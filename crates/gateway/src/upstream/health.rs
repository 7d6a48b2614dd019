//! Active health checks: a GET to each target's health path every interval;
//! `fall` failures in a row take it down, `rise` passes bring it back.

use std::sync::Arc;

use http::{Request, Uri};
use tokio_util::sync::CancellationToken;

use crate::body;
use crate::config::HealthConfig;

use super::Upstream;

pub(super) fn spawn(upstream: &Arc<Upstream>, hc: &HealthConfig, shutdown: &CancellationToken) {
    for index in 0..upstream.targets().len() {
        let upstream = Arc::clone(upstream);
        let hc = hc.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut passes = 0u32;
            let mut fails = 0u32;
            let mut ticker = tokio::time::interval(hc.interval.0);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let ok = probe(&upstream, index, &hc).await;
                let target = upstream.target(index);
                if ok {
                    passes += 1;
                    fails = 0;
                    if !target.is_healthy() && passes >= hc.rise {
                        target.set_healthy(true);
                        tracing::info!(upstream = %upstream.name, target = %target.authority, "target healthy");
                    }
                } else {
                    fails += 1;
                    passes = 0;
                    if target.is_healthy() && fails >= hc.fall {
                        target.set_healthy(false);
                        tracing::warn!(upstream = %upstream.name, target = %target.authority, "target unhealthy");
                    }
                }
                metrics::gauge!(
                    "sluice_gateway_upstream_healthy",
                    "upstream" => upstream.name.clone(),
                    "target" => target.authority.to_string()
                )
                .set(if target.is_healthy() { 1.0 } else { 0.0 });
            }
        });
    }
}

async fn probe(upstream: &Upstream, index: usize, hc: &HealthConfig) -> bool {
    let target = upstream.target(index);
    let Ok(uri) = format!("http://{}{}", target.authority, hc.path).parse::<Uri>() else {
        return false;
    };
    let Ok(req) = Request::get(uri)
        .header(http::header::HOST, target.authority.as_str())
        .header(http::header::USER_AGENT, "sluice-health-check")
        .body(body::empty())
    else {
        return false;
    };
    match tokio::time::timeout(hc.timeout.0, upstream.client().request(req)).await {
        Ok(Ok(resp)) => resp.status().is_success() || resp.status().is_redirection(),
        _ => false,
    }
}
