//! `sqlite`: rows in an SQLite database (WAL), one transaction per batch,
//! the rows of a batch sent as multi-row `INSERT`s.
//!
//! Table `TABLE(seq, source, record_id, ts_ms, payload, is_json)` with a
//! unique index on `(source, record_id)`: a record with an id is inserted
//! with `ON CONFLICT DO NOTHING`, so a replay after a restart adds nothing.
//! A record that can never be written (larger than `max_record_size`, or
//! refused by SQLite for itself — not for a busy or full database) goes to
//! `TABLE_dead_letters` with the reason, in the same transaction, and is
//! counted; the rest of the batch is written. Errors about the database as
//! a whole fail the batch, which the sink loop retries.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Transaction};

use super::WriteError;
use crate::config::SqliteSink;
use crate::pipeline::SinkCounters;
use crate::record::{Payload, Record};

/// How long opening the database waits, at least, for another connection's
/// lock to go.
const OPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The pause between two tries to open a locked database.
const OPEN_RETRY: std::time::Duration = std::time::Duration::from_millis(25);

/// Why opening the sink's database failed.
enum OpenError {
    /// Another connection holds a lock (`SQLITE_BUSY`, `SQLITE_LOCKED`).
    Busy(sqlx::Error),
    /// Anything else while connecting.
    Open(sqlx::Error),
    /// Creating the tables failed for another reason than a lock.
    Schema(sqlx::Error),
}

/// Whether `e` is SQLite saying another connection holds a lock.
fn is_busy(e: &sqlx::Error) -> bool {
    // Primary result codes 5 (BUSY) and 6 (LOCKED); extended codes keep
    // them in the low byte.
    matches!(e, sqlx::Error::Database(db)
        if db.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6)))
}

/// One try: connect (one writer: SQLite serializes writes anyway) and make
/// the tables.
async fn open_with_schema(
    opts: &SqliteConnectOptions,
    schema: &str,
) -> Result<SqlitePool, OpenError> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts.clone())
        .await
        .map_err(|e| {
            if is_busy(&e) {
                OpenError::Busy(e)
            } else {
                OpenError::Open(e)
            }
        })?;
    match sqlx::raw_sql(schema).execute(&pool).await {
        Ok(_) => Ok(pool),
        Err(e) => {
            pool.close().await;
            Err(if is_busy(&e) {
                OpenError::Busy(e)
            } else {
                OpenError::Schema(e)
            })
        }
    }
}

/// Rows per multi-row `INSERT` (5 parameters each; SQLite allows 32,766).
const ROWS_PER_STATEMENT: usize = 200;

/// A record and its payload as the text stored.
struct Row<'a> {
    record: &'a Record,
    payload: String,
}

pub(crate) struct SqliteWriter {
    pool: SqlitePool,
    /// `INSERT INTO TABLE (…) `, to which the rows are added.
    insert: String,
    dead: String,
    max_record: u64,
    name: String,
    counters: Arc<SinkCounters>,
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whether an error is about the database as a whole (retry the batch)
/// rather than about one record.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
            // BUSY, LOCKED, IOERR, FULL, CANTOPEN, READONLY, and their extended codes.
            matches!(code & 0xff, 5 | 6 | 8 | 10 | 13 | 14)
        }
        _ => true,
    }
}

