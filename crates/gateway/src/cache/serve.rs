//! The cached request path for GET and HEAD on a route with `cache = true`:
//! fresh hit, stale-while-revalidate, revalidation with a 304, stale-if-error,
//! coalesced fills; and, for other requests, invalidation after unsafe
//! methods. Every answer gets a `Cache-Status`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{
    AGE, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_LOCATION, ETAG, IF_MATCH, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, LOCATION, PRAGMA, RANGE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, request};
use http_body_util::BodyExt;
use http_cache_semantics::{AfterResponse, BeforeRequest};

use super::entry::{self, Entry};
use super::fill::{Filling, TeeBody};
use super::flight::{self, FlightGuard, Join, Landing};
use super::status::{CacheStatus, Fwd};
use super::{Found, HttpCache, key};
use crate::body::{self, Body};
use crate::metrics::CacheCounters;

/// The upstream, reachable after the request that found it has ended
/// (background refreshes outlive their request).
pub(crate) trait Origin: Send + Sync + 'static {
    /// Send a bodiless request with this head upstream; errors come back as responses.
    fn fetch(
        self: Arc<Self>,
        head: request::Parts,
    ) -> Pin<Box<dyn Future<Output = Fetched> + Send>>;
}

/// An upstream answer, and for the access log where it came from.
pub(crate) struct Fetched {
    /// The response (a gateway-made 502/504 when the upstream failed).
    pub(crate) response: Response<Body>,
    /// The target that answered, when one did.
    pub(crate) target: Option<http::uri::Authority>,
    /// How many tries it took.
    pub(crate) tries: u32,
}

impl Fetched {
    fn local(response: Response<Body>) -> Fetched {
        Fetched {
            response,
            target: None,
            tries: 0,
        }
    }
}

/// One cacheable request.
pub(crate) struct Lookup {
    /// The head to send upstream (hop-by-hop removed, forwarding headers added).
    pub(crate) head: request::Parts,
    /// The request's host, lowercase, without port; empty when there is none.
    pub(crate) host: String,
    /// The normalized path and query: with `host`, the cache key.
    pub(crate) target: String,
    /// The route's cache counters.
    pub(crate) counters: Arc<CacheCounters>,
    /// `cache.max_object_size`.
    pub(crate) max_object_size: u64,
    /// `cache.lock_timeout`.
    pub(crate) lock_timeout: Duration,
}

/// Why a request skips the cache, if it does: `Some((fwd, detail))`.
pub(crate) fn bypass_reason(
    method: &Method,
    headers: &HeaderMap,
    has_body: bool,
) -> Option<(Fwd, Option<&'static str>)> {
    if method != Method::GET && method != Method::HEAD {
        return Some((Fwd::Method, None));
    }
    // Partial responses are not stored; ranges go straight through.
    if headers.contains_key(RANGE) {
        return Some((Fwd::Bypass, Some("range")));
    }
    if has_body {
        return Some((Fwd::Bypass, Some("request-body")));
    }
    None
}

/// After a bypassed request was forwarded: invalidate on a successful unsafe
/// method (RFC 9111 §4.4), add `Cache-Status`, count it.
pub(crate) fn after_forward(
    cache: &HttpCache,
    counters: &CacheCounters,
    method: &Method,
    host: &str,
    target: &str,
    why: (Fwd, Option<&'static str>),
    resp: &mut Response<Body>,
) {
    let safe = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    let status = resp.status();
    if !safe && (status.is_success() || status.is_redirection()) {
        cache.invalidate(&key::primary(host, target));
        for name in [LOCATION, CONTENT_LOCATION] {
            if let Some(t) = resp
                .headers()
                .get(&name)
                .and_then(|v| same_origin_target(v, host))
            {
                cache.invalidate(&key::primary(host, &t));
            }
        }
    }
    let mut cs = CacheStatus::fwd(why.0);
    cs.fwd_status = Some(status.as_u16());
    cs.detail = why.1;
    cs.append_to(resp.headers_mut());
    counters.bypass.increment(1);
}

/// The path and query of a `Location`/`Content-Location` on the same host
/// (relative, or absolute with the same host); other origins must not be touched.
fn same_origin_target(v: &HeaderValue, host: &str) -> Option<String> {
    let v = v.to_str().ok()?;
    let uri: http::Uri = v.parse().ok()?;
    if let Some(a) = uri.authority() {
        if !a.host().eq_ignore_ascii_case(host) {
            return None;
        }
    } else if !v.starts_with('/') {
        return None;
    }
    let mut t = crate::router::normalize(uri.path()).into_owned();
    if let Some(q) = uri.query() {
        t.push('?');
        t.push_str(q);
    }
    Some(t)
}

/// Whether the request carries directives that can change a fresh hit
/// (`Cache-Control`, `Pragma`).
fn has_cache_directives(headers: &HeaderMap) -> bool {
    headers.contains_key(CACHE_CONTROL) || headers.contains_key(http::header::PRAGMA)
}

/// Whether the request's own `Cache-Control` asks for a response fresh
/// enough that a stale one must not stand in.
fn request_wants_fresh(headers: &HeaderMap) -> bool {
    let cc = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase());
    let mut wants = false;
    for d in cc {
        if d == "no-cache" || d.starts_with("max-age") || d.starts_with("min-fresh") {
            wants = true;
        }
    }
    wants
        || headers
            .get(PRAGMA)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("no-cache"))
}

