//! Connections to an upstream's targets, driven through hyper's connection
//! API rather than hyper-util's general-purpose client.
//!
//! HTTP/1.1 requests without a body (nearly every GET) go through the lean
//! client of [`super::lean`]: no connection task, no dispatcher. Requests
//! with a body (streamed both ways at once) and WebSocket upgrades go
//! through hyper's client connection.
//!
//! HTTP/1.1: each target keeps a LIFO stack of idle keep-alive connections
//! (one for lean connections, one for hyper's).
//! A request takes the most recently used one (its socket buffers are the
//! warmest) or opens a new one; the connection goes back on the stack when
//! the response body has been read to its end, from inside the body itself,
//! with no task spawned and no map lookup per request. HTTP/2: one
//! multiplexed connection per target, reopened when it closes.
//!
//! A request that a reused connection could not take (the upstream closed it
//! while it sat idle, the usual keep-alive race) is sent again on a fresh
//! connection: hyper hands back a request it never wrote; the lean client
//! resends an idempotent request to which the reused connection answered
//! nothing at all (as nginx does).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Method, Request, Response, header};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::Body;
use crate::metrics::PoolMetrics;

use super::head;
use super::lean::{LeanBody, LeanConn, LeanError, LeanHead};
use crate::raw_fields::Answer;

/// How long a pooled connection that is not yet ready (its previous
/// exchange still finishing) may take before a fresh one is opened instead.
const READY_WAIT: Duration = Duration::from_millis(100);

/// Why a request could not be sent or answered.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made (refused, unreachable, timed out).
    Connect(std::io::Error),
    /// The exchange failed after a connection was made.
    Http(hyper::Error),
    /// The lean client's exchange failed after a connection was made.
    Lean(LeanError),
}

impl SendError {
    /// Whether no connection could be made, so the request was never sent.
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Http(e) => write!(f, "{e}"),
            SendError::Lean(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Connect(e) => Some(e),
            SendError::Http(e) => Some(e),
            SendError::Lean(e) => Some(e),
        }
    }
}

/// Settings shared by every target of one upstream.
#[derive(Debug, Clone)]
pub(crate) struct PoolSettings {
    /// Speak HTTP/2 (prior knowledge) instead of HTTP/1.1.
    pub(crate) http2: bool,
    /// Idle HTTP/1.1 connections kept per target; more are closed.
    pub(crate) max_idle: usize,
    /// Idle connections older than this are closed.
    pub(crate) idle_timeout: Duration,
}

/// The connections of one upstream, one [`TargetPool`] per target.
#[derive(Debug)]
pub(crate) struct Pool {
    targets: Vec<Arc<TargetPool>>,
    reaper_started: AtomicBool,
}

/// Connections to one target.
#[derive(Debug)]
pub(super) struct TargetPool {
    authority: Authority,
    settings: PoolSettings,
    idle: Mutex<Vec<Idle>>,
    lean_idle: Mutex<Vec<LeanIdle>>,
    h2: Mutex<Option<http2::SendRequest<Body>>>,
    metrics: PoolMetrics,
}

#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

#[derive(Debug)]
struct LeanIdle {
    conn: LeanConn,
    since: Instant,
}

impl Pool {
    /// A pool for `targets`, with no connection open yet.
    pub(crate) fn new(upstream: &str, targets: &[Authority], settings: &PoolSettings) -> Pool {
        Pool {
            targets: targets
                .iter()
                .map(|authority| {
                    Arc::new(TargetPool {
                        authority: authority.clone(),
                        settings: settings.clone(),
                        idle: Mutex::new(Vec::new()),
                        lean_idle: Mutex::new(Vec::new()),
                        h2: Mutex::new(None),
                        metrics: PoolMetrics::new(upstream, authority.as_str()),
                    })
                })
                .collect(),
            reaper_started: AtomicBool::new(false),
        }
    }

    /// Publish each target's idle connections to its gauge.
    pub(crate) fn publish_gauges(&self) {
        for target in &self.targets {
            target.set_idle_gauge();
        }
    }

    /// Start the idle reaper with the first request.
    fn start_reaper(&self) {
        // A load first: a swap per request would write a shared line.
        if !self.reaper_started.load(Ordering::Relaxed)
            && !self.reaper_started.swap(true, Ordering::Relaxed)
        {
            spawn_reaper(&self.targets);
        }
    }

    /// Send `req` to target `index`, connecting within `connect_timeout` if
    /// no pooled connection is ready. The request's URI must already be in
    /// the form the protocol wants (origin-form for HTTP/1.1, absolute for
    /// HTTP/2).
    pub(crate) async fn send(
        &self,
        index: usize,
        req: Request<Body>,
        connect_timeout: Duration,
    ) -> Result<Response<Body>, SendError> {
        let target = &self.targets[index];
        self.start_reaper();
        // Cold paths are boxed so that the future every request carries
        // (and moves) stays small.
        if target.settings.http2 {
            return crate::out_of_line::boxed(|| target.send_h2(req, connect_timeout)).await;
        }
        if is_lean(&req) {
            return target.send_lean(req, connect_timeout).await;
        }
        let mut req = req;
        if let Some(sender) = target.checkout().await {
            match send_h1(target, sender, req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    // Never written: the connection died while idle. A
                    // fresh one is not subject to that race.
                    Some(unsent) => req = unsent,
                    None => return Err(SendError::Http(e.into_error())),
                },
            }
        }
        let sender = crate::out_of_line::boxed(|| target.connect_h1(connect_timeout)).await?;
        send_h1(target, sender, req)
            .await
            .map_err(|e| SendError::Http(e.into_error()))
    }
}

