//! Timers: [`sleep`] and [`Sleep`], and the executor's heap of deadlines.
//!
//! A `Sleep` registers itself on its first pending poll: one entry in a
//! [`BinaryHeap`] ordered by deadline (earliest on top), pointing at a small
//! shared cell with the waker and a `fired` flag. The executor pops what is
//! due after every turn and parks in `epoll` no longer than the top
//! deadline, so an idle runtime with a timer wakes once, when it is due.
//!
//! Cancelling is lazy: dropping a `Sleep` drops its half of the cell, and
//! the heap discards an entry whose cell nobody else holds when it reaches
//! the top. Polling again only swaps the waker if it changed (the same task
//! polls with the same waker, so that is one comparison). Compare tokio's
//! hierarchical timer wheel: O(1) insert and cancel, 1 ms resolution;
//! a heap is O(log n) and exact to the `epoll` timeout's millisecond.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::executor::with_core;

/// What a `Sleep` and its heap entry share.
#[derive(Debug, Default)]
struct TimerCell {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

struct Entry {
    deadline: Instant,
    /// Insertion order, so equal deadlines fire first come, first served.
    seq: u64,
    cell: Rc<TimerCell>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest must be on top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

/// The executor's pending timers.
#[derive(Default)]
pub(crate) struct Timers {
    heap: RefCell<BinaryHeap<Entry>>,
    seq: Cell<u64>,
}

impl Timers {
    fn insert(&self, deadline: Instant, cell: Rc<TimerCell>) {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        self.heap.borrow_mut().push(Entry {
            deadline,
            seq,
            cell,
        });
    }

    /// The earliest deadline of a timer someone still waits for.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let mut heap = self.heap.borrow_mut();
        while let Some(top) = heap.peek() {
            if Rc::strong_count(&top.cell) > 1 {
                return Some(top.deadline);
            }
            heap.pop(); // its Sleep was dropped
        }
        None
    }

    /// Whether no timer is pending (then the clock need not be read).
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.borrow().is_empty()
    }

    /// Fires every timer due at `now`, earliest first.
    pub(crate) fn fire(&self, now: Instant) {
        loop {
            let entry = {
                let mut heap = self.heap.borrow_mut();
                match heap.peek() {
                    Some(top) if top.deadline <= now => heap.pop(),
                    _ => return,
                }
            };
            // Woken outside the heap's borrow: a waker may be anything.
            if let Some(entry) = entry {
                entry.cell.fired.set(true);
                let waker = entry.cell.waker.borrow_mut().take();
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
        }
    }

    /// Timers in the heap, cancelled ones not yet discarded included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.borrow().len()
    }
}

/// A future that completes at a deadline. `Unpin`: it holds no
/// self-reference, so it can be polled through `Pin::new(&mut sleep)` and
/// reused in a loop with [`Sleep::reset`].
#[derive(Debug)]
#[must_use = "a Sleep does nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    cell: Option<Rc<TimerCell>>,
}

/// Completes after `duration`, counted from this call.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Completes at `deadline` (at once if it has passed).
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        cell: None,
    }
}

impl Sleep {
    /// When it completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline (earlier or later); a completed `Sleep` can wait again.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.cell = None; // the old heap entry is now cancelled
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.cell {
            Some(cell) => {
                if cell.fired.get() {
                    return Poll::Ready(());
                }
                let mut waker = cell.waker.borrow_mut();
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            None => {
                if Instant::now() >= self.deadline {
                    return Poll::Ready(());
                }
                let cell = Rc::new(TimerCell {
                    fired: Cell::new(false),
                    waker: RefCell::new(Some(cx.waker().clone())),
                });
                let deadline = self.deadline;
                with_core(|core| core.timers.insert(deadline, Rc::clone(&cell)));
                self.cell = Some(cell);
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Runtime;

    #[test]
    fn the_heap_pops_the_earliest_deadline_first_and_ties_in_order() {
        let timers = Timers::default();
        let t0 = Instant::now();
        let cells: Vec<Rc<TimerCell>> = (0..4).map(|_| Rc::default()).collect();
        timers.insert(t0 + Duration::from_millis(30), Rc::clone(&cells[0]));
        timers.insert(t0 + Duration::from_millis(10), Rc::clone(&cells[1]));
        timers.insert(t0 + Duration::from_millis(20), Rc::clone(&cells[2]));
        timers.insert(t0 + Duration::from_millis(10), Rc::clone(&cells[3]));
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_millis(10)));
        timers.fire(t0 + Duration::from_millis(15));
        let fired: Vec<bool> = cells.iter().map(|c| c.fired.get()).collect();
        assert_eq!(fired, [false, true, false, true]);
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_millis(20)));
    }

    #[test]
    fn a_dropped_sleep_is_discarded_and_does_not_hold_the_park() {
        let timers = Timers::default();
        let t0 = Instant::now();
        let dropped = Rc::<TimerCell>::default();
        let kept = Rc::<TimerCell>::default();
        timers.insert(t0 + Duration::from_millis(1), Rc::clone(&dropped));
        timers.insert(t0 + Duration::from_secs(5), Rc::clone(&kept));
        drop(dropped);
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn a_sleep_polled_again_registers_once() {
        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            let mut s = sleep(Duration::from_millis(20));
            for _ in 0..3 {
                let polled = crate::select(&mut s, crate::yield_now()).await;
                assert!(matches!(polled, crate::Either::Right(())));
            }
            with_core(|core| assert_eq!(core.timers.len(), 1));
            s.await;
        });
    }
}
