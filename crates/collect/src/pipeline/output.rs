//! A component's output: the input channels of everything that reads it.
//! Reserving a slot in each before sending (cancel-safe inside `select!`)
//! is what carries backpressure upstream.

use tokio::sync::mpsc::{self, OwnedPermit, error::TrySendError};

use crate::record::Record;

/// The downstream channels of one source or transform.
#[derive(Clone, Debug, Default)]
pub(crate) struct Output {
    senders: Vec<mpsc::Sender<Record>>,
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
    pub(crate) fn push(&mut self, tx: mpsc::Sender<Record>) {
        self.senders.push(tx);
    }

    /// Wait for room in every downstream channel. Cancel-safe: dropping the
    /// future (or the permits) gives the slots back.
    pub(crate) async fn reserve(&self) -> Result<Permits, Closed> {
        let mut out = Vec::with_capacity(self.senders.len());
        for tx in &self.senders {
            out.push(tx.clone().reserve_owned().await.map_err(|_| Closed)?);
        }
        Ok(Permits(out))
    }

    /// Room in every downstream channel now, or why not.
    pub(crate) fn try_reserve(&self) -> Result<Permits, TryError> {
        let mut out = Vec::with_capacity(self.senders.len());
        for tx in &self.senders {
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
        for tx in &self.senders {
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
        self.senders
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
