//! `postgres`: rows in a PostgreSQL table, one transaction per batch, the
//! rows of a batch sent as multi-row `INSERT`s.
//!
//! Table `TABLE(seq BIGSERIAL, source, record_id, ts_ms, payload JSONB,
//! is_json)` with a unique index on `(source, record_id)`: rows are inserted
//! with `ON CONFLICT DO NOTHING`, so a batch written again after a lost
//! commit answer, or records a source delivers again, add nothing. The
//! tables are created at the first write, so a database that is down at
//! start only delays the sink.
//!
//! A record that can never be written — larger than `max_record_size`, a
//! NUL character (PostgreSQL refuses it in text and JSONB), or refused by
//! PostgreSQL for itself (a data exception) — goes to `TABLE_dead_letters`
//! with the reason, in the same transaction, and is counted; the rest of
//! the batch is written. Any other error (connection refused or lost, the
//! server shutting down, a timeout) fails the batch, which the sink loop
//! retries with backoff: nothing is lost, and the unique index keeps a
//! retried batch from duplicating records that have an id.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Transaction};

use super::WriteError;
use crate::config::PostgresSink;
use crate::pipeline::SinkCounters;
use crate::record::{Payload, Record};

/// Rows per `INSERT` statement (5 parameters each; PostgreSQL allows 65535).
const ROWS_PER_STATEMENT: usize = 2000;

pub(crate) struct PostgresWriter {
    pool: PgPool,
    table: String,
    ready: bool,
    max_record: u64,
    timeout: Duration,
    name: String,
    counters: Arc<SinkCounters>,
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whether an error is about one record (set it aside) rather than about the
/// database or the connection (retry the batch): SQLSTATE classes 22 (data
/// exception) and 54 (program limit, e.g. an index row too large).
fn is_about_the_record(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("54")),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// A record ready to insert, or why it cannot be.
struct Row<'a> {
    record: &'a Record,
    payload: Value,
    problem: Option<String>,
}

impl PostgresWriter {
    pub(crate) async fn open(
        name: &str,
        cfg: &PostgresSink,
        counters: Arc<SinkCounters>,
    ) -> Result<PostgresWriter, String> {
        let opts = PgConnectOptions::from_str(&cfg.url)
            .map_err(|e| format!("url {:?}: {e}", cfg.url))?
            .application_name("sluice-collect");
        // Lazy: a database that is down now is retried at the first write.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(cfg.timeout.0)
            .connect_lazy_with(opts);
        Ok(PostgresWriter {
            pool,
            table: cfg.table.clone(),
            ready: false,
            max_record: cfg.max_record_size.0,
            timeout: cfg.timeout.0,
            name: name.to_owned(),
            counters,
        })
    }

