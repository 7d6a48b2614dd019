//! `sluice crawl` run as the real binary against a small site served on
//! 127.0.0.1:0: a crawl to JSONL with the stats summary on stdout, a crawl
//! killed with SIGKILL and resumed without fetching a finished page again,
//! the exit status for bad arguments, and `--help`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use axum::extract::Request;
use axum::response::{Html, IntoResponse, Response};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("the sluice binary runs")
}

/// Serve `app` on 127.0.0.1:0 from a runtime on its own thread (the tests
/// themselves block on the binary); its address.
fn serve(app: axum::Router) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// Pages /0 … /19, each linking the next two; /robots.txt disallows /13.
fn start_site() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let hits = h.clone();
        async move {
            let path = req.uri().path().to_string();
            if path == "/robots.txt" {
                return "User-agent: *\nDisallow: /13\n".into_response();
            }
            hits.fetch_add(1, Ordering::SeqCst);
            match path[1..].parse::<u32>() {
                Ok(n) if n < 20 => {
                    let links: String = [n + 1, n + 2]
                        .iter()
                        .filter(|c| **c < 20)
                        .map(|c| format!("<a href=\"/{c}\">{c}</a>"))
                        .collect();
                    Html(format!("<title>page {n}</title>{links}")).into_response()
                }
                _ => Response::builder().status(404).body("no".into()).unwrap(),
            }
        }
    });
    (serve(app), hits)
}

#[test]
fn crawl_writes_jsonl_and_prints_stats() {
    let (addr, hits) = start_site();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pages.jsonl");
    let seed = format!("http://{addr}/0");
    let result = sluice(&[
        "crawl",
        &seed,
        "--out",
        out.to_str().unwrap(),
        "--concurrency",
        "4",
        "--log",
        "warn",
    ]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert_eq!(
        result.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let stats: serde_json::Value = serde_json::from_str(stdout.trim()).expect("stats JSON");
    assert_eq!(stats["pages"], 19, "{stats}");
    assert_eq!(stats["robots_denied"], 1, "{stats}");
    assert!(stats["duration_secs"].is_f64(), "{stats}");
    assert_eq!(hits.load(Ordering::SeqCst), 19);

    let text = std::fs::read_to_string(&out).unwrap();
    let mut urls = BTreeSet::new();
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["status"], 200);
        assert!(r["title"].as_str().unwrap().starts_with("page "));
        assert_eq!(r["content_hash"].as_str().unwrap().len(), 64);
        assert!(r.get("body").is_none());
        urls.insert(r["url"].as_str().unwrap().to_string());
    }
    assert_eq!(urls.len(), 19);
    assert_eq!(text.lines().count(), 19);
    assert!(!urls.contains(&format!("http://{addr}/13")));
    assert!(dir.path().join("pages.jsonl.state.db").exists());

    // Resuming the finished crawl fetches nothing more.
    let result = sluice(&[
        "crawl",
        &seed,
        "--out",
        out.to_str().unwrap(),
        "--resume",
        "--log",
        "warn",
    ]);
    assert_eq!(result.status.code(), Some(0));
    let stats: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&result.stdout).trim()).unwrap();
    assert_eq!(stats["pages"], 0, "{stats}");
    assert_eq!(stats["resumed_pages"], 19, "{stats}");
    assert_eq!(hits.load(Ordering::SeqCst), 19);
}

#[test]
fn bad_arguments_exit_2_and_name_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.jsonl");
    let out = out.to_str().unwrap();
    for (args, want) in [
        (
            vec!["crawl", "ftp://example.org/", "--out", out],
            "URL: `ftp://example.org/`",
        ),
        (
            vec!["crawl", "http://h/", "--out", out, "--concurrency", "0"],
            "--concurrency",
        ),
        (
            vec!["crawl", "http://h/", "--out", out, "--delay", "soon"],
            "--delay",
        ),
        (vec!["crawl", "http://h/", "--out", "redis://x"], "--out"),
        (vec!["crawl", "--out", out], "<URL>"),
    ] {
        let r = sluice(&args);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn help_documents_options_and_exit_status() {
    let r = sluice(&["crawl", "--help"]);
    let help = String::from_utf8_lossy(&r.stdout);
    for want in [
        "--depth",
        "--max-pages",
        "--per-host",
        "--allow-domain",
        "--resume",
        "--no-robots",
        "--content-type",
        "--include-body",
        "--ca-cert",
        "sqlite://",
        "Exit status",
    ] {
        assert!(help.contains(want), "{want} missing from:\n{help}");
    }
}

/// Hits per path, robots.txt left out.
type PathHits = Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>;

/// Pages /p/0 … /p/59 in a binary tree (each links 2n+1 and 2n+2), 30 ms
/// each: slow enough to be killed part way.
fn start_tree_site() -> (SocketAddr, PathHits) {
    let hits = PathHits::default();
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let hits = h.clone();
        async move {
            let path = req.uri().path().to_string();
            let Some(n) = path.strip_prefix("/p/").and_then(|n| n.parse::<u32>().ok()) else {
                return Response::builder().status(404).body("no".into()).unwrap();
            };
            *hits.lock().unwrap().entry(path).or_default() += 1;
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            let links: String = [2 * n + 1, 2 * n + 2]
                .iter()
                .filter(|c| **c < 60)
                .map(|c| format!("<a href=\"/p/{c}\">{c}</a>"))
                .collect();
            Html(format!("<title>page {n}</title>{links}")).into_response()
        }
    });
    (serve(app), hits)
}

/// The URLs in the `crawl_pages` table (empty until it exists).
async fn crawled(db: &std::path::Path) -> Vec<String> {
    if !db.exists() {
        return Vec::new();
    }
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let Ok(pool) = sqlx::SqlitePool::connect_with(opts).await else {
        return Vec::new();
    };
    let rows: Vec<(String,)> = sqlx::query_as("SELECT url FROM crawl_pages")
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
    pool.close().await;
    rows.into_iter().map(|(u,)| u).collect()
}

#[tokio::test]
async fn resume_after_kill_9_fetches_no_finished_page_again() {
    let (addr, hits) = start_tree_site();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crawl.db");
    let out = format!("sqlite://{}", db.display());
    let seed = format!("http://{addr}/p/0");
    let args = [
        "crawl",
        &seed,
        "--out",
        &out,
        "--concurrency",
        "2",
        "--log",
        "warn",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sluice crawl starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while crawled(&db).await.len() < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "the crawl never got going"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = crawled(&db).await;
    assert!(
        done.len() < 60,
        "killed too late to show anything: {}",
        done.len()
    );

    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let r = sluice(&resumed);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let stats: serde_json::Value = serde_json::from_str(stdout.trim()).expect("stats JSON");
    assert_eq!(stats["resumed_pages"], done.len() as u64, "{stats}");

    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 60, "every page fetched: {hits:?}");
    for url in &done {
        let path = url.strip_prefix(&format!("http://{addr}")).unwrap();
        assert_eq!(
            hits.get(path),
            Some(&1),
            "{path} was finished, yet fetched again"
        );
    }
    let mut all = crawled(&db).await;
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 60, "one row per page");
    assert_eq!(crawled(&db).await.len(), 60);
}
