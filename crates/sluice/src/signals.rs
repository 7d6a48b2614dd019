//! Process signals in one place: SIGTERM/SIGINT cancel the shutdown token,
//! SIGHUP calls the reload hook.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Watch signals until shutdown: cancel `shutdown` on SIGTERM or SIGINT, call `on_hup` on SIGHUP.
pub(crate) fn spawn(
    shutdown: CancellationToken,
    on_hup: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); shutdown.cancel(); return; }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); shutdown.cancel(); return; }
                _ = hup.recv() => { tracing::info!("SIGHUP: reloading"); on_hup(); }
                _ = shutdown.cancelled() => return,
            }
        }
    });
    Ok(())
}
