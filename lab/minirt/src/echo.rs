//! A TCP echo server on minirt: one task per connection, the fourth
//! server of the lab's `echo` experiment (after `sluice-echo`'s threaded,
//! pooled and tokio servers), with the same limit, idle timeout and drain.
//!
//! - **Limit**: counted in the accept loop; an excess connection is closed at once.
//! - **Idle timeout**: one [`Sleep`] per connection, armed for the
//!   timeout after the last read and not moved on every read: when it fires
//!   the task compares the time of the last read and re-arms it if the
//!   client was not quiet long enough.
//! - **Stop**: a [`Receiver`] whose sender lives on another thread (a
//!   message, or dropping every sender, stops the server): the cross-thread
//!   wake-up at work. The server then tells its connections through a
//!   shared flag with one waker per connection; each reads what its socket
//!   holds without waiting, echoes it and closes. Connections still open at
//!   the drain deadline are closed by force (dropped with the runtime).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::channel::Receiver;
use crate::executor::{Runtime, spawn};
use crate::net::{TcpListener, TcpStream};
use crate::select::{Either, select};
use crate::slab::Slab;
use crate::timer::{Sleep, sleep};

/// How the server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoConfig {
    /// Most connections open at once; one more is accepted and closed.
    pub max_connections: usize,
    /// Close a connection that sends nothing for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// After the stop, how long connections get to echo what they hold.
    pub drain_deadline: Duration,
    /// Bytes read (and echoed) per read; one buffer per connection.
    pub buffer_size: usize,
}

impl Default for EchoConfig {
    /// 10,000 connections, 60 s idle timeout, 5 s drain, 4 KiB buffers.
    fn default() -> Self {
        EchoConfig {
            max_connections: 10_000,
            idle_timeout: Some(Duration::from_secs(60)),
            drain_deadline: Duration::from_secs(5),
            buffer_size: 4096,
        }
    }
}

/// What the server did, returned when it has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EchoReport {
    /// Connections served.
    pub accepted: u64,
    /// Connections closed at once because `max_connections` were open.
    pub refused: u64,
    /// Connections closed by the idle timeout.
    pub idle_closed: u64,
    /// Connections open when the stop came.
    pub open_at_shutdown: u64,
    /// Of those, the ones still open at the drain deadline.
    pub forced: u64,
}

/// Serves `listener` on a new runtime on this thread until `stop` yields a
/// message or loses its last sender, drains, and reports.
pub fn run(
    listener: std::net::TcpListener,
    config: EchoConfig,
    stop: Receiver<()>,
) -> io::Result<EchoReport> {
    if config.buffer_size == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "echo config: buffer_size must be at least 1",
        ));
    }
    let runtime = Runtime::new()?;
    let report = runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        serve(listener, config, stop).await
    });
    // Connections the drain did not finish are closed here, with their tasks.
    drop(runtime);
    report
}

/// Serves `listener` on the current runtime (see [`run`]).
pub async fn serve(
    listener: TcpListener,
    config: EchoConfig,
    mut stop: Receiver<()>,
) -> io::Result<EchoReport> {
    let conns = Rc::new(Connections::default());
    let mut report = EchoReport::default();
    loop {
        match select(stop.recv(), listener.accept()).await {
            Either::Left(_) => break, // a message, or no sender left
            Either::Right(Ok((stream, _))) => {
                if conns.open.get() >= config.max_connections {
                    report.refused += 1;
                    drop(stream);
                    continue;
                }
                report.accepted += 1;
                let id = conns.join();
                spawn(connection(stream, Rc::clone(&conns), id, config.clone()));
            }
            Either::Right(Err(e)) if transient(&e) => sleep(Duration::from_millis(2)).await,
            Either::Right(Err(e)) => return Err(e),
        }
    }
    drop(listener);
    report.open_at_shutdown = conns.open.get() as u64;
    conns.stop();
    if let Either::Right(()) = select(conns.all_closed(), sleep(config.drain_deadline)).await {
        report.forced = conns.open.get() as u64;
    }
    report.idle_closed = conns.idle_closed.get();
    Ok(report)
}

