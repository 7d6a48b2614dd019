//! The PostgreSQL store: any number of worker processes share one database.
//!
//! Every trait call is one short transaction on a pooled connection
//! (completions and heartbeats are grouped: see `group`). Row locks do what
//! SQLite's single writer does: claims take queued rows with `FOR UPDATE
//! SKIP LOCKED`, so claimers never wait for each other; fenced updates re-check
//! the lease token on the row they lock; a batch's counters change in the
//! transaction that changes its jobs, and the counter UPDATE holds the
//! batch row until commit, so exactly one transaction sees a batch's last
//! job end and enqueues its callbacks. Batch rows are locked in id order;
//! the rare deadlock between job locks (a batch cancel against a
//! completion settling its dependents) is detected by PostgreSQL and the
//! transaction retried.
//!
//! - `batches`: per-transaction effects and the batch bookkeeping.
//! - `submit`: inserting batches and jobs.
//! - `attempts`: promotion, claims, completions, heartbeats, releases.
//! - `control`: cancels and manual retries.
//! - `sweep`: rescue of expired leases, pruning.
//! - `rows`: decoding rows, and the reads.
//! - `notify`: LISTEN/NOTIFY wake-ups with a polling fallback.
//! - `group`: completions and heartbeats of one process grouped into one
//!   transaction.

mod attempts;
mod batches;
mod control;
mod group;
mod notify;
mod rows;
mod submit;
mod sweep;

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use self::batches::Effects;
use super::{
    BatchFilter, CancelResult, ChangeCursor, ChangeFilter, ClaimRequest, ClaimedJob, Completion,
    Heartbeat, JobFilter, Lease, QueueCounts, RetryResult, Store, StoreError, StoreFuture,
    Submitted,
};
use crate::model::{Batch, BatchId, Job, JobId, Timestamp};
use crate::validate::NewBatch;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Settings of [`PostgresStore`].
#[derive(Clone)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// A schema to keep the tables in, created if missing and put alone on
    /// every connection's `search_path` (lowercase letters, digits and `_`).
    /// `None`: the connection's default (usually `public`).
    pub schema: Option<String>,
    /// Pooled connections for queries (one more is held for LISTEN).
    pub max_connections: u32,
    /// How often to look for work and changes even without a notification,
    /// in case one was lost while the listening connection reconnected.
    pub poll_fallback: Duration,
    /// Most completions grouped into one transaction.
    pub max_group: usize,
}

impl PostgresConfig {
    /// Defaults for a database URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            max_connections: 10,
            poll_fallback: Duration::from_secs(1),
            max_group: 256,
        }
    }

    /// Defaults for a URL that may name the schema in its query
    /// (`postgres://host/db?schema=jobs`), the form `--db` takes. The other
    /// query parameters are left for the driver.
    pub fn from_url(url: &str) -> Self {
        let Some((base, query)) = url.split_once('?') else {
            return Self::new(url);
        };
        let mut schema = None;
        let rest: Vec<&str> = query
            .split('&')
            .filter(|pair| match pair.strip_prefix("schema=") {
                Some(name) => {
                    schema = Some(name.to_owned());
                    false
                }
                None => !pair.is_empty(),
            })
            .collect();
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        Self {
            schema,
            ..Self::new(url)
        }
    }

    /// The URL without its password, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.redacted_url())
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("poll_fallback", &self.poll_fallback)
            .field("max_group", &self.max_group)
            .finish()
    }
}

/// `scheme://user:secret@host` → `scheme://user:…@host`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:…@{host}"),
        None => url.to_owned(),
    }
}

/// The ticks both subscriptions hand out, shared with the listener task.
#[derive(Clone)]
struct Ticks {
    wake: watch::Sender<u64>,
    changed: watch::Sender<u64>,
}

impl Ticks {
    fn wake(&self) {
        self.wake.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn changed(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// What a transaction needs; shared by the store and its group task.
#[derive(Clone)]
struct Db {
    pool: PgPool,
    /// The schema name: the payload of this store's notifications, so
    /// stores of other schemas in the same database ignore them.
    key: String,
    ticks: Ticks,
}

struct Inner {
    db: Db,
    group: group::Handle,
    /// Stops the listener task with the last handle.
    _stop: DropGuard,
}

/// The PostgreSQL [`Store`].
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.db.key)
            .finish_non_exhaustive()
    }
}

fn check_schema(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Config(format!(
            "schema `{name}`: use 1 to 63 lowercase letters, digits and `_`, not starting with a digit"
        )))
    }
}

