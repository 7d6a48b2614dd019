//! Metric names and per-route handles.
//!
//! Handles are registered once per config (not looked up by name on every
//! request): with a recorder installed, a labelled `counter!` call hashes its
//! key and searches the registry each time, which costs more than the rest
//! of a cache hit.

use metrics::{Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, histogram};

/// Requests answered, by route and status class.
pub(crate) const REQUESTS: &str = "sluice_gateway_requests_total";
/// Time from request head to response head, by route.
pub(crate) const REQUEST_DURATION: &str = "sluice_gateway_request_duration_seconds";

/// Describe every metric once, so `/metrics` carries HELP lines.
pub(crate) fn describe() {
    describe_counter!(REQUESTS, "Requests answered, by route and status class");
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "Time to the response head, by route");
    describe_counter!("sluice_gateway_retries_total", "Retries sent upstream, by route");
    describe_counter!("sluice_gateway_retry_budget_exhausted_total", "Retries refused by the retry budget, by upstream");
    describe_counter!("sluice_gateway_shed_total", "Requests shed by an upstream's concurrency cap");
    describe_counter!("sluice_gateway_upstream_ejections_total", "Targets ejected after consecutive failures");
    describe_gauge!("sluice_gateway_upstream_healthy", "1 when a target passes its active health checks");
    describe_gauge!("sluice_gateway_open_connections", "Client connections open now");
    describe_counter!("sluice_gateway_connections_refused_total", "Client connections refused by a cap, by reason");
    describe_gauge!("sluice_gateway_upgraded_connections", "Upgraded (WebSocket) connections open now");
    describe_counter!("sluice_gateway_access_log_dropped_total", "Access log lines dropped because the writer fell behind");
    describe_counter!("sluice_gateway_reloads_total", "Configuration reloads, by result");
}

/// Pre-registered handles for one route (or for "no route").
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
}

impl RouteMetrics {
    /// Register the handles for `route`.
    pub(crate) fn new(route: &str) -> RouteMetrics {
        let class = |c: &'static str| counter!(REQUESTS, "route" => route.to_owned(), "status" => c);
        RouteMetrics {
            by_class: [class("1xx"), class("2xx"), class("3xx"), class("4xx"), class("5xx")],
            duration: histogram!(REQUEST_DURATION, "route" => route.to_owned()),
        }
    }

    /// Count one answered request.
    pub(crate) fn record(&self, status: http::StatusCode, elapsed: std::time::Duration) {
        let i = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[i].increment(1);
        self.duration.record(elapsed.as_secs_f64());
    }
}
