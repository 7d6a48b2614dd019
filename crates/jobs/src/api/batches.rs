//! `/v1/batches`: submit (idempotently), list, inspect, list jobs, cancel.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::error::{ApiJson, ApiQuery};
use super::{ApiError, ApiState, ids};
use crate::model::{Batch, BatchSpec, BatchState, Job, JobId};
use crate::store::{BatchFilter, CancelResult, JobFilter, SubmittedJob};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/batches", get(list).post(submit))
        .route("/v1/batches/{id}", get(show).delete(cancel))
        .route("/v1/batches/{id}/jobs", get(jobs))
}

/// The answer to a submission.
#[derive(Serialize)]
struct SubmitAnswer {
    batch_id: crate::model::BatchId,
    jobs: Vec<SubmittedJob>,
}

/// The header alternative to the body's `idempotency_key`.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

async fn submit(
    State(state): State<ApiState>,
    headers: HeaderMap,
    ApiJson(mut spec): ApiJson<BatchSpec>,
) -> Result<Response, ApiError> {
    if let Some(v) = headers.get(IDEMPOTENCY_KEY) {
        let key = v
            .to_str()
            .map_err(|_| ApiError::BadRequest("Idempotency-Key header is not ASCII".into()))?;
        match &spec.idempotency_key {
            Some(body) if body != key => {
                return Err(ApiError::BadRequest(format!(
                    "Idempotency-Key header `{key}` differs from the body's idempotency_key `{body}`"
                )));
            }
            _ => spec.idempotency_key = Some(key.to_owned()),
        }
    }
    let submitted = state.client.submit_batch(&spec).await?;
    let batch_id = submitted
        .batch_id
        .ok_or_else(|| ApiError::Internal(crate::StoreError::Corrupt("no batch id".into())))?;
    let answer = SubmitAnswer {
        batch_id,
        jobs: submitted.jobs,
    };
    // A replay is not a creation: 200, and a header saying so.
    let status = if submitted.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut res = (status, axum::Json(answer)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/batches/{batch_id}")) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    if submitted.replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(res)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// A page of a list and the cursor of the next one.
#[derive(Serialize)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub(crate) next_cursor: Option<String>,
}

async fn list(
    State(state): State<ApiState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::Json<Page<Batch>>, ApiError> {
    let limit = ids::limit(q.limit)?;
    let filter = BatchFilter {
        state: q
            .state
            .as_deref()
            .map(|s| {
                BatchState::parse(s).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "state `{s}` is not one of running, succeeded, failed, cancelled"
                    ))
                })
            })
            .transpose()?,
        before: q.cursor.as_deref().map(ids::batch_id).transpose()?,
        limit,
    };
    let items = state.client.batches(filter).await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|b| b.id.to_string()))
        .flatten();
    Ok(axum::Json(Page { items, next_cursor }))
}

async fn show(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Batch>, ApiError> {
    let id = ids::batch_id(&id)?;
    state
        .client
        .batch(id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("no batch {id}")))
}

async fn jobs(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::Json<Page<Job>>, ApiError> {
    let id = ids::batch_id(&id)?;
    let limit = ids::limit(q.limit)?;
    let filter = JobFilter {
        batch_id: Some(id),
        state: q.state.as_deref().map(ids::job_state).transpose()?,
        kind: None,
        after: q.cursor.as_deref().map(ids::job_id).transpose()?,
        limit,
    };
    let items = state.client.jobs(filter).await?;
    // An empty first page may mean an empty filter or no batch: tell them
    // apart, so a typo in the id is a 404 rather than an empty list.
    if items.is_empty() && state.client.batch(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no batch {id}")));
    }
    Ok(axum::Json(job_page(items, limit)))
}

/// A page of jobs ordered by id: the last id is the next cursor.
pub(crate) fn job_page(items: Vec<Job>, limit: u32) -> Page<Job> {
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|j: &Job| JobId::to_string(&j.id)))
        .flatten();
    Page { items, next_cursor }
}

/// The answer to a cancel.
#[derive(Serialize)]
pub(crate) struct Cancelled {
    /// Jobs cancelled by this request.
    pub(crate) cancelled: u64,
}

async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Cancelled>, ApiError> {
    let id = ids::batch_id(&id)?;
    match state.client.cancel_batch(id).await? {
        CancelResult::Cancelled(n) => Ok(axum::Json(Cancelled { cancelled: n })),
        CancelResult::NotFound => Err(ApiError::NotFound(format!("no batch {id}"))),
        CancelResult::AlreadyFinished => Err(ApiError::Conflict {
            code: "already_finished",
            message: format!("batch {id} has finished: nothing to cancel"),
        }),
    }
}
