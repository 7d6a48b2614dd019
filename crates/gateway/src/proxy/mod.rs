//! The request path: normalize, route, check limits, answer fixed routes,
//! forward to upstreams (with WebSocket upgrades), and fix up headers on the
//! way back. Errors become JSON responses here; nothing panics on input.

mod forward;
pub(crate) mod guarded;
pub(crate) mod headers;
mod upgrade;

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Instant;

use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::Limited;

use crate::access_log::AccessRecord;
use crate::body::{self, Body};
use crate::cache::{self, HttpCache};
use crate::conn_timer::ConnTimer;
use crate::gateway::{Shared, State};
use crate::raw_fields::{Answer, RawFields};
use crate::router::{Action, Route, normalize};
use crate::upstream::{HashOn, Upstream};

/// Facts about the connection a request came in on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnInfo {
    /// The TCP peer.
    pub(crate) peer: SocketAddr,
    /// Whether the connection is TLS.
    pub(crate) tls: bool,
    /// Whether the response is written by the lean HTTP/1.1 writer, which
    /// takes an upstream's fields as wire lines ([`crate::raw_fields`]).
    pub(crate) raw_fields: bool,
}

/// Handle one request from a client, `received` when its head arrived. A
/// request without a body carries [`body::empty`] (the lean server path's
/// always do). Its duration (metrics, access log) counts from `received`.
/// The upstream's fields come as wire lines only when `conn` says the
/// lean writer takes them ([`ConnInfo::raw_fields`]). A connection that
/// keeps a timer lends it (`timer`) for the request's total deadline.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    mut req: Request<Body>,
    conn: ConnInfo,
    received: Instant,
    timer: Option<ConnTimer<'_>>,
) -> Answer {
    let start = received;
    // Requests in flight keep the state they started with, even across a reload.
    let state = shared.state();
    // Room for what the proxy adds (request id, TE, X-Forwarded-*, Via)
    // in one allocation: HeaderMap grows, rehashing, whenever an insert
    // finds it at its load limit, even an insert that replaces.
    req.headers_mut().reserve(6);
    let adds = state.config.proxy_headers;
    let log_on = shared.access_log().enabled();
    // Made (and returned) when the proxy makes ids; otherwise the client's,
    // only for the log.
    let request_id = if adds.request_id {
        Some(headers::ensure_request_id(req.headers_mut(), received))
    } else if log_on {
        headers::given_request_id(req.headers())
    } else {
        None
    };
    // Only what the access log needs is copied, and only when it is on.
    let logged = log_on.then(|| (req.method().clone(), req.uri().path().to_owned()));
    // Awaited pinned where it is made (see `route_and_serve`'s forward).
    let Served {
        mut resp,
        mut raw,
        route,
        target,
        tries,
        answered,
    } = pin!(route_and_serve(&shared, &state, req, conn, received, timer)).await;
    let status = resp.status();
    let elapsed = answered
        .unwrap_or_else(Instant::now)
        .saturating_duration_since(start);
    let route = route.and_then(|i| state.router.get(i));
    route
        .map_or(&state.router.unmatched, |r| &r.metrics)
        .record(status, elapsed);
    if let Some((method, path)) = logged {
        let upstream = route.and_then(|r| match &r.action {
            Action::Upstream(name) => Some(name.clone()),
            Action::Respond(_) => None,
        });
        shared.access_log().record(AccessRecord {
            request_id: request_id.clone(),
            client: conn.peer,
            method,
            path,
            status: status.as_u16(),
            route: route.map(|r| r.name.clone()),
            upstream,
            target,
            tries,
            duration: elapsed,
        });
    }
    if adds.request_id
        && let Some(request_id) = request_id
    {
        match &mut raw {
            Some(raw) => raw.own.request_id = Some(request_id),
            None => {
                resp.headers_mut().insert(headers::REQUEST_ID, request_id);
            }
        }
    }
    Answer {
        response: resp,
        raw,
    }
}

/// What serving a request produced: the response and, for metrics and the
/// log, the route's index, the target and the number of tries.
struct Served {
    resp: Response<Body>,
    /// The upstream's fields as wire lines, if they came so.
    raw: Option<RawFields>,
    route: Option<usize>,
    target: Option<http::uri::Authority>,
    tries: u32,
    /// When the upstream's response head arrived (see `forward::Outcome`).
    answered: Option<Instant>,
}

