//! Reload when the config file changes. The file's directory is watched
//! (editors often write a new file and rename it over the old one), events
//! are debounced, and a reload that fails leaves the running config alone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;

/// Watch `path` until `shutdown`, reloading `gw` after each burst of changes.
pub(crate) fn spawn(gw: Gateway, path: &Path, shutdown: CancellationToken) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let file_name = path.file_name().map(|n| n.to_owned());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let mut watcher = match notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        if ev.kind.is_access() {
            return;
        }
        if ev
            .paths
            .iter()
            .any(|p| p.file_name() == file_name.as_deref())
        {
            let _ = tx.try_send(());
        }
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP or the admin API");
            return;
        }
    };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the config directory");
        return;
    }
    let watched = path.to_owned();
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = rx.recv() => if got.is_none() { return },
            }
            // Let a burst of writes settle before reading the file.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            // A reload would refuse an empty file too, but here it is most
            // likely a write caught half way (truncated, not yet filled): say
            // so quietly and wait for the next change rather than log an error.
            if std::fs::read_to_string(&watched).is_ok_and(|t| crate::config::is_blank(&t)) {
                tracing::warn!(path = %watched.display(), "config file is empty; not reloading until it changes again");
                continue;
            }
            let _ = gw.reload();
        }
    });
}
