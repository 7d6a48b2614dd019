//! Source kinds, one file each (`file`, `tcp`, `http_push`,
//! `http_poll`, `nats`, `mqtt`, `crawl`). Every source runs as one task whose
//! `tokio::select!` loop polls shutdown first (`biased`), then its input,
//! and sends with a reserved slot; [`run`] picks the kind.

mod crawl;
mod file;
mod http_poll;
mod http_push;
mod lines;
mod mqtt;
mod nats;
mod tcp;

use std::net::{SocketAddr, TcpListener};

use crate::config::SourceKind;
use crate::pipeline::{SourceCtx, SourceError};

/// Bind a listening source's address once, at start, so a restart reuses it
/// and a bad address fails the start.
pub(crate) fn bind(kind: &SourceKind) -> Result<Option<TcpListener>, (SocketAddr, std::io::Error)> {
    let addr = match kind {
        SourceKind::Tcp(t) => t.address,
        SourceKind::HttpPush(h) => h.address,
        SourceKind::File(_)
        | SourceKind::Nats(_)
        | SourceKind::Mqtt(_)
        | SourceKind::HttpPoll(_)
        | SourceKind::Crawl(_) => return Ok(None),
    };
    let l = TcpListener::bind(addr).map_err(|e| (addr, e))?;
    l.set_nonblocking(true).map_err(|e| (addr, e))?;
    Ok(Some(l))
}

/// One run of a source, until shutdown (`Ok`) or failure (`Err`).
pub(crate) async fn run(
    ctx: &SourceCtx,
    kind: &SourceKind,
    listener: Option<&TcpListener>,
) -> Result<(), SourceError> {
    let listener = || -> Result<tokio::net::TcpListener, SourceError> {
        let l = listener
            .ok_or_else(|| SourceError("listener missing".to_owned()))?
            .try_clone()?;
        Ok(tokio::net::TcpListener::from_std(l)?)
    };
    match kind {
        SourceKind::File(f) => file::run(ctx, f).await,
        SourceKind::Tcp(t) => tcp::run(ctx, t, listener()?).await,
        SourceKind::HttpPush(h) => http_push::run(ctx, h, listener()?).await,
        SourceKind::Nats(n) => nats::run(ctx, n).await,
        SourceKind::Mqtt(m) => mqtt::run(ctx, m).await,
        SourceKind::HttpPoll(h) => http_poll::run(ctx, h).await,
        SourceKind::Crawl(c) => crawl::run(ctx, c).await,
    }
}
