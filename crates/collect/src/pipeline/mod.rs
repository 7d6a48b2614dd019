//! Wiring a [`Config`] into running tasks: one input channel per transform
//! and sink, one [`Output`] per source and transform, every source under a
//! supervisor that restarts it with backoff, and a drain with a deadline.
//! The wiring itself is in `graph`, which also applies a reload
//! ([`Pipeline::reload`]); `stats` keeps the live counters.
//!
//! Shutdown: the token stops the sources; each drops its output, so the
//! channels close one stage after another while transforms and sinks
//! deliver what is in them; sources keep listening for acknowledgements
//! until the last one arrives. Whatever is not done at `drain_timeout` is
//! aborted — its records were never acknowledged, so their positions were
//! never committed and they are read again on the next start.

mod backoff;
mod graph;
mod output;
mod stats;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use backoff::Backoff;
pub use graph::ReloadReport;
pub(crate) use output::{Output, TryError};
pub(crate) use stats::SinkCounters;
pub use stats::{SinkStats, SourceStats, Stats};

use crate::config::{Config, SourceKind, WhenFull};
use crate::record::{Ack, AckCounts, Acked, Record};
use crate::sources;

/// Why a pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config has problems.
    #[error("invalid config:\n{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<sluice_tomlspan::Problem>),
    /// A listening source could not bind its address.
    #[error("source {source_name}: cannot listen on {address}: {error}")]
    Bind {
        /// The source.
        source_name: String,
        /// Its address.
        address: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// A sink could not open what it writes to.
    #[error("sink {sink}: {message}")]
    Sink {
        /// The sink.
        sink: String,
        /// Why.
        message: String,
    },
    /// The data directory could not be created.
    #[error("data_dir {path}: {error}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// A reload asked for something only a restart can do, or came after
    /// shutdown.
    #[error("reload refused: {0}")]
    Reload(String),
}

/// What every source task gets.
#[derive(Clone)]
pub(crate) struct SourceCtx {
    /// The source's name.
    pub(crate) name: Arc<str>,
    /// Where its records go.
    pub(crate) output: Output,
    /// Cancelled when the pipeline stops.
    pub(crate) shutdown: CancellationToken,
    /// What to do when the output is full.
    pub(crate) when_full: WhenFull,
    /// Where durable positions live.
    pub(crate) data_dir: std::path::PathBuf,
    /// `sluice_collect_source_records_total` for this source.
    records: metrics::Counter,
    /// `sluice_collect_source_dropped_total` for this source.
    dropped: metrics::Counter,
    /// The live counters behind `--stats`.
    counters: Arc<stats::SourceCounters>,
}

impl SourceCtx {
    /// Hand over a record just read. With `block` it comes back, to be sent
    /// when [`Output::reserve`] has room; with `drop_newest` it is sent now
    /// if there is room, else dropped, counted and acknowledged (the source
    /// moves on), and `None` comes back. `Err` when nothing reads the output.
    pub(crate) fn offer(&self, record: Record) -> Result<Option<Record>, output::Closed> {
        self.offer_as(record, true)
    }

    /// Like [`SourceCtx::offer`], but a record dropped by `drop_newest` is
    /// counted and *not* acknowledged as committed: its acknowledgement
    /// fails, so a source that can fetch it again (the crawler keeps the
    /// page queued) does so on its next run instead of losing it.
    pub(crate) fn offer_or_retry(&self, record: Record) -> Result<Option<Record>, output::Closed> {
        self.offer_as(record, false)
    }

    fn offer_as(
        &self,
        record: Record,
        commit_dropped: bool,
    ) -> Result<Option<Record>, output::Closed> {
        match self.when_full {
            WhenFull::Block => Ok(Some(record)),
            WhenFull::DropNewest => match self.output.try_reserve() {
                Ok(p) => {
                    self.count_in();
                    p.send(record);
                    Ok(None)
                }
                Err(TryError::Full) => {
                    self.dropped.increment(1);
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    if commit_dropped {
                        record.commit();
                    }
                    Ok(None)
                }
                Err(TryError::Closed) => Err(output::Closed),
            },
        }
    }

    /// Count one record sent on.
    pub(crate) fn count_in(&self) {
        self.records.increment(1);
        self.counters.records_in.fetch_add(1, Ordering::Relaxed);
    }

    /// A new acknowledgement, counted for this source's `acks_pending`.
    pub(crate) fn ack(&self, seq: u64, tx: &mpsc::UnboundedSender<Acked>) -> Ack {
        Ack::counted(seq, tx.clone(), &self.counters.acks)
    }

    /// This source's acknowledgement counts.
    pub(crate) fn ack_counts(&self) -> Arc<AckCounts> {
        Arc::clone(&self.counters.acks)
    }
}

/// A source's run ended with an error; its supervisor restarts it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct SourceError(pub(crate) String);

impl From<std::io::Error> for SourceError {
    fn from(e: std::io::Error) -> Self {
        SourceError(e.to_string())
    }
}

impl From<output::Closed> for SourceError {
    fn from(_: output::Closed) -> Self {
        SourceError("output closed".to_owned())
    }
}

/// What the pipeline's tasks and its handles share.
struct Shared {
    graph: tokio::sync::Mutex<graph::Graph>,
    tracker: TaskTracker,
    /// Every task spawned, to abort what is left at the drain deadline.
    aborts: Mutex<Vec<AbortHandle>>,
    addresses: Mutex<BTreeMap<String, SocketAddr>>,
    registry: stats::Registry,
    shutdown: CancellationToken,
    drain_timeout: Mutex<Duration>,
}

