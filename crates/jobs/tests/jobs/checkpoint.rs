//! The SQLite store checkpoints its WAL from a connection of its own (the
//! writer never does): committed pages reach the database file.

use std::time::Duration;

use serde_json::json;
use sluice_jobs::JobSpec;

use crate::support::{Harness, eventually};

#[tokio::test]
async fn the_wal_is_checkpointed_into_the_database_file_in_the_background() {
    let h = Harness::new().await;
    let db = h.dir.path().join("db/sluice.db");
    let before = std::fs::metadata(&db).unwrap().len();
    for _ in 0..5 {
        h.submit_jobs(
            (0..1_000)
                .map(|i| JobSpec::new("noop", json!({ "pad": "x".repeat(200), "i": i })))
                .collect(),
        )
        .await;
    }
    // 5,000 jobs of ~300 bytes: over a megabyte, all in the WAL until a
    // checkpoint copies it into the database file.
    eventually("the database file grew by a checkpoint", || async {
        std::fs::metadata(&db).unwrap().len() > before + 1_000_000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}
