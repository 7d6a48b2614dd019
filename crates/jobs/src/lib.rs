//! sluice-jobs: a durable parallel task scheduler.
//!
//! Modules:
//! - [`model`]: jobs, batches, states and the table of allowed transitions.
//! - [`validate`]: checks a submission, naming job index and field of each
//!   problem, and resolves defaults.
//! - [`kinds`]: the kind registry, built-in kinds and the API to add yours.
//! - [`store`]: the storage trait and its SQLite and PostgreSQL
//!   implementations.
//! - [`runner`]: claims and runs jobs: concurrency, retries, timeouts,
//!   heartbeats, graceful stop.
//! - [`client`]: submit, inspect and cancel through validation.
//! - [`api`]: the REST API, SSE events, auth and OpenAPI over a client.
//! - [`ui`]: the embedded web dashboard (`ui::routes()`).
//!
//! See `docs/jobs.md` for concepts and guarantees.

pub mod api;
pub mod client;
mod cpu_pool;
pub mod kinds;
pub mod model;
pub mod runner;
pub mod store;
pub mod ui;
pub mod validate;

pub use api::{ApiConfig, ApiError, ApiState, ExposureError, check_exposure};
pub use client::{Client, SubmitError};
pub use kinds::{AsyncKind, CpuContext, CpuKind, JobContext, JobError, KindOptions, Registry};
pub use model::{
    Backoff, Batch, BatchId, BatchSpec, BatchState, Callback, CallbackOn, CallbackTarget,
    DependencyPolicy, Job, JobId, JobSpec, JobState, Timestamp,
};
pub use runner::{QueueConfig, Runner, RunnerConfig, ShutdownReport};
pub use store::{
    PostgresConfig, PostgresStore, SqliteConfig, SqliteStore, Store, StoreError, open_store,
};
