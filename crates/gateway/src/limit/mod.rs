//! Rate limiting per route and key with GCRA: [`Limits`] holds one
//! [`RouteLimiter`] per limited route of a config, and [`check`] is the one
//! step the request path runs. A limiter answers at once — 429 when the key
//! is over its limit, 503 when a shared limiter cannot decide and fails
//! closed — and never parks a request.
//!
//! Parts: `gcra` (the math), `key` (which bucket), `local` (the bounded
//! in-process table), `redis` (the shared limiter), `headers` (what
//! clients are told).

mod gcra;
mod headers;
mod key;
mod local;
mod redis;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response, StatusCode};
use ipnet::IpNet;

use crate::body::{self, Body};
use crate::config::{Config, FailureMode, RouteRateLimit};

pub(crate) use key::KeySpec;
pub(crate) use redis::RedisSlot;

use gcra::{Gcra, Outcome};
use local::LocalTable;
use redis::RedisLink;

/// What a passed request carries back to the client: the limit's headers.
#[derive(Debug)]
pub(crate) struct Allowance {
    policy: HeaderValue,
    remaining: HeaderValue,
}

impl Allowance {
    /// Add `RateLimit-Policy` and `RateLimit` to a response.
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        headers::append(headers, &self.policy, self.remaining);
    }
}

/// One route's decision.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Pass, with these headers for the response.
    Allowed(Allowance),
    /// Over the limit: 429, retry after this long.
    Denied(Allowance, Duration),
    /// The shared limiter could not decide and fails closed: 503.
    Unavailable,
}

/// The shared part of a route's limiter.
#[derive(Debug)]
struct Shared {
    link: Arc<RedisLink>,
    /// The same limit as the local one, in microsecond ticks.
    gcra: Gcra,
    on_error: FailureMode,
}

/// One route's limiter.
#[derive(Debug)]
pub(crate) struct RouteLimiter {
    route: String,
    config: RouteRateLimit,
    spec: KeySpec,
    local: Arc<LocalTable>,
    shared: Option<Shared>,
    policy: HeaderValue,
    /// The route's name as an RFC 8941 string, for the `RateLimit` header.
    quoted_route: String,
    max_keys: u64,
    /// Decisions counted, registered once (a labelled `counter!` per
    /// request would search the registry each time).
    allowed: metrics::Counter,
    denied: metrics::Counter,
}

impl RouteLimiter {
    fn build(
        route: &str,
        config: &RouteRateLimit,
        global: &crate::config::RateLimitConfig,
        previous: Option<&RouteLimiter>,
        link: Option<&Arc<RedisLink>>,
    ) -> Result<RouteLimiter, String> {
        let spec = KeySpec::parse(&config.key)?;
        let interval_ns = u64::try_from(config.rate.interval().as_nanos()).unwrap_or(u64::MAX);
        // Keep the counts of an unchanged limit across a reload, so that a
        // reload never hands every client a fresh burst.
        let local = match previous {
            Some(p) if p.same_limit(route, config, global.max_keys) => Arc::clone(&p.local),
            _ => Arc::new(LocalTable::new(
                Gcra::new(interval_ns, config.burst),
                global.max_keys,
            )),
        };
        let shared = link.map(|link| Shared {
            link: Arc::clone(link),
            gcra: Gcra::new((interval_ns / 1_000).max(1), config.burst),
            on_error: global.on_redis_error,
        });
        Ok(RouteLimiter {
            route: route.to_owned(),
            policy: headers::policy(route, &config.rate, config.burst),
            config: config.clone(),
            spec,
            local,
            shared,
            quoted_route: headers::sf_string(route),
            max_keys: global.max_keys,
            allowed: decisions(route, "allowed"),
            denied: decisions(route, "denied"),
        })
    }

