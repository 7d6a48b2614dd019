//! The running components and how a config becomes (or changes) them.
//!
//! [`Graph::apply`] starts a pipeline (from nothing) and applies a reload
//! (from the running one), in phases:
//!
//! 1. Classify: a source is kept when its settings are equal and it runs;
//!    a transform or sink is kept when its kind and settings are equal and
//!    it runs (its `inputs` may differ). Everything else in the new config
//!    starts (added) or restarts (changed); what is only in the old one stops.
//! 2. Open what can fail — sinks, listeners whose address is free — before
//!    touching anything, so a failing reload leaves the pipeline as it was.
//! 3. Wire: a new input channel for every consumer that starts; every
//!    producer's output set to the channels of the consumers that read it
//!    in the new config (kept producers are rewired in place).
//! 4. Start added components; cancel stopped and changed sources. Removed
//!    transforms and sinks need no signal: no output holds their channel
//!    any more, so it closes once drained, and they end.
//! 5. Replace changed components: wait until the old one has ended (at
//!    most `drain_timeout`), then start the new one on the channel that has
//!    been buffering since step 3.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::output::{Output, WeakOutput};
use super::{Shared, SourceCtx, StartError, supervise};
use crate::config::{Config, SourceConfig, SourceKind, TransformConfig};
use crate::record::Record;
use crate::{sinks, sources, transforms};

/// What a reload (or the start) did, by component name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Components that were not running and now are.
    pub started: Vec<String>,
    /// Components whose settings changed: stopped, drained and started again.
    pub restarted: Vec<String>,
    /// Components no longer in the config: drained and stopped.
    pub stopped: Vec<String>,
    /// Components left running (rewired if their consumers or inputs changed).
    pub unchanged: Vec<String>,
}

struct RunningSource {
    token: CancellationToken,
    handle: JoinHandle<()>,
    output: WeakOutput,
    address: Option<SocketAddr>,
}

struct RunningStage {
    input: mpsc::WeakSender<Record>,
    handle: JoinHandle<()>,
    /// Transforms only.
    output: WeakOutput,
}

/// The running pipeline: its config and its components.
#[derive(Default)]
pub(crate) struct Graph {
    config: Option<Config>,
    sources: BTreeMap<String, RunningSource>,
    transforms: BTreeMap<String, RunningStage>,
    sinks: BTreeMap<String, RunningStage>,
}

fn listen_address(kind: &SourceKind) -> Option<SocketAddr> {
    match kind {
        SourceKind::Tcp(t) => Some(t.address),
        SourceKind::HttpPush(h) => Some(h.address),
        _ => None,
    }
}

/// A new input channel: the pipeline's weak handle and the receiver.
type Channel = (mpsc::WeakSender<Record>, mpsc::Receiver<Record>);

/// Something to start once its predecessor (if any) has ended.
enum Pending {
    Sink(String, sinks::SinkTask, Channel),
    Transform(String, TransformConfig, Channel, Output),
    Source(String, SourceConfig, Output, Option<std::net::TcpListener>),
}

