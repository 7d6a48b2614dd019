//! Metric names, descriptions, and handles registered ahead of the requests
//! that use them.
//!
//! With a recorder installed, a labelled `counter!` call hashes its labels
//! and searches the registry on every call, and the labels themselves cost
//! allocations: on a proxy that is most of the per-request overhead. So
//! routes and upstreams hold their handles, and per-status counters are
//! registered once, the first time each status is seen.

use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, counter, describe_counter, describe_gauge, gauge};

use crate::latency;

/// Requests answered, by route and status.
const REQUESTS: &str = "sluice_gateway_requests_total";
/// Time from request head to response head, by route.
const REQUEST_DURATION: &str = "sluice_gateway_request_duration_seconds";
/// Tries sent to an upstream, by upstream and outcome.
const UPSTREAM_REQUESTS: &str = "sluice_gateway_upstream_requests_total";
/// Time from sending a try to its response head, by upstream.
const UPSTREAM_DURATION: &str = "sluice_gateway_upstream_duration_seconds";
/// Requests in flight to an upstream.
const UPSTREAM_IN_FLIGHT: &str = "sluice_gateway_upstream_in_flight";
/// Cache lookups, by route and result.
const CACHE_REQUESTS: &str = "sluice_gateway_cache_requests_total";
/// Idle keep-alive connections pooled for a target.
const POOL_IDLE: &str = "sluice_gateway_upstream_pool_idle";
/// Connections opened to a target.
const POOL_OPENED: &str = "sluice_gateway_upstream_connections_opened_total";

/// Describe the metrics registered here, so `/metrics` carries HELP lines.
pub(crate) fn describe() {
    // The two duration histograms are `crate::latency`'s, described where
    // they are registered.
    describe_counter!(REQUESTS, "Requests answered, by route and status");
    describe_counter!(
        UPSTREAM_REQUESTS,
        "Tries sent upstream, by upstream and outcome"
    );
    describe_gauge!(UPSTREAM_IN_FLIGHT, "Requests in flight to an upstream");
    describe_gauge!(
        POOL_IDLE,
        "Idle keep-alive connections pooled, by upstream and target"
    );
    describe_counter!(
        POOL_OPENED,
        "Connections opened to upstream targets, by upstream and target"
    );
}

/// One counter per HTTP status (100–599), each registered on first use.
#[derive(Debug)]
struct StatusCounters {
    name: &'static str,
    owner_label: &'static str,
    owner: String,
    status_label: &'static str,
    slots: Box<[OnceLock<Counter>]>,
}

impl StatusCounters {
    fn new(
        name: &'static str,
        owner_label: &'static str,
        owner: &str,
        status_label: &'static str,
    ) -> Self {
        StatusCounters {
            name,
            owner_label,
            owner: owner.to_owned(),
            status_label,
            slots: (100..600).map(|_| OnceLock::new()).collect(),
        }
    }

    fn get(&self, status: u16) -> &Counter {
        let i = usize::from(status.clamp(100, 599) - 100);
        self.slots[i].get_or_init(|| {
            counter!(
                self.name,
                self.owner_label => self.owner.clone(),
                self.status_label => status.to_string()
            )
        })
    }
}

/// Handles for one route (or for requests no route matched).
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    route: String,
    requests: StatusCounters,
    duration: Arc<latency::Histogram>,
    /// Registered on first use, so routes without a cache add no series.
    cache: OnceLock<Arc<CacheCounters>>,
}

impl RouteMetrics {
    /// Register the handles for `route`.
    pub(crate) fn new(route: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_owned(),
            requests: StatusCounters::new(REQUESTS, "route", route, "status"),
            duration: latency::histogram(
                REQUEST_DURATION,
                "Time to the response head, by route",
                "route",
                route,
            ),
            cache: OnceLock::new(),
        }
    }

    /// The route's cache counters.
    pub(crate) fn cache(&self) -> Arc<CacheCounters> {
        Arc::clone(
            self.cache
                .get_or_init(|| Arc::new(CacheCounters::new(&self.route))),
        )
    }

    /// Count one answered request.
    pub(crate) fn record(&self, status: http::StatusCode, elapsed: std::time::Duration) {
        self.requests.get(status.as_u16()).increment(1);
        self.duration.record(elapsed);
    }
}

