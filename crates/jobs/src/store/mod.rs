//! Storage: the one [`Store`] trait and its implementations.
//!
//! The store owns every state change, so the guarantees live here: a
//! completion or heartbeat counts only with the current fencing token, a
//! batch's counters change in the transaction that changes its jobs, and
//! its callbacks are enqueued by the one transaction that finishes it.
//!
//! - [`sqlite`]: the default, single node. One writer task group-commits.
//! - [`postgres`]: the same trait, many worker processes on one database.
//!
//! [`open_store`] picks one from a `--db` URL.

pub mod postgres;
pub mod sqlite;
mod wal;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::model::{
    Backoff, Batch, BatchId, BatchState, ErrorKind, Job, JobId, JobState, Timestamp,
};
use crate::validate::NewBatch;

pub use self::postgres::{PostgresConfig, PostgresStore};
pub use self::sqlite::{SqliteConfig, SqliteStore};

/// Opens the store a `--db` value names: `postgres://…` or
/// `postgresql://…` for PostgreSQL (default settings; `?schema=NAME` keeps
/// the tables in that schema), `sqlite://PATH` or a
/// plain path for SQLite; an empty value means SQLite at
/// [`sqlite::DEFAULT_PATH`].
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    match StoreUrl::parse(url)? {
        StoreUrl::Postgres(url) => Ok(Arc::new(
            PostgresStore::open(PostgresConfig::from_url(&url)).await?,
        )),
        StoreUrl::Sqlite(path) => Ok(Arc::new(SqliteStore::open(SqliteConfig::at(path)).await?)),
    }
}

/// Whether a `--db` value names PostgreSQL (as [`open_store`] reads it).
pub fn is_postgres_url(url: &str) -> bool {
    let url = url.trim();
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// What a `--db` value names.
#[derive(Debug, PartialEq, Eq)]
enum StoreUrl {
    Postgres(String),
    Sqlite(std::path::PathBuf),
}

impl StoreUrl {
    fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        if is_postgres_url(url) {
            return Ok(Self::Postgres(url.to_owned()));
        }
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        if path.is_empty() {
            return Ok(Self::Sqlite(sqlite::DEFAULT_PATH.into()));
        }
        if let Some((scheme, _)) = url.split_once("://")
            && scheme != "sqlite"
        {
            return Err(StoreError::Config(format!(
                "database URL `{scheme}://…`: expected postgres://, postgresql://, sqlite:// or a file path"
            )));
        }
        Ok(Self::Sqlite(path.into()))
    }
}

/// What can go wrong in a store.
///
/// `Clone` because one group commit's failure is the answer to every
/// operation in it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(Arc<sqlx::Error>),
    /// Migrations failed at start.
    #[error("migration: {0}")]
    Migrate(Arc<sqlx::migrate::MigrateError>),
    /// Stored data did not decode (a bug or a hand-edited database).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The store was closed.
    #[error("store closed")]
    Closed,
    /// Could not create the database's directory.
    #[error("io: {0}")]
    Io(Arc<std::io::Error>),
    /// A setting is unusable (a malformed URL, a bad schema name).
    #[error("config: {0}")]
    Config(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(Arc::new(e))
    }
}

/// A boxed future returned by [`Store`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A worker's hold on a running job: only the holder of the current token
/// may complete it, heartbeat it or release it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The job.
    pub job_id: JobId,
    /// The fencing token of this claim.
    pub token: i64,
}

/// What a job's id resolved to at submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubmittedJob {
    /// The job's id.
    pub id: JobId,
    /// True when a unique key matched an unfinished job, whose id this is.
    pub existing: bool,
}

/// The answer to a submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The batch row, when one was submitted.
    pub batch_id: Option<BatchId>,
    /// One entry per submitted job, in order.
    pub jobs: Vec<SubmittedJob>,
    /// True when the batch's idempotency key matched a stored batch: this
    /// is that batch's original answer and nothing new was stored.
    pub replayed: bool,
}

/// A claim of up to `limit` jobs from each of some queues.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    /// The claiming worker.
    pub worker: String,
    /// `(queue, most jobs to claim from it)`.
    pub queues: Vec<(String, u32)>,
    /// How long the lease lasts without a heartbeat.
    pub lease: Duration,
}