/// A copy of a request head (`Parts` is not `Clone`: extensions are dropped).
fn copy_head(h: &request::Parts) -> request::Parts {
    let mut parts = Request::builder()
        .method(h.method.clone())
        .uri(h.uri.clone())
        .version(h.version)
        .body(())
        .unwrap_or_default()
        .into_parts()
        .0;
    parts.headers = h.headers.clone();
    parts
}

/// The head sent to fill or revalidate: the client's conditionals removed
/// (the cache wants a full response it can store), the entry's validators added.
fn fill_head(h: &request::Parts, stale: Option<&Entry>) -> request::Parts {
    let mut head = copy_head(h);
    for name in [
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_MATCH,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
    ] {
        head.headers.remove(name);
    }
    if let Some(e) = stale {
        if let Some(etag) = e.headers.get(ETAG) {
            head.headers.insert(IF_NONE_MATCH, etag.clone());
        }
        if let Some(lm) = e.headers.get(LAST_MODIFIED) {
            head.headers.insert(IF_MODIFIED_SINCE, lm.clone());
        }
    }
    head
}

/// Whether a client's conditional GET matches the stored response (RFC 9110 §13.1.2–3).
fn not_modified(request: &HeaderMap, stored: &HeaderMap) -> bool {
    if let Some(inm) = request.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = stored.get(ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        return inm.trim() == "*" || inm.split(',').any(|t| weak(t) == weak(etag));
    }
    let ims = request
        .get(IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let lm = stored
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    matches!((ims, lm), (Some(ims), Some(lm)) if lm <= ims)
}

/// A response made from a stored entry, with `Age` and `Cache-Status`.
fn from_entry(
    e: &Entry,
    now: SystemTime,
    req: &request::Parts,
    cs: &CacheStatus,
) -> Response<Body> {
    let is_head = req.method == Method::HEAD;
    let conditional_hit = e.status == StatusCode::OK && not_modified(&req.headers, &e.headers);
    let body = if is_head || conditional_hit {
        body::empty()
    } else {
        body::full(e.body.clone())
    };
    let mut resp = Response::new(body);
    *resp.headers_mut() = e.headers.clone();
    *resp.status_mut() = e.status;
    if conditional_hit {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        resp.headers_mut().remove(CONTENT_LENGTH);
    }
    // Digits only, from the per-thread header buffer: no formatter, no allocation.
    let age = e.policy.age(now).as_secs();
    if let Some(age) = crate::header_arena::header_value(|out| crate::ascii::write_u64(out, age)) {
        resp.headers_mut().insert(AGE, age);
    }
    cs.append_to(resp.headers_mut());
    resp
}

/// Serve a GET or HEAD through the cache.
pub(crate) async fn serve(
    cache: Arc<HttpCache>,
    lookup: Lookup,
    origin: Arc<dyn Origin>,
) -> Fetched {
    let primary = key::primary(&lookup.host, &lookup.target);
    // The policy's view of the request is a copy of its head: made only
    // when a lookup needs more than the fast fresh-hit check.
    let mut preq: Option<request::Parts> = None;
    let plain = !has_cache_directives(&lookup.head.headers);
    let mut collapsed = false;
    // Each round either answers or follows one flight; a bounded number of
    // rounds keeps a flapping key from looping.
    for _ in 0..3 {
        let now = SystemTime::now();
        let (fwd, flight_key, stale) = match cache.find(&primary, &lookup.head.headers) {
            Found::UriMiss => (Fwd::UriMiss, primary.clone(), None),
            Found::VaryMiss(k) => (Fwd::VaryMiss, k, None),
            // The common hit: fresh by the stored lifetime and a request with
            // no directives of its own. The policy would answer "fresh" too
            // (key and Vary already matched); asking it costs more than the
            // rest of the hit, as it rebuilds the response head.
            Found::Entry(_, e) if plain && now < e.fresh_until => {
                let mut cs = CacheStatus::hit(e.ttl_secs(now));
                cs.collapsed = collapsed;
                lookup.counters.hit.increment(1);
                return Fetched::local(from_entry(&e, now, &lookup.head, &cs));
            }
            Found::Entry(k, e) => match e
                .policy
                .before_request(policy_request(&mut preq, &lookup), now)
            {
                BeforeRequest::Fresh(_) => {
                    let mut cs = CacheStatus::hit(e.ttl_secs(now));
                    cs.collapsed = collapsed;
                    lookup.counters.hit.increment(1);
                    return Fetched::local(from_entry(&e, now, &lookup.head, &cs));
                }
                BeforeRequest::Stale { matches: false, .. } => (Fwd::Miss, k, None),
                BeforeRequest::Stale { .. } if now < e.fresh_until => (Fwd::Request, k, Some(e)),
                BeforeRequest::Stale { .. } => {
                    if e.directives.allows_swr(e.stale_for(now))
                        && !request_wants_fresh(&lookup.head.headers)
                    {
                        // One refresh at a time: skip when a flight for the key is already up.
                        if let Some(guard) = cache.flights.try_lead(&k) {
                            spawn_refresh(
                                &cache,
                                &lookup,
                                &primary,
                                policy_request(&mut preq, &lookup),
                                &e,
                                &origin,
                                guard,
                            );
                        }
                        let mut cs = CacheStatus::hit(e.ttl_secs(now));
                        cs.detail = Some("stale-while-revalidate");
                        lookup.counters.stale.increment(1);
                        return Fetched::local(from_entry(&e, now, &lookup.head, &cs));
                    }
                    (Fwd::Stale, k, Some(e))
                }
            },
        };
        if lookup.head.method == Method::HEAD {
            // A HEAD response has no body to store: pass it through.
            let out = Arc::clone(&origin).fetch(copy_head(&lookup.head)).await;
            return finish_uncached(out, fwd, None, &lookup.counters);
        }
        match cache.flights.join(&flight_key) {
            Join::Leader(guard) => {
                return fill(
                    &cache,
                    &lookup,
                    &origin,
                    &primary,
                    policy_request(&mut preq, &lookup),
                    fwd,
                    stale,
                    Some(guard),
                    collapsed,
                )
                .await;
            }
            Join::Follower(rx) => match flight::wait(rx, lookup.lock_timeout).await {
                Landing::Stored => collapsed = true,
                Landing::NotStored | Landing::InFlight => {
                    return fill(
                        &cache,
                        &lookup,
                        &origin,
                        &primary,
                        policy_request(&mut preq, &lookup),
                        fwd,
                        stale,
                        None,
                        collapsed,
                    )
                    .await;
                }
            },
        }
    }
    fill(
        &cache,
        &lookup,
        &origin,
        &primary,
        policy_request(&mut preq, &lookup),
        Fwd::Miss,
        None,
        None,
        collapsed,
    )
    .await
}

/// The policy's request head, made on first use.
fn policy_request<'a>(slot: &'a mut Option<request::Parts>, lookup: &Lookup) -> &'a request::Parts {
    slot.get_or_insert_with(|| entry::policy_request(&lookup.target, &lookup.head.headers))
}

