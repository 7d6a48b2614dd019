//! [`Client`]: submit, inspect and cancel jobs: validation in front of a
//! [`Store`], the one entry point the API and CLI will share.

use std::sync::Arc;

use crate::kinds::Registry;
use crate::model::{Batch, BatchId, BatchSpec, Job, JobId, JobSpec, Timestamp};
use crate::store::{
    BatchFilter, CancelResult, ChangeCursor, ChangeFilter, JobFilter, QueueCounts, RetryResult,
    Store, StoreError, Submitted, SubmittedJob,
};
use crate::validate::{Problem, SubmitLimits, validate_batch, validate_job};

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The batch is invalid; nothing was stored.
    #[error("invalid submission: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// The store failed; nothing was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Submits and inspects jobs.
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    limits: SubmitLimits,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("registry", &self.registry)
            .finish()
    }
}

impl Client {
    /// A client checking submissions against `registry`.
    pub fn new(store: Arc<dyn Store>, registry: Arc<Registry>) -> Self {
        Self {
            store,
            registry,
            limits: SubmitLimits::default(),
        }
    }

    /// Other submission limits.
    pub fn with_limits(mut self, limits: SubmitLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The submission limits in force.
    pub fn limits(&self) -> &SubmitLimits {
        &self.limits
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Validates and stores a batch, all or nothing.
    pub async fn submit_batch(&self, spec: &BatchSpec) -> Result<Submitted, SubmitError> {
        let batch = validate_batch(spec, &self.registry, &self.limits, Timestamp::now())
            .map_err(SubmitError::Invalid)?;
        Ok(self.store.submit(batch).await?)
    }

    /// Validates and stores one job outside any batch; its id.
    pub async fn submit_job(&self, spec: &JobSpec) -> Result<JobId, SubmitError> {
        Ok(self.submit_one(spec).await?.id)
    }

    /// Validates and stores one job outside any batch, saying whether its
    /// unique key matched an unfinished job (whose id it then is).
    pub async fn submit_one(&self, spec: &JobSpec) -> Result<SubmittedJob, SubmitError> {
        let batch = validate_job(spec, &self.registry, &self.limits, Timestamp::now())
            .map_err(SubmitError::Invalid)?;
        let s = self.store.submit(batch).await?;
        s.jobs
            .first()
            .cloned()
            .ok_or_else(|| SubmitError::Store(StoreError::Corrupt("no job".into())))
    }

    /// One job.
    pub async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.store.get_job(id).await
    }

    /// One batch.
    pub async fn batch(&self, id: BatchId) -> Result<Option<Batch>, StoreError> {
        self.store.get_batch(id).await
    }

    /// Jobs matching a filter.
    pub async fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
        self.store.list_jobs(filter).await
    }

    /// Cancels a job. Runners stop it at their next heartbeat (use
    /// `Runner::cancel_job` to stop a local one at once).
    pub async fn cancel_job(&self, id: JobId) -> Result<CancelResult, StoreError> {
        self.store.cancel_job(id).await
    }

    /// Cancels a batch's unfinished jobs.
    pub async fn cancel_batch(&self, id: BatchId) -> Result<CancelResult, StoreError> {
        self.store.cancel_batch(id).await
    }

    /// Queues a failed, timed-out, cancelled or retrying job again now.
    pub async fn retry_job(&self, id: JobId) -> Result<RetryResult, StoreError> {
        self.store.retry_job(id).await
    }

    /// Recent batches, newest first.
    pub async fn batches(&self, filter: BatchFilter) -> Result<Vec<Batch>, StoreError> {
        self.store.list_batches(filter).await
    }

    /// Unfinished jobs per queue and state.
    pub async fn queue_counts(&self) -> Result<Vec<QueueCounts>, StoreError> {
        self.store.queue_counts().await
    }

    /// Jobs changed after a cursor, oldest change first.
    pub async fn changes(
        &self,
        filter: ChangeFilter,
        after: Option<ChangeCursor>,
        limit: u32,
    ) -> Result<Vec<(ChangeCursor, Job)>, StoreError> {
        self.store.changes(filter, after, limit).await
    }
}