impl Graph {
    /// Make the running pipeline match `new` (validated). See the module doc.
    pub(crate) async fn apply(
        &mut self,
        shared: &Arc<Shared>,
        new: Config,
    ) -> Result<ReloadReport, StartError> {
        let old = match &self.config {
            Some(c) => {
                if c.data_dir != new.data_dir {
                    return Err(StartError::Reload(format!(
                        "data_dir cannot change from {} to {} (restart the collector)",
                        c.data_dir.display(),
                        new.data_dir.display()
                    )));
                }
                c.clone()
            }
            None => Config {
                sources: BTreeMap::new(),
                transforms: BTreeMap::new(),
                sinks: BTreeMap::new(),
                ..new.clone()
            },
        };

        // 1. Classify.
        let kept_source = |n: &str| {
            old.sources.get(n) == new.sources.get(n)
                && self
                    .sources
                    .get(n)
                    .is_some_and(|r| !r.handle.is_finished() && r.output.upgrade().is_some())
        };
        let stage_alive = |r: Option<&RunningStage>, transform: bool| {
            r.is_some_and(|r| {
                !r.handle.is_finished()
                    && r.input.upgrade().is_some()
                    && (!transform || r.output.upgrade().is_some())
            })
        };
        let kept_transform = |n: &str| {
            matches!((old.transforms.get(n), new.transforms.get(n)), (Some(a), Some(b)) if a.kind == b.kind)
                && stage_alive(self.transforms.get(n), true)
        };
        let kept_sink = |n: &str| {
            matches!((old.sinks.get(n), new.sinks.get(n)), (Some(a), Some(b)) if a.kind == b.kind)
                && stage_alive(self.sinks.get(n), false)
        };
        let mut report = ReloadReport::default();
        let mut kept = std::collections::BTreeSet::new();
        for n in new.sources.keys() {
            if kept_source(n) {
                kept.insert(n.clone());
            }
        }
        for n in new.transforms.keys() {
            if kept_transform(n) {
                kept.insert(n.clone());
            }
        }
        for n in new.sinks.keys() {
            if kept_sink(n) {
                kept.insert(n.clone());
            }
        }
        let in_old = |n: &str| {
            self.sources.contains_key(n)
                || self.transforms.contains_key(n)
                || self.sinks.contains_key(n)
        };
        let new_names: Vec<&String> = new
            .sources
            .keys()
            .chain(new.transforms.keys())
            .chain(new.sinks.keys())
            .collect();
        for n in &new_names {
            if kept.contains(*n) {
                report.unchanged.push((*n).clone());
            } else if in_old(n) {
                report.restarted.push((*n).clone());
            } else {
                report.started.push((*n).clone());
            }
        }
        for n in self
            .sources
            .keys()
            .chain(self.transforms.keys())
            .chain(self.sinks.keys())
        {
            if !new_names.contains(&n) {
                report.stopped.push(n.clone());
            }
        }

        // 2. Open what can fail.
        let mut opened = BTreeMap::new();
        for (name, s) in &new.sinks {
            if !kept.contains(name) {
                let task = sinks::open(name, &s.kind, shared.registry.sink(name))
                    .await
                    .map_err(|message| StartError::Sink {
                        sink: name.clone(),
                        message,
                    })?;
                opened.insert(name.clone(), task);
            }
        }
        let held: Vec<SocketAddr> = self.sources.values().filter_map(|r| r.address).collect();
        let mut bound = BTreeMap::new();
        for (name, s) in &new.sources {
            if kept.contains(name) {
                continue;
            }
            if listen_address(&s.kind).is_some_and(|a| a.port() != 0 && held.contains(&a)) {
                // Held by the source being replaced: bound once it has stopped.
                continue;
            }
            let l = sources::bind(&s.kind).map_err(|(address, error)| StartError::Bind {
                source_name: name.clone(),
                address,
                error,
            })?;
            bound.insert(name.clone(), l);
        }

        // 3. Wire.
        let mut inputs: BTreeMap<&str, mpsc::Sender<Record>> = BTreeMap::new();
        let mut receivers = BTreeMap::new();
        for name in new.transforms.keys().chain(new.sinks.keys()) {
            let running = self.transforms.get(name).or_else(|| self.sinks.get(name));
            let tx = match running.and_then(|r| r.input.upgrade()) {
                Some(tx) if kept.contains(name) => tx,
                _ => {
                    let (tx, rx) = mpsc::channel(new.buffer);
                    receivers.insert(name.clone(), (tx.downgrade(), rx));
                    tx
                }
            };
            inputs.insert(name, tx);
        }
        let readers = |producer: &str| -> Vec<mpsc::Sender<Record>> {
            new.transforms
                .iter()
                .map(|(n, t)| (n, &t.inputs))
                .chain(new.sinks.iter().map(|(n, s)| (n, &s.inputs)))
                .filter(|(_, ins)| ins.iter().any(|i| i == producer))
                .filter_map(|(n, _)| inputs.get(n.as_str()).cloned())
                .collect()
        };
        let mut outputs = BTreeMap::new();
        for name in new.sources.keys().chain(new.transforms.keys()) {
            let running = self
                .sources
                .get(name)
                .map(|r| &r.output)
                .or_else(|| self.transforms.get(name).map(|r| &r.output));
            match running.and_then(WeakOutput::upgrade) {
                Some(out) if kept.contains(name) => out.set(readers(name)),
                _ => {
                    outputs.insert(name.clone(), Output::new(readers(name)));
                }
            }
        }
        drop(inputs);

        // 4. Start added components; stop what goes away or changes.
        let mut later = Vec::new();
        let mut waits = Vec::new();
        for (name, task) in opened {
            let rx = receivers
                .remove(&name)
                .expect("a started sink has a channel");
            match self.sinks.remove(&name) {
                Some(old) => {
                    waits.push(old.handle);
                    later.push(Pending::Sink(name, task, rx));
                }
                None => self.start_sink(shared, name, task, rx),
            }
        }
        for (name, t) in &new.transforms {
            if kept.contains(name) {
                continue;
            }
            let rx = receivers
                .remove(name)
                .expect("a started transform has a channel");
            let out = outputs.remove(name).unwrap_or_default();
            match self.transforms.remove(name) {
                Some(old) => {
                    waits.push(old.handle);
                    later.push(Pending::Transform(name.clone(), t.clone(), rx, out));
                }
                None => self.start_transform(shared, name.clone(), t.clone(), rx, out),
            }
        }
        for (name, s) in &new.sources {
            if kept.contains(name) {
                continue;
            }
            let out = outputs.remove(name).unwrap_or_default();
            let listener = bound.remove(name).flatten();
            match self.sources.remove(name) {
                Some(old) => {
                    old.token.cancel();
                    waits.push(old.handle);
                    later.push(Pending::Source(name.clone(), s.clone(), out, listener));
                }
                None => self.start_source(shared, &new, name.clone(), s.clone(), out, listener),
            }
        }
        // Removed components.
        let gone: Vec<String> = self
            .sources
            .keys()
            .filter(|n| !new.sources.contains_key(*n))
            .cloned()
            .collect();
        for n in gone {
            if let Some(old) = self.sources.remove(&n) {
                old.token.cancel();
            }
        }
        self.transforms
            .retain(|n, _| new.transforms.contains_key(n));
        self.sinks.retain(|n, _| new.sinks.contains_key(n));

        // 5. Replace changed components once their predecessors have ended.
        let deadline = new.drain_timeout.0;
        for handle in waits {
            let abort = handle.abort_handle();
            if tokio::time::timeout(deadline, handle).await.is_err() {
                tracing::warn!("a replaced component did not drain within drain_timeout; aborted");
                abort.abort();
            }
        }
        for p in later {
            match p {
                Pending::Sink(name, task, rx) => self.start_sink(shared, name, task, rx),
                Pending::Transform(name, t, rx, out) => {
                    self.start_transform(shared, name, t, rx, out)
                }
                Pending::Source(name, s, out, listener) => {
                    let listener = match listener {
                        Some(l) => Some(l),
                        None => match sources::bind(&s.kind) {
                            Ok(l) => l,
                            Err((address, error)) => {
                                tracing::error!(source.name = %name, %address, %error, "cannot listen after reload; source not started");
                                continue;
                            }
                        },
                    };
                    self.start_source(shared, &new, name, s, out, listener);
                }
            }
        }

        let source_names: Vec<&String> = new.sources.keys().collect();
        let sink_names: Vec<&String> = new.sinks.keys().collect();
        shared.registry.retain(&source_names, &sink_names);
        {
            let mut a = shared.addresses.lock().unwrap_or_else(|e| e.into_inner());
            a.retain(|n, _| new.sources.contains_key(n));
        }
        *shared
            .drain_timeout
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = new.drain_timeout.0;
        self.config = Some(new);
        Ok(report)
    }

