//! The reactor: one mio `Poll` (an `epoll` instance) for every socket of
//! the runtime, and the readiness each socket last reported.
//!
//! Sockets are registered edge-triggered, for reading and writing, once.
//! Each has an [`IoState`]: two flags, "may be readable" and "may be
//! writable", and the waker of whoever waits for each. A socket operation
//! (`net.rs`) runs only while its flag is set; when the kernel answers
//! `WouldBlock` it clears the flag, stores the task's waker and returns
//! `Pending`. An event sets the flag again and wakes that waker. With
//! edge-triggered epoll this loses nothing: bytes arriving after the
//! failed (or short) read raise a new event. A hang-up or an error is
//! remembered apart and never cleared: after the peer's FIN no new edge
//! comes, so a read that emptied the socket must not make the next read
//! wait for one (found by a test that hung one run in three).
//!
//! An epoll token is the socket's slab key; [`WAKE_TOKEN`] is the
//! `mio::Waker` other threads use to break the wait.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::task::{Context, Waker};
use std::time::Duration;

use mio::event::Source;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::slab::Slab;

/// The token of the cross-thread `mio::Waker`; no socket gets it.
const WAKE_TOKEN: Token = Token(usize::MAX);

/// Events read per `epoll_wait`.
const EVENTS: usize = 1024;

/// Readiness and waiters of one socket.
#[derive(Debug)]
pub(crate) struct IoState {
    readable: Cell<bool>,
    writable: Cell<bool>,
    /// The peer closed its side, or the socket has an error: sticky, never
    /// cleared. After a hang-up no new edge comes, so a short read must not
    /// make the next read wait: it returns end of stream (or the error).
    read_closed: Cell<bool>,
    write_closed: Cell<bool>,
    reader: RefCell<Option<Waker>>,
    writer: RefCell<Option<Waker>>,
}

/// Which half of a socket: its reads or its writes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl IoState {
    fn flag(&self, dir: Direction) -> &Cell<bool> {
        match dir {
            Direction::Read => &self.readable,
            Direction::Write => &self.writable,
        }
    }

    /// Whether the last word from the kernel was "ready" in `dir`, or
    /// that side is closed (then the call returns at once).
    pub(crate) fn is_ready(&self, dir: Direction) -> bool {
        self.flag(dir).get()
            || match dir {
                Direction::Read => self.read_closed.get(),
                Direction::Write => self.write_closed.get(),
            }
    }

    /// The kernel said `WouldBlock` (or a short read emptied the socket):
    /// wait for the next event in `dir`, and wake `cx`'s task then.
    pub(crate) fn clear_and_wait(&self, dir: Direction, cx: &mut Context<'_>) {
        self.flag(dir).set(false);
        self.wait(dir, cx);
    }

    /// Forgets readiness in `dir` without waiting (the next operation waits).
    pub(crate) fn clear(&self, dir: Direction) {
        self.flag(dir).set(false);
    }

    /// Stores `cx`'s waker as the one to wake on the next event in `dir`.
    pub(crate) fn wait(&self, dir: Direction, cx: &mut Context<'_>) {
        let slot = match dir {
            Direction::Read => &self.reader,
            Direction::Write => &self.writer,
        };
        let mut slot = slot.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *slot = Some(cx.waker().clone());
        }
    }

    fn ready(&self, dir: Direction) {
        self.flag(dir).set(true);
        let slot = match dir {
            Direction::Read => &self.reader,
            Direction::Write => &self.writer,
        };
        let waker = slot.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The runtime's `epoll` and its sockets.
pub(crate) struct Reactor {
    poll: RefCell<Poll>,
    events: RefCell<Events>,
    sources: RefCell<Slab<Rc<IoState>>>,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            poll: RefCell::new(Poll::new()?),
            events: RefCell::new(Events::with_capacity(EVENTS)),
            sources: RefCell::new(Slab::default()),
        })
    }

    /// The handle other threads use to break the wait.
    pub(crate) fn waker(&self) -> io::Result<mio::Waker> {
        mio::Waker::new(self.poll.borrow().registry(), WAKE_TOKEN)
    }

    /// Registers `source` for both directions; `writable` is the flag's
    /// starting value (true for a connected socket, false for one still
    /// connecting, which becomes writable when connected).
    pub(crate) fn register(
        &self,
        source: &mut impl Source,
        readable: bool,
        writable: bool,
    ) -> io::Result<(usize, Rc<IoState>)> {
        let state = Rc::new(IoState {
            readable: Cell::new(readable),
            writable: Cell::new(writable),
            read_closed: Cell::new(false),
            write_closed: Cell::new(false),
            reader: RefCell::new(None),
            writer: RefCell::new(None),
        });
        let mut sources = self.sources.borrow_mut();
        let key = sources.next_key();
        self.registry(|r| r.register(source, Token(key), Interest::READABLE | Interest::WRITABLE))?;
        sources.insert(Rc::clone(&state));
        Ok((key, state))
    }

    /// Removes `source` (before it is closed).
    pub(crate) fn deregister(&self, key: usize, source: &mut impl Source) {
        // Fails only if the socket is not registered; closing it removes it anyway.
        let _ = self.registry(|r| r.deregister(source));
        self.sources.borrow_mut().remove(key);
    }

    fn registry<R>(&self, f: impl FnOnce(&Registry) -> R) -> R {
        f(self.poll.borrow().registry())
    }

    /// Waits for events, at most `timeout` (`None`: until one comes).
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = self.events.borrow_mut();
        loop {
            match self.poll.borrow_mut().poll(&mut events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Marks the sockets of the last `wait`'s events ready and wakes their waiters.
    pub(crate) fn dispatch(&self) {
        let events = self.events.borrow();
        for event in events.iter() {
            if event.token() == WAKE_TOKEN {
                continue; // only there to end the wait
            }
            let Some(state) = self.sources.borrow().get(event.token().0).cloned() else {
                continue; // deregistered since
            };
            // Errors and hang-ups wake both sides: the next call reports them.
            if event.is_read_closed() || event.is_error() {
                state.read_closed.set(true);
            }
            if event.is_write_closed() || event.is_error() {
                state.write_closed.set(true);
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                state.ready(Direction::Read);
            }
            if event.is_writable() || event.is_write_closed() || event.is_error() {
                state.ready(Direction::Write);
            }
        }
    }

    /// Registered sockets.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sources.borrow().len()
    }
}
