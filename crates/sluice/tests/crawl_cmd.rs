//! `sluice crawl` run as the real binary against a small site served on
//! 127.0.0.1:0: a crawl to JSONL with the stats summary on stdout, the
//! exit status for bad arguments, and `--help`.

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

/// Pages /0 … /19, each linking the next two; /robots.txt disallows /13.
fn start_site() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let h = hits.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
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
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), hits)
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
        "sqlite://",
        "Exit status",
    ] {
        assert!(help.contains(want), "{want} missing from:\n{help}");
    }
}
