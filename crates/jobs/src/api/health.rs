//! `/healthz` (open: load balancers probe it) and `/metrics` (behind auth).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{ApiError, ApiState};
use crate::store::{BatchFilter, QueueCounts};

pub(crate) fn open_routes() -> Router<ApiState> {
    Router::new().route("/healthz", get(healthz))
}

pub(crate) fn metrics_routes() -> Router<ApiState> {
    Router::new().route("/metrics", get(metrics))
}

/// 200 when the store answers a read, 503 otherwise.
async fn healthz(State(state): State<ApiState>) -> Response {
    let probe = BatchFilter {
        limit: 1,
        ..BatchFilter::default()
    };
    match state.client.batches(probe).await {
        Ok(_) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

/// Sets the queue-depth gauges from the store, then renders every metric.
async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let Some(render) = state.config.metrics.clone() else {
        return Err(ApiError::NotFound("metrics are not enabled".into()));
    };
    // Read at scrape time, so the gauges cost nothing between scrapes.
    let counts = state.client.queue_counts().await?;
    let mut gauged = state
        .gauged_queues
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let emptied: Vec<String> = gauged
        .iter()
        .filter(|q| !counts.iter().any(|c| &c.queue == *q))
        .cloned()
        .collect();
    let zeros = emptied.into_iter().map(|queue| QueueCounts {
        queue,
        ..QueueCounts::default()
    });
    for q in counts.iter().cloned().chain(zeros) {
        for (name, n) in [
            ("scheduled", q.scheduled),
            ("queued", q.queued),
            ("running", q.running),
            ("retrying", q.retrying),
        ] {
            metrics::gauge!("sluice_jobs_queue_depth", "queue" => q.queue.clone(), "state" => name)
                .set(n as f64);
        }
        gauged.insert(q.queue);
    }
    drop(gauged);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(),
    )
        .into_response())
}