    async fn create_tables(&self) -> Result<(), sqlx::Error> {
        let t = &self.table;
        let schema = format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                seq BIGSERIAL PRIMARY KEY,
                source TEXT NOT NULL,
                record_id TEXT,
                ts_ms BIGINT NOT NULL,
                payload JSONB NOT NULL,
                is_json BOOLEAN NOT NULL
            );
            CREATE UNIQUE INDEX IF NOT EXISTS {t}_source_record_id ON {t}(source, record_id);
            CREATE TABLE IF NOT EXISTS {t}_dead_letters (
                seq BIGSERIAL PRIMARY KEY,
                source TEXT NOT NULL,
                record_id TEXT,
                ts_ms BIGINT NOT NULL,
                payload TEXT NOT NULL,
                error TEXT NOT NULL,
                failed_at_ms BIGINT NOT NULL
            );"
        );
        // Two sinks creating one table at once may collide; the loser's
        // batch is retried and finds the table there.
        sqlx::raw_sql(&schema).execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn write(&mut self, batch: &[Record]) -> Result<(), WriteError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.write_inner(batch)).await {
            Ok(r) => r.map_err(|e| WriteError(e.to_string())),
            Err(_) => Err(WriteError(format!(
                "the batch took longer than timeout ({timeout:?})"
            ))),
        }
    }

    async fn write_inner(&mut self, batch: &[Record]) -> Result<(), sqlx::Error> {
        if !self.ready {
            self.create_tables().await?;
            self.ready = true;
        }
        let mut rows: Vec<Row<'_>> = batch
            .iter()
            .map(|r| {
                let (payload, size) = match &r.payload {
                    Payload::Json(v) => (v.clone(), r.payload.size()),
                    Payload::Text(s) => (Value::String(s.clone()), s.len()),
                };
                let problem = if size as u64 > self.max_record {
                    Some(format!(
                        "about {size} bytes, over max_record_size ({})",
                        self.max_record
                    ))
                } else if has_nul(&payload)
                    || r.source.contains('\0')
                    || r.id.as_deref().is_some_and(|i| i.contains('\0'))
                {
                    Some("contains a NUL character, which PostgreSQL does not store".to_owned())
                } else {
                    None
                };
                Row {
                    record: r,
                    payload,
                    problem,
                }
            })
            .collect();

        let mut tx = self.pool.begin().await?;
        let good: Vec<&Row<'_>> = rows.iter().filter(|r| r.problem.is_none()).collect();
        let mut failed_rows = false;
        for chunk in good.chunks(ROWS_PER_STATEMENT) {
            sqlx::query("SAVEPOINT batch").execute(&mut *tx).await?;
            match self.insert(&mut tx, chunk).await {
                Ok(()) => {
                    sqlx::query("RELEASE SAVEPOINT batch")
                        .execute(&mut *tx)
                        .await?;
                }
                Err(e) if is_about_the_record(&e) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT batch")
                        .execute(&mut *tx)
                        .await?;
                    failed_rows = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if failed_rows {
            // Some record was refused: start again, one row at a time, to
            // find it (and any other) and set them aside.
            drop(tx);
            tx = self.pool.begin().await?;
            for row in rows.iter_mut().filter(|r| r.problem.is_none()) {
                sqlx::query("SAVEPOINT one").execute(&mut *tx).await?;
                match self.insert(&mut tx, &[&*row]).await {
                    Ok(()) => {
                        sqlx::query("RELEASE SAVEPOINT one")
                            .execute(&mut *tx)
                            .await?;
                    }
                    Err(e) if is_about_the_record(&e) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT one")
                            .execute(&mut *tx)
                            .await?;
                        row.problem = Some(e.to_string());
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let mut dead = 0u64;
        for row in rows.iter().filter(|r| r.problem.is_some()) {
            dead += 1;
            let r = row.record;
            let problem = row.problem.as_deref().unwrap_or_default();
            tracing::warn!(record.id = r.id.as_deref(), error = %problem, "record set aside in the dead-letter table");
            let clean = |s: &str| s.replace('\0', "\u{fffd}");
            sqlx::query(&format!(
                "INSERT INTO {}_dead_letters (source, record_id, ts_ms, payload, error, failed_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                self.table
            ))
            .bind(clean(&r.source))
            .bind(r.id.as_deref().map(clean))
            .bind(millis(r.timestamp))
            .bind(clean(&r.payload.to_text()))
            .bind(clean(problem))
            .bind(millis(SystemTime::now()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if dead > 0 {
            metrics::counter!("sluice_collect_sink_dead_letters_total", "sink" => self.name.clone())
                .increment(dead);
            self.counters
                .dead_letters
                .fetch_add(dead, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    async fn insert(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        rows: &[&Row<'_>],
    ) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut q: QueryBuilder<'_, Postgres> = QueryBuilder::new(format!(
            "INSERT INTO {} (source, record_id, ts_ms, payload, is_json) ",
            self.table
        ));
        q.push_values(rows, |mut b, row| {
            let r = row.record;
            b.push_bind(r.source.to_string())
                .push_bind(r.id.clone())
                .push_bind(millis(r.timestamp))
                .push_bind(sqlx::types::Json(row.payload.clone()))
                .push_bind(matches!(r.payload, Payload::Json(_)));
        });
        q.push(" ON CONFLICT (source, record_id) DO NOTHING");
        q.build().execute(&mut **tx).await?;
        Ok(())
    }
}
