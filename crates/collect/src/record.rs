//! What flows through a pipeline: [`Record`]s, each carrying an [`Ack`]
//! handle back to the source it came from.
//!
//! Acknowledgement: every copy of a record (fan-out clones it) holds one
//! handle. A sink that has committed a record calls [`Ack::commit`]; a
//! transform that drops a record on purpose does the same. A handle dropped
//! without `commit` — a sink that gave up, a pipeline torn down at its
//! deadline — marks the record failed. When the last handle of a record (or
//! of a group of records, for a pushed HTTP body) is gone, the source
//! receives one [`Acked`] saying whether every copy was committed; only then
//! does it advance its durable position.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::mpsc;

/// A record's content.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// A JSON value.
    Json(serde_json::Value),
    /// A line of text (without its newline).
    Text(String),
}

impl Payload {
    /// Approximate size in bytes, for batching limits.
    pub fn size(&self) -> usize {
        match self {
            Payload::Text(s) => s.len(),
            // Cheap upper-bound-ish estimate; exact size costs a serialization.
            Payload::Json(v) => json_size(v),
        }
    }

    /// The payload as text: JSON serialized, text as is.
    pub fn to_text(&self) -> String {
        match self {
            Payload::Text(s) => s.clone(),
            Payload::Json(v) => v.to_string(),
        }
    }
}

fn json_size(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 12,
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|e| json_size(e) + 1).sum::<usize>(),
        Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, e)| k.len() + 4 + json_size(e))
                .sum::<usize>()
        }
    }
}

/// One record.
#[derive(Clone, Debug)]
pub struct Record {
    /// The source it came from.
    pub source: Arc<str>,
    /// When the source read it.
    pub timestamp: SystemTime,
    /// A stable id when the source has one (a file's inode and offset, a
    /// pushed object's id field): sinks write records with an id idempotently.
    pub id: Option<String>,
    /// The content.
    pub payload: Payload,
    /// The way back to the source; `None` when the source needs no acknowledgement.
    pub ack: Option<Ack>,
}

impl Record {
    /// A record read now, without id or acknowledgement.
    pub fn new(source: Arc<str>, payload: Payload) -> Record {
        Record {
            source,
            timestamp: SystemTime::now(),
            id: None,
            payload,
            ack: None,
        }
    }

    /// Mark this copy committed (or deliberately discarded) and drop it.
    pub fn commit(self) {
        if let Some(ack) = self.ack {
            ack.commit();
        }
    }

    /// The record as one JSON object: `{"source","timestamp","id","payload"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "source": &*self.source,
            "timestamp": humantime::format_rfc3339_millis(self.timestamp).to_string(),
            "id": self.id,
            "payload": match &self.payload {
                Payload::Json(v) => v.clone(),
                Payload::Text(s) => serde_json::Value::String(s.clone()),
            },
        })
    }
}

/// What a source hears back about one record (or group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    /// The sequence number the source gave it.
    pub seq: u64,
    /// Whether every sink committed it.
    pub ok: bool,
}

/// A source's acknowledgement counts: created, committed and failed
/// acknowledgements (pending = created − committed − failed).
///
/// It is the one writer of the source's `sluice_collect_source_acks_pending`
/// gauge: +1 when an acknowledgement is created, −1 when it resolves, so
/// the gauge is always the number outstanding and nothing else can make it
/// drift.
#[derive(Debug, Default)]
pub(crate) struct AckCounts {
    pub(crate) created: AtomicU64,
    pub(crate) committed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pending: Option<metrics::Gauge>,
}

impl AckCounts {
    /// Counts that also keep `source`'s `acks_pending` gauge.
    pub(crate) fn for_source(source: &str) -> AckCounts {
        AckCounts {
            pending: Some(
                metrics::gauge!("sluice_collect_source_acks_pending", "source" => source.to_owned()),
            ),
            ..AckCounts::default()
        }
    }

    /// Acknowledgements created and not yet resolved.
    pub(crate) fn pending(&self) -> u64 {
        // The three are read one after another, not at one instant:
        // saturate rather than wrap if a resolution slips in between.
        let done = self.committed.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed);
        self.created.load(Ordering::Relaxed).saturating_sub(done)
    }

    fn created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
        if let Some(g) = &self.pending {
            g.increment(1.0);
        }
    }

    fn resolved(&self, ok: bool) {
        if ok {
            self.committed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(g) = &self.pending {
            g.decrement(1.0);
        }
    }
}

struct Inner {
    seq: u64,
    failed: AtomicBool,
    tx: mpsc::UnboundedSender<Acked>,
    counts: Option<Arc<AckCounts>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(c) = &self.counts {
            c.resolved(!self.failed.load(Ordering::Acquire));
        }
        // The source may be gone (it restarts, or the pipeline stops); then
        // nobody needs to know.
        let _ = self.tx.send(Acked {
            seq: self.seq,
            ok: !self.failed.load(Ordering::Acquire),
        });
    }
}

/// One copy's handle on a record's acknowledgement.
#[derive(Debug)]
pub struct Ack {
    inner: Arc<Inner>,
    committed: bool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack").field("seq", &self.seq).finish()
    }
}

impl Ack {
    /// A new acknowledgement `seq`, reported on `tx` when its last handle is gone.
    pub fn new(seq: u64, tx: mpsc::UnboundedSender<Acked>) -> Ack {
        Ack {
            inner: Arc::new(Inner {
                seq,
                failed: AtomicBool::new(false),
                tx,
                counts: None,
            }),
            committed: false,
        }
    }

    /// Like [`Ack::new`], counted in `counts` (for metrics and `--stats`).
    pub(crate) fn counted(
        seq: u64,
        tx: mpsc::UnboundedSender<Acked>,
        counts: &Arc<AckCounts>,
    ) -> Ack {
        counts.created();
        Ack {
            inner: Arc::new(Inner {
                seq,
                failed: AtomicBool::new(false),
                tx,
                counts: Some(Arc::clone(counts)),
            }),
            committed: false,
        }
    }

    /// This copy is committed (or deliberately discarded).
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Clone for Ack {
    fn clone(&self) -> Self {
        Ack {
            inner: Arc::clone(&self.inner),
            committed: false,
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.committed {
            self.inner.failed.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acked_once_when_every_copy_committed() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let a = Ack::new(7, tx);
        let b = a.clone();
        a.commit();
        assert!(rx.try_recv().is_err(), "one copy is still out");
        b.commit();
        assert_eq!(rx.try_recv().unwrap(), Acked { seq: 7, ok: true });
    }

    #[test]
    fn a_dropped_copy_fails_the_record() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let a = Ack::new(1, tx);
        let b = a.clone();
        a.commit();
        drop(b);
        assert_eq!(rx.try_recv().unwrap(), Acked { seq: 1, ok: false });
    }
}
