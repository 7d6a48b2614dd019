//! The echo server of `sluice-minirt` (a task per connection on the lab's
//! hand-written single-threaded runtime), behind this crate's [`Config`],
//! [`Shutdown`] and [`Report`].
//!
//! The server itself lives in `sluice_minirt::echo`; this adapter maps the
//! settings and turns the [`Shutdown`] condvar into minirt's stop channel:
//! a plain thread waits for the shutdown and then drops the channel's
//! sender, which wakes the runtime out of `epoll` from another thread.
//! `config.workers` does not apply: minirt runs everything on one thread.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_minirt::echo::{self, EchoConfig};

use crate::config::{Config, Report, Shutdown};

/// How often the stop thread looks whether the server ended on its own
/// (an accept error); a shutdown itself wakes it at once.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Serves `listener` on a minirt runtime on this thread until `shutdown`
/// triggers, then drains. Blocks the calling thread.
pub fn run(
    listener: std::net::TcpListener,
    config: &Config,
    shutdown: &Shutdown,
) -> io::Result<Report> {
    config.check()?;
    let (stop, stop_rx) = sluice_minirt::channel::<()>();
    let ended = Arc::new(AtomicBool::new(false));
    let watcher = {
        let shutdown = shutdown.clone();
        let ended = Arc::clone(&ended);
        std::thread::Builder::new()
            .name("echo-minirt-stop".to_owned())
            .spawn(move || {
                while !shutdown.wait_timeout(STOP_POLL) {
                    if ended.load(Ordering::SeqCst) {
                        return;
                    }
                }
                drop(stop); // the last sender: the server's stop resolves
            })?
    };
    let report = echo::run(
        listener,
        EchoConfig {
            max_connections: config.max_connections,
            idle_timeout: config.idle_timeout,
            drain_deadline: config.drain_deadline,
            buffer_size: config.buffer_size,
        },
        stop_rx,
    );
    ended.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    let r = report?;
    Ok(Report {
        accepted: r.accepted,
        refused: r.refused,
        idle_closed: r.idle_closed,
        open_at_shutdown: r.open_at_shutdown,
        forced: r.forced,
    })
}