fn finish_uncached(
    mut out: Fetched,
    fwd: Fwd,
    detail: Option<&'static str>,
    counters: &CacheCounters,
) -> Fetched {
    let mut cs = CacheStatus::fwd(fwd);
    cs.fwd_status = Some(out.response.status().as_u16());
    cs.detail = detail;
    cs.append_to(out.response.headers_mut());
    counters.miss.increment(1);
    out
}

/// Fetch from the upstream (conditionally when a stale entry has validators),
/// then answer from a 304, from stale on error, or by streaming the new
/// response into the cache.
#[allow(clippy::too_many_arguments)]
async fn fill(
    cache: &Arc<HttpCache>,
    lookup: &Lookup,
    origin: &Arc<dyn Origin>,
    primary: &str,
    preq: &request::Parts,
    fwd: Fwd,
    stale: Option<Arc<Entry>>,
    guard: Option<FlightGuard>,
    collapsed: bool,
) -> Fetched {
    let mut out = Arc::clone(origin)
        .fetch(fill_head(&lookup.head, stale.as_deref()))
        .await;
    let now = SystemTime::now();
    let status = out.response.status();
    let mut cs = CacheStatus::fwd(fwd);
    cs.fwd_status = Some(status.as_u16());
    cs.collapsed = collapsed;
    if let Some(e) = &stale {
        if status == StatusCode::NOT_MODIFIED {
            let res = entry::policy_response(status, out.response.headers());
            if let AfterResponse::NotModified(policy, parts) =
                e.policy.after_response(preq, &res, now)
            {
                let fresh = Arc::new(e.revalidated(policy, parts.headers, now));
                cache.insert_arc(primary, &preq.headers, Arc::clone(&fresh));
                if let Some(g) = guard {
                    g.land(true);
                }
                lookup.counters.revalidated.increment(1);
                cs.ttl = Some(fresh.ttl_secs(now));
                out.response = from_entry(&fresh, now, &lookup.head, &cs);
                return out;
            }
            // The 304 does not match what is stored: fetch the whole response instead.
            out = Arc::clone(origin)
                .fetch(fill_head(&lookup.head, None))
                .await;
            cs.fwd_status = Some(out.response.status().as_u16());
        } else if status.is_server_error()
            && e.directives.allows_sie(e.stale_for(now))
            && !request_wants_fresh(&lookup.head.headers)
        {
            lookup.counters.stale.increment(1);
            cs.ttl = Some(e.ttl_secs(now));
            cs.detail = Some("stale-if-error");
            let Fetched { target, tries, .. } = out;
            return Fetched {
                response: from_entry(e, now, &lookup.head, &cs),
                target,
                tries,
            };
        }
    }
    lookup.counters.miss.increment(1);
    let status = out.response.status();
    let mut headers = out.response.headers().clone();
    crate::proxy::headers::strip_hop_by_hop(&mut headers, false);
    match entry::plan(preq, status, &headers, lookup.max_object_size, now) {
        Ok(plan) => {
            cs.stored = true;
            cs.ttl =
                Some(i64::try_from(plan.policy.time_to_live(now).as_secs()).unwrap_or(i64::MAX));
            let filling = Filling::new(
                Arc::clone(cache),
                primary.to_owned(),
                plan,
                lookup.max_object_size,
                guard,
            );
            let (parts, body) =
                std::mem::replace(&mut out.response, Response::new(body::empty())).into_parts();
            out.response = Response::from_parts(parts, TeeBody::wrap(body, filling));
        }
        Err(why) => {
            // The old copy is superseded by a response that may not be kept.
            if stale.is_some() && status.is_success() {
                cache.invalidate(primary);
            }
            cs.detail = Some(why);
            drop(guard);
        }
    }
    cs.append_to(out.response.headers_mut());
    out
}

