//! Helpers for the kill -9 tests of broker sources: run `sluice collect` as
//! a child process (SIGKILL or SIGTERM it), and read what its SQLite sink
//! wrote while it runs.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The service URL in `var`, or `None` after saying `what` is skipped.
pub fn service_url(var: &str, what: &str) -> Option<String> {
    let url = std::env::var(var).ok();
    if url.is_none() {
        eprintln!("{var} is not set; skipping {what}");
    }
    url
}

/// A name no other test (or earlier run) uses: tag, process id and clock.
pub fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}_{}_{}", std::process::id(), nanos % 1_000_000_000_000)
}

/// A path as TOML string content.
pub fn p(path: &Path) -> String {
    path.display().to_string().replace('\\', "/")
}

/// A running `sluice collect`; SIGKILLed on drop if still running.
pub struct Collector {
    child: Option<Child>,
}

impl Collector {
    /// Start `sluice collect --config CONFIG`; its warnings go to the test's stderr.
    pub fn start(config: &Path) -> Collector {
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--log", "warn", "collect", "--config"])
            .arg(config)
            .env_remove("SLUICE_COLLECT_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sluice collect starts");
        Collector { child: Some(child) }
    }

    /// SIGKILL: no drain, no last acks.
    pub fn kill_9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reaped");
        }
    }

    /// SIGTERM, and assert the drain ends with exit status 0.
    pub fn stop(mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let status = c.wait().expect("reaped");
        assert!(status.success(), "SIGTERM exits 0: {status:?}");
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// The `records` table of a SQLite sink's database.
pub struct SinkRows {
    path: PathBuf,
}

impl SinkRows {
    pub fn new(path: PathBuf) -> SinkRows {
        SinkRows { path }
    }

    async fn pool(&self) -> Option<sqlx::SqlitePool> {
        if !self.path.exists() {
            return None;
        }
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.path)
            .read_only(true);
        sqlx::SqlitePool::connect_with(opts).await.ok()
    }

    /// Rows written so far (0 before the table exists).
    pub async fn count(&self) -> u64 {
        let Some(pool) = self.pool().await else {
            return 0;
        };
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM records")
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
        pool.close().await;
        n as u64
    }

    /// `(record_id, payload)` of every row.
    pub async fn rows(&self) -> Vec<(Option<String>, String)> {
        let Some(pool) = self.pool().await else {
            return Vec::new();
        };
        let rows = sqlx::query_as("SELECT record_id, payload FROM records ORDER BY seq")
            .fetch_all(&pool)
            .await
            .expect("read the records table");
        pool.close().await;
        rows
    }

    /// Poll until at least `n` rows are written. The 60 s limit only keeps a
    /// broken test from hanging; nothing is asserted about speed.
    pub async fn wait_at_least(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let have = self.count().await;
            if have >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out with {have} rows waiting for {n}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The `n` of each `{"n":N}` payload, sorted (duplicates kept).
pub fn numbers(rows: &[(Option<String>, String)]) -> Vec<u64> {
    let mut ns: Vec<u64> = rows
        .iter()
        .map(|(_, payload)| {
            let v: serde_json::Value = serde_json::from_str(payload)
                .unwrap_or_else(|e| panic!("payload {payload:?}: {e}"));
            v["n"]
                .as_u64()
                .unwrap_or_else(|| panic!("payload {payload:?} has no n"))
        })
        .collect();
    ns.sort_unstable();
    ns
}