/// A claimed job: what a worker needs to run it.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    /// The lease to complete it with.
    pub lease: Lease,
    /// Batch.
    pub batch_id: Option<BatchId>,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// Args.
    pub args: Value,
    /// Priority.
    pub priority: i32,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// This attempt's timeout.
    pub timeout: Duration,
    /// Backoff before the next attempt.
    pub backoff: Backoff,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It returned this result.
    Succeeded(Value),
    /// It failed or timed out. With `retry_at` (and attempts left) the job
    /// goes to `retrying`; without, it ends failed (or timed out, for
    /// [`ErrorKind::Timeout`]).
    Failed {
        /// Why.
        kind: ErrorKind,
        /// Detail.
        message: String,
        /// When to try again.
        retry_at: Option<Timestamp>,
    },
}

/// A finished attempt.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The lease it ran under.
    pub lease: Lease,
    /// How it ended.
    pub outcome: Outcome,
}

/// A worker's periodic proof of life for its running jobs.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    /// Each running job's lease and progress.
    pub leases: Vec<(Lease, f64)>,
    /// New lease length from now.
    pub lease: Duration,
}

/// A filter for [`Store::list_jobs`]; results are ordered by id.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Only this batch's jobs.
    pub batch_id: Option<BatchId>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only ids after this one (a cursor).
    pub after: Option<JobId>,
    /// At most this many (capped at 1,000).
    pub limit: u32,
}

/// A filter for [`Store::list_batches`]; results are newest first.
#[derive(Clone, Debug, Default)]
pub struct BatchFilter {
    /// Only batches in this state.
    pub state: Option<BatchState>,
    /// Only batches older than this one (a cursor: ids are UUID v7).
    pub before: Option<BatchId>,
    /// At most this many (capped at 1,000).
    pub limit: u32,
}

/// How many unfinished jobs one queue holds, per state. Finished jobs are
/// not counted: they are history, not work, and counting them would scan
/// the whole table.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueCounts {
    /// The queue.
    pub queue: String,
    /// Waiting for `run_at` or a dependency.
    pub scheduled: u64,
    /// Runnable, waiting for a worker.
    pub queued: u64,
    /// Held by a worker.
    pub running: u64,
    /// Waiting out a backoff.
    pub retrying: u64,
}

/// The answer to a cancel request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelResult {
    /// No such job or batch.
    NotFound,
    /// Cancelled now; for a batch, how many jobs.
    Cancelled(u64),
    /// Already final: nothing changed.
    AlreadyFinished,
}

/// A position in the stream of job changes: `(seq, job id)`, ordered.
///
/// `seq` is the store's own commit order (SQLite: the writer's commit
/// number; PostgreSQL: the changing transaction's id, read only below the
/// oldest transaction still in progress), so resuming after a cursor never
/// misses a change committed later. Printed as `SEQ-UUID` (the SSE event
/// id) and parsed back from `Last-Event-ID`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeCursor {
    /// Commit order.
    pub seq: i64,
    /// Tie-break within one commit.
    pub id: JobId,
}

impl std::fmt::Display for ChangeCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.seq, self.id.0.simple())
    }
}

impl std::str::FromStr for ChangeCursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (seq, id) = s
            .split_once('-')
            .ok_or_else(|| format!("cursor `{s}`: expected SEQ-UUID"))?;
        let seq = seq
            .parse()
            .map_err(|_| format!("cursor `{s}`: `{seq}` is not a number"))?;
        let id =
            uuid::Uuid::try_parse(id).map_err(|_| format!("cursor `{s}`: `{id}` is not a UUID"))?;
        Ok(Self { seq, id: JobId(id) })
    }
}

/// Which jobs' changes to read with [`Store::changes`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChangeFilter {
    /// Every job.
    #[default]
    All,
    /// One batch's jobs.
    Batch(BatchId),
    /// One job.
    Job(JobId),
}

/// The answer to a manual retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryResult {
    /// No such job.
    NotFound,
    /// Queued again now: a failed, timed-out or cancelled job gets one more
    /// attempt; a retrying job skips the rest of its backoff.
    Requeued,
    /// Succeeded, or still scheduled, queued or running: nothing changed.
    NotRetryable(JobState),
    /// Its unique key is now held by another unfinished job.
    UniqueKeyTaken,
}