/// Refresh a stale entry in the background (stale-while-revalidate).
fn spawn_refresh(
    cache: &Arc<HttpCache>,
    lookup: &Lookup,
    primary: &str,
    preq: &request::Parts,
    stale: &Arc<Entry>,
    origin: &Arc<dyn Origin>,
    guard: FlightGuard,
) {
    let cache = Arc::clone(cache);
    let origin = Arc::clone(origin);
    let head = fill_head(&lookup.head, Some(stale));
    let preq = copy_head(preq);
    let primary = primary.to_owned();
    let stale = Arc::clone(stale);
    let max = lookup.max_object_size;
    tokio::spawn(async move {
        let out = origin.fetch(head).await;
        let now = SystemTime::now();
        let (parts, body) = out.response.into_parts();
        if parts.status == StatusCode::NOT_MODIFIED {
            let res = entry::policy_response(parts.status, &parts.headers);
            if let AfterResponse::NotModified(policy, p) =
                stale.policy.after_response(&preq, &res, now)
            {
                cache.insert(
                    &primary,
                    &preq.headers,
                    stale.revalidated(policy, p.headers, now),
                );
                guard.land(true);
            }
            return;
        }
        if parts.status.is_server_error() || parts.status == StatusCode::NOT_MODIFIED {
            // Keep serving the stale copy for what is left of its windows.
            return;
        }
        let mut headers = parts.headers;
        crate::proxy::headers::strip_hop_by_hop(&mut headers, false);
        match entry::plan(&preq, parts.status, &headers, max, now) {
            Ok(plan) => {
                if let Some(bytes) = read_capped(body, max).await {
                    let request_headers = plan.request_headers.clone();
                    cache.insert(&primary, &request_headers, Entry::new(plan, bytes));
                    guard.land(true);
                }
            }
            Err(_) => cache.invalidate(&primary),
        }
    });
}

/// The whole body if it ends within `max` bytes and without trailers.
async fn read_capped(mut body: Body, max: u64) -> Option<Bytes> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let data = frame.ok()?.into_data().ok()?;
        if buf.len() + data.len() > max {
            return None;
        }
        buf.extend_from_slice(&data);
    }
    Some(buf.freeze())
}