impl Pool {
    /// Send a borrowed request without a body to target `index` of an
    /// HTTP/1.1 upstream over the lean client (see [`is_lean`]);
    /// `now` is the caller's reading of the clock. The target's future is
    /// returned as it is (see [`Upstream::send_head`](super::Upstream::send_head)).
    pub(crate) fn send_head<'a>(
        &'a self,
        index: usize,
        head: LeanHead<'a>,
        connect_timeout: Duration,
        now: Instant,
    ) -> impl Future<Output = Result<Answer, SendError>> + 'a {
        self.start_reaper();
        self.targets[index].send_lean_head(head, connect_timeout, now)
    }
}

/// Whether the lean client can carry `req`: no body to stream alongside
/// the response, and no upgrade (the socket would outlive the exchange).
/// The proxy's forward decides the same from what it knows of the head
/// (`proxy::forward::lean_head`).
fn is_lean(req: &Request<Body>) -> bool {
    use http_body::Body as _;
    req.body().is_end_stream() && !req.headers().contains_key(header::UPGRADE)
}

/// Methods a request of which may be sent twice (RFC 9110 §9.2.2).
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Send on one HTTP/1.1 connection; the response body returns it to the pool.
async fn send_h1(
    target: &Arc<TargetPool>,
    mut sender: http1::SendRequest<Body>,
    req: Request<Body>,
) -> Result<Response<Body>, TrySendError<Request<Body>>> {
    let resp = sender.try_send_request(req).await?;
    let (head, incoming) = resp.into_parts();
    // After a 101 the socket belongs to the upgrade, not to the pool.
    let upgraded = head.status == http::StatusCode::SWITCHING_PROTOCOLS;
    let mut body = Returning {
        inner: incoming,
        sender: (!upgraded).then_some(sender),
        pool: Arc::downgrade(target),
    };
    // Empty bodies (HEAD, 204, 304, Content-Length: 0) are never polled.
    if body.inner.is_end_stream() {
        body.release();
    }
    Ok(Response::from_parts(head, Body::new(body)))
}

impl TargetPool {
    /// Send a request without a body on a lean connection: a pooled one,
    /// or a fresh one when none is pooled or the pooled one turned out to
    /// be closed before it answered anything (for idempotent methods).
    async fn send_lean(
        self: &Arc<Self>,
        req: Request<Body>,
        connect_timeout: Duration,
    ) -> Result<Response<Body>, SendError> {
        let (parts, _empty) = req.into_parts();
        // Not asked for raw fields: the answer is the response alone.
        let sent = self
            .send_lean_head(LeanHead::of(&parts), connect_timeout, Instant::now())
            .await
            .map(|answer| answer.response);
        // Written (or failed): the map can carry the next head.
        crate::header_pool::give(parts.headers);
        sent
    }

    /// [`Self::send_lean`] for a borrowed head, which the caller keeps;
    /// `now` is when it is sent.
    async fn send_lean_head(
        self: &Arc<Self>,
        head: LeanHead<'_>,
        connect_timeout: Duration,
        now: Instant,
    ) -> Result<Answer, SendError> {
        if let Some(mut conn) = self.checkout_lean(now) {
            match conn.exchange(head).await {
                Ok(resp) => return Ok(self.respond(conn, resp)),
                Err(e) if e.nothing_received && is_idempotent(head.method) => {
                    tracing::debug!(target = %self.authority, error = %e.error, "pooled connection closed; sending again on a fresh one");
                }
                Err(e) => return Err(SendError::Lean(e.error)),
            }
        }
        let stream = crate::out_of_line::boxed(|| self.connect_tcp(connect_timeout)).await?;
        let mut conn = LeanConn::new(stream.into_inner());
        match conn.exchange(head).await {
            Ok(resp) => Ok(self.respond(conn, resp)),
            Err(e) => Err(SendError::Lean(e.error)),
        }
    }

    fn respond(self: &Arc<Self>, conn: LeanConn, head: head::ResponseHead) -> Answer {
        let body = LeanBody::new(conn, &head, Arc::downgrade(self));
        super::lean::into_response(head, body)
    }

    /// The most recently used idle lean connection that is still usable
    /// `now` (the caller's clock reading: one fewer here).
    fn checkout_lean(&self, now: Instant) -> Option<LeanConn> {
        let mut stack = self.lean_idle.lock().unwrap_or_else(|p| p.into_inner());
        let mut found = None;
        while let Some(mut idle) = stack.pop() {
            let age = now.saturating_duration_since(idle.since);
            if age <= self.settings.idle_timeout && idle.conn.is_usable() {
                found = Some(idle.conn);
                break;
            }
        }
        found
    }

