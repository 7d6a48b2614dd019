//! One span per request (method, route, status, duration), a log line when
//! it ends, and the request metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// Wraps the request in a span and records how it ended.
pub(crate) async fn record(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    // The route template, not the path, so ids do not explode the metric's
    // label set.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    let started = Instant::now();
    let res = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    span.record("status", status);
    span.record("duration_ms", elapsed.as_secs_f64() * 1_000.0);
    span.in_scope(|| tracing::debug!("request done"));
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("sluice_jobs_api_requests_total", &labels).increment(1);
    metrics::histogram!("sluice_jobs_api_request_seconds", &labels).record(elapsed.as_secs_f64());
    res
}
