//! The jobs server's HTTP application: the REST API and event stream
//! (`sluice_jobs::api`) with the embedded dashboard (`sluice_jobs::ui`),
//! shared by `sluice server` and `sluice up`.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use sluice_jobs::api::{ApiConfig, ApiState};
use sluice_jobs::{Client, Registry, Store};

/// The API, event stream and dashboard over one store.
pub(crate) fn router(
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    tokens: Vec<String>,
    metrics: PrometheusHandle,
) -> axum::Router {
    let client = Client::new(store, registry);
    let config = ApiConfig {
        tokens,
        metrics: Some(Arc::new(move || metrics.render())),
        ..ApiConfig::default()
    };
    sluice_jobs::api::router(ApiState::new(client, config)).merge(sluice_jobs::ui::routes())
}
