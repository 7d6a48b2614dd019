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

use std::sync::{Arc, RwLock, Weak};

use tokio::sync::mpsc::{self, OwnedPermit, error::TrySendError};

use crate::record::Record;

type Senders = Arc<[mpsc::Sender<Record>]>;

/// The downstream channels of one source or transform.
#[derive(Clone, Debug)]
pub(crate) struct Output {
    senders: Arc<RwLock<Senders>>,
}

impl Default for Output {
    fn default() -> Self {
        Output::new(Vec::new())
    }
}

/// The pipeline's handle on a running component's output.
#[derive(Clone, Debug, Default)]
pub(crate) struct WeakOutput(Weak<RwLock<Senders>>);

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
            senders: Arc::new(RwLock::new(senders.into())),
        }
    }

    /// The pipeline's weak handle.
    pub(crate) fn downgrade(&self) -> WeakOutput {
        WeakOutput(Arc::downgrade(&self.senders))
    }

    /// Replace the downstream channels (a reload).
    pub(crate) fn set(&self, senders: Vec<mpsc::Sender<Record>>) {
        let mut w = self.senders.write().unwrap_or_else(|e| e.into_inner());
        *w = senders.into();
    }

    fn current(&self) -> Senders {
        Arc::clone(&self.senders.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Wait for room in every downstream channel. Cancel-safe: dropping the
    /// future (or the permits) gives the slots back.
    pub(crate) async fn reserve(&self) -> Result<Permits, Closed> {
        let senders = self.current();
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
