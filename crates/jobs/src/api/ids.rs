//! Ids in paths and cursors in queries, parsed with errors that name them.

use uuid::Uuid;

use super::ApiError;
use crate::model::{BatchId, JobId, JobState};

/// A job id from a path or query.
pub(crate) fn job_id(s: &str) -> Result<JobId, ApiError> {
    uuid(s, "job id").map(JobId)
}

/// A batch id from a path or query.
pub(crate) fn batch_id(s: &str) -> Result<BatchId, ApiError> {
    uuid(s, "batch id").map(BatchId)
}

fn uuid(s: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(s).map_err(|_| ApiError::BadRequest(format!("{what} `{s}` is not a UUID")))
}

/// A `state` query parameter.
pub(crate) fn job_state(s: &str) -> Result<JobState, ApiError> {
    JobState::parse(s).ok_or_else(|| {
        let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        ApiError::BadRequest(format!("state `{s}` is not one of {}", names.join(", ")))
    })
}

/// A `limit` query parameter: 1 to 1,000, 100 when absent.
pub(crate) fn limit(n: Option<u32>) -> Result<u32, ApiError> {
    match n {
        None => Ok(100),
        Some(n @ 1..=1_000) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit {n} is not between 1 and 1000"
        ))),
    }
}
