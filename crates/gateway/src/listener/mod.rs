//! The public listener: accepts TCP (and TLS) connections under global and
//! per-client-IP caps, serves HTTP/1.1 and HTTP/2 on each with hyper, closes
//! idle and slow connections, parks idle HTTP/1 keep-alive connections, runs
//! upgraded (WebSocket) connections, and drains all of them on shutdown.
//!
//! Memory per idle connection is what decides how many a gateway can hold,
//! so an idle HTTP/1 keep-alive connection keeps no hyper state: after
//! [`idle::PARK_AFTER`] without traffic, hyper's connection (with its 8 KiB
//! read and 8 KiB write buffers) is shut down without closing the socket,
//! and a new one is built when the client's next bytes arrive. Timeouts are
//! enforced here rather than by hyper, because hyper's HTTP/1 header read
//! timer also runs while a keep-alive connection waits for its next request.
//!
//! Plain HTTP/1 connections start on the lean server path ([`lean`]), which
//! serves requests without a body itself; the first request it does not
//! serve hands the connection to hyper, with the bytes already read
//! ([`rewind`]). A connection hyper parks starts on the lean path again.
//! TLS connections and HTTP/2 are hyper's.

mod idle;
mod lean;
mod rewind;
mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::{self, Body};
use crate::config::ServerConfig;
use crate::gateway::{Error, Shared};
use crate::proxy::guarded::Guarded;
use crate::proxy::{self, ConnInfo};

use idle::{Activity, Hold, IdleIo, Limits, Verdict};
use rewind::Rewind;

/// Open connections per client IP.
#[derive(Debug, Default)]
struct PerIp {
    counts: Mutex<HashMap<IpAddr, u32>>,
}

struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn try_take(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<IpSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A connection's cap slots (global permit, per-IP count).
type Guards = (OwnedSemaphorePermit, IpSlot);

/// What every connection of one listener shares: how to serve, the limits,
/// and the drain signals.
struct Listen {
    h1: http1::Builder,
    /// `None` when `http2 = false`.
    h2: Option<http2::Builder<TokioExecutor>>,
    limits: Limits,
    /// Request head limits on the lean path (hyper has its own copy).
    head_limits: lean::HeadLimits,
    /// Cancelled when the listener starts draining.
    shutdown: CancellationToken,
    /// Cancelled when the drain deadline passes: close at once. Always
    /// after `shutdown`, which waits that need both rely on.
    hard_stop: CancellationToken,
    /// Every connection task and upgraded connection, for the drain to wait on.
    tasks: TaskTracker,
}

/// Accept and serve until `shutdown`, then stop accepting and drain.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    // Listener settings are read once: changing [server] needs a restart.
    let cfg = shared.state().config.server.clone();
    let tls = cfg
        .tls
        .as_ref()
        .map(|t| tls::acceptor(t, cfg.http2))
        .transpose()?;
    let (h1, h2) = http_builders(&cfg);
    let listen = Arc::new(Listen {
        h1,
        h2,
        limits: Limits {
            header_read_timeout: cfg.header_read_timeout.0,
            idle_timeout: cfg.idle_timeout.0,
        },
        head_limits: lean::head_limits(max_head_buffer(&cfg), cfg.max_headers),
        shutdown: shutdown.clone(),
        hard_stop: CancellationToken::new(),
        tasks: TaskTracker::new(),
    });
    let per_ip = Arc::new(PerIp::default());
    let total = Arc::new(Semaphore::new(cfg.max_connections as usize));
    tracing::info!(listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = tls.is_some(), "gateway listening");

    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&total).try_acquire_owned() else {
            metrics::counter!("sluice_gateway_connections_refused_total", "reason" => "max_connections").increment(1);
            continue;
        };
        let Some(slot) = per_ip.try_take(peer.ip(), cfg.max_connections_per_ip) else {
            metrics::counter!("sluice_gateway_connections_refused_total", "reason" => "per_ip")
                .increment(1);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            shared: Arc::clone(&shared),
            listen: Arc::clone(&listen),
            peer,
        };
        let guards = (permit, slot);
        match &tls {
            None => {
                listen.tasks.spawn(conn.run_plain(stream, guards));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                listen.tasks.spawn(async move {
                    let handshake = tokio::time::timeout(
                        conn.listen.limits.header_read_timeout,
                        acceptor.accept(stream),
                    );
                    match handshake.await {
                        Ok(Ok(tls_stream)) => {
                            // TLS chooses the protocol by ALPN; hyper need not sniff.
                            let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            conn.run(tls_stream, guards, Activity::new(), h2, true)
                                .await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }

    drop(listener);
    listen.tasks.close();
    let drain = cfg.drain_timeout.0;
    tracing::info!(deadline = ?drain, "draining connections");
    // Connections finish their requests in flight and close; upgraded
    // connections run on until they end or the deadline passes.
    let drained = tokio::time::timeout(drain, listen.tasks.wait()).await;
    if drained.is_err() {
        tracing::warn!("drain deadline passed; closing remaining connections");
        listen.hard_stop.cancel();
    }
    Ok(())
}

/// hyper's HTTP/1 and (unless `http2 = false`) HTTP/2 connection builders.
/// Neither gets a header read timeout: the connection task enforces it, only
/// while a request head is arriving (see the module docs).
fn http_builders(cfg: &ServerConfig) -> (http1::Builder, Option<http2::Builder<TokioExecutor>>) {
    let max_buf = max_head_buffer(cfg);
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_headers(cfg.max_headers)
        .max_buf_size(max_buf)
        .keep_alive(true);
    let h2 = cfg.http2.then(|| {
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_pending_accept_reset_streams(64)
            .max_header_list_size(u32::try_from(cfg.max_header_size.0).unwrap_or(u32::MAX))
            // No server PINGs: they are traffic, so an idle HTTP/2 connection
            // would never reach idle_timeout; a dead peer is closed by it too.
            .keep_alive_interval(None);
        h2
    });
    (h1, h2)
}

/// The most bytes of a request head read before it is refused with 431:
/// `max_header_size`, but no less than hyper's smallest read buffer.
fn max_head_buffer(cfg: &ServerConfig) -> usize {
    usize::try_from(cfg.max_header_size.0)
        .unwrap_or(usize::MAX)
        .max(8192)
}

/// A stream a connection can wait on without reading from it.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready when a read would return data (or EOF).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;

    /// Read into `buf`'s spare capacity: the count, `Ok(0)` at the end.
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut bytes::BytesMut,
    ) -> Poll<std::io::Result<usize>> {
        poll_read_into(self, cx, buf)
    }
}

/// A read through `AsyncRead` into `buf`'s spare capacity.
fn poll_read_into<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    cx: &mut Context<'_>,
    buf: &mut bytes::BytesMut,
) -> Poll<std::io::Result<usize>> {
    // `read_buf`'s future holds no state between polls: one per poll is fine.
    let read = tokio::io::AsyncReadExt::read_buf(io, buf);
    std::pin::pin!(read).poll(cx)
}

impl Transport for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        poll_peek(self, cx)
    }

    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut bytes::BytesMut,
    ) -> Poll<std::io::Result<usize>> {
        // A short read forgets the readiness: no failed read per request.
        crate::socket::poll_read_buf(self, cx, buf)
    }
}

/// Ready when the socket has a byte to read or is closed. A peek, not
/// `poll_read_ready`: tokio's cached readiness can be stale (hyper may not
/// have read until `WouldBlock`), and only a failed attempt clears it.
fn poll_peek(tcp: &TcpStream, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
    let mut byte = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut byte);
    tcp.poll_peek(cx, &mut buf).map_ok(|_| ())
}

impl<S: Transport> Transport for Rewind<S> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // Bytes put back are ready without the socket's say.
        if self.has_prefix() {
            return Poll::Ready(Ok(()));
        }
        self.get_ref().poll_read_ready(cx)
    }

    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut bytes::BytesMut,
    ) -> Poll<std::io::Result<usize>> {
        if self.has_prefix() {
            return poll_read_into(self, cx, buf);
        }
        self.get_mut().poll_fill(cx, buf)
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let (tcp, tls) = self.get_ref();
        // rustls may hold decrypted bytes that no socket event will announce.
        if !tls.wants_read() {
            return Poll::Ready(Ok(()));
        }
        poll_peek(tcp, cx)
    }
}

/// The service's future, boxed: hyper's HTTP/1 dispatcher keeps a box sized
/// to it for the connection's whole life, so an unboxed `proxy::handle` state
/// machine (4.5 KiB) would sit in every keep-alive connection.
type HandlerFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send>>;

/// How a served hyper connection ended.
enum Ended {
    Closed,
    /// Idle HTTP/1: hyper's state is gone, the stream is back in the `Hold`.
    Parked,
}

