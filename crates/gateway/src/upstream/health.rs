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
    // HTTP/2 carries scheme and authority in the URI; HTTP/1.1 wants the path alone.
    let uri = if upstream.config.http2 {
        format!("http://{}{}", target.authority, hc.path).parse::<Uri>()
    } else {
        hc.path.parse::<Uri>()
    };
    let Ok(uri) = uri else {
        return false;
    };
    let Ok(req) = Request::get(uri)
        .header(http::header::HOST, target.authority.as_str())
        .header(http::header::USER_AGENT, "sluice-health-check")
        .body(body::empty())
    else {
        return false;
    };
    let sent = async {
        let resp = upstream.send(index, req, None).await?;
        let ok = resp.status().is_success() || resp.status().is_redirection();
        // Reading the (small) body to its end returns the connection to the pool.
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
        Ok::<_, super::SendError>(ok)
    };
    matches!(tokio::time::timeout(hc.timeout.0, sent).await, Ok(Ok(true)))
}
