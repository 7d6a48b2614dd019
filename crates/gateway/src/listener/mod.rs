//! The public listener: accepts TCP (and TLS) connections under global and
//! per-client-IP caps, serves HTTP/1.1 and HTTP/2 on each with hyper, closes
//! idle and slow connections, and drains on shutdown.

mod idle;
mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::gateway::{Error, Shared};
use crate::proxy::guarded::Guarded;
use crate::proxy::{self, ConnInfo};

use idle::{Activity, IdleIo};

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
    let builder = Arc::new(http_builder(&cfg));
    let per_ip = Arc::new(PerIp::default());
    let total = Arc::new(Semaphore::new(cfg.max_connections as usize));
    let graceful = GracefulShutdown::new();
    // Cancelled when the drain deadline passes: connections still open close then.
    let hard_stop = CancellationToken::new();
    let conns = tokio_util::task::TaskTracker::new();
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
            builder: Arc::clone(&builder),
            // Each connection holds only a watcher, so that `serve` keeps the
            // one `GracefulShutdown` that can signal them all.
            graceful: Some(graceful.watcher()),
            shutdown: shutdown.clone(),
            hard_stop: hard_stop.clone(),
            idle_timeout: cfg.idle_timeout.0,
            handshake_timeout: cfg.header_read_timeout.0,
            peer,
            guards: Some((permit, slot)),
        };
        match &tls {
            None => {
                conns.spawn(conn.run(stream, false));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    match tokio::time::timeout(conn.handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls_stream)) => conn.run(tls_stream, true).await,
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
    conns.close();
    let drain = cfg.drain_timeout.0;
    tracing::info!(deadline = ?drain, "draining connections");
    // Connections finish their requests in flight, then close.
    let drained = tokio::time::timeout(drain, async {
        graceful.shutdown().await;
        conns.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("drain deadline passed; closing remaining connections");
        hard_stop.cancel();
    }
    Ok(())
}

/// How connections are served: `auto` detects HTTP/2 by its preface; with
/// `http2 = false` plain HTTP/1 is used instead, because the auto builder's
/// `http1_only` is ignored by `serve_connection_with_upgrades`.
struct HttpBuilder {
    auto: auto::Builder<TokioExecutor>,
    http1_only: Option<hyper::server::conn::http1::Builder>,
}

fn http_builder(cfg: &ServerConfig) -> HttpBuilder {
    let max_buf = usize::try_from(cfg.max_header_size.0)
        .unwrap_or(usize::MAX)
        .max(8192);
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout.0)
        .max_headers(cfg.max_headers)
        .max_buf_size(max_buf)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_pending_accept_reset_streams(64)
        .max_header_list_size(u32::try_from(cfg.max_header_size.0).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let http1_only = (!cfg.http2).then(|| {
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(cfg.header_read_timeout.0)
            .max_headers(cfg.max_headers)
            .max_buf_size(max_buf)
            .keep_alive(true);
        h1
    });
    HttpBuilder {
        auto: b,
        http1_only,
    }
}

struct Conn {
    shared: Arc<Shared>,
    builder: Arc<HttpBuilder>,
    graceful: Option<Watcher>,
    /// Cancelled when the listener starts draining.
    shutdown: CancellationToken,
    /// Cancelled when the drain deadline passes: close at once.
    hard_stop: CancellationToken,
    idle_timeout: Duration,
    /// Bounds the TLS handshake and the wait for the first request.
    handshake_timeout: Duration,
    peer: SocketAddr,
    /// Cap slots (global permit, per-IP count), released when the IO drops.
    guards: Option<(OwnedSemaphorePermit, IpSlot)>,
}

impl Conn {
    async fn run<S>(mut self, stream: S, tls: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        // The IO holds the cap slots: an upgraded connection keeps them until it closes.
        let io = TokioIo::new(IdleIo::new(stream, activity.clone(), self.guards.take()));
        let info = ConnInfo {
            peer: self.peer,
            tls,
        };
        let shared = Arc::clone(&self.shared);
        let requests = activity.clone();
        let svc = service_fn(move |req| {
            let shared = Arc::clone(&shared);
            // In flight until hyper drops the response body: idle means no request at all.
            let in_flight = requests.request();
            async move {
                let resp = proxy::handle(shared, req, info).await;
                Ok::<_, std::convert::Infallible>(resp.map(|b| Guarded::wrap(b, in_flight)))
            }
        });
        metrics::gauge!("sluice_gateway_open_connections").increment(1.0);
        match &self.builder.http1_only {
            Some(h1) => {
                // hyper-util's GracefulShutdown cannot watch an upgradeable
                // HTTP/1 connection, so drain it from the shutdown token.
                let conn = h1.serve_connection(io, svc).with_upgrades();
                self.drive(conn, &activity, |c| c.graceful_shutdown()).await;
            }
            None => {
                let conn = self.builder.auto.serve_connection_with_upgrades(io, svc);
                let watcher = self.graceful.take().expect("a connection is served once");
                let conn = watcher.watch(conn.into_owned());
                self.drive(conn, &activity, |_| {}).await;
            }
        }
        metrics::gauge!("sluice_gateway_open_connections").decrement(1.0);
    }

    /// Run `conn` to its end, closing it early when it sends no request in
    /// time or sits idle.
    async fn drive<F, E>(&self, conn: F, activity: &Activity, drain: impl FnOnce(Pin<&mut F>))
    where
        F: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        tokio::pin!(conn);
        let mut drain = Some(drain);
        let tick =
            (self.idle_timeout.min(self.handshake_timeout) / 4).max(Duration::from_millis(20));
        loop {
            tokio::select! {
                res = &mut conn => {
                    if let Err(e) = res {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = self.hard_stop.cancelled() => break,
                _ = self.shutdown.cancelled(), if drain.is_some() => {
                    if let Some(drain) = drain.take() {
                        drain(conn.as_mut());
                    }
                }
                _ = tokio::time::sleep(tick) => {
                    // hyper's header_read_timeout starts only once HTTP/1 is
                    // chosen; a client that sends nothing (or too little to
                    // tell the version) is bounded here instead.
                    if !activity.any_request() && activity.age() >= self.handshake_timeout {
                        tracing::debug!(peer = %self.peer, "closing connection that sent no request in time");
                        break;
                    }
                    if !activity.busy() && activity.idle_for() >= self.idle_timeout {
                        tracing::debug!(peer = %self.peer, "closing idle connection");
                        break;
                    }
                }
            }
        }
    }
}
