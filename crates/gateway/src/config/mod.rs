//! The gateway's configuration: one TOML file, deserialized into these
//! structs, then checked as a whole; [`Config::load`] reports every problem
//! with its key path and line (see `load` and `validate`, over the `sluice-tomlspan` crate).
//!
//! Every struct denies unknown keys; every key has a default except the ones
//! that name something (upstream targets, route upstreams). Durations, sizes
//! and rates use the units of `sluice-tomlspan` ([`Dur`], [`ByteSize`], [`Rate`]).

mod load;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

pub(crate) use load::is_blank;
pub use load::{ConfigError, Problem};
pub use sluice_tomlspan::{ByteSize, Dur, Rate};

/// The whole gateway configuration.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The public listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// The admin listener: metrics, health, reload, purge.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Named groups of targets that routes send traffic to.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Routes, matched in file order; the first match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// The shared response cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Settings shared by every route's rate limiter.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// The JSON access log.
    #[serde(default)]
    pub access_log: AccessLogConfig,
    /// The fields the proxy adds to requests and responses.
    #[serde(default)]
    pub proxy_headers: ProxyHeadersConfig,
}

/// `[server]`: the public listener and its protections against slow or greedy clients.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// TLS termination; plain HTTP (with h2c prior knowledge) when absent.
    pub tls: Option<TlsConfig>,
    /// Time a client has to send the complete request head.
    pub header_read_timeout: Dur,
    /// A keep-alive connection with no request in flight for this long is closed.
    pub idle_timeout: Dur,
    /// Most request header fields accepted; more gets 431.
    pub max_headers: usize,
    /// Largest request head accepted, in bytes; larger gets 431.
    pub max_header_size: ByteSize,
    /// Largest request body accepted; larger gets 413.
    pub max_body_size: ByteSize,
    /// Most open connections from one client IP.
    pub max_connections_per_ip: u32,
    /// Most open connections in all.
    pub max_connections: u32,
    /// How long in-flight requests get to finish on SIGTERM before the gateway exits.
    pub drain_timeout: Dur,
    /// Peers whose `X-Forwarded-For`/`Forwarded` headers are believed, as CIDRs.
    pub trusted_proxies: Vec<IpNet>,
    /// Serve HTTP/2 (h2c prior knowledge on plain TCP, ALPN `h2` on TLS).
    pub http2: bool,
    /// Worker threads of the runtime; 0 means one per core.
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            header_read_timeout: Dur::secs(10),
            idle_timeout: Dur::secs(60),
            max_headers: 100,
            max_header_size: ByteSize(64 << 10),
            max_body_size: ByteSize(10 << 20),
            max_connections_per_ip: 512,
            max_connections: 20_000,
            drain_timeout: Dur::secs(30),
            trusted_proxies: Vec::new(),
            http2: true,
            workers: 0,
        }
    }
}

/// `[server.tls]`: certificates, chosen by SNI.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Default certificate chain (PEM), used when no other matches the SNI name.
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of `cert`.
    pub key: Option<PathBuf>,
    /// More certificates, each chosen when the client's SNI name is one of its `names`.
    #[serde(default)]
    pub certs: Vec<CertConfig>,
}

/// One certificate and its key.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertConfig {
    /// SNI names this certificate serves: exact (`a.example.com`) or wildcard (`*.example.com`).
    pub names: Vec<String>,
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// `[admin]`: the admin listener.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the admin API at all.
    pub enabled: bool,
    /// Address to listen on; loopback by default.
    pub listen: SocketAddr,
    /// When set, every admin request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// `/readyz` answers 503 while an upstream that a route uses has no
    /// available target. Off: upstream state is reported but never makes the
    /// gateway unready (for fleets whose instances share every upstream, where
    /// one upstream's outage would otherwise take every instance out at once).
    pub readyz_requires_upstreams: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9901)),
            token: None,
            readyz_requires_upstreams: true,
        }
    }
}

/// How an upstream picks a target for each request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each target in turn.
    #[default]
    RoundRobin,
    /// Power of two choices over requests in flight.
    LeastRequest,
    /// Consistent hash on `hash_on` (a header or the client IP).
    Hash,
}

