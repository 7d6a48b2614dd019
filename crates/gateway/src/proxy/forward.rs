//! Sending a request upstream: target choice, per-try and total timeouts,
//! retries with jittered backoff under a retry budget, passive health
//! reporting, and the mapping of failures to 502/503/504.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::Either;

use bytes::Bytes;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body::Body as _;
use http_body_util::BodyExt;

use crate::body::{self, Body, BoxError};
use crate::conn_timer::ConnTimer;
use crate::metrics::TryOutcome;
use crate::race::first_of;
use crate::raw_fields::{Answer, RawFields};
use crate::router::Route;
use crate::upstream::{LeanHead, SendError, Upstream};

use super::guarded::Guarded;
use super::headers::{Forwarding, Present};

/// Requests up to this size are buffered so that they can be replayed on retry.
const REPLAY_BUFFER_MAX: u64 = 64 << 10;

/// What a forwarded request needs besides its head and body.
pub(crate) struct Forward<'a> {
    pub(crate) route: &'a Route,
    pub(crate) upstream: &'a Arc<Upstream>,
    /// Path and query to send (after rewrite).
    pub(crate) path_and_query: PathAndQuery,
    /// Bytes for hash balancing, if the upstream hashes.
    pub(crate) hash_key: Option<Vec<u8>>,
    /// The response goes untouched (but for the proxy's own fields) to
    /// the lean writer: its fields may come as wire lines.
    pub(crate) raw_fields: bool,
    /// When the request arrived: the route's total `timeout` counts from it.
    pub(crate) received: Instant,
    /// Forwarding fields not yet in the head (`headers::Forwarding`):
    /// written as lines by the lean client, inserted for any other.
    pub(crate) forwarding: Option<Forwarding>,
    /// The connection's timer, lent for the total deadline: no timer of
    /// the request's own (`crate::conn_timer`).
    pub(crate) timer: Option<ConnTimer<'a>>,
    /// What the caller already knows of the head's fields; `None`: look.
    pub(crate) known: Option<KnownFields>,
}

/// Facts about a request head that its router read on the way (no map
/// lookups for them here).
#[derive(Clone, Copy, Debug)]
pub(crate) struct KnownFields {
    /// An `Upgrade` field is in the head (it is kept only for an upgrade).
    pub(crate) upgrade: bool,
    /// A `Host` field is in the head.
    pub(crate) host: bool,
}

impl KnownFields {
    /// The facts of `headers`, looked up.
    fn of(headers: &HeaderMap) -> KnownFields {
        KnownFields {
            upgrade: headers.contains_key(header::UPGRADE),
            host: headers.contains_key(header::HOST),
        }
    }
}

/// How a forward ended, for metrics and logs.
pub(crate) struct Outcome {
    pub(crate) response: Response<Body>,
    /// The upstream's fields as wire lines, when asked for and they came so.
    pub(crate) raw: Option<RawFields>,
    pub(crate) target: Option<http::uri::Authority>,
    pub(crate) tries: u32,
    /// When the answering upstream's response head arrived, if it did:
    /// the request's duration ends there too, one clock reading fewer.
    pub(crate) answered: Option<Instant>,
}

