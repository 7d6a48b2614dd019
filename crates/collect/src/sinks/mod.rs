//! Sink kinds, one file each, behind one batching loop: records collect
//! until `batch.max_records`, `batch.max_bytes` or `batch.timeout`, then
//! the batch is written as one unit. A failed write is retried with
//! exponential backoff and jitter until it succeeds (or the drain deadline
//! stops the pipeline); only a written batch is acknowledged. Records that
//! can never be written are the sink's to set aside (the SQLite and
//! PostgreSQL sinks' dead-letter tables), so they do not stall the rest.

mod jsonl;
mod postgres;
mod sqlite;
mod stdout;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{Batch, Retry, SinkKind};
use crate::pipeline::{Backoff, SinkCounters};
use crate::record::Record;

/// A failed write of a whole batch (it is retried).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct WriteError(pub(crate) String);

enum Writer {
    Sqlite(sqlite::SqliteWriter),
    Jsonl(jsonl::JsonlWriter),
    Stdout(stdout::StdoutWriter),
    Postgres(postgres::PostgresWriter),
}

impl Writer {
    async fn write(&mut self, batch: &[Record]) -> Result<(), WriteError> {
        match self {
            Writer::Sqlite(w) => w.write(batch).await,
            Writer::Jsonl(w) => w.write(batch).await,
            Writer::Stdout(w) => w.write(batch).await,
            Writer::Postgres(w) => w.write(batch).await,
        }
    }
}

/// An opened sink, ready to run.
pub(crate) struct SinkTask {
    name: String,
    kind: &'static str,
    writer: Writer,
    batch: Batch,
    retry: Retry,
    counters: Arc<SinkCounters>,
}

/// Open what the sink writes to (so a bad path fails the start).
pub(crate) async fn open(
    name: &str,
    kind: &SinkKind,
    counters: Arc<SinkCounters>,
) -> Result<SinkTask, String> {
    let (writer, batch, retry) = match kind {
        SinkKind::Sqlite(c) => (
            Writer::Sqlite(sqlite::SqliteWriter::open(name, c, counters.clone()).await?),
            c.batch.clone(),
            c.retry.clone(),
        ),
        SinkKind::Jsonl(c) => (
            Writer::Jsonl(jsonl::JsonlWriter::open(c)?),
            c.batch.clone(),
            c.retry.clone(),
        ),
        SinkKind::Postgres(c) => (
            Writer::Postgres(postgres::PostgresWriter::open(name, c, counters.clone()).await?),
            c.batch.clone(),
            c.retry.clone(),
        ),
        SinkKind::Stdout(c) => (
            Writer::Stdout(stdout::StdoutWriter),
            c.batch.clone(),
            Retry::default(),
        ),
    };
    Ok(SinkTask {
        name: name.to_owned(),
        kind: kind.name(),
        writer,
        batch,
        retry,
        counters,
    })
}

impl SinkTask {
    /// The sink's kind, for its span.
    pub(crate) fn kind(&self) -> &'static str {
        self.kind
    }

    /// Write batches until the input closes and the last batch is written.
    ///
    /// Once `draining` is cancelled (the pipeline is shutting down) a batch
    /// no longer waits for `batch.timeout`: it is written as soon as no more
    /// records are ready. Sources hold their outputs open until what they
    /// sent is acknowledged, which needs this write, so waiting for the
    /// timeout would only run the drain into its deadline.
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Record>,
        draining: tokio_util::sync::CancellationToken,
    ) {
        let mut batch: Vec<Record> = Vec::with_capacity(self.batch.max_records.min(4096));
        let mut bytes = 0usize;
        let mut deadline = Instant::now();
        let mut open = true;
        let mut timeout = self.batch.timeout.0;
        let mut drained = false;
        while open || !batch.is_empty() {
            let flush = tokio::select! {
                biased;
                r = rx.recv(), if open => match r {
                    Some(r) => {
                        if batch.is_empty() {
                            deadline = Instant::now() + timeout;
                        }
                        bytes += r.payload.size();
                        batch.push(r);
                        batch.len() >= self.batch.max_records || bytes as u64 >= self.batch.max_bytes.0
                    }
                    None => {
                        open = false;
                        true
                    }
                },
                () = draining.cancelled(), if !drained => {
                    drained = true;
                    timeout = Duration::ZERO;
                    deadline = Instant::now();
                    false
                }
                _ = tokio::time::sleep_until(deadline), if !batch.is_empty() => true,
            };
            if flush && !batch.is_empty() {
                self.flush(&mut batch).await;
                bytes = 0;
            }
        }
        tracing::debug!("sink drained");
    }

    async fn flush(&mut self, batch: &mut Vec<Record>) {
        let mut backoff = Backoff::new(self.retry.initial.0, self.retry.max.0);
        loop {
            match self.writer.write(batch).await {
                Ok(()) => break,
                Err(e) => {
                    let wait: Duration = backoff.next_wait();
                    metrics::counter!("sluice_collect_sink_retries_total", "sink" => self.name.clone())
                        .increment(1);
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, records = batch.len(), wait_ms = wait.as_millis() as u64, "write failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        metrics::counter!("sluice_collect_sink_records_total", "sink" => self.name.clone())
            .increment(batch.len() as u64);
        self.counters
            .records_out
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        // Lag: how long the oldest record of the batch took from its source
        // to here.
        let now = SystemTime::now();
        let lag = batch
            .iter()
            .filter_map(|r| now.duration_since(r.timestamp).ok())
            .max()
            .unwrap_or_default();
        metrics::histogram!("sluice_collect_sink_lag_seconds", "sink" => self.name.clone())
            .record(lag.as_secs_f64());
        self.counters
            .lag_ms
            .store(lag.as_millis() as u64, Ordering::Relaxed);
        for r in batch.drain(..) {
            r.commit();
        }
    }
}