/// `[upstreams.NAME]`: a group of interchangeable targets.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `host:port` of each target (optionally `http://host:port`).
    pub targets: Vec<String>,
    /// Balancing policy.
    #[serde(default)]
    pub balance: Balance,
    /// What `balance = "hash"` hashes: `"client_ip"` or `"header:NAME"`.
    #[serde(default)]
    pub hash_on: Option<String>,
    /// Active health checks; none when absent.
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// Passive ejection of failing targets.
    #[serde(default)]
    pub eject: EjectConfig,
    /// Most requests in flight to this upstream; more are shed with 503 and `Retry-After`. 0 = no limit.
    #[serde(default)]
    pub max_concurrent: u32,
    /// Time to establish a TCP connection to a target.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Speak HTTP/2 (prior knowledge) to the targets instead of HTTP/1.1.
    #[serde(default)]
    pub http2: bool,
    /// Idle keep-alive connections kept per target.
    #[serde(default = "default_pool_idle")]
    pub pool_max_idle: usize,
    /// An idle pooled connection is closed after this long.
    #[serde(default = "default_pool_idle_timeout")]
    pub pool_idle_timeout: Dur,
}

fn default_connect_timeout() -> Dur {
    Dur::secs(2)
}
fn default_pool_idle() -> usize {
    256
}
fn default_pool_idle_timeout() -> Dur {
    Dur::secs(90)
}

/// `health = { … }`: an active HTTP health check per target.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Path requested with GET; a 2xx or 3xx answer is healthy.
    pub path: String,
    /// Time between two checks of one target.
    #[serde(default = "default_health_interval")]
    pub interval: Dur,
    /// A check that takes longer has failed.
    #[serde(default = "default_health_timeout")]
    pub timeout: Dur,
    /// Consecutive passes that bring a down target back.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that take a target down.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

fn default_health_interval() -> Dur {
    Dur::secs(5)
}
fn default_health_timeout() -> Dur {
    Dur::secs(1)
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

/// `eject = { … }`: passive outlier ejection from live traffic.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EjectConfig {
    /// Consecutive failures (connect errors, 502/503/504) that eject a target. 0 disables ejection.
    pub consecutive_failures: u32,
    /// How long the first ejection lasts; each further one lasts longer.
    pub base_time: Dur,
    /// At most this share of the targets may be ejected at once, in percent.
    pub max_percent: u32,
}

impl Default for EjectConfig {
    fn default() -> Self {
        EjectConfig {
            consecutive_failures: 5,
            base_time: Dur::secs(10),
            max_percent: 50,
        }
    }
}

/// `[[routes]]`: which requests go where, and how.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in metrics and logs; `route<N>` by default.
    #[serde(default)]
    pub name: Option<String>,
    /// Host to match: exact (`api.example.com`) or a suffix wildcard (`*.example.com`).
    #[serde(default)]
    pub host: Option<String>,
    /// Match paths starting with this prefix.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Match exactly this path.
    #[serde(default)]
    pub path: Option<String>,
    /// Match only these methods; all when empty.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Match only when each of these headers has this value (`"*"`: is present).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The upstream to send matched requests to.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Answer with a fixed response instead of an upstream.
    #[serde(default)]
    pub respond: Option<FixedResponse>,
    /// Remove `path_prefix` from the path sent upstream.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Replace `path_prefix` with this in the path sent upstream.
    #[serde(default)]
    pub rewrite_prefix: Option<String>,
    /// Send this `Host` upstream instead of the client's.
    #[serde(default)]
    pub host_rewrite: Option<String>,
    /// Total time for the request, retries included; 504 after.
    #[serde(default = "default_route_timeout")]
    pub timeout: Dur,
    /// Time for one try; defaults to `timeout`.
    #[serde(default)]
    pub try_timeout: Option<Dur>,
    /// Connect timeout override for this route.
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
    /// Further tries after a connect error or a 502/503/504.
    #[serde(default)]
    pub retries: u32,
    /// Also retry non-idempotent methods (POST, PATCH) — only safe for idempotent handlers.
    #[serde(default)]
    pub retry_non_idempotent: bool,
    /// Base of the jittered exponential backoff between tries.
    #[serde(default = "default_retry_backoff")]
    pub retry_backoff: Dur,
    /// Rate limit for this route.
    #[serde(default)]
    pub rate_limit: Option<RouteRateLimit>,
    /// Cache responses by RFC 9111.
    #[serde(default)]
    pub cache: bool,
    /// Body size limit override for this route.
    #[serde(default)]
    pub max_body_size: Option<ByteSize>,
}