    fn same_limit(&self, route: &str, config: &RouteRateLimit, max_keys: u64) -> bool {
        self.route == route
            && self.config.key == config.key
            && self.config.rate.count == config.rate.count
            && self.config.rate.per == config.rate.per
            && self.config.burst == config.burst
            && self.max_keys == max_keys
    }

    /// Decide one request.
    pub(crate) async fn decide(
        &self,
        headers: &HeaderMap,
        client_ip: impl Fn() -> IpAddr,
    ) -> Decision {
        let key = self.spec.extract(headers, client_ip);
        let (outcome, tick) = match &self.shared {
            None => (self.local.check(&key), 1),
            Some(shared) => {
                let bucket = shared.link.bucket(&self.route, &key);
                match shared.link.check(&bucket, shared.gcra).await {
                    Ok((allowed, backlog)) => (shared.gcra.outcome(allowed, backlog), 1_000),
                    Err(failure) => {
                        metrics::counter!(
                            "sluice_gateway_ratelimit_redis_errors_total",
                            "route" => self.route.clone(),
                            "reason" => failure.as_str()
                        )
                        .increment(1);
                        match shared.on_error {
                            FailureMode::Closed => {
                                decisions(&self.route, "error").increment(1);
                                return Decision::Unavailable;
                            }
                            FailureMode::Open => (self.local.check(&key), 1),
                        }
                    }
                }
            }
        };
        self.decision(outcome, tick)
    }

    fn decision(&self, outcome: Outcome, tick_ns: u64) -> Decision {
        let ticks = |n: u64| Duration::from_nanos(n.saturating_mul(tick_ns));
        let allowance = Allowance {
            policy: self.policy.clone(),
            remaining: headers::remaining_for(
                &self.quoted_route,
                outcome.remaining,
                ticks(outcome.next_in),
            ),
        };
        if outcome.allowed {
            self.allowed.increment(1);
            Decision::Allowed(allowance)
        } else {
            self.denied.increment(1);
            Decision::Denied(allowance, ticks(outcome.retry_after))
        }
    }

    /// Keys in the local table (after pending evictions), for tests.
    #[cfg(test)]
    pub(crate) fn local_key_count(&self) -> u64 {
        self.local.key_count()
    }
}

/// The decision counter of `route` for `decision` (allowed, denied).
fn decisions(route: &str, decision: &'static str) -> metrics::Counter {
    metrics::counter!(
        "sluice_gateway_ratelimit_decisions_total",
        "route" => route.to_owned(),
        "decision" => decision
    )
}

/// Every route's limiter for one config, indexed like the routes.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    routes: Vec<Option<RouteLimiter>>,
}

impl Limits {
    /// Build the limiters of `config`, keeping the local counts of limits
    /// that `previous` already enforced unchanged. Needs a tokio runtime
    /// when `[rate_limit] redis` is set.
    pub(crate) fn build(config: &Config, previous: Option<&Limits>, redis: &RedisSlot) -> Limits {
        let global = &config.rate_limit;
        let link = global
            .redis
            .as_deref()
            .map(|url| redis.link(url, global.redis_timeout.0, &global.redis_prefix));
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(index, rc)| {
                let rl = rc.rate_limit.as_ref()?;
                let name = crate::router::route_name(index, rc);
                let prev = previous.and_then(|p| p.find(&name));
                match RouteLimiter::build(&name, rl, global, prev, link.as_ref()) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        // validate() refuses this; never leave a limited route open silently.
                        tracing::error!(route = %name, error = %e, "rate limit not built");
                        None
                    }
                }
            })
            .collect();
        Limits { routes }
    }

    fn find(&self, route: &str) -> Option<&RouteLimiter> {
        self.routes.iter().flatten().find(|l| l.route == route)
    }

    /// The limiter of the route at `index`, if it has one.
    pub(crate) fn get(&self, index: usize) -> Option<&RouteLimiter> {
        self.routes.get(index).and_then(Option::as_ref)
    }
}

