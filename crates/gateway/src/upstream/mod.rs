//! Upstreams: groups of targets behind one pooled HTTP client, with
//! balancing, active health checks, passive ejection, a concurrency cap and
//! a retry budget.

mod balance;
mod chunked;
mod head;
mod health;
mod lean;
mod pool;
mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{Request, Response};
use tokio_util::sync::CancellationToken;
use tower::retry::budget::{Budget, TpsBudget};

use crate::body::Body;
use crate::config::UpstreamConfig;
use crate::metrics::UpstreamMetrics;
use crate::raw_fields::Answer;

use balance::Balancer;
pub(crate) use lean::LeanHead;
pub(crate) use pool::SendError;
use pool::{Pool, PoolSettings};
pub(crate) use target::Target;

/// A named group of targets.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// Name from the config.
    pub(crate) name: String,
    /// The config it was built from.
    pub(crate) config: UpstreamConfig,
    targets: Vec<Arc<Target>>,
    balancer: Balancer,
    pool: Pool,
    in_flight: AtomicU32,
    budget: TpsBudget,
    /// Tries, latency and in-flight gauge for this upstream.
    pub(crate) metrics: UpstreamMetrics,
    /// What `balance = "hash"` hashes, parsed once; `None` for the other
    /// balancers.
    pub(crate) hash_on: Option<HashOn>,
}

/// The request property a hashing upstream picks its target by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HashOn {
    /// The client's address.
    ClientIp,
    /// A request header's value (a request without it is not hashed).
    Header(http::HeaderName),
}

impl HashOn {
    /// `hash_on` of a hashing upstream's config: `client_ip` or
    /// `header:NAME` (validated at load; anything else falls back to the
    /// client's address).
    fn of(config: &UpstreamConfig) -> Option<HashOn> {
        if config.balance != crate::config::Balance::Hash {
            return None;
        }
        let header = config
            .hash_on
            .as_deref()
            .and_then(|spec| spec.strip_prefix("header:"))
            .and_then(|name| http::HeaderName::from_bytes(name.as_bytes()).ok());
        Some(header.map_or(HashOn::ClientIp, HashOn::Header))
    }
}

/// Parse a target as `host:port` or `http://host:port`.
pub(crate) fn parse_target(s: &str) -> Result<Authority, String> {
    let bare = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    if bare.contains('/') || s.starts_with("https://") {
        return Err(format!("target {s:?} must be host:port (plain HTTP)"));
    }
    let auth: Authority = bare
        .parse()
        .map_err(|e| format!("target {s:?} is not host:port: {e}"))?;
    if auth.port_u16().is_none() {
        return Err(format!("target {s:?} has no port"));
    }
    Ok(auth)
}

impl Upstream {
    /// Build from config; targets must already be validated.
    pub(crate) fn new(name: &str, config: &UpstreamConfig) -> Upstream {
        let authorities: Vec<Authority> = config
            .targets
            .iter()
            .filter_map(|t| parse_target(t).ok())
            .collect();
        let settings = PoolSettings {
            http2: config.http2,
            max_idle: config.pool_max_idle,
            idle_timeout: config.pool_idle_timeout.0,
        };
        Upstream {
            name: name.to_owned(),
            hash_on: HashOn::of(config),
            config: config.clone(),
            pool: Pool::new(name, &authorities, &settings),
            targets: authorities
                .into_iter()
                .map(|a| Arc::new(Target::new(a)))
                .collect(),
            balancer: Balancer::new(config.balance),
            in_flight: AtomicU32::new(0),
            // Retries may add at most 20% to the request rate, with a floor of
            // 10 retries a second so that a quiet route can still retry.
            budget: TpsBudget::new(std::time::Duration::from_secs(10), 10, 0.2),
            metrics: UpstreamMetrics::new(name),
        }
    }

    /// Send `req` to target `index` over a pooled connection, connecting
    /// within `connect_timeout` (the upstream's own when `None`) if needed.
    pub(crate) async fn send(
        &self,
        index: usize,
        req: Request<Body>,
        connect_timeout: Option<Duration>,
    ) -> Result<Response<Body>, SendError> {
        let timeout = connect_timeout.unwrap_or(self.config.connect_timeout.0);
        self.pool.send(index, req, timeout).await
    }

