//! A connection's one timer, lent to each request it serves for the
//! request's total deadline.
//!
//! A `tokio::time::Sleep` made per request costs a handle clone, a lock and
//! an insert into the timer wheel on its first poll, and another lock and a
//! removal when it is dropped: about 480 of a proxied request's 17,500
//! instructions in a callgrind profile (bench/gateway-instructions.sh), and
//! 2–3% of its CPU in paired runs against nginx (docs/benchmarks.md). The
//! lean server path already keeps one timer per connection for its head
//! and idle deadlines, set for the soonest thing due. A request's deadline (seconds away) is almost always
//! later than that (a tenth of a second away): lending the timer costs a
//! comparison, and only when it fires before the request's deadline does
//! the request's wait look at the clock and set it again.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use tokio::time::Sleep;

/// A connection's timer, and the time it is set for (`None` once it has
/// fired and was not set again).
pub(crate) struct ConnTimer<'a> {
    sleep: Pin<&'a mut Sleep>,
    armed: &'a mut Option<Instant>,
}

impl<'a> ConnTimer<'a> {
    /// Lend `sleep`, which is set for `armed` (or, if `None`, fired).
    pub(crate) fn new(sleep: Pin<&'a mut Sleep>, armed: &'a mut Option<Instant>) -> Self {
        ConnTimer { sleep, armed }
    }

    /// Make sure the timer fires no later than `at`. It is moved only when
    /// it is set for later (or has fired): moving it sooner is a wheel
    /// removal and insert, leaving it is free.
    pub(crate) fn arm_by(&mut self, at: Instant) {
        if self.armed.is_none_or(|set| set > at) {
            self.sleep.as_mut().reset(at.into());
            *self.armed = Some(at);
        }
    }

    /// Ready once `at` has passed. The timer may fire sooner (for the
    /// connection's own deadlines): the clock is then read and the timer
    /// set for `at`.
    pub(crate) fn poll_until(&mut self, cx: &mut Context<'_>, at: Instant) -> Poll<()> {
        loop {
            self.arm_by(at);
            ready!(self.sleep.as_mut().poll(cx));
            *self.armed = None;
            if Instant::now() >= at {
                return Poll::Ready(());
            }
        }
    }

    /// Wait until `at` has passed.
    pub(crate) async fn until(mut self, at: Instant) {
        poll_fn(|cx| self.poll_until(cx, at)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_for_its_deadline_when_the_timer_is_set_sooner_or_later() {
        let start = Instant::now();
        let mut sleep = pin!(tokio::time::sleep_until(start.into()));
        let mut armed = Some(start);
        // Set sooner than the deadline (it has already passed): the wait
        // must not end when the timer fires.
        let at = start + Duration::from_millis(30);
        ConnTimer::new(sleep.as_mut(), &mut armed).until(at).await;
        assert!(Instant::now() >= at);
        assert_eq!(armed, None, "a fired timer is marked so");

        // Set later than the deadline: the wait moves it sooner.
        let later = Instant::now() + Duration::from_secs(60);
        sleep.as_mut().reset(later.into());
        armed = Some(later);
        let at = Instant::now() + Duration::from_millis(20);
        ConnTimer::new(sleep.as_mut(), &mut armed).until(at).await;
        assert!(Instant::now() >= at);
    }

    #[tokio::test]
    async fn arming_later_leaves_a_sooner_setting() {
        let start = Instant::now();
        let soon = start + Duration::from_millis(10);
        let mut sleep = pin!(tokio::time::sleep_until(soon.into()));
        let mut armed = Some(soon);
        ConnTimer::new(sleep.as_mut(), &mut armed).arm_by(start + Duration::from_secs(60));
        assert_eq!(armed, Some(soon));
        assert_eq!(sleep.deadline(), soon.into());
        let sooner = start + Duration::from_millis(5);
        ConnTimer::new(sleep.as_mut(), &mut armed).arm_by(sooner);
        assert_eq!(armed, Some(sooner));
        assert_eq!(sleep.deadline(), sooner.into());
    }
}
