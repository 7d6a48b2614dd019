//! `/v1/jobs`: submit one job, list, inspect, cancel, retry.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::batches::{Cancelled, Page, job_page};
use super::error::{ApiJson, ApiQuery};
use super::{ApiError, ApiState, ids};
use crate::model::{Job, JobId, JobSpec};
use crate::store::{CancelResult, JobFilter, RetryResult};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/jobs", get(list).post(submit))
        .route("/v1/jobs/{id}", get(show).delete(cancel))
        .route("/v1/jobs/{id}/retry", post(retry))
}

#[derive(Serialize)]
struct Created {
    id: JobId,
    /// True when the job's unique key matched an unfinished job: `id` is
    /// that job's, and nothing new was stored (status 200, not 201).
    existing: bool,
}

async fn submit(
    State(state): State<ApiState>,
    ApiJson(spec): ApiJson<JobSpec>,
) -> Result<Response, ApiError> {
    let job = state.client.submit_one(&spec).await?;
    let id = job.id;
    let status = if job.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let created = Created {
        id,
        existing: job.existing,
    };
    let mut res = (status, axum::Json(created)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    kind: Option<String>,
    batch: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn list(
    State(state): State<ApiState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::Json<Page<Job>>, ApiError> {
    let limit = ids::limit(q.limit)?;
    let filter = JobFilter {
        batch_id: q.batch.as_deref().map(ids::batch_id).transpose()?,
        state: q.state.as_deref().map(ids::job_state).transpose()?,
        kind: q.kind,
        after: q.cursor.as_deref().map(ids::job_id).transpose()?,
        limit,
    };
    let items = state.client.jobs(filter).await?;
    Ok(axum::Json(job_page(items, limit)))
}

async fn find(state: &ApiState, id: JobId) -> Result<Job, ApiError> {
    state
        .client
        .job(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}

async fn show(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Job>, ApiError> {
    let id = ids::job_id(&id)?;
    find(&state, id).await.map(axum::Json)
}

async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Cancelled>, ApiError> {
    let id = ids::job_id(&id)?;
    match state.client.cancel_job(id).await? {
        CancelResult::Cancelled(n) => Ok(axum::Json(Cancelled { cancelled: n })),
        CancelResult::NotFound => Err(ApiError::NotFound(format!("no job {id}"))),
        CancelResult::AlreadyFinished => Err(ApiError::Conflict {
            code: "already_finished",
            message: format!("job {id} has finished: nothing to cancel"),
        }),
    }
}

async fn retry(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Job>, ApiError> {
    let id = ids::job_id(&id)?;
    match state.client.retry_job(id).await? {
        RetryResult::Requeued => find(&state, id).await.map(axum::Json),
        RetryResult::NotFound => Err(ApiError::NotFound(format!("no job {id}"))),
        RetryResult::NotRetryable(s) => Err(ApiError::Conflict {
            code: "not_retryable",
            message: format!(
                "job {id} is {s}: only failed, timed-out, cancelled or retrying jobs can be retried"
            ),
        }),
        RetryResult::UniqueKeyTaken => Err(ApiError::Conflict {
            code: "unique_key_taken",
            message: format!("job {id}'s unique key is held by another unfinished job"),
        }),
    }
}
