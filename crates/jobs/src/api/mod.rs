//! The REST API: JSON over HTTP in front of a [`Client`], Server-Sent
//! Events for live progress, bearer-token auth and an OpenAPI document.
//!
//! The API adds no business logic: every request is validated and stored by
//! the [`Client`]; this module only maps HTTP to it and its answers back.
//!
//! - [`error`]: the one error type and its JSON body; the JSON and query
//!   extractors that name what was wrong and where.
//! - [`auth`]: bearer tokens, compared in constant time, and the check that
//!   refuses an open server on a non-loopback address.
//! - `batches`, `jobs`, `queues`: one router per resource.
//! - `events`: `GET /v1/events`, the SSE change stream.
//! - `health`: `/healthz` and `/metrics`.
//! - [`openapi`]: `/openapi.json` and the list of routes it must describe.
//! - `trace`: one span, one log line and metrics per request.

pub mod auth;
mod batches;
pub mod error;
mod events;
mod health;
mod ids;
mod jobs;
pub mod openapi;
mod queues;
mod trace;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::validate::SubmitLimits;

pub use self::auth::{ExposureError, check_exposure};
pub use self::error::ApiError;

/// Renders the process's metrics in the Prometheus text format (the binary
/// passes its exporter's handle, so this crate does not depend on it).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Settings of the API.
#[derive(Clone)]
pub struct ApiConfig {
    /// Accepted bearer tokens; empty means no auth (loopback only, see
    /// [`check_exposure`]).
    pub tokens: Vec<String>,
    /// Largest request body in bytes; larger ones get 413.
    pub body_limit: usize,
    /// Most jobs in one batch.
    pub max_jobs_per_batch: usize,
    /// Renders `/metrics`; `None` answers 404 there.
    pub metrics: Option<MetricsRender>,
    /// Most changes one event stream reads per store query.
    pub events_page: u32,
    /// Least time between two reads of one event stream, so a store that
    /// commits hundreds of times a second does not cost a query per commit
    /// per client.
    pub events_min_interval: Duration,
    /// Interval of SSE keep-alive comments.
    pub keep_alive: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            body_limit: 16 * 1024 * 1024,
            max_jobs_per_batch: SubmitLimits::default().max_jobs,
            metrics: None,
            events_page: 500,
            events_min_interval: Duration::from_millis(100),
            keep_alive: Duration::from_secs(15),
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are secrets: only their number is shown.
        f.debug_struct("ApiConfig")
            .field("tokens", &self.tokens.len())
            .field("body_limit", &self.body_limit)
            .field("max_jobs_per_batch", &self.max_jobs_per_batch)
            .field("metrics", &self.metrics.is_some())
            .field("events_page", &self.events_page)
            .field("events_min_interval", &self.events_min_interval)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

/// What every handler shares: the client, the settings and the signal that
/// ends event streams.
#[derive(Clone, Debug)]
pub struct ApiState {
    client: Client,
    config: Arc<ApiConfig>,
    tokens: Arc<auth::Tokens>,
    shutdown: CancellationToken,
    /// Queues given a depth gauge, so one that empties is set to zero.
    gauged_queues: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl ApiState {
    /// State serving `client` with `config`. The client's job limit is
    /// replaced by `config.max_jobs_per_batch`.
    pub fn new(client: Client, config: ApiConfig) -> Self {
        let limits = SubmitLimits {
            max_jobs: config.max_jobs_per_batch,
            ..client.limits().clone()
        };
        Self {
            client: client.with_limits(limits),
            tokens: Arc::new(auth::Tokens::new(&config.tokens)),
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
            gauged_queues: Arc::default(),
        }
    }

    /// Ends open event streams when `token` is cancelled. [`serve`] ends
    /// them itself on shutdown; this is for a router mounted elsewhere.
    pub fn with_shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The API's routes, auth, body limit and request tracing.
pub fn router(state: ApiState) -> Router {
    let protected = Router::new()
        .merge(batches::routes())
        .merge(jobs::routes())
        .merge(queues::routes())
        .merge(events::routes())
        .merge(health::metrics_routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .merge(protected)
        .merge(health::open_routes())
        .merge(openapi::routes())
        // A route layer, so the span knows the route template; it wraps
        // auth, so refused requests are traced too.
        .route_layer(axum::middleware::from_fn(trace::record))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting, ends open event streams and waits for requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = CancellationToken::new();
    let router = router.layer(axum::Extension(events::StreamsEnd(closing.clone())));
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Event streams never end by themselves; graceful shutdown
            // waits for every response, so they are told to end here.
            closing.cancel();
        })
        .await
}
