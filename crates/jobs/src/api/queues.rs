//! `/v1/queues`: unfinished jobs per queue and state.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

use super::{ApiError, ApiState};
use crate::store::QueueCounts;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/v1/queues", get(list))
}

#[derive(Serialize)]
struct Queues {
    queues: Vec<QueueCounts>,
}

async fn list(State(state): State<ApiState>) -> Result<axum::Json<Queues>, ApiError> {
    let queues = state.client.queue_counts().await?;
    Ok(axum::Json(Queues { queues }))
}
