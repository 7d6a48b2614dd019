//! A stored response: status, headers, the whole body, its
//! `http-cache-semantics` policy, the stale windows, and when it stops
//! being fresh. Also the rules for whether a response may be stored.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, ETAG, LAST_MODIFIED, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response, StatusCode, request, response};
use http_cache_semantics::{CacheOptions, CachePolicy};

use super::directives::{self, Directives};

/// One stored response.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Status of the stored response.
    pub(crate) status: StatusCode,
    /// Headers of the stored response (hop-by-hop ones already removed).
    pub(crate) headers: HeaderMap,
    /// The whole body.
    pub(crate) body: Bytes,
    /// Freshness and reuse rules, from the request and response that made it.
    pub(crate) policy: CachePolicy,
    /// Stale windows and stale bans.
    pub(crate) directives: Directives,
    /// When it stops being fresh.
    pub(crate) fresh_until: SystemTime,
}

impl Entry {
    /// Build an entry from what [`plan`] accepted and the complete body.
    pub(crate) fn new(plan: Plan, body: Bytes) -> Entry {
        let fresh_until = plan.now + plan.policy.time_to_live(plan.now);
        Entry {
            status: plan.status,
            headers: plan.headers,
            body,
            policy: plan.policy,
            directives: plan.directives,
            fresh_until,
        }
    }

    /// A copy with headers and policy refreshed by a 304 (RFC 9111 §4.3.4); same body.
    pub(crate) fn revalidated(
        &self,
        policy: CachePolicy,
        mut headers: HeaderMap,
        now: SystemTime,
    ) -> Entry {
        // The policy's view carries a computed Age; ours is computed when served.
        headers.remove(http::header::AGE);
        let fresh_until = now + policy.time_to_live(now);
        Entry {
            status: self.status,
            directives: Directives::parse(&headers),
            headers,
            body: self.body.clone(),
            policy,
            fresh_until,
        }
    }

    /// How long it has been stale at `now` (zero while fresh).
    pub(crate) fn stale_for(&self, now: SystemTime) -> Duration {
        now.duration_since(self.fresh_until).unwrap_or_default()
    }

    /// Seconds of freshness left, negative when stale (the `ttl` of `Cache-Status`).
    pub(crate) fn ttl_secs(&self, now: SystemTime) -> i64 {
        match self.fresh_until.duration_since(now) {
            Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX) - 1,
        }
    }

    /// Bytes this entry holds, for the size bound.
    pub(crate) fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        // A fixed overhead for the policy and bookkeeping keeps tiny bodies honest.
        u32::try_from(self.body.len() + headers + 512).unwrap_or(u32::MAX)
    }
}

/// A response accepted for storing; the body is still to come.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) policy: CachePolicy,
    pub(crate) directives: Directives,
    pub(crate) now: SystemTime,
    /// The request's headers, for the `Vary` secondary key.
    pub(crate) request_headers: HeaderMap,
}

/// The options of a shared cache. No `immutable` default lifetime: RFC 9111
/// gives none, so an `immutable` response without `max-age` gets only the
/// heuristic that §4.2.2 allows.
fn options() -> CacheOptions {
    CacheOptions {
        shared: true,
        immutable_min_time_to_live: Duration::ZERO,
        ..CacheOptions::default()
    }
}

/// The request the policy sees: always GET (HEAD is answered from GET
/// entries), the key's target as URI, and no `Host` (the key already holds it).
pub(crate) fn policy_request(path_and_query: &str, headers: &HeaderMap) -> request::Parts {
    let mut parts = Request::builder()
        .method(Method::GET)
        .uri(path_and_query)
        .body(())
        .unwrap_or_default()
        .into_parts()
        .0;
    parts.headers = headers.clone();
    parts.headers.remove(http::header::HOST);
    parts
}

/// The response head the policy sees: `proxy-revalidate` read as `must-revalidate`.
pub(crate) fn policy_response(status: StatusCode, headers: &HeaderMap) -> response::Parts {
    let mut parts = Response::builder()
        .status(status)
        .body(())
        .unwrap_or_default()
        .into_parts()
        .0;
    parts.headers = directives::shared_view(headers);
    parts
}

/// A policy for a stored response, as the shared cache sees it.
pub(crate) fn policy(req: &request::Parts, res: &response::Parts, now: SystemTime) -> CachePolicy {
    CachePolicy::new_options(req, res, now, options())
}

/// Why a response is not stored; the `detail` of `Cache-Status`.
pub(crate) type Refusal = &'static str;

