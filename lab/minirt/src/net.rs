//! TCP on the reactor: [`TcpListener`] and [`TcpStream`], with `accept`,
//! `connect`, `read`, `write` and `write_all` as hand-written futures.
//!
//! Every operation has the same shape (see `reactor.rs`): if the socket's
//! flag says it may be ready, make the system call; on `WouldBlock` clear
//! the flag, leave the task's waker with the reactor and return `Pending`.
//! A read shorter than the buffer also clears the flag: the socket is empty
//! and the next bytes will raise an event, so the next read waits for it
//! instead of making a system call that would fail (two system calls per
//! echo, not three). The methods take `&self`, so one task can read and
//! write the same socket in one `select`.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use crate::executor::{Core, with_core};
use crate::reactor::{Direction, IoState};

/// A socket's place in the reactor; deregisters on drop.
struct Registration {
    core: Rc<Core>,
    key: usize,
    state: Rc<IoState>,
}

impl Registration {
    fn new(source: &mut impl mio::event::Source, writable: bool) -> io::Result<Registration> {
        with_core(|core| {
            let (key, state) = core.reactor.register(source, true, writable)?;
            Ok(Registration {
                core: Rc::clone(core),
                key,
                state,
            })
        })
    }

    /// Runs the non-blocking `op` while the socket may be ready in `dir`.
    fn poll_io<T>(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            if !self.state.is_ready(dir) {
                self.state.wait(dir, cx);
                return Poll::Pending;
            }
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.state.clear_and_wait(dir, cx);
                    return Poll::Pending;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return Poll::Ready(other),
            }
        }
    }
}

/// A listening TCP socket of the runtime.
pub struct TcpListener {
    io: mio::net::TcpListener,
    reg: Registration,
}

impl TcpListener {
    /// Binds `addr` (std's defaults: `SO_REUSEADDR`, backlog 128).
    ///
    /// # Panics
    ///
    /// Outside [`crate::Runtime::block_on`].
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::from_std(std::net::TcpListener::bind(addr)?)
    }

    /// Takes over a bound std listener (made non-blocking here).
    ///
    /// # Panics
    ///
    /// Outside [`crate::Runtime::block_on`].
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        let mut io = mio::net::TcpListener::from_std(listener);
        let reg = Registration::new(&mut io, false)?;
        Ok(TcpListener { io, reg })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Waits for the next connection.
    pub fn accept(&self) -> Accept<'_> {
        Accept { listener: self }
    }

    /// Polls for the next connection.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let (io, addr) = ready!(self.reg.poll_io(Direction::Read, cx, || self.io.accept()))?;
        Poll::Ready(TcpStream::new(io, true).map(|s| (s, addr)))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.reg.core.reactor.deregister(self.reg.key, &mut self.io);
    }
}

/// A connected TCP socket of the runtime.
pub struct TcpStream {
    io: mio::net::TcpStream,
    reg: Registration,
}

impl TcpStream {
    fn new(mut io: mio::net::TcpStream, connected: bool) -> io::Result<TcpStream> {
        let reg = Registration::new(&mut io, connected)?;
        Ok(TcpStream { io, reg })
    }

    /// Connects to `addr`.
    ///
    /// # Panics
    ///
    /// When polled outside [`crate::Runtime::block_on`].
    pub fn connect(addr: SocketAddr) -> Connect {
        Connect { addr, stream: None }
    }