/// What a request handler can reach of the connection it runs on.
#[derive(Clone)]
struct ConnScope {
    listen: Arc<Listen>,
    activity: Activity,
}

tokio::task_local! {
    // Set around each request's handler, so that an upgrade started inside
    // `proxy` runs under its connection's listener (drain, idle timeout).
    static SCOPE: ConnScope;
}

/// Run an upgraded connection's `tunnel` (both sides joined) in the
/// background. Under a listener, it is closed when its client side moves no
/// byte for `idle_timeout` or when the drain deadline passes, and the drain
/// waits for it until then.
pub(crate) fn spawn_upgraded<F>(tunnel: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match SCOPE.try_with(ConnScope::clone) {
        Ok(scope) => {
            let tasks = scope.listen.tasks.clone();
            tasks.spawn(scope.supervise(tunnel));
        }
        Err(_) => {
            tokio::spawn(tunnel);
        }
    }
}

impl ConnScope {
    async fn supervise<F: Future<Output = ()>>(self, tunnel: F) {
        tokio::pin!(tunnel);
        let idle_timeout = self.listen.limits.idle_timeout;
        loop {
            let deadline = self.activity.last() + idle_timeout;
            tokio::select! {
                () = &mut tunnel => return,
                _ = self.listen.hard_stop.cancelled() => {
                    tracing::debug!("drain deadline passed; closing upgraded connection");
                    return;
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if self.activity.idle_for() >= idle_timeout {
                        tracing::debug!("closing idle upgraded connection");
                        return;
                    }
                }
            }
        }
    }
}

struct Conn {
    shared: Arc<Shared>,
    listen: Arc<Listen>,
    peer: SocketAddr,
}

