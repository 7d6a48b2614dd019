//! Protocol upgrades (WebSocket): once the upstream answers 101, the two
//! upgraded connections are joined and bytes copied both ways until either
//! side closes, the client side is idle for `server.idle_timeout`, or the
//! drain deadline passes (see `listener::spawn_upgraded`).

use http::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::Body;

/// Join the client's upgraded connection with the upstream's, in the background.
pub(crate) fn splice(client: OnUpgrade, upstream_resp: &mut Response<Body>, upstream: String) {
    let upstream_upgrade = hyper::upgrade::on(upstream_resp);
    crate::listener::spawn_upgraded(async move {
        let (client, server) = match tokio::try_join!(client, upstream_upgrade) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(upstream, error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut server = TokioIo::new(server);
        let gauge = metrics::gauge!("sluice_gateway_upgraded_connections");
        gauge.increment(1.0);
        // Decremented on drop too: the listener may end the copy early.
        let _open = scopeguard(move || gauge.decrement(1.0));
        let result = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        if let Err(e) = result {
            tracing::debug!(upstream, error = %e, "upgraded connection ended with an error");
        }
    });
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