/// The request path's limit step for a route with a limiter (see
/// [`Limits::get`]: a route without one skips this future altogether):
/// `Ok(headers)` to pass, `Err(response)` to answer at once.
pub(crate) async fn check(
    limiter: &RouteLimiter,
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: &[IpNet],
) -> Result<Allowance, Response<Body>> {
    let client_ip = || crate::proxy::headers::client_ip(peer, headers, trusted);
    match limiter.decide(headers, client_ip).await {
        Decision::Allowed(allowance) => Ok(allowance),
        Decision::Denied(allowance, wait) => {
            let secs = headers::ceil_secs(wait).max(1);
            let mut resp = body::json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &format!(
                    "rate limit of route {:?} exceeded; retry in {secs} s",
                    limiter.route
                ),
            );
            headers::retry_after(resp.headers_mut(), wait);
            allowance.apply(resp.headers_mut());
            Err(resp)
        }
        Decision::Unavailable => Err(body::json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "rate_limiter_unavailable",
            &format!(
                "the shared rate limiter (redis) of route {:?} is unavailable and fails closed",
                limiter.route
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(toml: &str) -> Limits {
        let config = Config::parse(toml, "test.toml").unwrap();
        Limits::build(&config, None, &RedisSlot::default())
    }

    #[tokio::test]
    async fn the_key_table_stays_within_max_keys() {
        let limits = limits(
            r#"
            [rate_limit]
            max_keys = 16
            [[routes]]
            path_prefix = "/"
            respond = { body = "ok" }
            rate_limit = { key = "header:x-api-key", rate = "1/h" }
            "#,
        );
        let limiter = limits.get(0).unwrap();
        let ip = || IpAddr::from([127, 0, 0, 1]);
        for i in 0..2_000 {
            let mut h = HeaderMap::new();
            h.insert("x-api-key", HeaderValue::from(i));
            // Every new key is cold and passes; the table never outgrows its cap.
            assert!(matches!(limiter.decide(&h, ip).await, Decision::Allowed(_)));
            if i % 100 == 0 {
                assert!(limiter.local_key_count() <= 16);
            }
        }
        let held = limiter.local_key_count();
        assert!(held > 0 && held <= 16, "{held} keys held");
    }

    #[test]
    fn bad_settings_are_reported_with_their_paths() {
        let err = Config::parse(
            r#"
            [rate_limit]
            max_keys = 0
            redis_timeout = "0s"
            redis = "nosuchscheme://x"
            [[routes]]
            path_prefix = "/"
            respond = { body = "ok" }
            rate_limit = { key = "cookie:sid", rate = "1/s" }
            [[routes]]
            path_prefix = "/b"
            respond = { body = "ok" }
            rate_limit = { rate = "1/d", burst = 100000 }
            "#,
            "bad.toml",
        )
        .unwrap_err();
        let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            // In file order: [rate_limit] comes first in this text.
            [
                "rate_limit.max_keys",
                "rate_limit.redis_timeout",
                "rate_limit.redis",
                "routes[0].rate_limit.key",
                "routes[1].rate_limit",
            ]
        );
    }

    #[test]
    fn unchanged_limits_keep_their_table_across_a_rebuild() {
        let text = r#"
            [[routes]]
            name = "a"
            path_prefix = "/"
            respond = { body = "ok" }
            rate_limit = { rate = "1/h" }
            "#;
        let first = limits(text);
        let config = Config::parse(text, "t").unwrap();
        let second = Limits::build(&config, Some(&first), &RedisSlot::default());
        assert!(Arc::ptr_eq(
            &first.get(0).unwrap().local,
            &second.get(0).unwrap().local
        ));
        let changed = Config::parse(&text.replace("1/h", "2/h"), "t").unwrap();
        let third = Limits::build(&changed, Some(&second), &RedisSlot::default());
        assert!(!Arc::ptr_eq(
            &second.get(0).unwrap().local,
            &third.get(0).unwrap().local
        ));
    }
}
