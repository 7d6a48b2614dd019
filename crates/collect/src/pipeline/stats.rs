//! Live counters per source and sink, kept as atomics beside the `metrics`
//! facade so the binary's `--stats` line and its final JSON summary read
//! them without a recorder, and a reload keeps a component's counts (they
//! are looked up by name). Every second [`publish`] copies the queue
//! depths and the acknowledgement totals into the facade; the
//! `acks_pending` gauge is kept by the source's [`AckCounts`] alone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc::WeakSender;

use super::output::WeakOutput;
use crate::record::{AckCounts, Record};

/// One source's counters.
#[derive(Debug, Default)]
pub(crate) struct SourceCounters {
    pub(crate) records_in: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) starts: AtomicU64,
    pub(crate) restarts: AtomicU64,
    pub(crate) acks: Arc<AckCounts>,
    /// Its output, for the queue depth.
    pub(crate) output: Mutex<WeakOutput>,
}

/// One sink's counters.
#[derive(Debug, Default)]
pub(crate) struct SinkCounters {
    pub(crate) records_out: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) dead_letters: AtomicU64,
    /// Age of the oldest record of the last batch when it was committed.
    pub(crate) lag_ms: AtomicU64,
    /// Its input channel, for the queue depth.
    pub(crate) input: Mutex<Option<WeakSender<Record>>>,
}

/// Counters by component name.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    sources: Mutex<BTreeMap<String, Arc<SourceCounters>>>,
    sinks: Mutex<BTreeMap<String, Arc<SinkCounters>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub(crate) fn source(&self, name: &str) -> Arc<SourceCounters> {
        lock(&self.sources)
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(SourceCounters {
                    acks: Arc::new(AckCounts::for_source(name)),
                    ..SourceCounters::default()
                })
            })
            .clone()
    }

    pub(crate) fn sink(&self, name: &str) -> Arc<SinkCounters> {
        lock(&self.sinks)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Forget the components not named (removed by a reload).
    pub(crate) fn retain(&self, sources: &[&String], sinks: &[&String]) {
        lock(&self.sources).retain(|k, _| sources.contains(&k));
        lock(&self.sinks).retain(|k, _| sinks.contains(&k));
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let sources = lock(&self.sources)
            .iter()
            .map(|(name, c)| {
                let pending = c.acks.pending();
                let committed = get(&c.acks.committed);
                let failed = get(&c.acks.failed);
                let depth = lock(&c.output)
                    .upgrade()
                    .map_or(0, |o| o.queue_depth() as u64);
                let s = SourceStats {
                    records_in: get(&c.records_in),
                    acks_committed: committed,
                    acks_failed: failed,
                    acks_pending: pending,
                    dropped: get(&c.dropped),
                    starts: get(&c.starts),
                    restarts: get(&c.restarts),
                    queue_depth: depth,
                };
                (name.clone(), s)
            })
            .collect();
        let sinks = lock(&self.sinks)
            .iter()
            .map(|(name, c)| {
                let depth = lock(&c.input)
                    .as_ref()
                    .and_then(WeakSender::upgrade)
                    .map_or(0, |tx| tx.max_capacity() - tx.capacity());
                let s = SinkStats {
                    records_out: get(&c.records_out),
                    retries: get(&c.retries),
                    dead_letters: get(&c.dead_letters),
                    queue_depth: depth as u64,
                    lag_ms: get(&c.lag_ms),
                };
                (name.clone(), s)
            })
            .collect();
        Stats { sources, sinks }
    }
}

/// Copy the gauges and totals of `stats` into the `metrics` facade.
pub(crate) fn publish(stats: &Stats) {
    for (name, s) in &stats.sources {
        let n = || name.clone();
        metrics::gauge!("sluice_collect_source_queue_depth", "source" => n())
            .set(s.queue_depth as f64);
        metrics::counter!("sluice_collect_source_acks_committed_total", "source" => n())
            .absolute(s.acks_committed);
        metrics::counter!("sluice_collect_source_acks_failed_total", "source" => n())
            .absolute(s.acks_failed);
    }
    for (name, s) in &stats.sinks {
        metrics::gauge!("sluice_collect_sink_queue_depth", "sink" => name.clone())
            .set(s.queue_depth as f64);
    }
}

/// A snapshot of every source's and sink's counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Sources by name.
    pub sources: BTreeMap<String, SourceStats>,
    /// Sinks by name.
    pub sinks: BTreeMap<String, SinkStats>,
}

/// One source's counts since the pipeline started (kept across reloads).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SourceStats {
    /// Records read and sent on.
    pub records_in: u64,
    /// Acknowledgements committed by every sink (one per record; one per
    /// request for `http_push`, per poll for `http_poll`).
    pub acks_committed: u64,
    /// Acknowledgements that failed (some copy was not committed).
    pub acks_failed: u64,
    /// Acknowledgements not yet back.
    pub acks_pending: u64,
    /// Records dropped by `when_full = "drop_newest"`.
    pub dropped: u64,
    /// Runs started (1 + restarts after failures, + restarts by reloads).
    pub starts: u64,
    /// Restarts after a failure.
    pub restarts: u64,
    /// Records waiting in its fullest downstream channel.
    pub queue_depth: u64,
}

/// One sink's counts since the pipeline started (kept across reloads).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SinkStats {
    /// Records written (dead letters included).
    pub records_out: u64,
    /// Failed batch writes retried.
    pub retries: u64,
    /// Records set aside in a dead-letter table.
    pub dead_letters: u64,
    /// Records waiting in its input channel.
    pub queue_depth: u64,
    /// Age of the oldest record of the last batch at commit, in milliseconds.
    pub lag_ms: u64,
}
