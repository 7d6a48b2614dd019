//! The `file` source into a real SQLite sink: tailing, rotation,
//! truncation, partial lines, and restarts that resume from the checkpoint
//! without loss or duplicates.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use support::{p, payloads, start, wait_rows};

fn config(dir: &Path) -> String {
    format!(
        r#"
data_dir = "{data}"
drain_timeout = "5s"

[sources.app]
kind = "file"
path = "{log}"
poll_interval = "10ms"
max_line_length = "64"

[sinks.db]
kind = "sqlite"
inputs = ["app"]
path = "{db}"
batch = {{ max_records = 7, timeout = "10ms" }}
"#,
        data = p(&dir.join("data")),
        log = p(&dir.join("app.log")),
        db = p(&dir.join("out.db")),
    )
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn lines(prefix: &str, n: usize) -> String {
    (0..n).map(|i| format!("{prefix}-{i}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tails_rotation_truncation_and_partial_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let db = dir.path().join("out.db");
    append(&log, &lines("a", 20));
    let run = start(&config(dir.path())).await;
    let rows = wait_rows(&db, 20).await;
    assert_eq!(rows[0], "a-0");
    assert_eq!(rows[19], "a-19");

    // A partial line is held back until its newline arrives.
    append(&log, "half");
    append(&log, &"x".repeat(100));
    append(&log, "\nafter-long\npart");
    wait_rows(&db, 21).await;
    append(&log, "ial\n");
    let rows = wait_rows(&db, 22).await;
    assert_eq!(
        &rows[20..],
        ["after-long", "partial"],
        "the over-long line is skipped, the partial one waits"
    );

    // Rotation: rename away, create a new file.
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, &lines("b", 5));
    let rows = wait_rows(&db, 27).await;
    assert_eq!(rows[26], "b-4");

    // Truncation (copytruncate): the file starts over, shorter.
    std::fs::File::create(&log).unwrap();
    append(&log, "c-0\n");
    let rows = wait_rows(&db, 28).await;
    assert_eq!(rows[27], "c-0");

    assert!(run.stop().await, "drained in time");
    let rows = payloads(&db).await;
    assert_eq!(rows.len(), 28, "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_checkpoint_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let db = dir.path().join("out.db");
    append(&log, &lines("r", 50));
    let run = start(&config(dir.path())).await;
    wait_rows(&db, 50).await;
    assert!(run.stop().await);

    // Written while the collector was down.
    append(&log, &lines("s", 30));
    let run = start(&config(dir.path())).await;
    let rows = wait_rows(&db, 80).await;
    assert!(run.stop().await);
    let rows_after = payloads(&db).await;
    assert_eq!(rows_after.len(), 80, "no duplicates after the restart");
    assert_eq!(rows[50], "s-0");

    // Without its checkpoint the source reads everything again; the ids are
    // the same, so SQLite takes nothing twice.
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    let run = start(&config(dir.path())).await;
    append(&log, "t-0\n");
    let rows = wait_rows(&db, 81).await;
    assert!(run.stop().await);
    assert_eq!(rows.len(), 81);
    let unique: std::collections::BTreeSet<_> = rows.iter().collect();
    assert_eq!(unique.len(), 81);
    // Let the sink's connection close before the temp dir goes.
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_cut_short_keeps_the_checkpoint_before_what_was_not_written() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let db = dir.path().join("out.db");
    let short = config(dir.path())
        .replace("drain_timeout = \"5s\"", "drain_timeout = \"300ms\"")
        .replace("batch = {", "busy_timeout = \"10ms\"\nbatch = {");
    append(&log, &lines("d", 10));
    let run = start(&short).await;
    wait_rows(&db, 10).await;

    // The sink cannot commit; new lines are read but never written.
    let mut locked = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locked)
        .await
        .unwrap();
    append(&log, &lines("e", 10));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !run.stop().await,
        "the drain deadline cut the stuck sink short"
    );
    sqlx::query("ROLLBACK").execute(&mut locked).await.unwrap();
    drop(locked);
    assert_eq!(payloads(&db).await.len(), 10);

    // The next start reads the unwritten lines again.
    let run = start(&short).await;
    let rows = wait_rows(&db, 20).await;
    assert!(run.stop().await);
    assert_eq!(rows.len(), 20);
    assert_eq!(rows[10], "e-0");
    assert_eq!(rows[19], "e-9");
}
