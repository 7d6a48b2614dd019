//! Protocol upgrades (WebSocket): once the upstream answers 101, the two
//! upgraded connections are joined and bytes copied both ways until either
//! side closes.

use http::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::Body;

/// Join the client's upgraded connection with the upstream's, in the background.
pub(crate) fn splice(client: OnUpgrade, upstream_resp: &mut Response<Body>, upstream: String) {
    let upstream_upgrade = hyper::upgrade::on(upstream_resp);
    tokio::spawn(async move {
        let (client, server) = match tokio::try_join!(client, upstream_upgrade) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(upstream, error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut server = TokioIo::new(server);
        metrics::gauge!("sluice_gateway_upgraded_connections").increment(1.0);
        let result = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        metrics::gauge!("sluice_gateway_upgraded_connections").decrement(1.0);
        if let Err(e) = result {
            tracing::debug!(upstream, error = %e, "upgraded connection ended with an error");
        }
    });
}
