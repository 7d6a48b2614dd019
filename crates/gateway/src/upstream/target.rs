//! One target of an upstream and its live state: requests in flight,
//! health from active checks, and passive ejection after failures.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::Authority;

/// A backend address and what we know about it right now.
#[derive(Debug)]
pub(crate) struct Target {
    /// `host:port` to connect to.
    pub(crate) authority: Authority,
    in_flight: AtomicUsize,
    /// Set by active health checks; true until a check says otherwise.
    healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    /// Set while `ejected_until` may lie ahead: the usual answer, "not
    /// ejected", costs one load, without the lock or the clock.
    ejected: AtomicBool,
    ejected_until: Mutex<Option<Instant>>,
}

impl Target {
    pub(crate) fn new(authority: Authority) -> Target {
        Target {
            authority,
            in_flight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected: AtomicBool::new(false),
            ejected_until: Mutex::new(None),
        }
    }

    /// Requests now in flight to this target.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Count one more request in flight until the guard drops.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Healthy by active checks.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Ejected by passive checks at `now`.
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        if !self.ejected.load(Ordering::Acquire) {
            return false;
        }
        let mut guard = self.ejected_until.lock().unwrap_or_else(|p| p.into_inner());
        match *guard {
            Some(until) if now < until => true,
            _ => {
                // Over: later checks skip the lock again.
                *guard = None;
                self.ejected.store(false, Ordering::Release);
                false
            }
        }
    }

    /// Healthy and not ejected now (the clock is read only while an
    /// ejection may be running).
    pub(crate) fn is_available(&self) -> bool {
        self.is_healthy()
            && !(self.ejected.load(Ordering::Acquire) && self.is_ejected(Instant::now()))
    }

    /// Record a success: the failure streak ends.
    pub(crate) fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Record a failure; returns the failure streak length.
    pub(crate) fn record_failure(&self) -> u32 {
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Eject until `now + base × number of ejections so far` (capped at 10×).
    pub(crate) fn eject(&self, now: Instant, base: Duration) {
        let n = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let mut guard = self.ejected_until.lock().unwrap_or_else(|p| p.into_inner());
        *guard = Some(now + base * n.min(10));
        self.ejected.store(true, Ordering::Release);
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }
}

/// Decrements the target's in-flight count when dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Target>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
