//! The two stores under test behind one type: opening them with their durable
//! settings, pushing tasks, starting a worker on a queue, and counting rows.
//!
//! Workers use each storage's event-driven variant, the one apalis documents for
//! low latency: on SQLite, an update hook on every connection of the pool wakes
//! the workers when a row is inserted into `Jobs` (what
//! `SqliteStorage::connect_with_callback` + `with_callback` do; rebuilt here so
//! the connections keep WAL + `synchronous=NORMAL`, and so every worker of the
//! process is woken, not just one); on PostgreSQL, `with_pubsub()` (LISTEN on
//! the insert trigger's NOTIFY). Without them an idle apalis 1.0 worker looks
//! again only when its heartbeat timer fires (30 s). The producer pushes through
//! the same pool, in process.
//!
//! Both streams of wake-ups are coalesced ([`Coalesce`]). apalis's
//! `StreamStrategy` takes one event per poll, and a stream that answered
//! `Ready` has no waker registered: once events come faster than the worker
//! polls (a `push_all` of K rows gives K events on SQLite; PostgreSQL's trigger
//! notifies per row, so 100-200 probes/s are enough), the worker stops being
//! woken and sleeps until its next heartbeat (30 s). Measured without it: probes
//! after a burn-queue fill (SQLite) and at 100-200/s (PostgreSQL) waited ~29 s.

use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use apalis::prelude::*;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{Stream, StreamExt, stream};
use sqlx::sqlite::{SqliteJournalMode, SqliteOperation, SqliteSynchronous};

use crate::job::{Job, handle};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

type Hooks = Arc<Mutex<Vec<UnboundedSender<()>>>>;

pub enum Store {
    Sqlite { pool: apalis_sqlite::SqlitePool, hooks: Hooks },
    Postgres { pool: apalis_postgres::PgPool },
}

impl Store {
    /// `sqlite PATH` (created, WAL, synchronous=NORMAL) or `postgres URL` (as the
    /// server is configured); runs apalis's migrations.
    pub async fn open(kind: &str, db: &str) -> Result<Store, Error> {
        match kind {
            "sqlite" => {
                use apalis_sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteStorage};
                let opts = SqliteConnectOptions::from_str(&format!("sqlite://{db}"))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal);
                // apalis's `setup` sets synchronous=OFF on the connection it runs on:
                // give it a pool of its own, closed before the measured one opens.
                let setup = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
                SqliteStorage::setup(&setup).await?;
                setup.close().await;
                let hooks: Hooks = Arc::default();
                let h = hooks.clone();
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .after_connect(move |conn, _| {
                        let h = h.clone();
                        Box::pin(async move {
                            conn.lock_handle().await?.set_update_hook(move |ev| {
                                if ev.operation == SqliteOperation::Insert && ev.table == "Jobs" {
                                    h.lock().unwrap().retain(|tx| tx.unbounded_send(()).is_ok());
                                }
                            });
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await?;
                Ok(Store::Sqlite { pool, hooks })
            }
            "postgres" => {
                let pool = apalis_postgres::PgPool::connect(db).await?;
                apalis_postgres::PostgresStorage::setup(&pool).await?;
                Ok(Store::Postgres { pool })
            }
            other => Err(format!("unknown store {other} (sqlite or postgres)").into()),
        }
    }

    /// The command name of the database server's processes, if it is one.
    pub fn broker_comm(&self) -> Option<&'static str> {
        match self {
            Store::Sqlite { .. } => None,
            Store::Postgres { .. } => Some("postgres"),
        }
    }

    /// Pushes the jobs to `queue` in one `push_all` (one transaction).
    pub async fn push_all(&self, queue: &str, jobs: Vec<Job>) -> Result<(), Error> {
        let mut s = stream::iter(jobs.into_iter().map(|j| TaskBuilder::new(j).build()).collect::<Vec<_>>());
        match self {
            Store::Sqlite { pool, .. } => sqlite_storage(pool, queue, 10).push_all(&mut s).await?,
            Store::Postgres { pool } => pg_storage(pool, queue, 10).push_all(&mut s).await?,
        }
        Ok(())
    }

    /// Pushes one job to `queue` (one transaction).
    pub async fn push(&self, queue: &str, job: Job) -> Result<(), Error> {
        match self {
            Store::Sqlite { pool, .. } => sqlite_storage(pool, queue, 10).push(job).await?,
            Store::Postgres { pool } => pg_storage(pool, queue, 10).push(job).await?,
        }
        Ok(())
    }

    /// Starts a worker named `name` on `queue` running [`handle`] on up to `conc`
    /// tasks at once, fetching up to `batch` per poll.
    pub fn spawn_worker(
        &self,
        name: &str,
        queue: &str,
        conc: usize,
        batch: usize,
    ) -> tokio::task::JoinHandle<Result<(), WorkerError>> {
        match self {
            Store::Sqlite { pool, hooks } => {
                let (tx, rx) = unbounded::<()>();
                hooks.lock().unwrap().push(tx);
                let backend = sqlite_storage(pool, queue, batch).poll_with_stream(Coalesce(rx));
                let w = WorkerBuilder::new(name).backend(backend).concurrency(conc).build(handle);
                tokio::spawn(w.run())
            }
            Store::Postgres { pool } => {
                // `with_pubsub()`, with the notifications coalesced.
                let pubsub = apalis_postgres::Pubsub::new(pool.clone(), queue.to_string());
                let backend = pg_storage(pool, queue, batch).poll_with_stream(Coalesce(pubsub));
                let w = WorkerBuilder::new(name).backend(backend).concurrency(conc).build(handle);
                tokio::spawn(w.run())
            }
        }
    }

    /// Rows of `queue` with this status (`Pending`, `Running`, `Done`, ...).
    pub async fn count(&self, queue: &str, status: &str) -> Result<i64, Error> {
        Ok(match self {
            Store::Sqlite { pool, .. } => {
                sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE job_type = ? AND status = ?")
                    .bind(queue)
                    .bind(status)
                    .fetch_one(pool)
                    .await?
            }
            Store::Postgres { pool } => {
                sqlx::query_scalar("SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1 AND status = $2")
                    .bind(queue)
                    .bind(status)
                    .fetch_one(pool)
                    .await?
            }
        })
    }
}

fn sqlite_storage(pool: &apalis_sqlite::SqlitePool, queue: &str, batch: usize) -> apalis_sqlite::SqliteStorage<Job> {
    let config = apalis_sqlite::Config::default().queue(queue).batch_size(batch);
    apalis_sqlite::SqliteStorage::new(pool).with_config(config)
}

fn pg_storage(pool: &apalis_postgres::PgPool, queue: &str, batch: usize) -> apalis_postgres::PostgresStorage<Job> {
    let config = apalis_postgres::Config::default().queue(queue).batch_size(batch);
    apalis_postgres::PostgresStorage::new(pool).with_config(config)
}

/// A stream that yields once for all the items waiting in `S`, and is `Pending`
/// (its waker registered with `S`) otherwise.
struct Coalesce<S>(S);

impl<S: Stream + Unpin> Stream for Coalesce<S> {
    type Item = ();

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let mut got = false;
        loop {
            match self.0.poll_next_unpin(cx) {
                Poll::Ready(Some(_)) => got = true,
                Poll::Ready(None) => return Poll::Ready(got.then_some(())),
                Poll::Pending => return if got { Poll::Ready(Some(())) } else { Poll::Pending },
            }
        }
    }
}
