//! `tcp`: newline-delimited records from any number of connections.
//!
//! TCP has no acknowledgement to give back, so records carry none: what a
//! connection has sent is delivered as long as the process runs. A line
//! longer than `max_line_length` is skipped up to its newline and counted;
//! the connection goes on.

use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::lines::{Lines, Split};
use crate::config::TcpSource;
use crate::pipeline::{SourceCtx, SourceError};
use crate::record::{Payload, Record};

pub(crate) async fn run(
    ctx: &SourceCtx,
    cfg: &TcpSource,
    listener: TcpListener,
) -> Result<(), SourceError> {
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let mut conns = JoinSet::new();
    tracing::info!(address = %cfg.address, "listening");
    loop {
        let permit = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => p.map_err(|e| SourceError(e.to_string()))?,
        };
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ctx = ctx.clone();
                    let max = cfg.max_line_length.0 as usize;
                    let span = tracing::debug_span!("connection", client.addr = %peer);
                    conns.spawn(async move {
                        connection(&ctx, stream, max).await;
                        drop(permit);
                    }.instrument(span));
                }
                // Per-connection errors (reset before accept, out of fds):
                // wait a little rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}

async fn connection(ctx: &SourceCtx, mut stream: TcpStream, max: usize) {
    let mut lines = Lines::new(0, max);
    let mut buf = bytes::BytesMut::with_capacity(8 << 10);
    let mut pending: Option<Record> = None;
    let mut eof = false;
    loop {
        if pending.is_none() {
            let split = if eof { lines.finish() } else { lines.next() };
            match split {
                Some(Split::Line { text, .. }) => {
                    match ctx.offer(Record::new(ctx.name.clone(), Payload::Text(text))) {
                        Ok(p) => pending = p,
                        Err(_) => return,
                    }
                    continue;
                }
                Some(Split::TooLong) => {
                    metrics::counter!("sluice_collect_source_lines_too_long_total", "source" => ctx.name.to_string())
                        .increment(1);
                    tracing::warn!(max, "line too long; skipped");
                    continue;
                }
                None if eof => return,
                None => {}
            }
        }
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return,
            permit = ctx.output.reserve(), if pending.is_some() => {
                let Ok(permit) = permit else { return };
                if let Some(r) = pending.take() {
                    ctx.count_in();
                    permit.send(r);
                }
            }
            // Cancel-safe: if another branch wins, nothing was read.
            n = stream.read_buf(&mut buf), if pending.is_none() => match n {
                Ok(0) => eof = true,
                Ok(_) => {
                    lines.push(&buf);
                    buf.clear();
                }
                Err(e) => {
                    tracing::debug!(error = %e, "connection error");
                    return;
                }
            },
        }
    }
}