impl Shared {
    fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let handle = self.tracker.spawn(task);
        let mut aborts = self.aborts.lock().unwrap_or_else(|e| e.into_inner());
        aborts.retain(|a| !a.is_finished());
        aborts.push(handle.abort_handle());
        handle
    }

    fn drain_timeout(&self) -> Duration {
        *self.drain_timeout.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running pipeline.
pub struct Pipeline {
    shared: Arc<Shared>,
}

/// A handle on a running pipeline, for reloads and stats while
/// [`Pipeline::wait`] runs (the binary's SIGHUP handler holds one).
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Pipeline {
    /// Validate `config`, open every sink, bind every listener and start all
    /// tasks. Stops when `shutdown` is cancelled (then call [`Pipeline::wait`]).
    pub async fn start(
        config: Config,
        shutdown: CancellationToken,
    ) -> Result<Pipeline, StartError> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(StartError::Invalid(problems));
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|error| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            error,
        })?;
        let shared = Arc::new(Shared {
            graph: tokio::sync::Mutex::new(graph::Graph::default()),
            tracker: TaskTracker::new(),
            aborts: Mutex::new(Vec::new()),
            addresses: Mutex::new(BTreeMap::new()),
            registry: stats::Registry::default(),
            shutdown,
            drain_timeout: Mutex::new(config.drain_timeout.0),
        });
        let (sources, transforms, sinks) = (
            config.sources.len(),
            config.transforms.len(),
            config.sinks.len(),
        );
        {
            let mut g = shared.graph.lock().await;
            g.apply(&shared, config).await?;
        }
        // The gauges of the `metrics` facade, every second.
        let publisher = Arc::downgrade(&shared);
        let stop = shared.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(shared) = publisher.upgrade() else {
                    return;
                };
                stats::publish(&shared.registry.snapshot());
            }
        });
        tracing::info!(sources, transforms, sinks, "pipeline started");
        Ok(Pipeline { shared })
    }

    /// The address a listening source (`tcp`, `http_push`) is bound to.
    pub fn local_addr(&self, source: &str) -> Option<SocketAddr> {
        self.handle().local_addr(source)
    }

    /// A handle for reloads and stats.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Apply a new config to the running pipeline: see [`Handle::reload`].
    pub async fn reload(&self, config: Config) -> Result<ReloadReport, StartError> {
        self.handle().reload(config).await
    }

    /// The live counters of every source and sink.
    pub fn stats(&self) -> Stats {
        self.shared.registry.snapshot()
    }

    /// Wait for shutdown, then for the drain (at most `drain_timeout`).
    /// Returns whether everything drained in time.
    pub async fn wait(self) -> bool {
        let shared = self.shared;
        shared.shutdown.cancelled().await;
        // A reload in progress finishes its wiring first; later ones are refused.
        let _graph = shared.graph.lock().await;
        shared.tracker.close();
        let drained = tokio::time::timeout(shared.drain_timeout(), shared.tracker.wait())
            .await
            .is_ok();
        if !drained {
            let aborts =
                std::mem::take(&mut *shared.aborts.lock().unwrap_or_else(|e| e.into_inner()));
            tracing::warn!(
                left = aborts.iter().filter(|a| !a.is_finished()).count(),
                "drain deadline passed; aborting (unacknowledged records will be read again)"
            );
            for a in aborts {
                a.abort();
            }
            shared.tracker.wait().await;
        }
        drained
    }
}

impl Handle {
    /// The address a listening source (`tcp`, `http_push`) is bound to.
    pub fn local_addr(&self, source: &str) -> Option<SocketAddr> {
        let a = self
            .shared
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        a.get(source).copied()
    }

    /// The live counters of every source and sink.
    pub fn stats(&self) -> Stats {
        self.shared.registry.snapshot()
    }

    /// Apply a new config without stopping the pipeline. An invalid config
    /// changes nothing. Sources whose settings are unchanged keep running
    /// (their outputs are rewired to the new consumers); transforms and
    /// sinks whose kind and settings are unchanged keep running even when
    /// their `inputs` change. Changed components are replaced: the old one
    /// stops taking new records, drains what it holds (at most
    /// `drain_timeout`), and then the new one starts on a channel that
    /// buffered in the meantime, so no record is lost or written twice by
    /// two writers at once. Removed components drain and stop; added ones
    /// start. `data_dir` cannot change (a restart can). Reloads run one at
    /// a time.
    pub async fn reload(&self, config: Config) -> Result<ReloadReport, StartError> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(StartError::Invalid(problems));
        }
        let mut g = self.shared.graph.lock().await;
        if self.shared.shutdown.is_cancelled() {
            return Err(StartError::Reload("the pipeline is stopping".to_owned()));
        }
        let report = g.apply(&self.shared, config).await?;
        tracing::info!(
            started = ?report.started,
            restarted = ?report.restarted,
            stopped = ?report.stopped,
            unchanged = report.unchanged.len(),
            "config reloaded"
        );
        Ok(report)
    }
}

/// Run a source until shutdown, restarting it with backoff when it fails.
async fn supervise(ctx: SourceCtx, kind: SourceKind, bound: Option<std::net::TcpListener>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let started = Instant::now();
        ctx.counters.starts.fetch_add(1, Ordering::Relaxed);
        let result = sources::run(&ctx, &kind, bound.as_ref()).await;
        if ctx.shutdown.is_cancelled() {
            return;
        }
        let error = match result {
            Ok(()) => "stopped by itself".to_owned(),
            Err(e) => e.0,
        };
        if started.elapsed() > Duration::from_secs(30) {
            backoff.reset();
        }
        let wait = backoff.next_wait();
        metrics::counter!("sluice_collect_source_restarts_total", "source" => ctx.name.to_string())
            .increment(1);
        ctx.counters.restarts.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %error, wait_ms = wait.as_millis() as u64, "source failed; restarting");
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