impl SqliteWriter {
    pub(crate) async fn open(
        name: &str,
        cfg: &SqliteSink,
        counters: Arc<SinkCounters>,
    ) -> Result<SqliteWriter, String> {
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(&cfg.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(cfg.busy_timeout.0);
        let t = &cfg.table;
        let schema = format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                seq INTEGER PRIMARY KEY,
                source TEXT NOT NULL,
                record_id TEXT,
                ts_ms INTEGER NOT NULL,
                payload TEXT NOT NULL,
                is_json INTEGER NOT NULL
            );
            CREATE UNIQUE INDEX IF NOT EXISTS {t}_source_record_id ON {t}(source, record_id);
            CREATE TABLE IF NOT EXISTS {t}_dead_letters (
                seq INTEGER PRIMARY KEY,
                source TEXT NOT NULL,
                record_id TEXT,
                ts_ms INTEGER NOT NULL,
                payload TEXT NOT NULL,
                error TEXT NOT NULL,
                failed_at_ms INTEGER NOT NULL
            );"
        );
        // `busy_timeout` bounds one batch's wait, which the sink loop then
        // retries. Opening has no such loop, and a database locked for a
        // moment (a writer of the pipeline before a restart, still closing)
        // must not fail the start: it is waited for here, up to OPEN_WAIT.
        let give_up = std::time::Instant::now() + OPEN_WAIT.max(cfg.busy_timeout.0);
        let pool = loop {
            match open_with_schema(&opts, &schema).await {
                Ok(pool) => break pool,
                Err(OpenError::Busy(_)) if std::time::Instant::now() < give_up => {
                    tokio::time::sleep(OPEN_RETRY).await;
                }
                Err(OpenError::Busy(e) | OpenError::Open(e)) => {
                    return Err(format!("opening {}: {e}", cfg.path.display()));
                }
                Err(OpenError::Schema(e)) => return Err(format!("creating table {t}: {e}")),
            }
        };
        Ok(SqliteWriter {
            pool,
            insert: format!("INSERT INTO {t} (source, record_id, ts_ms, payload, is_json) "),
            dead: format!(
                "INSERT INTO {t}_dead_letters (source, record_id, ts_ms, payload, error, failed_at_ms)
                 VALUES (?, ?, ?, ?, ?, ?)"
            ),
            max_record: cfg.max_record_size.0,
            name: name.to_owned(),
            counters,
        })
    }

    pub(crate) async fn write(&mut self, batch: &[Record]) -> Result<(), WriteError> {
        let err = |e: sqlx::Error| WriteError(e.to_string());
        let rows: Vec<Row<'_>> = batch
            .iter()
            .map(|r| Row {
                record: r,
                payload: r.payload.to_text(),
            })
            .collect();
        let mut dead: Vec<(&Row<'_>, String)> = Vec::new();
        let mut good: Vec<&Row<'_>> = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.payload.len() as u64 > self.max_record {
                let problem = format!(
                    "{} bytes, over max_record_size ({})",
                    row.payload.len(),
                    self.max_record
                );
                dead.push((row, problem));
            } else {
                good.push(row);
            }
        }
        let mut tx = self.pool.begin().await.map_err(err)?;
        for chunk in good.chunks(ROWS_PER_STATEMENT) {
            match self.insert(&mut tx, chunk).await {
                Ok(()) => {}
                Err(e) if is_transient(&e) => return Err(err(e)),
                // A failed statement changes nothing (SQLite undoes it,
                // the transaction stays): one row at a time, to find the
                // record refused for itself.
                Err(_) => {
                    for &row in chunk {
                        match self.insert(&mut tx, &[row]).await {
                            Ok(()) => {}
                            Err(e) if is_transient(&e) => return Err(err(e)),
                            Err(e) => dead.push((row, e.to_string())),
                        }
                    }
                }
            }
        }
        for (row, problem) in &dead {
            let r = row.record;
            tracing::warn!(record.id = r.id.as_deref(), error = %problem, "record set aside in the dead-letter table");
            sqlx::query(&self.dead)
                .bind(&*r.source)
                .bind(r.id.as_deref())
                .bind(millis(r.timestamp))
                .bind(&row.payload)
                .bind(problem)
                .bind(millis(SystemTime::now()))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        if !dead.is_empty() {
            metrics::counter!("sluice_collect_sink_dead_letters_total", "sink" => self.name.clone())
                .increment(dead.len() as u64);
            self.counters
                .dead_letters
                .fetch_add(dead.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// One multi-row `INSERT … ON CONFLICT DO NOTHING`: a round trip to
    /// SQLite's worker thread per statement, not per record.
    async fn insert(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        rows: &[&Row<'_>],
    ) -> Result<(), sqlx::Error> {
        let mut q: QueryBuilder<'_, Sqlite> = QueryBuilder::new(&self.insert);
        q.push_values(rows, |mut b, row| {
            let r = row.record;
            b.push_bind(&*r.source)
                .push_bind(r.id.as_deref())
                .push_bind(millis(r.timestamp))
                .push_bind(row.payload.as_str())
                .push_bind(matches!(r.payload, Payload::Json(_)));
        });
        q.push(" ON CONFLICT(source, record_id) DO NOTHING");
        q.build().execute(&mut **tx).await?;
        Ok(())
    }
}