impl Served {
    fn local(resp: Response<Body>, route: Option<usize>) -> Served {
        Served {
            resp,
            raw: None,
            route,
            target: None,
            tries: 0,
            answered: None,
        }
    }
}

async fn route_and_serve(
    shared: &Shared,
    state: &Arc<State>,
    mut req: Request<Body>,
    conn: ConnInfo,
    received: Instant,
    timer: Option<ConnTimer<'_>>,
) -> Served {
    if req.method() == Method::CONNECT {
        let resp = body::json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "connect_refused",
            "CONNECT is not supported: this is not a forward proxy",
        );
        return Served::local(resp, None);
    }
    // The host and path borrow copies of the target and Host (shared bytes,
    // not copied), as the request moves on.
    let uri = req.uri().clone();
    let host_field = req.headers().get(header::HOST).cloned();
    // RFC 9112 §3.2.2: with an absolute-form target the authority wins over Host.
    // HTTP/2 always carries :authority in the URI; that is not absolute form.
    let authority_host = uri.authority().map(|a| lowercase(a.host()));
    let (absolute_host, h2_authority) = if req.version() < http::Version::HTTP_2 {
        (authority_host, None)
    } else {
        (None, authority_host)
    };
    let host = absolute_host.clone().or(h2_authority).or_else(|| {
        host_field
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .map(|h| lowercase(strip_port(h)))
    });
    if let Some(h) = &absolute_host
        && !state.router.routes_host(h)
    {
        let resp = body::json_error(
            StatusCode::MISDIRECTED_REQUEST,
            "not_routed",
            &format!(
                "absolute-form request for host {h:?} which no route serves: this is not an open proxy"
            ),
        );
        return Served::local(resp, None);
    }
    let present = headers::Present::of(req.headers());
    let path = normalize(uri.path());
    let Some(route) = state
        .router
        .find(req.method(), host.as_deref(), &path, req.headers())
    else {
        let resp = body::json_error(
            StatusCode::NOT_FOUND,
            "no_route",
            &format!("no route matches {} {}", req.method(), path),
        );
        return Served::local(resp, None);
    };
    let route_name = Some(route.index);

    let max_body = route
        .config
        .max_body_size
        .unwrap_or(state.config.server.max_body_size)
        .0;
    if present.content_length()
        && let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        && len > max_body
    {
        let resp = body::json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("request body of {len} bytes exceeds the limit of {max_body} bytes"),
        );
        return Served::local(resp, route_name);
    }

    // Most routes have no limiter: they skip the check's future.
    let allowance = match state.limits.get(route.index) {
        None => None,
        Some(limiter) => {
            let trusted = &state.config.server.trusted_proxies;
            match crate::limit::check(limiter, req.headers(), conn.peer.ip(), trusted).await {
                Ok(allowance) => Some(allowance),
                Err(refusal) => return Served::local(refusal, route_name),
            }
        }
    };

    let upstream_name = match &route.action {
        Action::Respond(fixed) => {
            let mut resp = fixed_response(fixed);
            if let Some(allowance) = allowance {
                allowance.apply(resp.headers_mut());
            }
            return Served::local(resp, route_name);
        }
        Action::Upstream(name) => name,
    };
    let Some(upstream) = state.route_upstream(route.index) else {
        let resp = body::json_error(
            StatusCode::BAD_GATEWAY,
            "no_upstream",
            &format!("upstream {upstream_name:?} is not configured"),
        );
        return Served::local(resp, route_name);
    };

    let client_ip = headers::client_ip(
        conn.peer.ip(),
        req.headers(),
        &state.config.server.trusted_proxies,
    );
    let upgrade = present.upgrade() && headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();
    // The client's own Host value (read once, above) is shared, not copied.
    let original_host = host_field
        .as_ref()
        .filter(|h| h.to_str().is_ok())
        .cloned()
        .or_else(|| host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()));
    let version = parts.version;
    let trailers = present.te() && headers::accepts_trailers(&parts.headers);
    headers::strip_hop_by_hop_present(&mut parts.headers, upgrade, present);
    if trailers {
        parts.headers.insert(header::TE, headers::TE_TRAILERS);
    }
    let forwarding = headers::Forwarding {
        peer: client_ip,
        tls: conn.tls,
        host: original_host,
        version,
        adds: state.config.proxy_headers,
    };
    let cached = route.config.cache && !upgrade;
    // The forwarding fields wait for the forward, which writes them as
    // lines when the lean client sends the request, unless something reads
    // the map first (the cache, or hashing on a header) or the client sent
    // some of them (they are then extended or replaced in the map).
    let forwarding =
        if !cached && !hashes_on_header(upstream) && headers::Forwarding::can_follow(present) {
            Some(forwarding)
        } else {
            forwarding.insert_into(&mut parts.headers, present);
            None
        };

    let path_and_query = match upstream_target(&uri, &path, route) {
        Ok(pq) => pq,
        Err(e) => {
            let resp = body::json_error(StatusCode::BAD_REQUEST, "bad_request", &e);
            return Served::local(resp, route_name);
        }
    };
    let hash_key = hash_key(upstream, &parts.headers, client_ip);
    let req_body = if incoming.is_end_stream() {
        incoming
    } else {
        body::boxed(Limited::new(
            incoming,
            usize::try_from(max_body).unwrap_or(usize::MAX),
        ))
    };
    let out = if cached {
        let mut target = path.into_owned();
        if let Some(q) = parts.uri.query() {
            target.push('?');
            target.push_str(q);
        }
        let ctx = CacheContext {
            cache: shared.cache(),
            state,
            route,
            host: host.map(Cow::into_owned).unwrap_or_default(),
            target,
            received,
        };
        // Boxed: the cache path's state would otherwise enlarge every
        // request's future, and made out of line, every poll's stack frame.
        crate::out_of_line::boxed(|| {
            serve_cached(ctx, upstream, parts, req_body, path_and_query, hash_key)
        })
        .await
    } else {
        let fwd = forward::Forward {
            route,
            upstream,
            path_and_query,
            hash_key,
            // An upgrade's 101 needs its fields in the map to splice.
            raw_fields: conn.raw_fields && !upgrade,
            received,
            forwarding,
            timer,
            // Hop-by-hop fields are gone unless this is an upgrade; the
            // client's `Host` is still there unless its `Connection` named it.
            known: Some(forward::KnownFields {
                upgrade,
                host: if present.connection() {
                    parts.headers.contains_key(header::HOST)
                } else {
                    host_field.is_some()
                },
            }),
        };
        // Awaited pinned where it is made: `.await` on the bare future
        // would first move its state (kilobytes) into this one's.
        pin!(forward::forward(fwd, parts, req_body)).await
    };
    let mut resp = out.response;
    let present = headers::Present::of(resp.headers());
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            upgrade::splice(client_upgrade, &mut resp, upstream.name.clone());
        }
    } else {
        headers::strip_hop_by_hop_present(resp.headers_mut(), false, present);
    }
    let version = resp.version();
    let mut raw = out.raw;
    if state.config.proxy_headers.via {
        match &mut raw {
            // The upstream's fields (any `Via` among them) are in the block;
            // this hop's entry follows it there, with no map insert.
            Some(raw) => raw.own.via = Some(headers::via_hop(version)),
            None => headers::add_via(resp.headers_mut(), version, present),
        }
    }
    if let Some(allowance) = allowance {
        allowance.apply(resp.headers_mut());
    }
    Served {
        resp,
        raw,
        route: route_name,
        target: out.target,
        tries: out.tries,
        answered: out.answered,
    }
}