/// How one try against an upstream ended.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TryOutcome {
    /// A response with this status.
    Status(u16),
    /// The connection could not be made.
    ConnectError,
    /// The request or response failed on the wire.
    Error,
    /// No response head within the try timeout.
    Timeout,
}

/// Handles for one upstream.
#[derive(Debug)]
pub(crate) struct UpstreamMetrics {
    by_status: StatusCounters,
    connect_error: Counter,
    error: Counter,
    timeout: Counter,
    duration: Arc<latency::Histogram>,
    /// Requests in flight to the upstream.
    pub(crate) in_flight: Gauge,
}

impl UpstreamMetrics {
    /// Register the handles for `upstream`.
    pub(crate) fn new(upstream: &str) -> UpstreamMetrics {
        let outcome = |o: &'static str| counter!(UPSTREAM_REQUESTS, "upstream" => upstream.to_owned(), "outcome" => o);
        UpstreamMetrics {
            by_status: StatusCounters::new(UPSTREAM_REQUESTS, "upstream", upstream, "outcome"),
            connect_error: outcome("connect_error"),
            error: outcome("error"),
            timeout: outcome("timeout"),
            duration: latency::histogram(
                UPSTREAM_DURATION,
                "Time to an upstream's response head",
                "upstream",
                upstream,
            ),
            in_flight: gauge!(UPSTREAM_IN_FLIGHT, "upstream" => upstream.to_owned()),
        }
    }

    /// Count one try and its time.
    pub(crate) fn record_try(&self, outcome: TryOutcome, elapsed: std::time::Duration) {
        match outcome {
            TryOutcome::Status(s) => self.by_status.get(s).increment(1),
            TryOutcome::ConnectError => self.connect_error.increment(1),
            TryOutcome::Error => self.error.increment(1),
            TryOutcome::Timeout => self.timeout.increment(1),
        }
        self.duration.record(elapsed);
    }
}

/// Cache lookups of one route, by result.
#[derive(Debug)]
pub(crate) struct CacheCounters {
    /// Served fresh from the cache.
    pub(crate) hit: Counter,
    /// Served stale (stale-while-revalidate, stale-if-error).
    pub(crate) stale: Counter,
    /// Fetched from the upstream (not stored, or stored now).
    pub(crate) miss: Counter,
    /// Stored response confirmed by a 304.
    pub(crate) revalidated: Counter,
    /// Not eligible for the cache (method, body, directives).
    pub(crate) bypass: Counter,
}

impl CacheCounters {
    fn new(route: &str) -> CacheCounters {
        let c = |result: &'static str| counter!(CACHE_REQUESTS, "route" => route.to_owned(), "result" => result);
        CacheCounters {
            hit: c("hit"),
            stale: c("stale"),
            miss: c("miss"),
            revalidated: c("revalidated"),
            bypass: c("bypass"),
        }
    }
}

/// Handles for the connection pool of one upstream target.
#[derive(Debug)]
pub(crate) struct PoolMetrics {
    /// Idle connections now in the pool.
    pub(crate) idle: Gauge,
    /// Connections opened so far.
    pub(crate) opened: Counter,
}

impl PoolMetrics {
    /// Register the handles for `target` of `upstream`.
    pub(crate) fn new(upstream: &str, target: &str) -> PoolMetrics {
        PoolMetrics {
            idle: gauge!(POOL_IDLE, "upstream" => upstream.to_owned(), "target" => target.to_owned()),
            opened: counter!(POOL_OPENED, "upstream" => upstream.to_owned(), "target" => target.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_slots_cover_every_status() {
        let c = StatusCounters::new("t", "route", "r", "status");
        // Out-of-range values clamp instead of panicking.
        for s in [0u16, 100, 200, 404, 599, 600, 999] {
            c.get(s).increment(1);
        }
        assert!(c.slots[0].get().is_some());
        assert!(c.slots[499].get().is_some());
        assert!(c.slots[104].get().is_none());
    }
}