/// Where jobs live. All state changes go through it.
///
/// The trait is dyn-compatible (methods return boxed futures rather than
/// `async fn`) because the backend is picked at run time from a `--db` URL
/// and handed around as `Arc<dyn Store>`; a box per call costs nothing next
/// to a database round trip.
pub trait Store: Send + Sync + 'static {
    /// Inserts a validated batch (or lone job), all or nothing.
    fn submit(&self, batch: NewBatch) -> StoreFuture<'_, Submitted>;

    /// Promotes due jobs, then claims jobs: `queued` → `running`, with a new
    /// lease and fencing token.
    fn claim(&self, req: ClaimRequest) -> StoreFuture<'_, Vec<ClaimedJob>>;

    /// Records an attempt's end. `false` when the lease is stale (the job
    /// was cancelled, rescued or claimed again): nothing changes then.
    fn complete(&self, completion: Completion) -> StoreFuture<'_, bool>;

    /// Extends leases and stores progress. Returns the jobs whose lease is
    /// no longer held: their worker must stop them without completing.
    fn heartbeat(&self, heartbeat: Heartbeat) -> StoreFuture<'_, Vec<JobId>>;

    /// Gives leases back (a stopping worker): `running` → `queued`, the
    /// attempt not counted. Returns how many were still held.
    fn release(&self, leases: Vec<Lease>) -> StoreFuture<'_, u64>;

    /// Cancels a job that is not final.
    fn cancel_job(&self, id: JobId) -> StoreFuture<'_, CancelResult>;

    /// Cancels every job of a batch that is not final.
    fn cancel_batch(&self, id: BatchId) -> StoreFuture<'_, CancelResult>;

    /// Requeues (or fails, when out of attempts) running jobs whose lease
    /// expired. Returns how many.
    fn rescue_expired(&self) -> StoreFuture<'_, u64>;

    /// Deletes up to `limit` jobs that finished before `before`, and the
    /// finished batches left without jobs. Returns how many jobs.
    fn prune(&self, before: Timestamp, limit: u32) -> StoreFuture<'_, u64>;

    /// One job.
    fn get_job(&self, id: JobId) -> StoreFuture<'_, Option<Job>>;

    /// One batch.
    fn get_batch(&self, id: BatchId) -> StoreFuture<'_, Option<Batch>>;

    /// Jobs matching a filter.
    fn list_jobs(&self, filter: JobFilter) -> StoreFuture<'_, Vec<Job>>;

    /// Ticks whenever jobs may have become runnable, so idle workers claim
    /// at once instead of at their next poll.
    fn subscribe(&self) -> watch::Receiver<u64>;

    /// Queues a finished (failed, timed out, cancelled) or retrying job
    /// again at once. Its batch, if finished, is running again; callbacks
    /// that already fired do not fire again.
    fn retry_job(&self, id: JobId) -> StoreFuture<'_, RetryResult>;

    /// Up to `limit` jobs whose state, result or progress changed after
    /// `after` (`None`: from the beginning), oldest change first, each with
    /// its cursor. A job that changed twice appears once, at its latest
    /// change.
    fn changes(
        &self,
        filter: ChangeFilter,
        after: Option<ChangeCursor>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<(ChangeCursor, Job)>>;

    /// Ticks after commits that changed jobs (possibly spuriously), so event
    /// streams read [`Store::changes`] at once instead of polling.
    fn subscribe_changes(&self) -> watch::Receiver<u64>;

    /// The cursor of the newest change readable now (`None`: no jobs), so
    /// a stream can start at the present instead of replaying history.
    fn latest_change(&self) -> StoreFuture<'_, Option<ChangeCursor>>;

    /// Batches matching a filter, newest first.
    fn list_batches(&self, filter: BatchFilter) -> StoreFuture<'_, Vec<Batch>>;

    /// Unfinished jobs per queue and state, queues by name. Queues with no
    /// unfinished job are left out.
    fn queue_counts(&self) -> StoreFuture<'_, Vec<QueueCounts>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_urls_pick_the_backend() {
        let pg = "postgres://u@h/db";
        assert_eq!(StoreUrl::parse(pg).unwrap(), StoreUrl::Postgres(pg.into()));
        let pg = "postgresql://h/db";
        assert_eq!(StoreUrl::parse(pg).unwrap(), StoreUrl::Postgres(pg.into()));
        assert_eq!(
            StoreUrl::parse("sqlite://data/x.db").unwrap(),
            StoreUrl::Sqlite("data/x.db".into())
        );
        assert_eq!(
            StoreUrl::parse("./x.db").unwrap(),
            StoreUrl::Sqlite("./x.db".into())
        );
        assert_eq!(
            StoreUrl::parse("").unwrap(),
            StoreUrl::Sqlite(sqlite::DEFAULT_PATH.into())
        );
        let e = StoreUrl::parse("mysql://h/db").unwrap_err().to_string();
        assert!(e.contains("mysql://") && e.contains("postgres://"), "{e}");
    }
}