/// What the cached path needs to know about the request besides its head.
struct CacheContext<'a> {
    cache: Arc<HttpCache>,
    state: &'a Arc<State>,
    route: &'a Route,
    /// Lowercase host without port, empty when absent.
    host: String,
    /// Normalized path and query: with `host`, the cache key.
    target: String,
    /// When the request arrived.
    received: Instant,
}

/// A route with `cache = true`: GET/HEAD go through the cache, anything else
/// is forwarded and may invalidate it.
async fn serve_cached(
    ctx: CacheContext<'_>,
    upstream: &Arc<Upstream>,
    parts: http::request::Parts,
    req_body: Body,
    path_and_query: PathAndQuery,
    hash_key: Option<Vec<u8>>,
) -> forward::Outcome {
    let CacheContext {
        cache,
        state,
        route,
        host,
        target,
        received,
    } = ctx;
    let has_body = !req_body.is_end_stream();
    if let Some(why) = cache::bypass_reason(&parts.method, &parts.headers, has_body) {
        let method = parts.method.clone();
        let fwd = forward::Forward {
            route,
            upstream,
            path_and_query,
            hash_key,
            // The cache reads the response's fields.
            raw_fields: false,
            received,
            forwarding: None,
            timer: None,
            known: None,
        };
        let mut out = forward::forward(fwd, parts, req_body).await;
        cache::after_forward(
            &cache,
            &route.metrics.cache(),
            &method,
            &host,
            &target,
            why,
            &mut out.response,
        );
        return out;
    }
    let cfg = &state.config.cache;
    let Some(index) = state.router.index_of(route) else {
        // Cannot happen: `route` came from this state's router.
        return forward::Outcome::unanswered(
            body::json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "route lost"),
            None,
            0,
        );
    };
    let origin = Arc::new(RouteOrigin {
        state: Arc::clone(state),
        route: index,
        upstream: Arc::clone(upstream),
        path_and_query,
        hash_key,
    });
    let lookup = cache::Lookup {
        head: parts,
        host,
        target,
        counters: route.metrics.cache(),
        max_object_size: cfg.max_object_size.0,
        lock_timeout: cfg.lock_timeout.0,
    };
    let fetched = cache::serve(cache, lookup, origin).await;
    forward::Outcome::unanswered(fetched.response, fetched.target, fetched.tries)
}

