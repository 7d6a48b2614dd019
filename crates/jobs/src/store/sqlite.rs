//! The SQLite store: one file in WAL mode, one writer task, a reader pool.
//!
//! SQLite allows one writer at a time, and a commit (an fsync of the WAL)
//! costs far more than the statements in it. So every write (submissions,
//! claims, completions, heartbeats, cancels) is a message to one task that
//! owns the only writing connection: it takes whatever messages are waiting
//! (up to `max_group`), applies them in one transaction (submissions and
//! sweeps each under a SAVEPOINT, so a bad one does not sink the others),
//! folds batch-counter changes into one UPDATE per batch, commits once and
//! only then answers. Readers use a
//! separate read-only pool and never wait for the writer.
//!
//! `synchronous = NORMAL` in WAL mode: a committed transaction survives a
//! process crash; a power loss may lose the last few commits (see
//! docs/jobs.md, "Delivery guarantees").

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, QueryBuilder, Row, Sqlite};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::wal;
use super::{
    BatchFilter, CancelResult, ChangeCursor, ChangeFilter, ClaimRequest, ClaimedJob, Completion,
    Heartbeat, JobFilter, Lease, Outcome, QueueCounts, RetryResult, Store, StoreError, StoreFuture,
    Submitted, SubmittedJob,
};
use crate::model::{
    AttemptError, Batch, BatchId, BatchState, CallbackOn, DependencyPolicy, ErrorKind, Job, JobId,
    JobState, StateCounts, Timestamp, can_transition,
};
use crate::validate::{CallbackPlan, NewBatch, NewJob};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Where the database lives by default, relative to the working directory.
pub const DEFAULT_PATH: &str = "./sluice-data/sluice.db";

/// Most rows one promotion or rescue pass touches; the rest wait for the
/// next pass, so one group commit stays short.
const SWEEP_LIMIT: i64 = 1_000;

/// Settings of [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// Database file; its directory is created if missing.
    pub path: PathBuf,
    /// Connections in the reader pool.
    pub readers: u32,
    /// Most operations in one group commit.
    pub max_group: usize,
    /// Operations that may wait for the writer before senders wait too.
    pub queue_capacity: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_PATH),
            readers: 4,
            max_group: 256,
            queue_capacity: 4_096,
        }
    }
}

impl SqliteConfig {
    /// Defaults with another path.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Op {
    Submit(NewBatch, Reply<Submitted>),
    Claim(ClaimRequest, Reply<Vec<ClaimedJob>>),
    Complete(Completion, Reply<bool>),
    Heartbeat(Heartbeat, Reply<Vec<JobId>>),
    Release(Vec<Lease>, Reply<u64>),
    CancelJob(JobId, Reply<CancelResult>),
    CancelBatch(BatchId, Reply<CancelResult>),
    Rescue(Reply<u64>),
    Prune(Timestamp, u32, Reply<u64>),
    Retry(JobId, Reply<RetryResult>),
}

