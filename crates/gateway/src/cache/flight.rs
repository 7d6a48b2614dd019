//! Single flight: at most one upstream fetch per cache key at a time. The
//! first request for a key leads; later ones follow, waiting (up to
//! `cache.lock_timeout`) for the leader's response to be stored, then read it
//! from the cache. This is what turns a miss storm into one upstream request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

/// Where a flight stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Landing {
    /// The leader is still fetching.
    InFlight,
    /// The leader stored a response: look it up again.
    Stored,
    /// The leader's response was not stored (uncacheable, too large, failed).
    NotStored,
}

/// The flights in progress, by key.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, (u64, watch::Receiver<Landing>)>>,
    next_id: AtomicU64,
}

/// What joining a flight made of this request.
pub(crate) enum Join {
    /// Fetch, then land the guard.
    Leader(FlightGuard),
    /// Wait for the leader.
    Follower(watch::Receiver<Landing>),
}

impl Flights {
    /// Lead the flight for `key`, or follow the one already in the air.
    pub(crate) fn join(self: &Arc<Self>, key: &str) -> Join {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, rx)) = map.get(key) {
            return Join::Follower(rx.clone());
        }
        Join::Leader(self.insert(&mut map, key))
    }

    /// Lead the flight for `key` only if none is in the air (background refreshes).
    pub(crate) fn try_lead(self: &Arc<Self>, key: &str) -> Option<FlightGuard> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(key) {
            return None;
        }
        Some(self.insert(&mut map, key))
    }

    fn insert(
        self: &Arc<Self>,
        map: &mut HashMap<String, (u64, watch::Receiver<Landing>)>,
        key: &str,
    ) -> FlightGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(Landing::InFlight);
        map.insert(key.to_owned(), (id, rx));
        FlightGuard {
            flights: Arc::clone(self),
            key: key.to_owned(),
            id,
            tx,
        }
    }

    /// Number of flights in the air.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Held by a leader; landing it (or dropping it, which lands `NotStored`)
/// wakes the followers and clears the key for the next flight.
#[derive(Debug)]
pub(crate) struct FlightGuard {
    flights: Arc<Flights>,
    key: String,
    id: u64,
    tx: watch::Sender<Landing>,
}

impl FlightGuard {
    /// Tell the followers how it ended.
    pub(crate) fn land(self, stored: bool) {
        self.tx.send_replace(if stored {
            Landing::Stored
        } else {
            Landing::NotStored
        });
        // Drop clears the map entry.
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.tx.send_if_modified(|l| {
            if *l == Landing::InFlight {
                *l = Landing::NotStored;
                true
            } else {
                false
            }
        });
        let mut map = self
            .flights
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A newer flight for the key may have replaced ours; leave it alone.
        if map.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            map.remove(&self.key);
        }
    }
}

/// Wait up to `timeout` for a flight to land; `InFlight` means it did not in time.
pub(crate) async fn wait(mut rx: watch::Receiver<Landing>, timeout: Duration) -> Landing {
    match tokio::time::timeout(timeout, rx.wait_for(|l| *l != Landing::InFlight)).await {
        Ok(Ok(l)) => *l,
        // The sender is gone without landing: treat as not stored.
        Ok(Err(_)) => Landing::NotStored,
        Err(_) => Landing::InFlight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_many_followers() {
        let flights = Arc::new(Flights::default());
        let Join::Leader(guard) = flights.join("k") else {
            panic!("first must lead")
        };
        let followers: Vec<_> = (0..5)
            .map(|_| match flights.join("k") {
                Join::Follower(rx) => tokio::spawn(wait(rx, Duration::from_secs(5))),
                Join::Leader(_) => panic!("second must follow"),
            })
            .collect();
        assert!(flights.try_lead("k").is_none());
        guard.land(true);
        for f in followers {
            assert_eq!(f.await.unwrap(), Landing::Stored);
        }
        assert_eq!(flights.len(), 0);
        assert!(matches!(flights.join("k"), Join::Leader(_)));
    }

    #[tokio::test]
    async fn dropped_leader_lands_not_stored() {
        let flights = Arc::new(Flights::default());
        let Join::Leader(guard) = flights.join("k") else {
            panic!()
        };
        let Join::Follower(rx) = flights.join("k") else {
            panic!()
        };
        drop(guard);
        assert_eq!(wait(rx, Duration::from_secs(5)).await, Landing::NotStored);
    }

    #[tokio::test]
    async fn followers_give_up_after_the_timeout() {
        let flights = Arc::new(Flights::default());
        let _guard = flights.join("k");
        let Join::Follower(rx) = flights.join("k") else {
            panic!()
        };
        assert_eq!(
            wait(rx, Duration::from_millis(100)).await,
            Landing::InFlight
        );
    }
}
