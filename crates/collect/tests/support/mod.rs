//! Helpers shared by the integration tests: start a pipeline from TOML text,
//! read what a SQLite sink wrote, wait for a condition.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::path::Path;
use std::time::Duration;

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