/// The SQLite [`Store`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    ops: mpsc::Sender<Op>,
    readers: SqlitePool,
    wake: watch::Receiver<u64>,
    changed: watch::Receiver<u64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database, runs migrations and starts
    /// the writer task on the current tokio runtime.
    pub async fn open(config: SqliteConfig) -> Result<Self, StoreError> {
        if let Some(dir) = config.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(Arc::new(e)))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&config.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let mut conn = options.clone().connect().await?;
        MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| StoreError::Migrate(Arc::new(e)))?;
        // The writer never checkpoints on SQLite's schedule (see `wal`).
        sqlx::query("PRAGMA wal_autocheckpoint = 0")
            .execute(&mut conn)
            .await?;
        sqlx::query(&format!(
            "PRAGMA journal_size_limit = {}",
            wal::JOURNAL_SIZE_LIMIT
        ))
        .execute(&mut conn)
        .await?;
        let checkpointer = options.clone().connect().await?;
        // The group commit's change number lives in a connection-local
        // table, so every statement can stamp it without a parameter.
        sqlx::query("CREATE TEMP TABLE IF NOT EXISTS clock (seq INTEGER NOT NULL)")
            .execute(&mut conn)
            .await?;
        sqlx::query("DELETE FROM temp.clock")
            .execute(&mut conn)
            .await?;
        sqlx::query("INSERT INTO temp.clock (seq) VALUES (0)")
            .execute(&mut conn)
            .await?;
        let last_seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(change_seq), 0) FROM jobs")
            .fetch_one(&mut conn)
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(config.readers.max(1))
            .connect_with(options.read_only(true))
            .await?;
        let (ops, rx) = mpsc::channel(config.queue_capacity.max(1));
        let (wake_tx, wake) = watch::channel(0);
        let (changed_tx, changed) = watch::channel(0);
        let (catchup, background_done) = wal::Catchup::new();
        let writer = Writer {
            conn,
            rx,
            wake: wake_tx,
            changed: changed_tx,
            seq: last_seq,
            max_group: config.max_group.max(1),
            catchup,
        };
        tokio::spawn(wal::run_background(
            checkpointer,
            ops.downgrade(),
            background_done,
        ));
        tokio::spawn(writer.run());
        Ok(Self {
            ops,
            readers,
            wake,
            changed,
        })
    }

    async fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(make(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

impl Store for SqliteStore {
    fn submit(&self, batch: NewBatch) -> StoreFuture<'_, Submitted> {
        Box::pin(self.send(move |r| Op::Submit(batch, r)))
    }

    fn claim(&self, req: ClaimRequest) -> StoreFuture<'_, Vec<ClaimedJob>> {
        Box::pin(self.send(move |r| Op::Claim(req, r)))
    }

    fn complete(&self, completion: Completion) -> StoreFuture<'_, bool> {
        Box::pin(self.send(move |r| Op::Complete(completion, r)))
    }

    fn heartbeat(&self, heartbeat: Heartbeat) -> StoreFuture<'_, Vec<JobId>> {
        Box::pin(self.send(move |r| Op::Heartbeat(heartbeat, r)))
    }

    fn release(&self, leases: Vec<Lease>) -> StoreFuture<'_, u64> {
        Box::pin(self.send(move |r| Op::Release(leases, r)))
    }

    fn cancel_job(&self, id: JobId) -> StoreFuture<'_, CancelResult> {
        Box::pin(self.send(move |r| Op::CancelJob(id, r)))
    }

    fn cancel_batch(&self, id: BatchId) -> StoreFuture<'_, CancelResult> {
        Box::pin(self.send(move |r| Op::CancelBatch(id, r)))
    }

    fn rescue_expired(&self) -> StoreFuture<'_, u64> {
        Box::pin(self.send(Op::Rescue))
    }

    fn prune(&self, before: Timestamp, limit: u32) -> StoreFuture<'_, u64> {
        Box::pin(self.send(move |r| Op::Prune(before, limit, r)))
    }

    fn get_job(&self, id: JobId) -> StoreFuture<'_, Option<Job>> {
        Box::pin(async move {
            let mut conn = self.readers.acquire().await?;
            let Some(row) = sqlx::query("SELECT * FROM jobs WHERE id = ?")
                .bind(id.0)
                .fetch_optional(&mut *conn)
                .await?
            else {
                return Ok(None);
            };
            let mut job = job_from_row(&row)?;
            let deps = sqlx::query("SELECT depends_on FROM job_deps WHERE job_id = ?")
                .bind(id.0)
                .fetch_all(&mut *conn)
                .await?;
            job.depends_on = deps
                .iter()
                .map(|r| r.try_get::<Uuid, _>(0).map(JobId))
                .collect::<Result<_, _>>()?;
            job.depends_on.sort();
            Ok(Some(job))
        })
    }

    fn get_batch(&self, id: BatchId) -> StoreFuture<'_, Option<Batch>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT * FROM batches WHERE id = ?")
                .bind(id.0)
                .fetch_optional(&self.readers)
                .await?;
            row.map(|r| batch_from_row(&r)).transpose()
        })
    }

    fn list_jobs(&self, filter: JobFilter) -> StoreFuture<'_, Vec<Job>> {
        Box::pin(async move {
            let mut q: QueryBuilder<'_, Sqlite> =
                QueryBuilder::new("SELECT * FROM jobs WHERE 1 = 1");
            if let Some(b) = filter.batch_id {
                q.push(" AND batch_id = ").push_bind(b.0);
            }
            if let Some(s) = filter.state {
                q.push(" AND state = ").push_bind(s.as_str());
            }
            if let Some(k) = filter.kind {
                q.push(" AND kind = ").push_bind(k);
            }
            if let Some(a) = filter.after {
                q.push(" AND id > ").push_bind(a.0);
            }
            q.push(" ORDER BY id LIMIT ")
                .push_bind(i64::from(filter.limit.clamp(1, 1_000)));
            let mut conn = self.readers.acquire().await?;
            let rows = q.build().fetch_all(&mut *conn).await?;
            let mut jobs: Vec<Job> = rows.iter().map(job_from_row).collect::<Result<_, _>>()?;
            add_deps(&mut conn, jobs.iter_mut()).await?;
            Ok(jobs)
        })
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.clone()
    }

    fn retry_job(&self, id: JobId) -> StoreFuture<'_, RetryResult> {
        Box::pin(self.send(move |r| Op::Retry(id, r)))
    }

    fn changes(
        &self,
        filter: ChangeFilter,
        after: Option<ChangeCursor>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<(ChangeCursor, Job)>> {
        Box::pin(async move {
            let (seq, after_id) = after.map_or((-1, Uuid::nil()), |c| (c.seq, c.id.0));
            let mut q: QueryBuilder<'_, Sqlite> = QueryBuilder::new("SELECT * FROM jobs WHERE ");
            match filter {
                ChangeFilter::All => {}
                ChangeFilter::Batch(b) => {
                    q.push("batch_id = ").push_bind(b.0).push(" AND ");
                }
                ChangeFilter::Job(j) => {
                    q.push("id = ").push_bind(j.0).push(" AND ");
                }
            }
            q.push("(change_seq, id) > (")
                .push_bind(seq)
                .push(", ")
                .push_bind(after_id)
                .push(") ORDER BY change_seq, id LIMIT ")
                .push_bind(i64::from(limit.clamp(1, 1_000)));
            let mut conn = self.readers.acquire().await?;
            let rows = q.build().fetch_all(&mut *conn).await?;
            let mut out = rows
                .iter()
                .map(|row| {
                    let job = job_from_row(row)?;
                    let cursor = ChangeCursor {
                        seq: row.try_get("change_seq")?,
                        id: job.id,
                    };
                    Ok((cursor, job))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            add_deps(&mut conn, out.iter_mut().map(|(_, j)| j)).await?;
            Ok(out)
        })
    }

    fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }

    fn latest_change(&self) -> StoreFuture<'_, Option<ChangeCursor>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT change_seq, id FROM jobs ORDER BY change_seq DESC, id DESC LIMIT 1",
            )
            .fetch_optional(&self.readers)
            .await?;
            row.map(|r| {
                Ok(ChangeCursor {
                    seq: r.try_get(0)?,
                    id: JobId(r.try_get(1)?),
                })
            })
            .transpose()
        })
    }

    fn list_batches(&self, filter: BatchFilter) -> StoreFuture<'_, Vec<Batch>> {
        Box::pin(async move {
            let mut q: QueryBuilder<'_, Sqlite> =
                QueryBuilder::new("SELECT * FROM batches WHERE 1 = 1");
            if let Some(s) = filter.state {
                q.push(" AND state = ").push_bind(s.as_str());
            }
            if let Some(b) = filter.before {
                q.push(" AND id < ").push_bind(b.0);
            }
            q.push(" ORDER BY id DESC LIMIT ")
                .push_bind(i64::from(filter.limit.clamp(1, 1_000)));
            let rows = q.build().fetch_all(&self.readers).await?;
            rows.iter().map(batch_from_row).collect()
        })
    }

    fn queue_counts(&self) -> StoreFuture<'_, Vec<QueueCounts>> {
        Box::pin(async move {
            // The same IN list as the partial index `jobs_open_queue`, so
            // SQLite counts from the index alone.
            let sql = format!(
                "SELECT queue, state, COUNT(*) FROM jobs WHERE state IN {UNFINISHED} \
                 GROUP BY queue, state ORDER BY queue"
            );
            let rows = sqlx::query(&sql).fetch_all(&self.readers).await?;
            let mut out: Vec<QueueCounts> = Vec::new();
            for row in rows {
                let queue: String = row.try_get(0)?;
                let state = parse_state(row.try_get(1)?)?;
                let n = row.try_get::<i64, _>(2)?.max(0) as u64;
                if out.last().is_none_or(|q| q.queue != queue) {
                    out.push(QueueCounts {
                        queue,
                        ..QueueCounts::default()
                    });
                }
                if let Some(q) = out.last_mut() {
                    match state {
                        JobState::Scheduled => q.scheduled = n,
                        JobState::Queued => q.queued = n,
                        JobState::Running => q.running = n,
                        JobState::Retrying => q.retrying = n,
                        _ => {}
                    }
                }
            }
            Ok(out)
        })
    }
}