/// Accept errors worth a short pause and a retry: out of descriptors
/// (EMFILE 24, ENFILE 23) or memory, or a client that left mid-handshake.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || matches!(e.raw_os_error(), Some(23 | 24 | 12 | 105))
}

/// One connection's life: read, echo, repeat, until end of stream, an
/// error, the idle timeout or the stop.
async fn connection(stream: TcpStream, conns: Rc<Connections>, id: usize, config: EchoConfig) {
    let _left = Leave(Rc::clone(&conns), id);
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; config.buffer_size];
    let mut last_read = Instant::now();
    let mut idle = config.idle_timeout.map(sleep);
    loop {
        let timer = IdleTimer(idle.as_mut());
        let event = select(stream.read(&mut buf), select(conns.stopped(id), timer)).await;
        match event {
            Either::Left(Ok(0) | Err(_)) => return,
            Either::Left(Ok(n)) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                if idle.is_some() {
                    last_read = Instant::now();
                }
            }
            Either::Right(Either::Left(())) => {
                drain(&stream, &mut buf).await;
                return;
            }
            Either::Right(Either::Right(())) => {
                let (Some(timeout), Some(timer)) = (config.idle_timeout, idle.as_mut()) else {
                    unreachable!("an idle timer fires only when there is one")
                };
                let quiet_until = last_read + timeout;
                if Instant::now() >= quiet_until {
                    conns.idle_closed.set(conns.idle_closed.get() + 1);
                    return;
                }
                timer.reset(quiet_until);
            }
        }
    }
}

/// Echoes what the socket holds now, without waiting for more.
async fn drain(stream: &TcpStream, buf: &mut [u8]) {
    loop {
        match stream.try_read(buf) {
            Ok(0) | Err(_) => return, // end of stream, nothing left (WouldBlock), or an error
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The connection's idle timer, or a future that never completes.
struct IdleTimer<'a>(Option<&'a mut Sleep>);

impl Future for IdleTimer<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Some(sleep) => Pin::new(&mut **sleep).poll(cx),
            None => Poll::Pending,
        }
    }
}

/// The open connections, as the server sees them: how many, whether they
/// were told to stop, and who to wake for it. Single-threaded: `Cell`s.
#[derive(Default)]
struct Connections {
    open: Cell<usize>,
    idle_closed: Cell<u64>,
    stopping: Cell<bool>,
    /// Each open connection's stop waker, by id.
    waiters: RefCell<Slab<Option<Waker>>>,
    /// The server, waiting for the last connection to close.
    server: RefCell<Option<Waker>>,
}

impl Connections {
    fn join(&self) -> usize {
        self.open.set(self.open.get() + 1);
        self.waiters.borrow_mut().insert(None)
    }

    fn stop(&self) {
        self.stopping.set(true);
        let wakers: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    fn stopped(&self, id: usize) -> Stopped<'_> {
        Stopped { conns: self, id }
    }

    fn all_closed(&self) -> AllClosed<'_> {
        AllClosed { conns: self }
    }
}

/// Counts a connection out when its task ends (or is dropped).
struct Leave(Rc<Connections>, usize);

impl Drop for Leave {
    fn drop(&mut self) {
        let conns = &self.0;
        conns.waiters.borrow_mut().remove(self.1);
        conns.open.set(conns.open.get() - 1);
        if conns.open.get() == 0 {
            let server = conns.server.borrow_mut().take();
            if let Some(server) = server {
                server.wake();
            }
        }
    }
}

/// Completes when the server stops.
struct Stopped<'a> {
    conns: &'a Connections,
    id: usize,
}

impl Future for Stopped<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.conns.stopping.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.conns.waiters.borrow_mut();
        if let Some(slot) = waiters.get_mut(self.id)
            && !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
        {
            *slot = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Completes when no connection is open.
struct AllClosed<'a> {
    conns: &'a Connections,
}

impl Future for AllClosed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.conns.open.get() == 0 {
            return Poll::Ready(());
        }
        *self.conns.server.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}