/// Decide whether a GET response may be stored (RFC 9111 §3), and if so how.
pub(crate) fn plan(
    req: &request::Parts,
    status: StatusCode,
    headers: &HeaderMap,
    max_object_size: u64,
    now: SystemTime,
) -> Result<Plan, Refusal> {
    let res = policy_response(status, headers);
    let policy = policy(req, &res, now);
    if !policy.is_storable() {
        return Err("not-storable");
    }
    // §3.5, checked on the original header: proxy-revalidate does not count.
    if req.headers.contains_key(AUTHORIZATION)
        && !["public", "s-maxage", "must-revalidate"]
            .iter()
            .any(|d| directives::has(headers, d))
    {
        return Err("not-storable");
    }
    // A cookie set for one client must never reach another.
    if headers.contains_key(SET_COOKIE) {
        return Err("not-storable");
    }
    if super::key::vary_names(headers).is_none() {
        return Err("not-storable");
    }
    let too_big = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max_object_size);
    if too_big {
        return Err("too-large");
    }
    let directives = Directives::parse(headers);
    let has_validators = headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED);
    // An entry that is born stale and can neither be revalidated nor served
    // stale would only take room.
    if policy.time_to_live(now).is_zero()
        && !has_validators
        && directives.stale_if_error.is_zero()
        && directives.stale_while_revalidate.is_zero()
    {
        return Err("not-storable");
    }
    Ok(Plan {
        status,
        headers: headers.clone(),
        policy,
        directives,
        now,
        request_headers: req.headers.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    fn try_plan(req: &[(&str, &str)], status: u16, res: &[(&str, &str)]) -> Result<Plan, Refusal> {
        plan(
            &policy_request("/x", &h(req)),
            StatusCode::from_u16(status).map_err(|_| "bad-status")?,
            &h(res),
            1000,
            SystemTime::now(),
        )
    }

    #[test]
    fn freshness_comes_from_the_response() {
        let p = try_plan(&[], 200, &[("cache-control", "max-age=60")]).unwrap();
        assert_eq!(p.policy.time_to_live(p.now), Duration::from_secs(60));
        // s-maxage wins over max-age in a shared cache.
        let p = try_plan(&[], 200, &[("cache-control", "max-age=60, s-maxage=5")]).unwrap();
        assert_eq!(p.policy.time_to_live(p.now), Duration::from_secs(5));
        // Age counts against it.
        let p = try_plan(&[], 200, &[("cache-control", "max-age=60"), ("age", "50")]).unwrap();
        assert_eq!(p.policy.time_to_live(p.now), Duration::from_secs(10));
        // proxy-revalidate keeps the freshness (the library alone would drop it to 0).
        let p = try_plan(
            &[],
            200,
            &[("cache-control", "max-age=60, proxy-revalidate")],
        )
        .unwrap();
        assert_eq!(p.policy.time_to_live(p.now), Duration::from_secs(60));
        assert!(p.directives.never_stale);
    }

    #[test]
    fn refuses_what_a_shared_cache_must_not_store() {
        assert!(try_plan(&[], 200, &[("cache-control", "no-store, max-age=60")]).is_err());
        assert!(try_plan(&[], 200, &[("cache-control", "private, max-age=60")]).is_err());
        assert!(
            try_plan(
                &[("cache-control", "no-store")],
                200,
                &[("cache-control", "max-age=60")]
            )
            .is_err()
        );
        assert!(try_plan(&[], 200, &[("cache-control", "max-age=60"), ("vary", "*")]).is_err());
        assert!(
            try_plan(
                &[],
                200,
                &[("cache-control", "max-age=60"), ("set-cookie", "a=b")]
            )
            .is_err()
        );
        assert_eq!(
            try_plan(
                &[],
                200,
                &[("cache-control", "max-age=60"), ("content-length", "1001")]
            )
            .err(),
            Some("too-large")
        );
        // Nothing to go on: no freshness, no validators.
        assert!(try_plan(&[], 200, &[]).is_err());
        // 206 is not understood.
        assert!(try_plan(&[], 206, &[("cache-control", "max-age=60")]).is_err());
    }

    #[test]
    fn authorization_needs_public_s_maxage_or_must_revalidate() {
        let auth = [("authorization", "Bearer t")];
        assert!(try_plan(&auth, 200, &[("cache-control", "max-age=60")]).is_err());
        assert!(
            try_plan(
                &auth,
                200,
                &[("cache-control", "max-age=60, proxy-revalidate")]
            )
            .is_err()
        );
        assert!(try_plan(&auth, 200, &[("cache-control", "public, max-age=60")]).is_ok());
        assert!(try_plan(&auth, 200, &[("cache-control", "s-maxage=60")]).is_ok());
        assert!(
            try_plan(
                &auth,
                200,
                &[("cache-control", "max-age=60, must-revalidate")]
            )
            .is_ok()
        );
    }

    #[test]
    fn heuristic_freshness_only_for_heuristically_cacheable_statuses() {
        let lm = httpdate(SystemTime::now() - Duration::from_secs(100 * 86400));
        let p = try_plan(&[], 200, &[("last-modified", &lm)]).unwrap();
        assert!(p.policy.time_to_live(p.now) > Duration::from_secs(9 * 86400));
        // 302 is not cacheable by default: no heuristic, not stored.
        assert!(try_plan(&[], 302, &[("last-modified", &lm), ("location", "/y")]).is_err());
        // Explicit expiration wins over the heuristic.
        let p = try_plan(
            &[],
            200,
            &[("last-modified", &lm), ("cache-control", "max-age=7")],
        )
        .unwrap();
        assert_eq!(p.policy.time_to_live(p.now), Duration::from_secs(7));
    }

    #[test]
    fn expires_is_used_without_max_age() {
        let now = SystemTime::now();
        let p = try_plan(
            &[],
            200,
            &[
                ("date", &httpdate(now)),
                ("expires", &httpdate(now + Duration::from_secs(120))),
            ],
        )
        .unwrap();
        let ttl = p.policy.time_to_live(p.now).as_secs();
        assert!((118..=120).contains(&ttl), "ttl {ttl}");
        let p = try_plan(&[], 200, &[("expires", "0"), ("etag", "\"a\"")]).unwrap();
        assert!(p.policy.time_to_live(p.now).is_zero());
    }

    fn httpdate(t: SystemTime) -> String {
        ::httpdate::fmt_http_date(t)
    }
}