/// What one group commit changed besides rows: batch counter deltas (folded
/// into one UPDATE per batch at the end) and whether to wake workers.
#[derive(Clone, Default)]
struct Effects {
    deltas: HashMap<BatchId, [i64; 8]>,
    wake: bool,
}

impl Effects {
    fn moved(&mut self, batch: Option<BatchId>, from: JobState, to: JobState) {
        debug_assert!(
            can_transition(from, to),
            "{from} -> {to} is not in TRANSITIONS"
        );
        if let Some(b) = batch {
            let d = self.deltas.entry(b).or_default();
            d[from.index()] -= 1;
            d[to.index()] += 1;
        }
        if to == JobState::Queued {
            self.wake = true;
        }
    }

    fn added(&mut self, batch: Option<BatchId>, state: JobState) {
        if let Some(b) = batch {
            self.deltas.entry(b).or_default()[state.index()] += 1;
        }
        if state == JobState::Queued {
            self.wake = true;
        }
    }
}

type Deliver = Box<dyn FnOnce(Option<StoreError>) + Send>;

fn deliver<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Deliver {
    Box::new(move |group_error| {
        let _ = reply.send(match group_error {
            Some(e) => Err(e),
            None => result,
        });
    })
}

struct Writer {
    conn: SqliteConnection,
    rx: mpsc::Receiver<Op>,
    wake: watch::Sender<u64>,
    /// Ticks after every commit, for event streams.
    changed: watch::Sender<u64>,
    /// The last group's change number: microseconds since the epoch, or
    /// one more than the last, so it grows across restarts and prunes.
    seq: i64,
    max_group: usize,
    /// When the writer runs its own WAL checkpoint.
    catchup: wal::Catchup,
}

impl Writer {
    async fn run(mut self) {
        let mut ops = Vec::with_capacity(self.max_group);
        while self.rx.recv_many(&mut ops, self.max_group).await > 0 {
            let group = std::mem::take(&mut ops);
            self.commit_group(group).await;
            if self.catchup.due(self.rx.is_empty()) {
                self.catchup.run(&mut self.conn).await;
            }
        }
        tracing::debug!("sqlite writer stopped");
    }

