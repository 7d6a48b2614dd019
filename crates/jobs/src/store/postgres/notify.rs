//! Wake-ups across processes. A transaction that made jobs runnable sends
//! `NOTIFY sluice_jobs`; one that changed jobs sends `NOTIFY
//! sluice_changes`; both with the schema as payload, and both delivered
//! only if it commits. Each store listens on one connection and ticks its
//! watch channels, and also ticks them every `poll_fallback`, so a
//! notification lost while the listening connection reconnects costs at
//! most that long.

use std::time::Duration;

use sqlx::PgConnection;
use sqlx::postgres::{PgListener, PgPool};
use tokio_util::sync::CancellationToken;

use super::Ticks;
use crate::store::StoreError;

/// Channel for "jobs became runnable".
const WAKE: &str = "sluice_jobs";
/// Channel for "jobs changed".
const CHANGED: &str = "sluice_changes";

/// Queues this transaction's notifications (sent at commit, dropped on
/// rollback; PostgreSQL folds duplicates within one transaction).
pub(super) async fn send(
    c: &mut PgConnection,
    key: &str,
    changed: bool,
    wake: bool,
) -> Result<(), StoreError> {
    let mut channels = Vec::with_capacity(2);
    if changed {
        channels.push(CHANGED);
    }
    if wake {
        channels.push(WAKE);
    }
    if channels.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify(ch, $1) FROM UNNEST($2::text[]) AS ch")
        .bind(key)
        .bind(&channels)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Opens the listening connection (at open, so a store that cannot listen
/// fails to open rather than silently falling back to polling).
pub(super) async fn listen(pool: &PgPool) -> Result<PgListener, StoreError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([WAKE, CHANGED]).await?;
    Ok(listener)
}

/// Ticks on notifications for `key` and on the polling fallback, until
/// `stop`. The two run side by side rather than in one `select!`, so a
/// poll tick never interrupts a notification half read.
pub(super) async fn run(
    mut listener: PgListener,
    key: String,
    ticks: Ticks,
    poll_fallback: Duration,
    stop: CancellationToken,
) {
    let poll = async {
        let mut poll = tokio::time::interval(poll_fallback);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = poll.tick() => {
                    ticks.wake();
                    ticks.changed();
                }
            }
        }
    };
    let listen = async {
        loop {
            let got = tokio::select! {
                () = stop.cancelled() => break,
                got = listener.try_recv() => got,
            };
            match got {
                Ok(Some(n)) if n.payload() == key => {
                    if n.channel() == WAKE {
                        ticks.wake();
                    } else {
                        ticks.changed();
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    // The connection dropped: whatever was sent meanwhile
                    // is lost, so look now.
                    tracing::warn!("lost the LISTEN connection; reconnecting");
                    ticks.wake();
                    ticks.changed();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; retrying in 1 s");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    };
    tokio::join!(poll, listen);
}