impl PostgresStore {
    /// Connects, creates the schema if set and missing, runs migrations and
    /// starts listening for other processes' notifications on the current
    /// tokio runtime.
    pub async fn open(config: PostgresConfig) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(&config.url).map_err(|e| {
            StoreError::Config(format!("database URL `{}`: {e}", config.redacted_url()))
        })?;
        if let Some(schema) = &config.schema {
            check_schema(schema)?;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1) + 1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        if let Some(schema) = &config.schema {
            // Two processes may race to create it: the loser's error is
            // harmless if the schema exists afterwards.
            let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .execute(&pool)
                .await;
            if let Err(e) = created {
                let exists: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                )
                .bind(schema)
                .fetch_one(&pool)
                .await?;
                if !exists {
                    return Err(e.into());
                }
            }
        }
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(Arc::new(e)))?;
        let key: Option<String> = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await?;
        let key = key.ok_or_else(|| StoreError::Config("no current schema".into()))?;
        let ticks = Ticks {
            wake: watch::channel(0).0,
            changed: watch::channel(0).0,
        };
        let stop = CancellationToken::new();
        let listener = notify::listen(&pool).await?;
        tokio::spawn(notify::run(
            listener,
            key.clone(),
            ticks.clone(),
            config.poll_fallback.max(Duration::from_millis(10)),
            stop.clone(),
        ));
        let db = Db { pool, key, ticks };
        let group = group::Handle::start(db.clone(), config.max_group.max(1));
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                group,
                _stop: stop.drop_guard(),
            }),
        })
    }

    /// The connection pool (for tests and tools that inspect the tables).
    pub fn pool(&self) -> &PgPool {
        &self.inner.db.pool
    }

    async fn transact<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'c> FnMut(&'c mut PgConnection, &'c mut Effects, Timestamp) -> TxFuture<'c, T>
            + Send,
    {
        self.inner.db.transact(f).await
    }
}

impl Db {
    /// Runs `f` in a transaction: then settles the batches it touched,
    /// notifies other processes and commits, retrying the whole transaction
    /// (`f` again) after a deadlock or serialization failure.
    async fn transact<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'c> FnMut(&'c mut PgConnection, &'c mut Effects, Timestamp) -> TxFuture<'c, T>
            + Send,
    {
        let mut tries = 0u32;
        loop {
            let mut fx = Effects::default();
            let result = async {
                let mut tx = self.pool.begin().await?;
                // After the wait for a connection, so leases are not
                // shortened by it.
                let now = Timestamp::now();
                let out = f(&mut tx, &mut fx, now).await?;
                fx.flush(&mut tx, now).await?;
                notify::send(&mut tx, &self.key, fx.changed, fx.wake).await?;
                tx.commit().await?;
                Ok::<_, StoreError>(out)
            }
            .await;
            match result {
                Ok(out) => {
                    if fx.wake {
                        self.ticks.wake();
                    }
                    if fx.changed {
                        self.ticks.changed();
                    }
                    return Ok(out);
                }
                Err(e) if tries < MAX_TRIES && is_transient(&e) => {
                    tries += 1;
                    metrics::counter!("sluice_jobs_store_retried_total").increment(1);
                    tracing::debug!(error = %e, tries, "transaction retried");
                    // Both sides of a deadlock retry: a random pause keeps
                    // them from meeting again.
                    let ms = rand::random_range(1..=10u64 * u64::from(tries));
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Transactions tried at most this many more times after a deadlock.
const MAX_TRIES: u32 = 8;

/// A boxed future borrowing a transaction's connection and effects.
type TxFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

/// Deadlock detected, serialization failure: the transaction rolled back and
/// may simply be run again.
fn is_transient(e: &StoreError) -> bool {
    sql_state(e).is_some_and(|c| c == "40P01" || c == "40001")
}

fn sql_state(e: &StoreError) -> Option<String> {
    match e {
        StoreError::Database(e) => match &**e {
            sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
            _ => None,
        },
        _ => None,
    }
}

/// `pg_current_xact_id()` as a bigint: the value every change stamps into
/// `change_xid`.
pub(super) const XID: &str = "pg_current_xact_id()::text::bigint";

/// States of jobs that are not final, as an SQL list.
const UNFINISHED: &str = "('scheduled', 'queued', 'running', 'retrying')";

impl Store for PostgresStore {
    fn submit(&self, batch: NewBatch) -> StoreFuture<'_, Submitted> {
        let batch = Arc::new(batch);
        Box::pin(self.transact(move |c, fx, now| {
            let batch = batch.clone();
            Box::pin(async move { submit::submit(c, fx, &batch, now).await })
        }))
    }

    fn claim(&self, req: ClaimRequest) -> StoreFuture<'_, Vec<ClaimedJob>> {
        let req = Arc::new(req);
        Box::pin(self.transact(move |c, fx, now| {
            let req = req.clone();
            Box::pin(async move { attempts::claim(c, fx, &req, now).await })
        }))
    }

    fn complete(&self, completion: Completion) -> StoreFuture<'_, bool> {
        Box::pin(self.inner.group.complete(completion))
    }

    fn heartbeat(&self, heartbeat: Heartbeat) -> StoreFuture<'_, Vec<JobId>> {
        Box::pin(self.inner.group.heartbeat(heartbeat))
    }

    fn release(&self, leases: Vec<Lease>) -> StoreFuture<'_, u64> {
        let leases = Arc::new(leases);
        Box::pin(self.transact(move |c, fx, now| {
            let leases = leases.clone();
            Box::pin(async move { attempts::release(c, fx, &leases, now).await })
        }))
    }