fn default_route_timeout() -> Dur {
    Dur::secs(30)
}
fn default_retry_backoff() -> Dur {
    Dur::millis(25)
}

/// `respond = { … }`: a fixed answer, like nginx's `return`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedResponse {
    /// Status code.
    #[serde(default = "default_fixed_status")]
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body.
    #[serde(default)]
    pub body: String,
}

fn default_fixed_status() -> u16 {
    200
}

/// `rate_limit = { … }` on a route.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRateLimit {
    /// What one bucket is keyed by: `client_ip`, `header:NAME`, `route`, or several joined by `+`.
    #[serde(default = "default_limit_key")]
    pub key: String,
    /// Sustained rate.
    pub rate: Rate,
    /// Requests allowed at once above the sustained rate.
    #[serde(default)]
    pub burst: u32,
}

fn default_limit_key() -> String {
    "client_ip".to_owned()
}

/// What a shared limiter does when Redis cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Let the request through (and fall back to the local limiter).
    #[default]
    Open,
    /// Refuse the request with 503.
    Closed,
}

/// `[rate_limit]`: settings shared by all limiters.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Share limits across gateway instances through this Redis.
    pub redis: Option<String>,
    /// What to do when Redis is away.
    pub on_redis_error: FailureMode,
    /// Give up on Redis after this long for one decision.
    pub redis_timeout: Dur,
    /// Most keys tracked per route; the least recently used go first.
    pub max_keys: u64,
    /// Prefix of every Redis key the shared limiter writes (`<prefix><route>\x1f<key>`);
    /// instances that should share limits use the same prefix.
    pub redis_prefix: String,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            redis: None,
            on_redis_error: FailureMode::Open,
            redis_timeout: Dur::millis(50),
            max_keys: 100_000,
            redis_prefix: "sluice:rl:".to_owned(),
        }
    }
}

/// `[cache]`: the shared in-memory response cache.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Total bytes of stored responses (bodies, headers, keys, bookkeeping).
    /// Changing it on reload starts a new, empty cache.
    pub max_size: ByteSize,
    /// Largest single body stored; larger responses still stream to the
    /// client whole, they are just not kept.
    pub max_object_size: ByteSize,
    /// Longest a request waits for another request already fetching the same
    /// key before going upstream itself.
    pub lock_timeout: Dur,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_size: ByteSize(64 << 20),
            max_object_size: ByteSize(8 << 20),
            lock_timeout: Dur::secs(10),
        }
    }
}

/// `[access_log]`: one JSON line per request.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Write the access log at all.
    pub enabled: bool,
    /// File to append to; standard output when absent.
    pub path: Option<PathBuf>,
    /// Lines buffered in memory; when full, lines are dropped and counted, never waited for.
    pub buffer: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            enabled: true,
            path: None,
            buffer: 8192,
        }
    }
}

/// `[proxy_headers]`: which fields the proxy adds on the way through. All
/// are on by default; hop-by-hop fields are removed whatever these say
/// (RFC 9110 §7.6.1). Turning one off leaves a client's own field of that
/// name as it came, neither extended nor replaced.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyHeadersConfig {
    /// Make an `X-Request-Id` when the request has none, send it upstream
    /// and return it on the response. Off, a client's id still passes
    /// upstream untouched and the access log records it.
    pub request_id: bool,
    /// Add this hop to `Via` both ways (RFC 9110 §7.6.3). Some turn it off
    /// so as not to name the proxy to clients.
    pub via: bool,
    /// Append the client's address to `X-Forwarded-For` upstream.
    pub x_forwarded_for: bool,
    /// Set `X-Forwarded-Proto` (`http` or `https`) upstream.
    pub x_forwarded_proto: bool,
    /// Set `X-Forwarded-Host` to the client's `Host` upstream.
    pub x_forwarded_host: bool,
}

impl Default for ProxyHeadersConfig {
    fn default() -> Self {
        ProxyHeadersConfig {
            request_id: true,
            via: true,
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
        }
    }
}