    async fn commit_group(&mut self, ops: Vec<Op>) {
        let now = Timestamp::now();
        let started = std::time::Instant::now();
        metrics::histogram!("sluice_jobs_store_group_ops").record(ops.len() as f64);
        let mut fx = Effects::default();
        let mut deliveries: Vec<Deliver> = Vec::with_capacity(ops.len());
        let begun = sqlx::query("BEGIN IMMEDIATE").execute(&mut self.conn).await;
        if let Err(e) = begun {
            let e = StoreError::from(e);
            for op in ops {
                fail_op(op, e.clone());
            }
            return;
        }
        let mut group_error: Option<StoreError> = None;
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let seq = (self.seq + 1).max(micros);
        if let Err(e) = sqlx::query("UPDATE temp.clock SET seq = ?")
            .bind(seq)
            .execute(&mut self.conn)
            .await
        {
            group_error = Some(e.into());
        }
        for op in ops {
            if let Some(e) = &group_error {
                fail_op(op, e.clone());
                continue;
            }
            // Submissions and the multi-row sweeps run under their own
            // savepoint, so one that fails does not sink the group. The
            // hot operations (claims, completions, heartbeats) do not:
            // their only failures are database errors, which fail the whole
            // group (everyone is answered with the error, nothing is
            // half-applied), and a savepoint each would cost a third of
            // the throughput.
            let isolated = matches!(
                op,
                Op::Submit(..)
                    | Op::CancelBatch(..)
                    | Op::Rescue(..)
                    | Op::Prune(..)
                    | Op::Retry(..)
            );
            if !isolated {
                let (err, d) = self.apply(op, now, &mut fx).await;
                deliveries.push(d);
                group_error = err;
                continue;
            }
            let before = fx.clone();
            if let Err(e) = sqlx::query("SAVEPOINT op").execute(&mut self.conn).await {
                group_error = Some(e.into());
                fail_op(op, group_error.clone().unwrap_or(StoreError::Closed));
                continue;
            }
            let (err, d) = self.apply(op, now, &mut fx).await;
            deliveries.push(d);
            let end = if err.is_none() {
                sqlx::query("RELEASE op").execute(&mut self.conn).await
            } else {
                fx = before;
                match sqlx::query("ROLLBACK TO op").execute(&mut self.conn).await {
                    Ok(_) => sqlx::query("RELEASE op").execute(&mut self.conn).await,
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = end {
                group_error = Some(e.into());
            }
        }
        if group_error.is_none()
            && let Err(e) = flush_batches(&mut self.conn, &mut fx, now).await
        {
            group_error = Some(e);
        }
        let end = match group_error {
            None => sqlx::query("COMMIT")
                .execute(&mut self.conn)
                .await
                .map_err(StoreError::from),
            Some(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
                Err(e)
            }
        };
        let err = end.err();
        metrics::histogram!("sluice_jobs_store_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        if let Some(e) = &err {
            metrics::counter!("sluice_jobs_store_group_failures_total").increment(1);
            tracing::warn!(error = %e, "group commit failed");
        }
        let woke = err.is_none() && fx.wake;
        if err.is_none() {
            self.seq = seq;
        }
        for d in deliveries {
            d(err.clone());
        }
        if woke {
            self.wake.send_modify(|v| *v = v.wrapping_add(1));
        }
        if err.is_none() {
            self.changed.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    async fn apply(
        &mut self,
        op: Op,
        now: Timestamp,
        fx: &mut Effects,
    ) -> (Option<StoreError>, Deliver) {
        let c = &mut self.conn;
        macro_rules! run {
            ($reply:expr, $fut:expr) => {{
                let r = $fut.await;
                (r.as_ref().err().cloned(), deliver($reply, r))
            }};
        }
        match op {
            Op::Submit(b, r) => run!(r, submit(c, fx, b, now)),
            Op::Claim(q, r) => run!(r, claim(c, fx, q, now)),
            Op::Complete(x, r) => run!(r, complete(c, fx, x, now)),
            Op::Heartbeat(h, r) => run!(r, heartbeat(c, h, now)),
            Op::Release(l, r) => run!(r, release(c, fx, l, now)),
            Op::CancelJob(id, r) => run!(r, cancel_job(c, fx, id, now)),
            Op::CancelBatch(id, r) => run!(r, cancel_batch(c, fx, id, now)),
            Op::Rescue(r) => run!(r, rescue(c, fx, now)),
            Op::Prune(before, limit, r) => run!(r, prune(c, before, limit)),
            Op::Retry(id, r) => run!(r, retry_job(c, fx, id, now)),
        }
    }
}

/// Fills in `depends_on` (sorted) of `jobs` with one query.
async fn add_deps<'j>(
    conn: &mut SqliteConnection,
    jobs: impl Iterator<Item = &'j mut Job>,
) -> Result<(), StoreError> {
    let mut jobs: Vec<&mut Job> = jobs.collect();
    if jobs.is_empty() {
        return Ok(());
    }
    let mut d: QueryBuilder<'_, Sqlite> =
        QueryBuilder::new("SELECT job_id, depends_on FROM job_deps WHERE job_id IN (");
    let mut sep = d.separated(", ");
    for j in &jobs {
        sep.push_bind(j.id.0);
    }
    d.push(")");
    let mut deps: HashMap<Uuid, Vec<JobId>> = HashMap::new();
    for r in d.build().fetch_all(&mut *conn).await? {
        deps.entry(r.try_get(0)?)
            .or_default()
            .push(JobId(r.try_get(1)?));
    }
    for j in &mut jobs {
        if let Some(mut v) = deps.remove(&j.id.0) {
            v.sort();
            j.depends_on = v;
        }
    }
    Ok(())
}

fn fail_op(op: Op, e: StoreError) {
    match op {
        Op::Submit(_, r) => drop(r.send(Err(e))),
        Op::Claim(_, r) => drop(r.send(Err(e))),
        Op::Complete(_, r) => drop(r.send(Err(e))),
        Op::Heartbeat(_, r) => drop(r.send(Err(e))),
        Op::Release(_, r) => drop(r.send(Err(e))),
        Op::CancelJob(_, r) => drop(r.send(Err(e))),
        Op::CancelBatch(_, r) => drop(r.send(Err(e))),
        Op::Rescue(r) => drop(r.send(Err(e))),
        Op::Prune(_, _, r) => drop(r.send(Err(e))),
        Op::Retry(_, r) => drop(r.send(Err(e))),
    }
}

fn json_text(v: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn parse_state(s: &str) -> Result<JobState, StoreError> {
    JobState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("job state `{s}`")))
}

const UNFINISHED: &str = "('scheduled', 'queued', 'running', 'retrying')";

/// Inserts one job (or finds the unfinished holder of its unique key).
async fn insert_job(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    batch: Option<BatchId>,
    job: &NewJob,
    pending_deps: i64,
    now: Timestamp,
) -> Result<SubmittedJob, StoreError> {
    if let Some(key) = &job.unique_key {
        let sql =
            format!("SELECT id FROM jobs WHERE unique_key = ? AND state IN {UNFINISHED} LIMIT 1");
        if let Some(row) = sqlx::query(&sql).bind(key).fetch_optional(&mut *c).await? {
            return Ok(SubmittedJob {
                id: JobId(row.try_get(0)?),
                existing: true,
            });
        }
    }
    let state = if pending_deps == 0 && job.run_at <= now {
        JobState::Queued
    } else {
        JobState::Scheduled
    };
    sqlx::query(
        "INSERT INTO jobs (id, batch_id, queue, kind, args, priority, state, run_at, max_attempts, \
         timeout_ms, backoff, pending_deps, unique_key, created_at, updated_at, change_seq) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT seq FROM temp.clock))",
    )
    .bind(job.id.0)
    .bind(batch.map(|b| b.0))
    .bind(&job.queue)
    .bind(&job.kind)
    .bind(json_text(&job.args)?)
    .bind(job.priority)
    .bind(state.as_str())
    .bind(job.run_at.0)
    .bind(i64::from(job.max_attempts))
    .bind(job.timeout_ms as i64)
    .bind(json_text(&job.backoff)?)
    .bind(pending_deps)
    .bind(&job.unique_key)
    .bind(now.0)
    .bind(now.0)
    .execute(&mut *c)
    .await?;
    fx.added(batch, state);
    Ok(SubmittedJob {
        id: job.id,
        existing: false,
    })
}

async fn submit(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    batch: NewBatch,
    now: Timestamp,
) -> Result<Submitted, StoreError> {
    if let Some(key) = &batch.idempotency_key
        && let Some(row) =
            sqlx::query("SELECT id, submitted FROM batches WHERE idempotency_key = ?")
                .bind(key)
                .fetch_optional(&mut *c)
                .await?
    {
        let submitted: Option<String> = row.try_get("submitted")?;
        return Ok(Submitted {
            batch_id: Some(BatchId(row.try_get("id")?)),
            jobs: parse_json(submitted.as_deref().unwrap_or("[]"), "submitted")?,
            replayed: true,
        });
    }
    if let Some(id) = batch.id {
        sqlx::query(
            "INSERT INTO batches (id, name, state, total, on_dependency_failure, callbacks, \
             callback_plans, created_at, idempotency_key) VALUES (?, ?, 'running', 0, ?, ?, ?, ?, ?)",
        )
        .bind(id.0)
        .bind(&batch.name)
        .bind(batch.on_dependency_failure.as_str())
        .bind(json_text(&batch.callbacks)?)
        .bind(json_text(&batch.callback_plans)?)
        .bind(now.0)
        .bind(&batch.idempotency_key)
        .execute(&mut *c)
        .await?;
        // Touch the batch so the end of the group checks it even when every
        // job resolved to an existing one.
        fx.deltas.entry(id).or_default();
    }
    // Validation guarantees dependencies form a DAG of valid indexes, so
    // inserting in topological order lets each job see its dependencies' ids.
    let order = topo_order(&batch.jobs);
    let mut out: Vec<Option<SubmittedJob>> = vec![None; batch.jobs.len()];
    let mut inserted = 0i64;
    for i in order {
        let job = &batch.jobs[i];
        let r = insert_job(c, fx, batch.id, job, job.depends_on.len() as i64, now).await?;
        if !r.existing {
            inserted += 1;
            for &d in &job.depends_on {
                let dep = out[d].ok_or_else(|| StoreError::Corrupt("dependency order".into()))?;
                sqlx::query("INSERT INTO job_deps (depends_on, job_id) VALUES (?, ?)")
                    .bind(dep.id.0)
                    .bind(r.id.0)
                    .execute(&mut *c)
                    .await?;
            }
        }
        out[i] = Some(r);
    }
    let jobs: Vec<SubmittedJob> = out
        .into_iter()
        .map(|j| j.ok_or_else(|| StoreError::Corrupt("unsubmitted job".into())))
        .collect::<Result<_, _>>()?;
    if let Some(id) = batch.id {
        // The answer is kept only for keyed batches: only they are replayed.
        let submitted = match batch.idempotency_key {
            Some(_) => Some(json_text(&jobs)?),
            None => None,
        };
        sqlx::query("UPDATE batches SET total = ?, submitted = ? WHERE id = ?")
            .bind(inserted)
            .bind(submitted)
            .bind(id.0)
            .execute(&mut *c)
            .await?;
    }
    Ok(Submitted {
        batch_id: batch.id,
        jobs,
        replayed: false,
    })
}

fn topo_order(jobs: &[NewJob]) -> Vec<usize> {
    let mut done = vec![false; jobs.len()];
    let mut order = Vec::with_capacity(jobs.len());
    while order.len() < jobs.len() {
        let before = order.len();
        for (i, j) in jobs.iter().enumerate() {
            if !done[i] && j.depends_on.iter().all(|&d| d < jobs.len() && done[d]) {
                done[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            // A cycle slipped past validation: insert the rest as they come
            // (submit then reports the broken order instead of looping).
            order.extend((0..jobs.len()).filter(|&i| !done[i]));
        }
    }
    order
}

/// Moves due `scheduled` and `retrying` jobs to `queued`.
async fn promote_due(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    now: Timestamp,
) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "SELECT id, batch_id, state FROM jobs \
         WHERE state IN ('scheduled', 'retrying') AND pending_deps = 0 AND run_at <= ? LIMIT ?",
    )
    .bind(now.0)
    .bind(SWEEP_LIMIT)
    .fetch_all(&mut *c)
    .await?;
    for row in rows {
        let id: Uuid = row.try_get(0)?;
        let batch: Option<Uuid> = row.try_get(1)?;
        let from = parse_state(row.try_get(2)?)?;
        sqlx::query("UPDATE jobs SET state = 'queued', updated_at = ?, change_seq = (SELECT seq FROM temp.clock) WHERE id = ?")
            .bind(now.0)
            .bind(id)
            .execute(&mut *c)
            .await?;
        fx.moved(batch.map(BatchId), from, JobState::Queued);
    }
    Ok(())
}

async fn claim(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    req: ClaimRequest,
    now: Timestamp,
) -> Result<Vec<ClaimedJob>, StoreError> {
    promote_due(c, fx, now).await?;
    let expires = now.plus(req.lease);
    let mut claimed = Vec::new();
    for (queue, limit) in &req.queues {
        if *limit == 0 {
            continue;
        }
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_token = lease_token + 1, \
             worker = ?1, lease_expires_at = ?2, started_at = COALESCE(started_at, ?3), updated_at = ?3, change_seq = (SELECT seq FROM temp.clock) \
             WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND queue = ?4 \
                          ORDER BY priority DESC, run_at, id LIMIT ?5) \
             RETURNING id, batch_id, queue, kind, args, priority, attempt, max_attempts, timeout_ms, \
                       backoff, lease_token",
        )
        .bind(&req.worker)
        .bind(expires.0)
        .bind(now.0)
        .bind(queue)
        .bind(i64::from(*limit))
        .fetch_all(&mut *c)
        .await?;
        for row in rows {
            let batch_id = row.try_get::<Option<Uuid>, _>("batch_id")?.map(BatchId);
            fx.moved(batch_id, JobState::Queued, JobState::Running);
            claimed.push(ClaimedJob {
                lease: Lease {
                    job_id: JobId(row.try_get("id")?),
                    token: row.try_get("lease_token")?,
                },
                batch_id,
                queue: row.try_get("queue")?,
                kind: row.try_get("kind")?,
                args: parse_json(row.try_get("args")?, "args")?,
                priority: row.try_get("priority")?,
                attempt: row.try_get::<i64, _>("attempt")? as u32,
                max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
                timeout: Duration::from_millis(row.try_get::<i64, _>("timeout_ms")? as u64),
                backoff: parse_json(row.try_get("backoff")?, "backoff")?,
            });
        }
    }
    // RETURNING order is unspecified; workers start the best first.
    claimed.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.lease.job_id.cmp(&b.lease.job_id))
    });
    Ok(claimed)
}

