//! The SQLite store checkpoints its WAL itself (SQLite's automatic
//! checkpoint is off): committed pages reach the database file, and the WAL
//! starts over instead of growing.

use serde_json::json;
use sluice_jobs::JobSpec;

use crate::support::{Harness, eventually};

/// Frames in the WAL (`mxFrame` of the WAL-index header at the start of the
/// `-shm` file, in native byte order): it falls to the frames written since
/// when SQLite restarts the WAL.
fn wal_frames(db: &std::path::Path) -> u32 {
    let mut shm = db.as_os_str().to_owned();
    shm.push("-shm");
    let bytes = std::fs::read(&shm).expect("read the WAL index");
    u32::from_ne_bytes(bytes[16..20].try_into().unwrap())
}

#[tokio::test]
async fn the_wal_is_checkpointed_and_restarted() {
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
    // The WAL restarts at the first write after a checkpoint copied all of
    // it, so keep writing a little.
    eventually("the WAL was copied and started over", || async {
        h.submit_jobs(vec![JobSpec::new("noop", json!({}))]).await;
        wal_frames(&db) < 100
    })
    .await;
    assert!(
        std::fs::metadata(&db).unwrap().len() > before + 1_000_000,
        "the jobs are in the database file"
    );
}