    /// The other end's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// Sets `TCP_NODELAY` (no Nagle delay for small writes).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.io.set_nodelay(on)
    }

    /// Reads what is there, waiting until something is; `Ok(0)` is the end
    /// of the stream.
    pub fn read<'a>(&'a self, buf: &'a mut [u8]) -> ReadFuture<'a> {
        ReadFuture { stream: self, buf }
    }

    /// Writes some of `buf`, waiting until the socket takes some.
    pub fn write<'a>(&'a self, buf: &'a [u8]) -> WriteFuture<'a> {
        WriteFuture { stream: self, buf }
    }

    /// Writes all of `buf`.
    pub fn write_all<'a>(&'a self, buf: &'a [u8]) -> WriteAll<'a> {
        WriteAll { stream: self, buf }
    }

    /// Polls a read (see [`TcpStream::read`]).
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let offered = buf.len();
        let n = ready!(
            self.reg
                .poll_io(Direction::Read, cx, || (&self.io).read(&mut *buf))
        )?;
        if n > 0 && n < offered {
            // Short: the socket is empty now (see the module doc). After a
            // hang-up no new edge comes, but the reactor's sticky
            // `read_closed` keeps the next read from waiting for one.
            self.reg.state.clear(Direction::Read);
        }
        Poll::Ready(Ok(n))
    }

    /// Polls a write (see [`TcpStream::write`]).
    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.reg
            .poll_io(Direction::Write, cx, || (&self.io).write(buf))
    }

    /// Reads what the socket holds now, without waiting and whatever the
    /// reactor last heard: `WouldBlock` when there is nothing. For a drain,
    /// where bytes that came just before the stop must not be missed.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.io).read(buf)
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.reg.core.reactor.deregister(self.reg.key, &mut self.io);
    }
}

/// The future of [`TcpListener::accept`].
#[must_use = "futures do nothing unless awaited"]
pub struct Accept<'a> {
    listener: &'a TcpListener,
}

impl Future for Accept<'_> {
    type Output = io::Result<(TcpStream, SocketAddr)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.listener.poll_accept(cx)
    }
}

/// The future of [`TcpStream::read`].
#[must_use = "futures do nothing unless awaited"]
pub struct ReadFuture<'a> {
    stream: &'a TcpStream,
    buf: &'a mut [u8],
}

impl Future for ReadFuture<'_> {
    type Output = io::Result<usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `ReadFuture` is `Unpin` (a reference and a slice), so it may be
        // reached through the pin as a plain `&mut`.
        let this = self.get_mut();
        this.stream.poll_read(cx, this.buf)
    }
}

/// The future of [`TcpStream::write`].
#[must_use = "futures do nothing unless awaited"]
pub struct WriteFuture<'a> {
    stream: &'a TcpStream,
    buf: &'a [u8],
}

impl Future for WriteFuture<'_> {
    type Output = io::Result<usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.stream.poll_write(cx, self.buf)
    }
}

/// The future of [`TcpStream::write_all`].
#[must_use = "futures do nothing unless awaited"]
pub struct WriteAll<'a> {
    stream: &'a TcpStream,
    buf: &'a [u8],
}

impl Future for WriteAll<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Unpin` (two references): the pin can give a plain `&mut`.
        let this = self.get_mut();
        while !this.buf.is_empty() {
            let n = ready!(this.stream.poll_write(cx, this.buf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.buf = &this.buf[n..]; // what is left, kept across a Pending
        }
        Poll::Ready(Ok(()))
    }
}

/// The future of [`TcpStream::connect`].
#[must_use = "futures do nothing unless awaited"]
pub struct Connect {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Future for Connect {
    type Output = io::Result<TcpStream>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.stream.is_none() {
            // Starts a non-blocking connect; the socket is writable once
            // it is connected (or has failed).
            let io = mio::net::TcpStream::connect(self.addr)?;
            self.stream = Some(TcpStream::new(io, false)?);
        }
        let Some(stream) = &self.stream else {
            unreachable!("set above")
        };
        loop {
            if !stream.reg.state.is_ready(Direction::Write) {
                stream.reg.state.wait(Direction::Write, cx);
                return Poll::Pending;
            }
            if let Some(e) = stream.io.take_error()? {
                return Poll::Ready(Err(e));
            }
            match stream.io.peer_addr() {
                Ok(_) => break,
                // Not yet: a spurious writable event; wait for the next.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    stream.reg.state.clear(Direction::Write);
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(self.stream.take().expect("set above")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Runtime, spawn};

    #[test]
    fn dropping_a_socket_deregisters_it() {
        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let server = spawn(async move { listener.accept().await.map(|(s, _)| s) });
            let client = TcpStream::connect(addr).await.unwrap();
            let accepted = server.await.unwrap();
            // The listener was dropped with its task; two streams remain.
            with_core(|core| assert_eq!(core.reactor.len(), 2));
            drop((client, accepted));
            with_core(|core| assert_eq!(core.reactor.len(), 0));
        });
    }
}