fn error_json(
    attempt: i64,
    kind: ErrorKind,
    message: &str,
    now: Timestamp,
) -> Result<String, StoreError> {
    json_text(&AttemptError {
        attempt: attempt as u32,
        at: now,
        kind,
        message: message.to_owned(),
    })
}

/// A move of one job into a final state.
struct Ending {
    id: JobId,
    batch: Option<BatchId>,
    from: JobState,
    to: JobState,
    /// An [`AttemptError`] as JSON, appended to the job's errors.
    error: Option<String>,
    /// The result as JSON.
    result: Option<String>,
}

/// Ends a job in a final state and settles its dependents.
async fn finish(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    e: Ending,
    now: Timestamp,
) -> Result<(), StoreError> {
    let Ending {
        id,
        batch,
        from,
        to,
        error,
        result,
    } = e;
    sqlx::query(
        "UPDATE jobs SET state = ?, result = COALESCE(?, result), \
         errors = CASE WHEN ? IS NULL THEN errors ELSE json_insert(errors, '$[#]', json(?)) END, \
         progress = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE progress END, \
         worker = NULL, lease_expires_at = NULL, finished_at = ?, updated_at = ?, change_seq = (SELECT seq FROM temp.clock) WHERE id = ?",
    )
    .bind(to.as_str())
    .bind(result)
    .bind(error.as_deref())
    .bind(error.as_deref())
    .bind(to.as_str())
    .bind(now.0)
    .bind(now.0)
    .bind(id.0)
    .execute(&mut *c)
    .await?;
    fx.moved(batch, from, to);
    settle_dependents(c, fx, id, to, now).await
}