impl Conn {
    /// Plain TCP: learn the protocol from the first bytes (HTTP/2 by its
    /// preface), without reading them, then serve.
    async fn run_plain(self, stream: TcpStream, guards: Guards) {
        let activity = Activity::new();
        let deadline = Instant::now() + self.listen.limits.header_read_timeout;
        let h2 = match &self.listen.h2 {
            None => false,
            Some(_) => match tokio::time::timeout_at(deadline.into(), sniff_h2c(&stream)).await {
                Ok(Ok(Some(h2))) => h2,
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %self.peer, error = %e, "connection failed before its first request");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %self.peer, "closing connection that sent no request in time");
                    return;
                }
            },
        };
        self.run(stream, guards, activity, h2, false).await;
    }

    async fn run<S: Transport>(
        self,
        stream: S,
        guards: Guards,
        activity: Activity,
        h2: bool,
        tls: bool,
    ) {
        // Hyper writes from the map; the lean path opts in to raw fields.
        let info = ConnInfo {
            peer: self.peer,
            tls,
            raw_fields: false,
        };
        let svc = {
            let shared = Arc::clone(&self.shared);
            let scope = ConnScope {
                listen: Arc::clone(&self.listen),
                activity: activity.clone(),
            };
            service_fn(move |req: Request<Incoming>| -> HandlerFuture {
                let shared = Arc::clone(&shared);
                // In flight until hyper drops the response body: idle means no request at all.
                let in_flight = scope.activity.request();
                // A request without a body keeps none (no box, no
                // connection to hyper's body channel).
                let req = req.map(|b| {
                    if b.is_end_stream() {
                        body::empty()
                    } else {
                        body::boxed(b)
                    }
                });
                Box::pin(SCOPE.scope(scope.clone(), async move {
                    // No raw fields are asked for here; should any come,
                    // hyper still writes them, from the map.
                    let resp = proxy::handle(shared, req, info, Instant::now(), None)
                        .await
                        .into_response();
                    Ok(resp.map(|b| Guarded::wrap(b, in_flight)))
                }))
            })
        };
        metrics::gauge!("sluice_gateway_open_connections").increment(1.0);
        match &self.listen.h2 {
            Some(builder) if h2 => {
                let hold = Hold::new(guards);
                let io = TokioIo::new(IdleIo::new(stream, activity.clone(), hold));
                // Boxed, so that HTTP/2's larger state does not size every
                // connection task.
                let conn = crate::out_of_line::boxed(|| builder.serve_connection(io, svc));
                self.drive(conn, &activity, false, |c| c.graceful_shutdown())
                    .await;
            }
            _ => {
                let hold = Hold::new(guards);
                // Plain connections start on the lean path; a request it
                // leaves to hyper makes the connection hyper's until hyper
                // parks it (at a request boundary, nothing buffered).
                let mut lean = !tls;
                let mut stream = Some(Rewind::new(stream));
                while let Some(mut s) = stream.take() {
                    if !self.await_bytes(&s, &activity).await {
                        break;
                    }
                    activity.unpark();
                    if lean {
                        // Boxed: a parked connection keeps none of it.
                        let served =
                            crate::out_of_line::boxed(|| self.serve_lean(&mut s, &activity, info));
                        match served.await {
                            lean::Ended::Closed => break,
                            lean::Ended::Parked => {
                                stream = Some(s);
                                continue;
                            }
                            lean::Ended::Hyper(read) => s.rewind(read),
                        }
                    }
                    let io = TokioIo::new(IdleIo::new(s, activity.clone(), Arc::clone(&hold)));
                    // Boxed: a parked connection keeps none of it.
                    let conn = crate::out_of_line::boxed(|| {
                        self.listen
                            .h1
                            .serve_connection(io, svc.clone())
                            .with_upgrades()
                    });
                    match self
                        .drive(conn, &activity, true, |c| c.graceful_shutdown())
                        .await
                    {
                        Ended::Closed => break,
                        Ended::Parked => {
                            stream = hold.take_parked();
                            lean = !tls;
                        }
                    }
                }
            }
        }
        metrics::gauge!("sluice_gateway_open_connections").decrement(1.0);
    }

    /// Wait, holding only the stream, until the client sends something.
    /// False when the connection should close instead: no first request in
    /// time, idle too long, draining.
    async fn await_bytes<S: Transport>(&self, stream: &S, activity: &Activity) -> bool {
        let limits = self.listen.limits;
        loop {
            let deadline = if activity.served_any() {
                activity.last() + limits.idle_timeout
            } else {
                activity.opened() + limits.header_read_timeout
            };
            tokio::select! {
                ready = std::future::poll_fn(|cx| stream.poll_read_ready(cx)) => return ready.is_ok(),
                _ = self.listen.shutdown.cancelled() => return false,
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if Instant::now() >= deadline {
                        tracing::debug!(peer = %self.peer, "closing idle connection");
                        return false;
                    }
                }
            }
        }
    }

    /// Run `conn` until it ends, closing it when the activity calls for it,
    /// parking it (HTTP/1) when idle, and shutting it down gracefully on drain.
    async fn drive<F>(
        &self,
        mut conn: Pin<Box<F>>,
        activity: &Activity,
        http1: bool,
        graceful: fn(Pin<&mut F>),
    ) -> Ended
    where
        F: Future<Output = Result<(), hyper::Error>>,
    {
        // Once draining or parking, the connection only has to finish.
        let mut stopping = false;
        // One timer, moved as the deadline moves, rather than one per wake-up.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            let deadline = match activity.verdict(self.listen.limits, http1) {
                _ if stopping => None,
                Verdict::Wait(at) => at,
                Verdict::Close(reason) => {
                    tracing::debug!(peer = %self.peer, reason, "closing connection");
                    return Ended::Closed;
                }
                Verdict::Park => {
                    activity.start_parking();
                    graceful(conn.as_mut());
                    stopping = true;
                    None
                }
            };
            if deadline != armed {
                if let Some(at) = deadline {
                    timer.as_mut().reset(at.into());
                }
                armed = deadline;
                activity.arm(armed, self.listen.limits.header_read_timeout);
            }
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = self.listen.hard_stop.cancelled() => return Ended::Closed,
                _ = self.listen.shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    graceful(conn.as_mut());
                }
                () = activity.changed() => {}
                () = &mut timer, if armed.is_some() => armed = None,
            }
        }
        // Dropping hyper's connection drops the IO, which hands the stream
        // back when parking.
        drop(conn);
        if activity.take_parking() {
            Ended::Parked
        } else {
            Ended::Closed
        }
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client opens with the HTTP/2 preface, judged from its first
/// bytes without consuming them (hyper reads them again); `None` when it
/// closes first. Unlike hyper-util's auto builder, this leaves hyper's first
/// read whole, so its read buffer is never grown past 8 KiB by a split head.
async fn sniff_h2c(stream: &TcpStream) -> std::io::Result<Option<bool>> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(Some(false));
        }
        if n == H2_PREFACE.len() {
            return Ok(Some(true));
        }
        // A preface split across packets: peek again once more has arrived.
        // (Readiness stays set while unread bytes wait, so poll with a pause.)
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