    /// Send a borrowed request without a body over the lean HTTP/1.1
    /// client; the caller keeps the head for another try. Only for
    /// HTTP/1.1 upstreams and heads without a body or an upgrade. `now` is the
    /// caller's reading of the clock, for the pool's idle check.
    ///
    /// Not an `async fn`: the pool's future is returned as it is, so that
    /// the request path has one state machine fewer to poll and its answer
    /// one move fewer on the way out.
    pub(crate) fn send_head<'a>(
        &'a self,
        index: usize,
        head: LeanHead<'a>,
        connect_timeout: Option<Duration>,
        now: Instant,
    ) -> impl Future<Output = Result<Answer, SendError>> + 'a {
        let timeout = connect_timeout.unwrap_or(self.config.connect_timeout.0);
        self.pool.send_head(index, head, timeout, now)
    }

    /// All targets.
    pub(crate) fn targets(&self) -> &[Arc<Target>] {
        &self.targets
    }

    /// Pick a target, avoiding those in `tried` when others remain. When no
    /// target is available (all down or ejected) every target is a candidate:
    /// better to try than to refuse outright.
    pub(crate) fn pick(&self, key: Option<&[u8]>, tried: &[usize]) -> Option<usize> {
        if self.targets.is_empty() {
            return None;
        }
        // Candidates are noted on the stack for the usual handful of targets.
        let mut inline = [0usize; 16];
        let mut heap = Vec::new();
        let slots: &mut [usize] = if self.targets.len() <= inline.len() {
            &mut inline
        } else {
            heap.resize(self.targets.len(), 0);
            &mut heap
        };
        let rules: [&dyn Fn(usize) -> bool; 4] = [
            &|i| !tried.contains(&i) && self.targets[i].is_available(),
            &|i| self.targets[i].is_available(),
            &|i| !tried.contains(&i),
            &|_| true,
        ];
        for rule in rules {
            let mut n = 0;
            for i in (0..self.targets.len()).filter(|&i| rule(i)) {
                slots[n] = i;
                n += 1;
            }
            if n > 0 {
                return Some(self.balancer.pick(&self.targets, &slots[..n], key));
            }
        }
        None
    }

    /// The target at `index`.
    pub(crate) fn target(&self, index: usize) -> &Arc<Target> {
        &self.targets[index]
    }

    /// Record how a try against a target went; failures may eject it.
    pub(crate) fn record(&self, index: usize, ok: bool) {
        let target = &self.targets[index];
        if ok {
            target.record_success();
            return;
        }
        let streak = target.record_failure();
        let eject = &self.config.eject;
        if eject.consecutive_failures == 0 || streak < eject.consecutive_failures {
            return;
        }
        let now = Instant::now();
        let ejected = self.targets.iter().filter(|t| t.is_ejected(now)).count();
        // As Envoy does: at least one target may always be ejected.
        let cap = ((self.targets.len() * eject.max_percent as usize) / 100).max(1);
        if ejected < cap {
            target.eject(now, eject.base_time.0);
            metrics::counter!("sluice_gateway_upstream_ejections_total", "upstream" => self.name.clone()).increment(1);
            tracing::warn!(upstream = %self.name, target = %target.authority, "target ejected after consecutive failures");
        }
    }

    /// Take a slot under the concurrency cap; `None` means shed the request.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let max = self.config.max_concurrent;
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        if max > 0 && now > max {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Permit(Arc::clone(self)))
    }

    /// Note a first try, which earns retry budget.
    pub(crate) fn deposit(&self) {
        self.budget.deposit();
    }

    /// Ask the budget for one retry.
    pub(crate) fn withdraw(&self) -> bool {
        self.budget.withdraw()
    }

    /// Start active health checks (if configured) until `shutdown`.
    pub(crate) fn spawn_health_checks(self: &Arc<Self>, shutdown: &CancellationToken) {
        if let Some(hc) = &self.config.health {
            health::spawn(self, hc, shutdown);
        }
    }

    /// Set the gauges that mirror counts kept here (requests in flight,
    /// idle pooled connections) to their values now. The admin listener
    /// calls it before rendering metrics: per-request gauge updates would
    /// each be an indirect call into the exporter, on the request path.
    pub(crate) fn publish_gauges(&self) {
        self.metrics
            .in_flight
            .set(self.in_flight.load(Ordering::Relaxed) as f64);
        self.pool.publish_gauges();
    }

    /// State for the admin API.
    pub(crate) fn snapshot(&self) -> serde_json::Value {
        let now = Instant::now();
        serde_json::json!({
            "name": self.name,
            "balance": format!("{:?}", self.config.balance),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "targets": self.targets.iter().map(|t| serde_json::json!({
                "address": t.authority.as_str(),
                "healthy": t.is_healthy(),
                "ejected": t.is_ejected(now),
                "in_flight": t.in_flight(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// A slot under an upstream's concurrency cap, released on drop.
#[derive(Debug)]
pub(crate) struct Permit(Arc<Upstream>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
