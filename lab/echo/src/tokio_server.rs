//! One tokio task per connection: the thread-per-connection code again,
//! with `.await` where it blocked.
//!
//! The loop is the same `read` then `write_all`, on tokio's sockets (the
//! read forgets the socket's readiness after a short read; see
//! `crate::readiness`). A task that waits for its client is a parked future in
//! the runtime's memory, not a thread; the runtime's few workers wait for
//! all sockets at once in `epoll` (mio) and run whichever task's socket is
//! ready, so an echo costs no context switch and a connection costs its
//! buffer and a few hundred bytes of task.
//!
//! - **Limit**: counted in the accept loop; an excess connection is dropped.
//! - **Idle timeout**: one `Sleep` per connection, armed for
//!   `idle_timeout` after the last read. It is *not* reset on every read
//!   (that would move a timer-wheel entry per message): when it fires, the
//!   task compares the time of the last read and re-arms it if the client
//!   was not quiet long enough. Per message that costs one clock read.
//! - **Drain**: the accept loop stops and drops every connection's
//!   `oneshot` stop sender; each task, woken by that, reads what its socket
//!   holds without waiting, echoes it and ends. The server waits for its
//!   `JoinSet` until the deadline, then aborts the rest (dropping a task
//!   drops its socket). A `oneshot` receiver costs an atomic load per poll;
//!   a shared `Notify` or `watch` would take a lock on every poll of every
//!   connection.

use std::collections::HashMap;
use std::io::{self, Read as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use crate::config::{Config, Counters, Report, Shutdown, Slot, accept_error_is_transient};
use crate::readiness::read_forgetting;

/// Builds a multi-threaded runtime with `config.workers` workers and runs
/// [`serve`] on it. Blocks the calling thread.
pub fn run(
    listener: std::net::TcpListener,
    config: &Config,
    shutdown: &Shutdown,
) -> io::Result<Report> {
    config.check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers)
        .thread_name("echo-tokio")
        .enable_all()
        .build()?;
    listener.set_nonblocking(true)?;
    let report = runtime.block_on(async {
        let listener = TcpListener::from_std(listener)?;
        serve(listener, config, shutdown).await
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    report
}

/// Serves `listener` until `shutdown` triggers, then drains and returns
/// what happened. Runs on the caller's runtime.
pub async fn serve(
    listener: TcpListener,
    config: &Config,
    shutdown: &Shutdown,
) -> io::Result<Report> {
    config.check()?;
    let counters = Arc::new(Counters::default());
    let mut tasks = JoinSet::new();
    // One stop signal per open connection, by task.
    let mut stops: HashMap<Id, oneshot::Sender<()>> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if !counters.admit(config.max_connections) {
                        drop(stream);
                        continue;
                    }
                    let slot = Slot::new(&counters);
                    let (stop_tx, stop_rx) = oneshot::channel();
                    let conn = connection(stream, config.clone(), Arc::clone(&counters), stop_rx, slot);
                    let id = tasks.spawn(conn).id();
                    stops.insert(id, stop_tx);
                }
                Err(e) if accept_error_is_transient(&e) => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(e) => return Err(e),
            },
            // Reap finished tasks so the set does not grow with every connection.
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                stops.remove(&id);
            }
        }
    }
    drop(listener);
    let open = tasks.len();
    // Dropping a sender wakes its task as surely as sending would.
    drop(stops);
    let drained = tokio::time::timeout(config.drain_deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let forced = match drained {
        Ok(()) => 0,
        Err(_) => {
            let forced = tasks.len();
            // Aborting a task drops its socket, which closes it.
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            forced
        }
    };
    Ok(counters.report(open, forced))
}

/// One connection's life: read, echo, repeat, until end of stream, an
/// error, the idle timeout or the stop signal.
async fn connection(
    mut stream: TcpStream,
    config: Config,
    counters: Arc<Counters>,
    mut stop: oneshot::Receiver<()>,
    _slot: Slot,
) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; config.buffer_size];
    let offered = buf.len();
    // Without a timeout the timer is armed for a year and never fires.
    let idle = config
        .idle_timeout
        .unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let mut last_read = Instant::now();
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            // A short read has emptied the socket's queue.
            read = read_forgetting(&stream, &mut buf, |n| n < offered) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    last_read = Instant::now();
                }
            },
            _ = &mut stop => {
                drain(&mut stream, &mut buf).await;
                return;
            }
            () = &mut timer => {
                let quiet_until = last_read + idle;
                if Instant::now() >= quiet_until {
                    counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                timer.as_mut().reset(quiet_until);
            }
        }
    }
}

/// Echoes what the socket holds now. Reads go straight to the socket
/// (through `socket2`), not through tokio's `try_read`: that one trusts the
/// runtime's readiness flag, which may not yet know of bytes that arrived
/// just before the stop.
async fn drain(stream: &mut TcpStream, buf: &mut [u8]) {
    loop {
        let read = {
            let sock = socket2::SockRef::from(&*stream);
            (&*sock).read(buf)
        };
        match read {
            Ok(0) | Err(_) => return, // end of stream, nothing left (WouldBlock), or an error
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
