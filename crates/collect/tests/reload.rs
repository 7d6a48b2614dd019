//! Reloading a running pipeline (what SIGHUP does in the binary), with
//! records flowing: nothing is lost, an unchanged source is not restarted,
//! changed components are replaced, removed ones stop, added ones start,
//! and an invalid or refused config changes nothing.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use sluice_collect::{Config, StartError};
use support::{p, payloads, start, wait_until};

struct Cfg<'a> {
    dir: &'a Path,
    /// The `other` source's poll interval: changing it changes the source.
    other_poll: &'a str,
    /// The `db` sink's batch size: changing it changes the sink.
    db_batch: usize,
    /// Add a `copy` JSONL sink reading `app`.
    copy: bool,
    /// Keep the `gone` source (a file source read by `db`).
    gone: bool,
}

fn config(c: &Cfg<'_>) -> String {
    let d = c.dir;
    let mut s = format!(
        r#"
data_dir = "{data}"
drain_timeout = "5s"
buffer = 16

[sources.app]
kind = "file"
path = "{app}"
poll_interval = "10ms"

[sources.other]
kind = "file"
path = "{other}"
poll_interval = "{other_poll}"
"#,
        data = p(&d.join("data")),
        app = p(&d.join("app.log")),
        other = p(&d.join("other.log")),
        other_poll = c.other_poll,
    );
    let mut db_inputs = vec!["\"app\"", "\"other\""];
    if c.gone {
        s.push_str(&format!(
            "\n[sources.gone]\nkind = \"file\"\npath = \"{}\"\npoll_interval = \"10ms\"\n",
            p(&d.join("gone.log"))
        ));
        db_inputs.push("\"gone\"");
    }
    s.push_str(&format!(
        "\n[sinks.db]\nkind = \"sqlite\"\ninputs = [{}]\npath = \"{}\"\nbatch = {{ max_records = {}, timeout = \"5ms\" }}\n",
        db_inputs.join(", "),
        p(&d.join("out.db")),
        c.db_batch
    ));
    if c.copy {
        s.push_str(&format!(
            "\n[sinks.copy]\nkind = \"jsonl\"\ninputs = [\"app\"]\npath = \"{}\"\nbatch = {{ timeout = \"5ms\" }}\n",
            p(&d.join("copy.jsonl"))
        ));
    }
    s
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Append `n` lines `PREFIX-I` in small bursts, so records are in flight
/// while the test reloads.
async fn write_lines(path: std::path::PathBuf, prefix: &'static str, from: usize, n: usize) {
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(20) {
        let text: String = chunk.iter().map(|i| format!("{prefix}-{i}\n")).collect();
        append(&path, &text);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn parse(toml: &str) -> Config {
    Config::parse(toml, "reload.toml").unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_records_flowing_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    append(&d.join("gone.log"), "gone-0\n");
    let first = Cfg {
        dir: d,
        other_poll: "10ms",
        db_batch: 7,
        copy: false,
        gone: true,
    };
    let running = start(&config(&first)).await;
    let db = d.join("out.db");
    wait_until("the first record", || async {
        payloads(&db).await.iter().any(|r| r == "gone-0")
    })
    .await;

    let app = tokio::spawn(write_lines(d.join("app.log"), "app", 0, 1500));
    let other = tokio::spawn(write_lines(d.join("other.log"), "other", 0, 600));
    tokio::time::sleep(Duration::from_millis(40)).await;

    // `other` and `db` change, `copy` is added, `gone` is removed, `app` stays.
    let second = Cfg {
        other_poll: "20ms",
        db_batch: 13,
        copy: true,
        gone: false,
        ..first
    };
    let report = running
        .pipeline
        .reload(parse(&config(&second)))
        .await
        .expect("reload applies");
    assert_eq!(report.unchanged, vec!["app".to_owned()]);
    assert_eq!(report.restarted, vec!["other".to_owned(), "db".to_owned()]);
    assert_eq!(report.started, vec!["copy".to_owned()]);
    assert_eq!(report.stopped, vec!["gone".to_owned()]);

    app.await.unwrap();
    other.await.unwrap();
    let expect = 1 + 1500 + 600;
    wait_until("every line in the database", || async {
        payloads(&db).await.len() >= expect
    })
    .await;
    let rows = payloads(&db).await;
    for i in 0..1500 {
        assert!(rows.contains(&format!("app-{i}")), "app-{i} lost");
    }
    for i in 0..600 {
        assert!(rows.contains(&format!("other-{i}")), "other-{i} lost");
    }
    assert_eq!(rows.len(), expect, "each line once (ids are idempotent)");

    let stats = running.pipeline.stats();
    assert_eq!(
        stats.sources["app"].starts, 1,
        "the unchanged source was not restarted"
    );
    assert_eq!(
        stats.sources["other"].starts, 2,
        "the changed source started again"
    );
    assert!(!stats.sources.contains_key("gone"));
    assert!(stats.sinks.contains_key("copy"));

    // The added sink gets what `app` read after the reload.
    let copy = d.join("copy.jsonl");
    wait_until("the new sink to receive app's records", || async {
        std::fs::read_to_string(&copy)
            .unwrap_or_default()
            .contains("\"app-1499\"")
    })
    .await;
    assert!(running.stop().await, "drained in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_or_refused_reload_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = Cfg {
        dir: d,
        other_poll: "10ms",
        db_batch: 7,
        copy: false,
        gone: false,
    };
    let running = start(&config(&cfg)).await;

    // A config built in code that fails validation.
    let mut bad = parse(&config(&cfg));
    bad.sinks
        .get_mut("db")
        .unwrap()
        .inputs
        .push("nothing".into());
    match running.pipeline.reload(bad).await {
        Err(StartError::Invalid(problems)) => {
            assert!(
                problems.iter().any(|p| p.path == "sinks.db.inputs[2]"),
                "{problems:?}"
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    // data_dir needs a restart.
    let mut moved = parse(&config(&cfg));
    moved.data_dir = d.join("elsewhere");
    let err = running.pipeline.reload(moved).await.unwrap_err();
    assert!(err.to_string().contains("data_dir cannot change"), "{err}");

    // Still running the old pipeline, nothing restarted.
    append(&d.join("app.log"), "after-0\n");
    let db = d.join("out.db");
    wait_until("a record after the refused reloads", || async {
        payloads(&db).await.iter().any(|r| r == "after-0")
    })
    .await;
    assert_eq!(running.pipeline.stats().sources["app"].starts, 1);

    // The same config again: nothing to do.
    let report = running.pipeline.reload(parse(&config(&cfg))).await.unwrap();
    assert!(report.started.is_empty() && report.restarted.is_empty() && report.stopped.is_empty());
    assert!(running.stop().await);
}

/// A file source into a `jsonl` sink rotating at `max_size`.
fn rotating(d: &Path, max_size: &str) -> String {
    format!(
        r#"
data_dir = "{data}"
drain_timeout = "5s"

[sources.app]
kind = "file"
path = "{app}"
poll_interval = "10ms"

[sinks.copy]
kind = "jsonl"
inputs = ["app"]
path = "{copy}"
max_size = "{max_size}"
max_files = 50
batch = {{ timeout = "5ms" }}
"#,
        data = p(&d.join("data")),
        app = p(&d.join("app.log")),
        copy = p(&d.join("copy.jsonl")),
    )
}

/// Every `copy.jsonl*` file with its size and payloads.
fn jsonl_files(d: &Path) -> Vec<(String, u64, Vec<String>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("copy.jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap();
        let payloads = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["payload"].as_str().unwrap().to_owned()
            })
            .collect();
        out.push((name, text.len() as u64, payloads));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_jsonl_rotation_size_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let running = start(&rotating(d, "1MiB")).await;
    append(&d.join("app.log"), &lines("before", 20));
    wait_until("20 lines", || async {
        jsonl_files(d).iter().map(|f| f.2.len()).sum::<usize>() == 20
    })
    .await;
    assert_eq!(jsonl_files(d).len(), 1, "no rotation under 1 MiB");

    let report = running
        .pipeline
        .reload(parse(&rotating(d, "300")))
        .await
        .unwrap();
    assert_eq!(report.restarted, vec!["copy".to_owned()]);
    append(&d.join("app.log"), &lines("after", 20));
    wait_until("40 lines", || async {
        jsonl_files(d).iter().map(|f| f.2.len()).sum::<usize>() == 40
    })
    .await;
    assert!(running.stop().await);

    let files = jsonl_files(d);
    // The big file of before the reload was rotated away whole; every file
    // written since holds at most 300 bytes.
    for (name, size, payloads) in &files {
        if payloads.iter().any(|p| p.starts_with("after")) {
            assert!(*size <= 300, "{name} is {size} bytes, max_size is 300");
        }
    }
    assert!(files.len() > 2, "rotated at the new size: {files:?}");
    let mut all: Vec<String> = files.into_iter().flat_map(|f| f.2).collect();
    all.sort();
    let mut want: Vec<String> = (0..20)
        .flat_map(|i| [format!("before-{i}"), format!("after-{i}")])
        .collect();
    want.sort();
    assert_eq!(all, want, "every line once");
}

fn lines(prefix: &str, n: usize) -> String {
    (0..n).map(|i| format!("{prefix}-{i}\n")).collect()
}
