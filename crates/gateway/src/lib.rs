//! `sluice-gateway`: an async API gateway (reverse proxy) on tokio, hyper and
//! tower.
//!
//! Modules:
//! - `config` — the TOML config, its units, loading and validation with lines.
//! - `gateway` — the running gateway: state behind `ArcSwap`, reload, `run`.
//! - `listener` — TCP/TLS accept loop, connection caps, idle and drain.
//! - `router` — routes compiled from config; path normalization.
//! - `limit` — GCRA rate limits per route and key, local or shared in Redis.
//! - `proxy` — the request path: route, limit, forward, headers, upgrades.
//! - `upstream` — targets, pooled client, balancing, health, ejection.
//! - `cache` — the shared RFC 9111 response cache, `Cache-Status`, purge.
//! - `admin` — the admin API (metrics, health, upstreams, reload).
//! - `metrics` — metric names and handles registered ahead of requests.
//! - `latency` — the duration histograms: fixed buckets, two atomic adds a sample.
//! - `access_log` — the non-blocking JSON access log.
//! - `watch` — reload when the config file changes.
//! - `body` — the boxed body type and JSON errors.
//! - `socket` — socket reads that forget readiness after a short read.
//! - `header_arena` — per-request header values split off a per-thread buffer.
//! - `header_pool` — header maps recycled per thread once written.
//! - `raw_fields` — an upstream response's fields passed on as bytes.
//! - `race` — two pinned futures raced without moving them.
//! - `request_id` — UUID v7 request ids from a per-thread counter.
//! - `stop_signal` — a cancellation wait that costs a load per poll.
//! - `wall_clock` — Unix time for a monotonic instant, without a second clock read.

mod access_log;
mod admin;
mod ascii;
mod body;
mod cache;
pub mod config;
mod conn_timer;
mod gateway;
mod header_arena;
mod header_pool;
mod latency;
mod limit;
mod listener;
mod metrics;
mod out_of_line;
mod proxy;
mod race;
mod raw_fields;
mod request_id;
mod router;
mod socket;
mod stop_signal;
mod upstream;
mod wall_clock;
mod watch;

pub use body::{Body, BoxError};
pub use config::{Config, ConfigError, Problem};
pub use gateway::{Error, Gateway, Readiness, UpstreamReadiness, run};
pub use latency::BUCKETS as LATENCY_BUCKETS;