/// Applies a finished job's outcome to the jobs waiting for it, following
/// each dependent's batch policy; dependents that end in turn are settled
/// too (a worklist, not recursion).
async fn settle_dependents(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    id: JobId,
    state: JobState,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut work = vec![(id, state)];
    while let Some((done, done_state)) = work.pop() {
        let rows = sqlx::query(
            "SELECT j.id, j.batch_id, j.state, j.pending_deps, j.run_at, b.on_dependency_failure \
             FROM job_deps d JOIN jobs j ON j.id = d.job_id LEFT JOIN batches b ON b.id = j.batch_id \
             WHERE d.depends_on = ?",
        )
        .bind(done.0)
        .fetch_all(&mut *c)
        .await?;
        for row in rows {
            let dep = JobId(row.try_get(0)?);
            let batch = row.try_get::<Option<Uuid>, _>(1)?.map(BatchId);
            let dep_state = parse_state(row.try_get(2)?)?;
            if dep_state != JobState::Scheduled {
                // Already cancelled (or otherwise settled): nothing waits.
                continue;
            }
            let pending: i64 = row.try_get(3)?;
            let run_at: i64 = row.try_get(4)?;
            let policy = row
                .try_get::<Option<String>, _>(5)?
                .and_then(|p| DependencyPolicy::parse(&p))
                .unwrap_or_default();
            if done_state == JobState::Succeeded || policy == DependencyPolicy::Ignore {
                let runnable = pending <= 1 && run_at <= now.0;
                let to = if runnable {
                    JobState::Queued
                } else {
                    JobState::Scheduled
                };
                sqlx::query(
                    "UPDATE jobs SET pending_deps = pending_deps - 1, state = ?, updated_at = ?, change_seq = (SELECT seq FROM temp.clock) WHERE id = ?",
                )
                .bind(to.as_str())
                .bind(now.0)
                .bind(dep.0)
                .execute(&mut *c)
                .await?;
                if runnable {
                    fx.moved(batch, JobState::Scheduled, JobState::Queued);
                }
                continue;
            }
            let to = match policy {
                DependencyPolicy::Cancel => JobState::Cancelled,
                _ => JobState::Failed,
            };
            let msg = format!("dependency {done} ended {done_state}");
            let err = error_json(0, ErrorKind::Dependency, &msg, now)?;
            sqlx::query(
                "UPDATE jobs SET state = ?, errors = json_insert(errors, '$[#]', json(?)), \
                 finished_at = ?, updated_at = ?, change_seq = (SELECT seq FROM temp.clock) WHERE id = ?",
            )
            .bind(to.as_str())
            .bind(err)
            .bind(now.0)
            .bind(now.0)
            .bind(dep.0)
            .execute(&mut *c)
            .await?;
            fx.moved(batch, JobState::Scheduled, to);
            work.push((dep, to));
        }
    }
    Ok(())
}

/// A success in one statement: the fenced update, returning whether
/// anything waits for this job.
async fn complete_success(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    lease: Lease,
    result: &Value,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "UPDATE jobs SET state = 'succeeded', result = ?, progress = 1.0, worker = NULL, \
         lease_expires_at = NULL, finished_at = ?, updated_at = ?, change_seq = (SELECT seq FROM temp.clock) \
         WHERE id = ? AND lease_token = ? AND state = 'running' \
         RETURNING batch_id, EXISTS (SELECT 1 FROM job_deps d WHERE d.depends_on = jobs.id)",
    )
    .bind(json_text(result)?)
    .bind(now.0)
    .bind(now.0)
    .bind(lease.job_id.0)
    .bind(lease.token)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let batch = row.try_get::<Option<Uuid>, _>(0)?.map(BatchId);
    fx.moved(batch, JobState::Running, JobState::Succeeded);
    if row.try_get::<bool, _>(1)? {
        settle_dependents(c, fx, lease.job_id, JobState::Succeeded, now).await?;
    }
    Ok(true)
}

async fn complete(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    done: Completion,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let id = done.lease.job_id;
    let (kind, message, retry_at) = match done.outcome {
        Outcome::Succeeded(v) => return complete_success(c, fx, done.lease, &v, now).await,
        Outcome::Failed {
            kind,
            message,
            retry_at,
        } => (kind, message, retry_at),
    };
    let Some(row) = sqlx::query(
        "SELECT batch_id, attempt, max_attempts FROM jobs \
         WHERE id = ? AND lease_token = ? AND state = 'running'",
    )
    .bind(id.0)
    .bind(done.lease.token)
    .fetch_optional(&mut *c)
    .await?
    else {
        return Ok(false);
    };
    let batch = row.try_get::<Option<Uuid>, _>(0)?.map(BatchId);
    let attempt: i64 = row.try_get(1)?;
    let max_attempts: i64 = row.try_get(2)?;
    let err = error_json(attempt, kind, &message, now)?;
    match retry_at {
        Some(at) if attempt < max_attempts => {
            sqlx::query(
                "UPDATE jobs SET state = 'retrying', run_at = ?, \
                         errors = json_insert(errors, '$[#]', json(?)), worker = NULL, \
                         lease_expires_at = NULL, updated_at = ?, change_seq = (SELECT seq FROM temp.clock) WHERE id = ?",
            )
            .bind(at.0)
            .bind(err)
            .bind(now.0)
            .bind(id.0)
            .execute(&mut *c)
            .await?;
            fx.moved(batch, JobState::Running, JobState::Retrying);
        }
        _ => {
            let to = if kind == ErrorKind::Timeout {
                JobState::TimedOut
            } else {
                JobState::Failed
            };
            finish(
                c,
                fx,
                Ending {
                    id,
                    batch,
                    from: JobState::Running,
                    to,
                    error: Some(err),
                    result: None,
                },
                now,
            )
            .await?;
        }
    }
    Ok(true)
}

async fn heartbeat(
    c: &mut SqliteConnection,
    hb: Heartbeat,
    now: Timestamp,
) -> Result<Vec<JobId>, StoreError> {
    let expires = now.plus(hb.lease);
    let mut lost = Vec::new();
    for (lease, progress) in hb.leases {
        let r = sqlx::query(
            "UPDATE jobs SET lease_expires_at = ?1, progress = ?2, \
             change_seq = CASE WHEN progress = ?2 THEN change_seq ELSE (SELECT seq FROM temp.clock) END \
             WHERE id = ?3 AND lease_token = ?4 AND state = 'running'",
        )
        .bind(expires.0)
        .bind(progress)
        .bind(lease.job_id.0)
        .bind(lease.token)
        .execute(&mut *c)
        .await?;
        if r.rows_affected() == 0 {
            lost.push(lease.job_id);
        }
    }
    Ok(lost)
}

async fn release(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    leases: Vec<Lease>,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut n = 0;
    for lease in leases {
        let row = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempt = attempt - 1, worker = NULL, \
             lease_expires_at = NULL, updated_at = ?, change_seq = (SELECT seq FROM temp.clock) \
             WHERE id = ? AND lease_token = ? AND state = 'running' RETURNING batch_id",
        )
        .bind(now.0)
        .bind(lease.job_id.0)
        .bind(lease.token)
        .fetch_optional(&mut *c)
        .await?;
        if let Some(row) = row {
            fx.moved(
                row.try_get::<Option<Uuid>, _>(0)?.map(BatchId),
                JobState::Running,
                JobState::Queued,
            );
            n += 1;
        }
    }
    Ok(n)
}

async fn cancel_one(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    id: JobId,
    batch: Option<BatchId>,
    from: JobState,
    now: Timestamp,
) -> Result<(), StoreError> {
    finish(
        c,
        fx,
        Ending {
            id,
            batch,
            from,
            to: JobState::Cancelled,
            error: None,
            result: None,
        },
        now,
    )
    .await
}