/// An owned way to reach a route's upstream, for the cache: its fetches may
/// outlive the request (background revalidation), so it holds the state
/// rather than borrowing from it.
struct RouteOrigin {
    state: Arc<State>,
    route: usize,
    upstream: Arc<Upstream>,
    path_and_query: PathAndQuery,
    hash_key: Option<Vec<u8>>,
}

impl cache::Origin for RouteOrigin {
    fn fetch(
        self: Arc<Self>,
        head: http::request::Parts,
    ) -> Pin<Box<dyn Future<Output = cache::Fetched> + Send>> {
        Box::pin(async move {
            let Some(route) = self.state.router.get(self.route) else {
                return cache::Fetched {
                    response: body::json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "route lost",
                    ),
                    target: None,
                    tries: 0,
                };
            };
            let fwd = forward::Forward {
                route,
                upstream: &self.upstream,
                path_and_query: self.path_and_query.clone(),
                hash_key: self.hash_key.clone(),
                raw_fields: false,
                // A fill may run after its request (a background refresh).
                received: Instant::now(),
                forwarding: None,
                timer: None,
                known: None,
            };
            let out = forward::forward(fwd, head, body::empty()).await;
            cache::Fetched {
                response: out.response,
                target: out.target,
                tries: out.tries,
            }
        })
    }
}

/// The path and query to send upstream: the client's own (shared, not
/// parsed again) when normalization and the route changed nothing.
fn upstream_target(uri: &http::Uri, path: &str, route: &Route) -> Result<PathAndQuery, String> {
    let upstream_path = route.upstream_path(path);
    // Unchanged means the very bytes of the client's path.
    if let Cow::Borrowed(up) = &upstream_path
        && std::ptr::eq(up.as_ptr(), uri.path().as_ptr())
        && up.len() == uri.path().len()
        && let Some(pq) = uri.path_and_query()
    {
        return Ok(pq.clone());
    }
    let mut pq = upstream_path.into_owned();
    if let Some(q) = uri.query() {
        pq.push('?');
        pq.push_str(q);
    }
    PathAndQuery::try_from(pq.as_str()).map_err(|e| format!("bad request path {pq:?}: {e}"))
}

/// Whether `upstream` picks targets by a request header's value.
fn hashes_on_header(upstream: &crate::upstream::Upstream) -> bool {
    matches!(upstream.hash_on, Some(HashOn::Header(_)))
}

/// The bytes a hashing upstream picks a target by, if it hashes.
fn hash_key(
    upstream: &crate::upstream::Upstream,
    headers: &http::HeaderMap,
    client_ip: std::net::IpAddr,
) -> Option<Vec<u8>> {
    match upstream.hash_on.as_ref()? {
        HashOn::Header(name) => headers.get(name).map(|v| v.as_bytes().to_vec()),
        HashOn::ClientIp => Some(client_ip.to_string().into_bytes()),
    }
}

/// `s` in lowercase, borrowed when it already is.
fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn fixed_response(fixed: &crate::config::FixedResponse) -> Response<Body> {
    let mut resp = Response::new(body::full(fixed.body.clone()));
    *resp.status_mut() = StatusCode::from_u16(fixed.status).unwrap_or(StatusCode::OK);
    for (k, v) in &fixed.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}