    /// Put a lean connection whose exchange has finished back on the stack.
    pub(super) fn checkin_lean(&self, conn: LeanConn) {
        let mut stack = self.lean_idle.lock().unwrap_or_else(|p| p.into_inner());
        if stack.len() < self.settings.max_idle {
            stack.push(LeanIdle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Publish the idle connections of both kinds. Called when metrics are
    /// scraped, not per checkout and checkin: a gauge update is an
    /// indirect call into the exporter, and the stacks' lengths are read
    /// here under their locks rather than mirrored on every change.
    fn set_idle_gauge(&self) {
        let lean = self
            .lean_idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        let hyper = self.idle.lock().unwrap_or_else(|p| p.into_inner()).len();
        self.metrics.idle.set((lean + hyper) as f64);
    }

    /// The most recently used idle connection that is still open and ready.
    async fn checkout(&self) -> Option<http1::SendRequest<Body>> {
        loop {
            // The guard is a temporary: the lock is let go before any await.
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
            if idle.sender.is_closed() || idle.since.elapsed() > self.settings.idle_timeout {
                continue;
            }
            let mut sender = idle.sender;
            if sender.is_ready() {
                return Some(sender);
            }
            // Put back right after its body ended: the connection task
            // usually needs one more turn to be ready for the next request.
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, sender.ready()).await {
                return Some(sender);
            }
        }
    }

    /// Put a connection whose exchange has finished back on the stack.
    fn checkin(&self, sender: http1::SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut stack = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if stack.len() < self.settings.max_idle {
            stack.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect_tcp(
        &self,
        timeout: Duration,
    ) -> Result<TokioIo<tokio::net::TcpStream>, SendError> {
        let addr = self.authority.as_str();
        let stream = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(SendError::Connect(e)),
            Err(_) => {
                return Err(SendError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection to {addr} within {timeout:?}"),
                )));
            }
        };
        // Small requests and responses must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        // Dead peers behind a silent network are found by keepalive probes.
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        self.metrics.opened.increment(1);
        Ok(TokioIo::new(stream))
    }

    async fn connect_h1(&self, timeout: Duration) -> Result<http1::SendRequest<Body>, SendError> {
        let io = self.connect_tcp(timeout).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Http)?;
        let authority = self.authority.clone();
        tokio::spawn(async move {
            // Upgrades (WebSocket) take the socket over after a 101.
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(target = %authority, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    async fn send_h2(
        &self,
        req: Request<Body>,
        connect_timeout: Duration,
    ) -> Result<Response<Body>, SendError> {
        let shared = {
            let h2 = self.h2.lock().unwrap_or_else(|p| p.into_inner());
            h2.as_ref().filter(|s| !s.is_closed()).cloned()
        };
        let mut sender = match shared {
            Some(sender) => sender,
            None => {
                let io = self.connect_tcp(connect_timeout).await?;
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(io)
                    .await
                    .map_err(SendError::Http)?;
                let authority = self.authority.clone();
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(target = %authority, error = %e, "upstream HTTP/2 connection ended with an error");
                    }
                });
                *self.h2.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
                sender
            }
        };
        let resp = sender.send_request(req).await.map_err(SendError::Http)?;
        Ok(resp.map(crate::body::boxed))
    }
}

/// Close idle connections past the idle timeout, every half timeout, until
/// the pool is dropped (after a reload that removed or changed the upstream).
fn spawn_reaper(targets: &[Arc<TargetPool>]) {
    let Some(first) = targets.first() else { return };
    let every = (first.settings.idle_timeout / 2).max(Duration::from_secs(1));
    let weak: Vec<Weak<TargetPool>> = targets.iter().map(Arc::downgrade).collect();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let mut alive = false;
            for target in weak.iter().filter_map(Weak::upgrade) {
                alive = true;
                let timeout = target.settings.idle_timeout;
                target
                    .idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|i| !i.sender.is_closed() && i.since.elapsed() <= timeout);
                target
                    .lean_idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain_mut(|i| i.since.elapsed() <= timeout && i.conn.is_usable());
            }
            if !alive {
                return;
            }
        }
    });
}

/// A response body that puts its connection back in the pool once it has
/// been read to the end. Dropped before the end, it drops the connection
/// (hyper closes it: the rest of the body is unread).
struct Returning {
    inner: Incoming,
    sender: Option<http1::SendRequest<Body>>,
    pool: Weak<TargetPool>,
}

impl Returning {
    /// Hand the connection back to its pool, if the pool still exists.
    fn release(&mut self) {
        if let (Some(sender), Some(pool)) = (self.sender.take(), self.pool.upgrade()) {
            pool.checkin(sender);
        }
    }
}

impl http_body::Body for Returning {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            // Consumers stop polling once the body says it has ended, so
            // the last frame is the moment to give the connection back.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.sender = None,
            _ => {}
        }
        polled.map(|frame| frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