async fn cancel_job(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    id: JobId,
    now: Timestamp,
) -> Result<CancelResult, StoreError> {
    let Some(row) = sqlx::query("SELECT batch_id, state FROM jobs WHERE id = ?")
        .bind(id.0)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(CancelResult::NotFound);
    };
    let batch = row.try_get::<Option<Uuid>, _>(0)?.map(BatchId);
    let state = parse_state(row.try_get(1)?)?;
    if state.is_final() {
        return Ok(CancelResult::AlreadyFinished);
    }
    cancel_one(c, fx, id, batch, state, now).await?;
    Ok(CancelResult::Cancelled(1))
}

async fn cancel_batch(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    id: BatchId,
    now: Timestamp,
) -> Result<CancelResult, StoreError> {
    let Some(row) = sqlx::query("SELECT state FROM batches WHERE id = ?")
        .bind(id.0)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(CancelResult::NotFound);
    };
    if row.try_get::<String, _>(0)? != BatchState::Running.as_str() {
        return Ok(CancelResult::AlreadyFinished);
    }
    sqlx::query("UPDATE batches SET cancel_requested = 1 WHERE id = ?")
        .bind(id.0)
        .execute(&mut *c)
        .await?;
    fx.deltas.entry(id).or_default();
    let sql = format!("SELECT id FROM jobs WHERE batch_id = ? AND state IN {UNFINISHED}");
    let rows = sqlx::query(&sql).bind(id.0).fetch_all(&mut *c).await?;
    let mut n = 0;
    for row in rows {
        let job = JobId(row.try_get(0)?);
        // An earlier cancel's cascade may have settled this one already.
        let now_state = sqlx::query("SELECT state FROM jobs WHERE id = ?")
            .bind(job.0)
            .fetch_one(&mut *c)
            .await?;
        let state = parse_state(now_state.try_get(0)?)?;
        if state.is_final() {
            continue;
        }
        cancel_one(c, fx, job, Some(id), state, now).await?;
        n += 1;
    }
    Ok(CancelResult::Cancelled(n))
}

async fn rescue(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let rows = sqlx::query(
        "SELECT id, batch_id, attempt, max_attempts, worker FROM jobs \
         WHERE state = 'running' AND lease_expires_at < ? LIMIT ?",
    )
    .bind(now.0)
    .bind(SWEEP_LIMIT)
    .fetch_all(&mut *c)
    .await?;
    let mut n = 0;
    for row in rows {
        let id = JobId(row.try_get(0)?);
        let batch = row.try_get::<Option<Uuid>, _>(1)?.map(BatchId);
        let attempt: i64 = row.try_get(2)?;
        let max_attempts: i64 = row.try_get(3)?;
        let worker: Option<String> = row.try_get(4)?;
        let msg = format!(
            "lease of worker {} expired",
            worker.as_deref().unwrap_or("?")
        );
        let err = error_json(attempt, ErrorKind::LeaseExpired, &msg, now)?;
        tracing::info!(job.id = %id, attempt, "lease expired; job rescued");
        if attempt < max_attempts {
            sqlx::query(
                "UPDATE jobs SET state = 'queued', errors = json_insert(errors, '$[#]', json(?)), \
                 worker = NULL, lease_expires_at = NULL, updated_at = ?, change_seq = (SELECT seq FROM temp.clock) WHERE id = ?",
            )
            .bind(err)
            .bind(now.0)
            .bind(id.0)
            .execute(&mut *c)
            .await?;
            fx.moved(batch, JobState::Running, JobState::Queued);
        } else {
            finish(
                c,
                fx,
                Ending {
                    id,
                    batch,
                    from: JobState::Running,
                    to: JobState::Failed,
                    error: Some(err),
                    result: None,
                },
                now,
            )
            .await?;
        }
        n += 1;
    }
    Ok(n)
}

/// A manual retry: a finished job gets one more attempt, a retrying one
/// skips its backoff. A finished batch runs again; callbacks that fired do
/// not fire again (`callbacks_fired`).
async fn retry_job(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    id: JobId,
    now: Timestamp,
) -> Result<RetryResult, StoreError> {
    let Some(row) = sqlx::query("SELECT batch_id, state, unique_key FROM jobs WHERE id = ?")
        .bind(id.0)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(RetryResult::NotFound);
    };
    let batch = row.try_get::<Option<Uuid>, _>(0)?.map(BatchId);
    let state = parse_state(row.try_get(1)?)?;
    let unique_key: Option<String> = row.try_get(2)?;
    match state {
        JobState::Failed | JobState::TimedOut | JobState::Cancelled => {
            if let Some(key) = unique_key {
                let sql = format!(
                    "SELECT 1 FROM jobs WHERE unique_key = ? AND state IN {UNFINISHED} LIMIT 1"
                );
                if sqlx::query(&sql)
                    .bind(key)
                    .fetch_optional(&mut *c)
                    .await?
                    .is_some()
                {
                    return Ok(RetryResult::UniqueKeyTaken);
                }
            }
            sqlx::query(
                "UPDATE jobs SET state = 'queued', run_at = ?1, \
                 max_attempts = MAX(max_attempts, attempt + 1), finished_at = NULL, \
                 updated_at = ?1, change_seq = (SELECT seq FROM temp.clock) WHERE id = ?2",
            )
            .bind(now.0)
            .bind(id.0)
            .execute(&mut *c)
            .await?;
            if let Some(b) = batch {
                sqlx::query(
                    "UPDATE batches SET state = 'running', finished_at = NULL, cancel_requested = 0 \
                     WHERE id = ? AND state <> 'running'",
                )
                .bind(b.0)
                .execute(&mut *c)
                .await?;
            }
        }
        JobState::Retrying => {
            sqlx::query(
                "UPDATE jobs SET state = 'queued', run_at = ?1, updated_at = ?1, \
                 change_seq = (SELECT seq FROM temp.clock) WHERE id = ?2",
            )
            .bind(now.0)
            .bind(id.0)
            .execute(&mut *c)
            .await?;
        }
        other => return Ok(RetryResult::NotRetryable(other)),
    }
    fx.moved(batch, state, JobState::Queued);
    Ok(RetryResult::Requeued)
}

async fn prune(c: &mut SqliteConnection, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
    let rows = sqlx::query(
        "DELETE FROM jobs WHERE id IN \
         (SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? LIMIT ?) RETURNING id",
    )
    .bind(before.0)
    .bind(i64::from(limit.max(1)))
    .fetch_all(&mut *c)
    .await?;
    for row in &rows {
        let id: Uuid = row.try_get(0)?;
        sqlx::query("DELETE FROM job_deps WHERE depends_on = ?")
            .bind(id)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM job_deps WHERE job_id = ?")
            .bind(id)
            .execute(&mut *c)
            .await?;
    }
    sqlx::query(
        "DELETE FROM batches WHERE id IN (SELECT id FROM batches b WHERE state <> 'running' \
         AND finished_at < ? AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id) LIMIT ?)",
    )
    .bind(before.0)
    .bind(i64::from(limit.max(1)))
    .execute(&mut *c)
    .await?;
    Ok(rows.len() as u64)
}

