//! Wiring a [`Config`] into running tasks: one input channel per transform
//! and sink, one [`Output`] per source and transform, every source under a
//! supervisor that restarts it with backoff, and a drain with a deadline.
//!
//! Shutdown: the token stops the sources; each drops its output, so the
//! channels close one stage after another while transforms and sinks
//! deliver what is in them; sources keep listening for acknowledgements
//! until the last one arrives. Whatever is not done at `drain_timeout` is
//! aborted — its records were never acknowledged, so their positions were
//! never committed and they are read again on the next start.

mod backoff;
mod output;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub(crate) use backoff::Backoff;
pub(crate) use output::{Output, TryError};

use crate::config::{Config, SourceKind, WhenFull};
use crate::record::Record;
use crate::{sinks, sources, transforms};

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
}

impl SourceCtx {
    /// Hand over a record just read. With `block` it comes back, to be sent
    /// when [`Output::reserve`] has room; with `drop_newest` it is sent now
    /// if there is room, else dropped, counted and acknowledged (the source
    /// moves on), and `None` comes back. `Err` when nothing reads the output.
    pub(crate) fn offer(&self, record: Record) -> Result<Option<Record>, output::Closed> {
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
                    record.commit();
                    Ok(None)
                }
                Err(TryError::Closed) => Err(output::Closed),
            },
        }
    }

    /// Count one record sent on.
    pub(crate) fn count_in(&self) {
        self.records.increment(1);
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

/// A running pipeline.
pub struct Pipeline {
    tasks: JoinSet<()>,
    addresses: BTreeMap<String, SocketAddr>,
    shutdown: CancellationToken,
    drain_timeout: Duration,
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
        let mut tasks = JoinSet::new();

        // Channels into every transform and sink; outputs of sources and transforms.
        let mut receivers = BTreeMap::new();
        let mut outputs: BTreeMap<&str, Output> = BTreeMap::new();
        let consumers = config
            .transforms
            .iter()
            .map(|(n, t)| (n, &t.inputs))
            .chain(config.sinks.iter().map(|(n, s)| (n, &s.inputs)));
        for (name, inputs) in consumers {
            let (tx, rx) = mpsc::channel::<Record>(config.buffer);
            for input in inputs {
                outputs.entry(input.as_str()).or_default().push(tx.clone());
            }
            receivers.insert(name.clone(), rx);
            // `tx` drops here: only outputs hold senders, so a channel closes
            // when everything upstream of it is done.
        }

        for (name, sink) in &config.sinks {
            let rx = receivers.remove(name).unwrap_or_else(|| mpsc::channel(1).1);
            let task = sinks::open(name, &sink.kind)
                .await
                .map_err(|message| StartError::Sink {
                    sink: name.clone(),
                    message,
                })?;
            let span = tracing::info_span!("sink", sink.name = %name, sink.kind = sink.kind.name());
            tasks.spawn(task.run(rx).instrument(span));
        }
        for (name, t) in &config.transforms {
            let rx = receivers.remove(name).unwrap_or_else(|| mpsc::channel(1).1);
            let out = outputs.remove(name.as_str()).unwrap_or_default();
            let span = tracing::info_span!("transform", transform.name = %name);
            tasks.spawn(transforms::run(name.clone(), t.kind.clone(), rx, out).instrument(span));
        }

        let mut addresses = BTreeMap::new();
        for (name, s) in &config.sources {
            let bound = sources::bind(&s.kind).map_err(|(address, error)| StartError::Bind {
                source_name: name.clone(),
                address,
                error,
            })?;
            if let Some(l) = &bound
                && let Ok(addr) = l.local_addr()
            {
                addresses.insert(name.clone(), addr);
            }
            let ctx = SourceCtx {
                name: Arc::from(name.as_str()),
                output: outputs.remove(name.as_str()).unwrap_or_default(),
                shutdown: shutdown.child_token(),
                when_full: s.when_full,
                data_dir: config.data_dir.clone(),
                records: metrics::counter!("sluice_collect_source_records_total", "source" => name.clone()),
                dropped: metrics::counter!("sluice_collect_source_dropped_total", "source" => name.clone()),
            };
            let span =
                tracing::info_span!("source", source.name = %name, source.kind = s.kind.name());
            tasks.spawn(supervise(ctx, s.kind.clone(), bound).instrument(span));
        }
        tracing::info!(
            sources = config.sources.len(),
            transforms = config.transforms.len(),
            sinks = config.sinks.len(),
            "pipeline started"
        );
        Ok(Pipeline {
            tasks,
            addresses,
            shutdown,
            drain_timeout: config.drain_timeout.0,
        })
    }

    /// The address a listening source (`tcp`, `http_push`) is bound to.
    pub fn local_addr(&self, source: &str) -> Option<SocketAddr> {
        self.addresses.get(source).copied()
    }

    /// Wait for shutdown, then for the drain (at most `drain_timeout`).
    /// Returns whether everything drained in time.
    pub async fn wait(mut self) -> bool {
        self.shutdown.cancelled().await;
        let drained = tokio::time::timeout(self.drain_timeout, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!(
                left = self.tasks.len(),
                "drain deadline passed; aborting (unacknowledged records will be read again)"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        drained
    }
}

/// Run a source until shutdown, restarting it with backoff when it fails.
async fn supervise(ctx: SourceCtx, kind: SourceKind, bound: Option<std::net::TcpListener>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let started = Instant::now();
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
        tracing::warn!(error = %error, wait_ms = wait.as_millis() as u64, "source failed; restarting");
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