impl Outcome {
    /// A response the gateway made itself (an error, a shed request, a
    /// cached answer): no upstream fields as lines, no upstream head time.
    pub(crate) fn unanswered(
        response: Response<Body>,
        target: Option<http::uri::Authority>,
        tries: u32,
    ) -> Outcome {
        Outcome {
            response,
            raw: None,
            target,
            tries,
            answered: None,
        }
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn retryable_status(s: StatusCode) -> bool {
    matches!(
        s,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Body of the request, as sent on the first try and (when buffered) replayed.
enum ReqBody {
    Replayable(Bytes),
    Stream(Option<Body>),
}

impl ReqBody {
    fn take(&mut self) -> Option<Body> {
        match self {
            ReqBody::Replayable(b) if b.is_empty() => Some(body::empty()),
            ReqBody::Replayable(b) => Some(body::full(b.clone())),
            ReqBody::Stream(s) => s.take(),
        }
    }
}

/// Forward `parts`+`req_body` to the route's upstream; never fails, errors become responses.
pub(crate) async fn forward(fwd: Forward<'_>, mut parts: Parts, req_body: Body) -> Outcome {
    let Forward {
        route,
        upstream,
        path_and_query,
        hash_key,
        raw_fields,
        received,
        forwarding,
        timer,
        known,
    } = fwd;
    let rc = &route.config;
    let Some(permit) = upstream.try_acquire() else {
        count(SHED, "upstream", &upstream.name);
        let mut resp = body::json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_overloaded",
            &format!("upstream {:?} is at its concurrency limit", upstream.name),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Outcome::unanswered(resp, None, 0);
    };

    let may_retry = rc.retries > 0 && (is_idempotent(&parts.method) || rc.retry_non_idempotent);
    let known_small = req_body
        .size_hint()
        .upper()
        .is_some_and(|n| n <= REPLAY_BUFFER_MAX);
    let mut req_body = if may_retry && known_small {
        match req_body.collect().await {
            Ok(c) => ReqBody::Replayable(c.to_bytes()),
            Err(e) => {
                return Outcome::unanswered(body_error(&e), None, 0);
            }
        }
    } else {
        ReqBody::Stream(Some(req_body))
    };
    let max_tries = if matches!(req_body, ReqBody::Replayable(_)) {
        rc.retries + 1
    } else {
        1
    };
    let try_timeout = rc.try_timeout.unwrap_or(rc.timeout).0;
    let connect_timeout = rc.connect_timeout.map(|t| t.0);
    // Only requests that may retry earn budget: retries are then bounded
    // by a share of the retryable load (never more than of the whole), and
    // a route that never retries skips the budget's lock and clock.
    if may_retry {
        upstream.deposit();
    }

    // A body-less request to an HTTP/1.1 upstream goes out through the lean
    // client from one head that every try borrows: a retry copies nothing.
    let lean = match lean_head(&mut parts, &req_body, upstream, route, known) {
        Ok(lean) => lean,
        Err(e) => {
            return Outcome::unanswered(
                body::json_error(StatusCode::BAD_REQUEST, "bad_request", &e),
                None,
                0,
            );
        }
    };
    // The forwarding fields: lines after the lean head's own, or inserted
    // for the general path (the head then carries none of them yet).
    let forwarding_lines = match forwarding {
        Some(fwd) if lean.is_some() => fwd.lines(),
        Some(fwd) => {
            fwd.insert_into(&mut parts.headers, Present::default());
            Bytes::new()
        }
        None => Bytes::new(),
    };

    // The answering try's in-flight count, held with the permit by the
    // response body: one guard layer around the body rather than two.
    let mut held = None;
    let attempt_all = async {
        let mut tried: Vec<usize> = Vec::new();
        let mut last: Option<Outcome> = None;
        for attempt in 0..max_tries {
            if attempt > 0 {
                if !upstream.withdraw() {
                    count(BUDGET_EXHAUSTED, "upstream", &upstream.name);
                    break;
                }
                count(RETRIES, "route", &route.name);
                tokio::time::sleep(backoff(rc.retry_backoff.0, attempt)).await;
            }
            let Some(index) = upstream.pick(hash_key.as_deref(), &tried) else {
                break;
            };
            // A single try never looks at what was tried: no allocation.
            if max_tries > 1 {
                tried.push(index);
            }
            let target = Arc::clone(upstream.target(index));
            let in_flight;
            let sent;
            // One timer per request when the try may take the whole deadline:
            // the total timeout around the loop already bounds it.
            let per_try = try_timeout < rc.timeout.0;
            let result = if let Some((method, headers)) = &lean {
                let head = LeanHead {
                    method,
                    path_and_query: path_and_query.as_str(),
                    headers,
                    extra_lines: &forwarding_lines,
                    raw_fields,
                };
                in_flight = target.start();
                sent = Instant::now();
                if per_try {
                    let send = upstream.send_head(index, head, connect_timeout, sent);
                    tokio::time::timeout_at((sent + try_timeout).into(), send).await
                } else {
                    // Made where it is pinned: no copy of the exchange's
                    // state from a local into its slot.
                    Ok(pin!(upstream.send_head(index, head, connect_timeout, sent)).await)
                }
            } else {
                let Some(body) = req_body.take() else { break };
                // The last possible try takes the headers; earlier ones copy them.
                let headers = if attempt + 1 >= max_tries {
                    std::mem::take(&mut parts.headers)
                } else {
                    parts.headers.clone()
                };
                let req = match build_request(
                    &parts,
                    headers,
                    &target.authority,
                    &path_and_query,
                    route,
                    upstream.config.http2,
                    body,
                ) {
                    Ok(r) => r,
                    Err(e) => {
                        return Outcome::unanswered(
                            body::json_error(StatusCode::BAD_REQUEST, "bad_request", &e),
                            None,
                            attempt + 1,
                        );
                    }
                };
                in_flight = target.start();
                sent = Instant::now();
                // Boxed out of line: the general client's state (kilobytes)
                // would otherwise size every lean request's future and frame.
                let send = crate::out_of_line::boxed(|| upstream.send(index, req, connect_timeout));
                let answer = |sent: Result<_, _>| sent.map(Answer::new);
                if per_try {
                    tokio::time::timeout_at((sent + try_timeout).into(), send)
                        .await
                        .map(answer)
                } else {
                    Ok(answer(send.await))
                }
            };
            // Shared, not copied: only the access log spells it out.
            let target_name = Some(target.authority.clone());
            let answered = Instant::now();
            upstream
                .metrics
                .record_try(try_outcome(&result), answered - sent);
            match result {
                Ok(Ok(answer)) => {
                    let status = answer.response.status();
                    let failed = retryable_status(status);
                    upstream.record(index, !failed);
                    held = Some(in_flight);
                    let out = Outcome {
                        response: answer.response,
                        raw: answer.raw,
                        target: target_name,
                        tries: attempt + 1,
                        answered: Some(answered),
                    };
                    if failed && attempt + 1 < max_tries {
                        last = Some(out);
                        continue;
                    }
                    return out;
                }
                Ok(Err(e)) => {
                    upstream.record(index, false);
                    let out = Outcome::unanswered(
                        client_error(&upstream.name, &e),
                        target_name,
                        attempt + 1,
                    );
                    // A body that was too large is the client's fault: no retry.
                    if out.response.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        return out;
                    }
                    last = Some(out);
                }
                Err(_) => {
                    upstream.record(index, false);
                    last = Some(Outcome::unanswered(
                        timeout_error(&upstream.name),
                        target_name,
                        attempt + 1,
                    ));
                }
            }
        }
        last.unwrap_or_else(|| {
            Outcome::unanswered(
                body::json_error(
                    StatusCode::BAD_GATEWAY,
                    "no_upstream_target",
                    &format!("upstream {:?} has no target to try", upstream.name),
                ),
                None,
                0,
            )
        })
    };
    // The tries and the total deadline are polled where they are made
    // (`crate::race`); the deadline counts from the request's arrival, one
    // clock reading fewer than `tokio::time::timeout`, and waits on the
    // connection's timer when it lends one.
    let mut out = {
        let attempts = pin!(attempt_all);
        let deadline = received + rc.timeout.0;
        let total = pin!(match timer {
            Some(timer) => Either::Left(timer.until(deadline)),
            None => Either::Right(tokio::time::sleep_until(deadline.into())),
        });
        match first_of(attempts, total).await {
            Either::Left(out) => out,
            Either::Right(()) => Outcome::unanswered(timeout_error(&upstream.name), None, 0),
        }
    };
    if let Some((_, headers)) = lean {
        // Sent for the last time: the map can carry the next head.
        crate::header_pool::give(headers);
    }
    // The body is swapped in place (an empty body is a box of nothing, no
    // allocation): `Response::map` would move the whole head twice.
    let body = out.response.body_mut();
    *body = Guarded::wrap(std::mem::replace(body, body::empty()), (permit, held));
    out
}

/// The head every try of a body-less request to an HTTP/1.1 upstream
/// borrows (its method and header fields, `Host` settled once), taken out
/// of `parts`. `None` when the request takes the general path: a body, an
/// upgrade, an HTTP/2 upstream, or no `Host` at all (it would then name
/// each try's target).
fn lean_head(
    parts: &mut Parts,
    body: &ReqBody,
    upstream: &Upstream,
    route: &Route,
    known: Option<KnownFields>,
) -> Result<Option<(Method, HeaderMap)>, String> {
    let ended = match body {
        ReqBody::Replayable(b) => b.is_empty(),
        ReqBody::Stream(Some(b)) => b.is_end_stream(),
        ReqBody::Stream(None) => false,
    };
    if upstream.config.http2 || !ended {
        return Ok(None);
    }
    let known = known.unwrap_or_else(|| KnownFields::of(&parts.headers));
    // An upgrade's socket would outlive the lean exchange.
    if known.upgrade {
        return Ok(None);
    }
    // Settled once for every try.
    match upstream_host(route, known.host, &parts.uri)? {
        HostField::Keep => {}
        HostField::Set(host) => {
            parts.headers.insert(header::HOST, host);
        }
        HostField::FromTarget => return Ok(None),
    }
    Ok(Some((
        parts.method.clone(),
        std::mem::take(&mut parts.headers),
    )))
}

/// What a try's result was, for the upstream's metrics.
fn try_outcome(
    result: &Result<Result<Answer, SendError>, tokio::time::error::Elapsed>,
) -> TryOutcome {
    match result {
        Ok(Ok(answer)) => TryOutcome::Status(answer.response.status().as_u16()),
        Ok(Err(e)) if e.is_connect() => TryOutcome::ConnectError,
        Ok(Err(_)) => TryOutcome::Error,
        Err(_) => TryOutcome::Timeout,
    }
}

/// Exponential backoff with full jitter in [base·2^(n-1)/2, base·2^(n-1)·3/2).
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << (attempt.saturating_sub(1)).min(10));
    exp.mul_f64(rand::random_range(0.5..1.5))
}

fn build_request(
    parts: &Parts,
    headers: http::HeaderMap,
    authority: &http::uri::Authority,
    pq: &PathAndQuery,
    route: &Route,
    h2: bool,
    body: Body,
) -> Result<Request<Body>, String> {
    // HTTP/1.1 upstreams get origin-form; HTTP/2 needs scheme and authority.
    let uri = if h2 {
        Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(authority.clone())
            .path_and_query(pq.clone())
            .build()
            .map_err(|e| format!("bad request path {pq:?}: {e}"))?
    } else {
        Uri::from(pq.clone())
    };
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    // The client's version says nothing about the upstream's: hyper's pool
    // keys connections by the request version, so set the upstream's own.
    *req.version_mut() = if h2 {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    // The client's Host stays as it is unless rewritten: no insert (and no
    // possible rehash) when there is nothing to change.
    let has_host = req.headers().contains_key(header::HOST);
    let host = match upstream_host(route, has_host, &parts.uri)? {
        HostField::Keep => None,
        HostField::Set(host) => Some(host),
        HostField::FromTarget => Some(
            HeaderValue::from_str(authority.as_str()).map_err(|_| "bad authority".to_owned())?,
        ),
    };
    if let Some(host) = host {
        req.headers_mut().insert(header::HOST, host);
    }
    Ok(req)
}

/// What the upstream request's `Host` is.
enum HostField {
    /// The client's, as it came.
    Keep,
    /// This value.
    Set(HeaderValue),
    /// The try's target (the client sent no `Host` and no absolute URI).
    FromTarget,
}

/// The `Host` rule: the route's rewrite, else the client's field, else the
/// request's absolute-form authority, else the target's.
fn upstream_host(route: &Route, has_host: bool, uri: &Uri) -> Result<HostField, String> {
    Ok(match &route.config.host_rewrite {
        Some(h) => {
            HostField::Set(HeaderValue::from_str(h).map_err(|_| format!("bad host_rewrite {h:?}"))?)
        }
        None if has_host => HostField::Keep,
        None => match uri.authority() {
            Some(a) => HostField::Set(
                HeaderValue::from_str(a.as_str()).map_err(|_| "bad authority".to_owned())?,
            ),
            None => HostField::FromTarget,
        },
    })
}

fn source_chain_has<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    false
}

const SHED: &str = "sluice_gateway_shed_total";
const BUDGET_EXHAUSTED: &str = "sluice_gateway_retry_budget_exhausted_total";
const RETRIES: &str = "sluice_gateway_retries_total";

/// Count one event of a rare kind (a shed, a retry): cold and out of line,
/// so the metrics macro's inline key building stays off the usual path.
#[cold]
fn count(name: &'static str, label: &'static str, value: &str) {
    metrics::counter!(name, label => value.to_owned()).increment(1);
}

#[cold]
fn body_error(e: &BoxError) -> Response<Body> {
    if source_chain_has::<http_body_util::LengthLimitError>(e.as_ref()) {
        return body::json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body exceeds the size limit",
        );
    }
    body::json_error(
        StatusCode::BAD_REQUEST,
        "bad_request_body",
        "the request body could not be read",
    )
}

#[cold]
fn client_error(upstream: &str, e: &SendError) -> Response<Body> {
    if source_chain_has::<http_body_util::LengthLimitError>(e) {
        return body::json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body exceeds the size limit",
        );
    }
    let what = if e.is_connect() {
        "cannot connect to"
    } else {
        "bad response from"
    };
    tracing::debug!(upstream, error = %e, "upstream request failed");
    body::json_error(
        StatusCode::BAD_GATEWAY,
        "upstream_unavailable",
        &format!("{what} upstream {upstream:?}"),
    )
}

#[cold]
fn timeout_error(upstream: &str) -> Response<Body> {
    body::json_error(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_timeout",
        &format!("upstream {upstream:?} did not answer in time"),
    )
}