const COUNT_COLUMNS: [&str; 8] = [
    "n_scheduled",
    "n_queued",
    "n_running",
    "n_retrying",
    "n_succeeded",
    "n_failed",
    "n_cancelled",
    "n_timed_out",
];

/// Applies the group's counter deltas, one UPDATE per batch, then finishes
/// the batches whose jobs are now all final and fires their callbacks. The
/// `state = 'running'` guard makes the finishing UPDATE, and so the
/// callbacks, happen once.
async fn flush_batches(
    c: &mut SqliteConnection,
    fx: &mut Effects,
    now: Timestamp,
) -> Result<(), StoreError> {
    let deltas = std::mem::take(&mut fx.deltas);
    for (batch, d) in &deltas {
        if d.iter().any(|&x| x != 0) {
            let sets: Vec<String> = COUNT_COLUMNS
                .iter()
                .enumerate()
                .map(|(i, col)| format!("{col} = {col} + {}", d[i]))
                .collect();
            let started = d[JobState::Running.index()] > 0;
            let sql = format!(
                "UPDATE batches SET {}{} WHERE id = ?",
                sets.join(", "),
                if started {
                    ", started_at = COALESCE(started_at, ?)"
                } else {
                    ""
                }
            );
            let mut q = sqlx::query(&sql);
            if started {
                q = q.bind(now.0);
            }
            q.bind(batch.0).execute(&mut *c).await?;
        }
        let Some(row) = sqlx::query("SELECT * FROM batches WHERE id = ? AND state = 'running'")
            .bind(batch.0)
            .fetch_optional(&mut *c)
            .await?
        else {
            continue;
        };
        let b = batch_from_row(&row)?;
        if b.counts.finished() < b.total {
            continue;
        }
        let cancel_requested: i64 = row.try_get("cancel_requested")?;
        let state = if cancel_requested != 0 {
            BatchState::Cancelled
        } else if b.counts.succeeded == b.total {
            BatchState::Succeeded
        } else {
            BatchState::Failed
        };
        let plans: Vec<CallbackPlan> =
            parse_json(row.try_get("callback_plans")?, "callback_plans")?;
        let mut done: Vec<usize> = parse_json(row.try_get("callbacks_fired")?, "callbacks_fired")?;
        let mut fired: Vec<JobId> = parse_json(row.try_get("callback_jobs")?, "callback_jobs")?;
        let summary = json!({
            "batch_id": b.id,
            "name": b.name,
            "state": state.as_str(),
            "total": b.total,
            "counts": b.counts,
            "created_at": b.created_at,
            "finished_at": now,
        });
        let fired_before = fired.len();
        for (index, plan) in plans.into_iter().enumerate() {
            if done.contains(&index) {
                continue;
            }
            let fire = match plan.on {
                CallbackOn::Complete => true,
                CallbackOn::Success => state == BatchState::Succeeded,
                CallbackOn::Failure => state != BatchState::Succeeded,
            };
            if !fire {
                continue;
            }
            let mut job = plan.job;
            job.id = JobId::new();
            job.run_at = now;
            if let Some(url) = plan.webhook {
                job.args = json!({ "url": url, "payload": summary });
            }
            let r = insert_job(c, fx, None, &job, 0, now).await?;
            fired.push(r.id);
            done.push(index);
        }
        sqlx::query(
            "UPDATE batches SET state = ?, finished_at = ?, callback_jobs = ?, callbacks_fired = ? \
             WHERE id = ? AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(now.0)
        .bind(json_text(&fired)?)
        .bind(json_text(&done)?)
        .bind(batch.0)
        .execute(&mut *c)
        .await?;
        tracing::info!(batch.id = %batch, state = state.as_str(), callbacks = fired.len() - fired_before, "batch finished");
    }
    Ok(())
}

fn opt_ts(row: &SqliteRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(Timestamp))
}

fn job_from_row(row: &SqliteRow) -> Result<Job, StoreError> {
    let result: Option<String> = row.try_get("result")?;
    Ok(Job {
        id: JobId(row.try_get("id")?),
        batch_id: row.try_get::<Option<Uuid>, _>("batch_id")?.map(BatchId),
        queue: row.try_get("queue")?,
        kind: row.try_get("kind")?,
        args: parse_json(row.try_get("args")?, "args")?,
        priority: row.try_get("priority")?,
        state: parse_state(row.try_get("state")?)?,
        run_at: Timestamp(row.try_get("run_at")?),
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        timeout_ms: row.try_get::<i64, _>("timeout_ms")? as u64,
        backoff: parse_json(row.try_get("backoff")?, "backoff")?,
        result: result
            .map(|r| parse_json::<Value>(&r, "result"))
            .transpose()?,
        errors: parse_json(row.try_get("errors")?, "errors")?,
        progress: row.try_get("progress")?,
        depends_on: Vec::new(),
        unique_key: row.try_get("unique_key")?,
        worker: row.try_get("worker")?,
        lease_expires_at: opt_ts(row, "lease_expires_at")?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        started_at: opt_ts(row, "started_at")?,
        finished_at: opt_ts(row, "finished_at")?,
    })
}

fn batch_from_row(row: &SqliteRow) -> Result<Batch, StoreError> {
    let mut counts = StateCounts::default();
    for (i, col) in COUNT_COLUMNS.iter().enumerate() {
        counts.set(JobState::ALL[i], row.try_get::<i64, _>(*col)?.max(0) as u64);
    }
    let total = row.try_get::<i64, _>("total")?.max(0) as u64;
    let state: String = row.try_get("state")?;
    let policy: String = row.try_get("on_dependency_failure")?;
    Ok(Batch {
        id: BatchId(row.try_get("id")?),
        name: row.try_get("name")?,
        state: BatchState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("batch state `{state}`")))?,
        total,
        progress: if total == 0 {
            1.0
        } else {
            counts.finished() as f64 / total as f64
        },
        counts,
        callbacks: parse_json(row.try_get("callbacks")?, "callbacks")?,
        on_dependency_failure: DependencyPolicy::parse(&policy)
            .ok_or_else(|| StoreError::Corrupt(format!("policy `{policy}`")))?,
        callback_jobs: parse_json(row.try_get("callback_jobs")?, "callback_jobs")?,
        created_at: Timestamp(row.try_get("created_at")?),
        started_at: opt_ts(row, "started_at")?,
        finished_at: opt_ts(row, "finished_at")?,
    })
}
