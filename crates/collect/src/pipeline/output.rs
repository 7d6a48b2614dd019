//! A component's output: the input channels of everything that reads it.
//! Reserving a slot in each before sending (cancel-safe inside `select!`)
//! is what carries backpressure upstream.
//!
//! The set of channels is shared by every clone of an output and can be
//! replaced while the component runs ([`Output::set`]): that is how a
//! reload rewires an unchanged source to new, changed or fewer consumers
//! without restarting it. A send reads the set once, so a record goes
//! either to the old consumers or to the new ones, never half and half.
//! The pipeline keeps only a [`WeakOutput`]: when the component's task
//! ends its output is dropped, and a channel closes once nothing upstream
//! holds it — the stage-by-stage drain.
//!
//! The set lives in an [`ArcSwap`]: a send is on every record's path and
//! a rewire happens once per reload, so the send takes a lock-free guard
//! (no lock, no reference-count traffic on the shared set) and a reload
//! swaps in a new set.

use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use tokio::sync::mpsc::{self, OwnedPermit, error::TrySendError};

use crate::record::Record;

/// The downstream channels of one source or transform.
#[derive(Clone, Debug)]
pub(crate) struct Output {
    senders: Arc<ArcSwap<Box<[mpsc::Sender<Record>]>>>,
}

impl Default for Output {
    fn default() -> Self {
        Output::new(Vec::new())
    }
}

/// The pipeline's handle on a running component's output.
#[derive(Clone, Debug, Default)]
pub(crate) struct WeakOutput(Weak<ArcSwap<Box<[mpsc::Sender<Record>]>>>);

impl WeakOutput {
    /// The output, while its component runs.
    pub(crate) fn upgrade(&self) -> Option<Output> {
        self.0.upgrade().map(|senders| Output { senders })
    }
}

/// Every downstream channel is closed: nothing reads this output any more.
#[derive(Debug)]
pub(crate) struct Closed;

/// Why a try-reserve failed.
#[derive(Debug)]
pub(crate) enum TryError {
    /// Some downstream channel has no room.
    Full,
    /// Nothing reads this output any more.
    Closed,
}

/// Room for one record in every downstream channel.
pub(crate) struct Permits(Vec<OwnedPermit<Record>>);

impl Permits {
    /// Send `record`, cloned for all but the last channel.
    pub(crate) fn send(self, record: Record) {
        let mut permits = self.0;
        let last = permits.pop();
        for p in permits {
            p.send(record.clone());
        }
        if let Some(p) = last {
            p.send(record);
        }
    }
}

impl Output {
    /// An output to these channels.
    pub(crate) fn new(senders: Vec<mpsc::Sender<Record>>) -> Output {
        Output {
            senders: Arc::new(ArcSwap::from_pointee(senders.into_boxed_slice())),
        }
    }

    /// The pipeline's weak handle.
    pub(crate) fn downgrade(&self) -> WeakOutput {
        WeakOutput(Arc::downgrade(&self.senders))
    }

    /// Replace the downstream channels (a reload).
    pub(crate) fn set(&self, senders: Vec<mpsc::Sender<Record>>) {
        self.senders.store(Arc::new(senders.into_boxed_slice()));
    }

    /// The current set: a lock-free load. A guard is meant to be short-lived
    /// (arc-swap keeps a few per thread cheap), so `reserve`, which waits,
    /// turns it into a full `Arc` first.
    fn current(&self) -> arc_swap::Guard<Arc<Box<[mpsc::Sender<Record>]>>> {
        self.senders.load()
    }

    /// Wait for room in every downstream channel. Cancel-safe: dropping the
    /// future (or the permits) gives the slots back.
    pub(crate) async fn reserve(&self) -> Result<Permits, Closed> {
        let senders = self.current();
        let Some((first, rest)) = senders.split_first() else {
            return Ok(Permits(Vec::new()));
        };
        // One consumer (the common case) and room now: no wait, so the
        // guard is not held across an await.
        if rest.is_empty() {
            match first.clone().try_reserve_owned() {
                Ok(p) => return Ok(Permits(vec![p])),
                Err(TrySendError::Closed(_)) => return Err(Closed),
                Err(TrySendError::Full(_)) => {}
            }
        }
        let senders = arc_swap::Guard::into_inner(senders);
        let mut out = Vec::with_capacity(senders.len());
        for tx in senders.iter() {
            out.push(tx.clone().reserve_owned().await.map_err(|_| Closed)?);
        }
        Ok(Permits(out))
    }

    /// Room in every downstream channel now, or why not.
    pub(crate) fn try_reserve(&self) -> Result<Permits, TryError> {
        let senders = self.current();
        let mut out = Vec::with_capacity(senders.len());
        for tx in senders.iter() {
            match tx.clone().try_reserve_owned() {
                Ok(p) => out.push(p),
                Err(TrySendError::Full(_)) => return Err(TryError::Full),
                Err(TrySendError::Closed(_)) => return Err(TryError::Closed),
            }
        }
        Ok(Permits(out))
    }

    /// Room for `n` records in every downstream channel now, or why not.
    pub(crate) fn try_reserve_many(&self, n: usize) -> Result<Vec<Permits>, TryError> {
        let mut per_record: Vec<Vec<OwnedPermit<Record>>> = (0..n).map(|_| Vec::new()).collect();
        for tx in self.current().iter() {
            for slot in per_record.iter_mut() {
                match tx.clone().try_reserve_owned() {
                    Ok(p) => slot.push(p),
                    Err(TrySendError::Full(_)) => return Err(TryError::Full),
                    Err(TrySendError::Closed(_)) => return Err(TryError::Closed),
                }
            }
        }
        Ok(per_record.into_iter().map(Permits).collect())
    }

    /// Most records that fit in the smallest downstream channel at once.
    pub(crate) fn capacity(&self) -> usize {
        self.current()
            .iter()
            .map(|s| s.max_capacity())
            .min()
            .unwrap_or(0)
    }

    /// Wait for room, then send.
    pub(crate) async fn send(&self, record: Record) -> Result<(), Closed> {
        self.reserve().await?.send(record);
        Ok(())
    }
}

impl Output {
    /// Records waiting in the fullest downstream channel.
    pub(crate) fn queue_depth(&self) -> usize {
        self.current()
            .iter()
            .map(|s| s.max_capacity() - s.capacity())
            .max()
            .unwrap_or(0)
    }
}
