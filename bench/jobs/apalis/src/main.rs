//! apalis-bench: the apalis side of bench/jobs.sh's drain and enqueue
//! scenarios, on SQLite and PostgreSQL (apalis 1.0).
//!
//!   apalis-bench sqlite PATH N CONCURRENCY
//!   apalis-bench postgres URL N CONCURRENCY
//!
//! Enqueues N no-op jobs in chunks of 1,000 (`push_all`), then runs one
//! worker with a concurrency limit until N jobs ran, and prints one JSON line
//! with both rates. SQLite runs in WAL mode with synchronous=NORMAL (apalis's
//! `setup` sets OFF on the connection it uses; it runs on a separate pool
//! that is closed before the measured pool opens, so every measured
//! connection is NORMAL); PostgreSQL as the server is configured.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use apalis::prelude::*;
use futures::stream;

static DONE: AtomicUsize = AtomicUsize::new(0);
static TARGET: AtomicUsize = AtomicUsize::new(usize::MAX);

async fn noop(_job: u64, wrk: WorkerContext) -> Result<(), BoxDynError> {
    if DONE.fetch_add(1, Ordering::SeqCst) + 1 >= TARGET.load(Ordering::SeqCst) {
        let _ = wrk.stop();
    }
    Ok(())
}

fn tasks(from: u64, n: u64) -> Vec<Task<u64>> {
    (from..from + n).map(|i| TaskBuilder::new(i).build()).collect()
}

fn report(system: &str, n: usize, conc: usize, enqueue_s: f64, drain_s: f64) {
    println!(
        "{{\"system\":\"{system}\",\"jobs\":{n},\"concurrency\":{conc},\"enqueue_jobs_per_s\":{:.0},\"drain_jobs_per_s\":{:.0},\"drain_s\":{drain_s:.3}}}",
        n as f64 / enqueue_s,
        n as f64 / drain_s
    );
}

async fn sqlite(path: &str, n: usize, conc: usize) -> Result<(), Box<dyn std::error::Error>> {
    use apalis_sqlite::{Config, SqliteConnectOptions, SqlitePoolOptions, SqliteStorage};
    use std::str::FromStr;
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .create_if_missing(true)
        .journal_mode(sqlx_sqlite_journal())
        .synchronous(sqlx_sqlite_sync());
    {
        let setup = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
        SqliteStorage::setup(&setup).await?;
        setup.close().await;
    }
    let pool = SqlitePoolOptions::new().max_connections(8).connect_with(opts).await?;
    let config = Config::default().queue("bench").batch_size(conc.clamp(10, 1000));
    let mut backend = SqliteStorage::<u64>::new(&pool).with_config(config);
    let t = Instant::now();
    let mut sent = 0u64;
    while (sent as usize) < n {
        let chunk = (n as u64 - sent).min(1_000);
        let mut s = stream::iter(tasks(sent, chunk));
        backend.push_all(&mut s).await?;
        sent += chunk;
    }
    let enqueue_s = t.elapsed().as_secs_f64();
    TARGET.store(n, Ordering::SeqCst);
    let t = Instant::now();
    let worker = WorkerBuilder::new("bench-sqlite")
        .backend(backend)
        .concurrency(conc)
        .build(noop);
    worker.run().await?;
    report("apalis-sqlite", n, conc, enqueue_s, t.elapsed().as_secs_f64());
    Ok(())
}

fn sqlx_sqlite_journal() -> sqlx::sqlite::SqliteJournalMode {
    sqlx::sqlite::SqliteJournalMode::Wal
}

fn sqlx_sqlite_sync() -> sqlx::sqlite::SqliteSynchronous {
    sqlx::sqlite::SqliteSynchronous::Normal
}

async fn postgres(url: &str, n: usize, conc: usize) -> Result<(), Box<dyn std::error::Error>> {
    use apalis_postgres::{Config, PgPool, PostgresStorage};
    let pool = PgPool::connect(url).await?;
    PostgresStorage::setup(&pool).await?;
    let config = Config::default().queue("bench").batch_size(conc.clamp(10, 1000));
    let mut backend = PostgresStorage::<u64>::new(&pool).with_config(config);
    let t = Instant::now();
    let mut sent = 0u64;
    while (sent as usize) < n {
        let chunk = (n as u64 - sent).min(1_000);
        let mut s = stream::iter(tasks(sent, chunk));
        backend.push_all(&mut s).await?;
        sent += chunk;
    }
    let enqueue_s = t.elapsed().as_secs_f64();
    TARGET.store(n, Ordering::SeqCst);
    let t = Instant::now();
    let worker = WorkerBuilder::new("bench-postgres")
        .backend(backend)
        .concurrency(conc)
        .build(noop);
    worker.run().await?;
    report("apalis-postgres", n, conc, enqueue_s, t.elapsed().as_secs_f64());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 5 {
        eprintln!("usage: apalis-bench sqlite|postgres PATH|URL N CONCURRENCY");
        std::process::exit(2);
    }
    let n: usize = a[3].parse()?;
    let conc: usize = a[4].parse()?;
    match a[1].as_str() {
        "sqlite" => sqlite(&a[2], n, conc).await,
        "postgres" => postgres(&a[2], n, conc).await,
        other => Err(format!("unknown store {other}").into()),
    }
}
