//! Helpers shared by the integration tests: start a pipeline from TOML text,
//! read what a SQLite sink wrote, wait for a condition or for rows, skip a
//! test whose service URL is unset, and name things uniquely per run.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_collect::{Config, Pipeline};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use tokio_util::sync::CancellationToken;

/// A pipeline running in this process.
pub struct Running {
    pub pipeline: Pipeline,
    pub shutdown: CancellationToken,
}

impl Running {
    /// Cancel and wait for the drain; whether it finished in time.
    pub async fn stop(self) -> bool {
        self.shutdown.cancel();
        self.pipeline.wait().await
    }
}

pub async fn start(toml: &str) -> Running {
    let config = Config::parse(toml, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let pipeline = Pipeline::start(config, shutdown.clone())
        .await
        .expect("pipeline starts");
    Running { pipeline, shutdown }
}

/// A read-only view of a SQLite sink's database.
pub async fn db(path: &Path) -> SqlitePool {
    let opts = SqliteConnectOptions::new().filename(path).read_only(true);
    SqlitePool::connect_with(opts).await.expect("open db")
}

/// The payloads in `table`, in insertion order.
pub async fn payloads(path: &Path) -> Vec<String> {
    if !path.exists() {
        return Vec::new();
    }
    let pool = db(path).await;
    let rows: Vec<(String,)> = sqlx::query_as("SELECT payload FROM records ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
    pool.close().await;
    rows.into_iter().map(|(p,)| p).collect()
}

/// Poll `check` until it returns true; panic with `what` after 20 s. The
/// limit only keeps a broken test from hanging: nothing is asserted about
/// how fast it happens.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The config path inside a temp dir, escaped for TOML.
pub fn p(path: &Path) -> String {
    path.display().to_string().replace('\\', "\\\\")
}

/// Wait until the SQLite sink at `db` holds at least `n` records; their
/// payloads.
pub async fn wait_rows(db: &Path, n: usize) -> Vec<String> {
    wait_until(&format!("{n} rows"), || async {
        payloads(db).await.len() >= n
    })
    .await;
    payloads(db).await
}

/// The URL of a test service from `var` (e.g. `SLUICE_TEST_NATS_URL`), or
/// `None` after saying the test is skipped: the services are optional
/// locally, and CI sets every URL.
pub fn service_url(var: &str, what: &str) -> Option<String> {
    let url = std::env::var(var).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("{var} is not set; skipping the {what} test");
    }
    url
}

/// `TAG_PID_NANOS`: a name no other run of the tests uses (streams,
/// tables, topics, client ids on shared servers).
pub fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}_{}_{}", std::process::id(), nanos % 1_000_000_000_000)
}

/// Hold SQLite's write lock on `db` (a transaction begun IMMEDIATE) so a
/// sink cannot commit and the pipeline fills; `ROLLBACK` on the connection
/// (or dropping it) lets go.
pub async fn hold_write_lock(db: &Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open db");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut c)
        .await
        .expect("take the write lock");
    c
}