    fn start_sink(
        &mut self,
        shared: &Arc<Shared>,
        name: String,
        task: sinks::SinkTask,
        (input, rx): (mpsc::WeakSender<Record>, mpsc::Receiver<Record>),
    ) {
        let span = tracing::info_span!("sink", sink.name = %name, sink.kind = task.kind());
        let counters = shared.registry.sink(&name);
        *counters.input.lock().unwrap_or_else(|e| e.into_inner()) = Some(input.clone());
        let draining = shared.shutdown.clone();
        let handle = shared.spawn(task.run(rx, draining).instrument(span));
        self.sinks.insert(
            name,
            RunningStage {
                input,
                handle,
                output: WeakOutput::default(),
            },
        );
    }

    fn start_transform(
        &mut self,
        shared: &Arc<Shared>,
        name: String,
        t: TransformConfig,
        (input, rx): (mpsc::WeakSender<Record>, mpsc::Receiver<Record>),
        out: Output,
    ) {
        let span = tracing::info_span!("transform", transform.name = %name);
        let output = out.downgrade();
        let handle = shared.spawn(transforms::run(name.clone(), t.kind, rx, out).instrument(span));
        self.transforms.insert(
            name,
            RunningStage {
                input,
                handle,
                output,
            },
        );
    }

    fn start_source(
        &mut self,
        shared: &Arc<Shared>,
        config: &Config,
        name: String,
        s: SourceConfig,
        out: Output,
        listener: Option<std::net::TcpListener>,
    ) {
        if let Some(a) = listener.as_ref().and_then(|l| l.local_addr().ok()) {
            shared
                .addresses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone(), a);
        }
        let counters = shared.registry.source(&name);
        *counters.output.lock().unwrap_or_else(|e| e.into_inner()) = out.downgrade();
        let token = shared.shutdown.child_token();
        let output = out.downgrade();
        let address = listen_address(&s.kind);
        let ctx = SourceCtx {
            name: Arc::from(name.as_str()),
            output: out,
            shutdown: token.clone(),
            when_full: s.when_full,
            data_dir: config.data_dir.clone(),
            records: metrics::counter!("sluice_collect_source_records_total", "source" => name.clone()),
            dropped: metrics::counter!("sluice_collect_source_dropped_total", "source" => name.clone()),
            counters,
        };
        let span = tracing::info_span!("source", source.name = %name, source.kind = s.kind.name());
        let handle = shared.spawn(supervise(ctx, s.kind, listener).instrument(span));
        self.sources.insert(
            name,
            RunningSource {
                token,
                handle,
                output,
                address,
            },
        );
    }
}