    fn cancel_job(&self, id: JobId) -> StoreFuture<'_, CancelResult> {
        Box::pin(self.transact(move |c, fx, now| Box::pin(control::cancel_job(c, fx, id, now))))
    }

    fn cancel_batch(&self, id: BatchId) -> StoreFuture<'_, CancelResult> {
        Box::pin(self.transact(move |c, fx, now| Box::pin(control::cancel_batch(c, fx, id, now))))
    }

    fn rescue_expired(&self) -> StoreFuture<'_, u64> {
        Box::pin(self.transact(|c, fx, now| Box::pin(sweep::rescue(c, fx, now))))
    }

    fn prune(&self, before: Timestamp, limit: u32) -> StoreFuture<'_, u64> {
        Box::pin(self.transact(move |c, _, _| Box::pin(sweep::prune(c, before, limit))))
    }

    fn get_job(&self, id: JobId) -> StoreFuture<'_, Option<Job>> {
        Box::pin(rows::get_job(&self.inner.db.pool, id))
    }

    fn get_batch(&self, id: BatchId) -> StoreFuture<'_, Option<Batch>> {
        Box::pin(rows::get_batch(&self.inner.db.pool, id))
    }

    fn list_jobs(&self, filter: JobFilter) -> StoreFuture<'_, Vec<Job>> {
        Box::pin(rows::list_jobs(&self.inner.db.pool, filter))
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.db.ticks.wake.subscribe()
    }

    fn retry_job(&self, id: JobId) -> StoreFuture<'_, RetryResult> {
        Box::pin(async move {
            let r = self
                .transact(move |c, fx, now| Box::pin(control::retry_job(c, fx, id, now)))
                .await;
            match r {
                // Another job took the key between the check and the update:
                // the transaction rolled back, nothing changed.
                Err(e) if sql_state(&e).as_deref() == Some("23505") => {
                    Ok(RetryResult::UniqueKeyTaken)
                }
                r => r,
            }
        })
    }

    fn changes(
        &self,
        filter: ChangeFilter,
        after: Option<ChangeCursor>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<(ChangeCursor, Job)>> {
        Box::pin(rows::changes(&self.inner.db.pool, filter, after, limit))
    }

    fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.inner.db.ticks.changed.subscribe()
    }

    fn latest_change(&self) -> StoreFuture<'_, Option<ChangeCursor>> {
        Box::pin(rows::latest_change(&self.inner.db.pool))
    }

    fn list_batches(&self, filter: BatchFilter) -> StoreFuture<'_, Vec<Batch>> {
        Box::pin(rows::list_batches(&self.inner.db.pool, filter))
    }

    fn queue_counts(&self) -> StoreFuture<'_, Vec<QueueCounts>> {
        Box::pin(rows::queue_counts(&self.inner.db.pool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_debug_output() {
        let c = PostgresConfig::new("postgres://sluice:hunter2@db:5432/jobs");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://sluice:…@db:5432/jobs"),
            "{shown}"
        );
        assert_eq!(redact("postgres://db/jobs"), "postgres://db/jobs");
    }

    #[test]
    fn a_schema_in_the_url_query_is_taken_out_for_the_store() {
        let c = PostgresConfig::from_url("postgres://h/db?schema=jobs&sslmode=disable");
        assert_eq!(c.schema.as_deref(), Some("jobs"));
        assert_eq!(c.url, "postgres://h/db?sslmode=disable");
        let c = PostgresConfig::from_url("postgres://h/db?schema=jobs");
        assert_eq!(
            (c.url.as_str(), c.schema.as_deref()),
            ("postgres://h/db", Some("jobs"))
        );
        let c = PostgresConfig::from_url("postgres://h/db");
        assert_eq!((c.url.as_str(), c.schema), ("postgres://h/db", None));
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(check_schema("sluice_test_1").is_ok());
        for bad in ["", "1abc", "Caps", "a-b", "a\"b", &"x".repeat(64)] {
            let e = check_schema(bad).unwrap_err().to_string();
            assert!(e.contains("schema"), "{e}");
        }
    }
}
