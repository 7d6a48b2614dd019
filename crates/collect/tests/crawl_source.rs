//! The `crawl` source: a synthetic site served in-process, crawled into a
//! SQLite sink; a reload that adds a seed fetches only the new pages, and
//! a restart of the whole pipeline fetches nothing again; with
//! `drop_newest`, a page whose record was dropped is fetched again by the
//! next run instead of being lost.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use sluice_collect::Config;
use support::{db, hold_write_lock, p, start, wait_until};

#[derive(Clone, Default)]
struct Hits(Arc<Mutex<BTreeMap<String, usize>>>);

impl Hits {
    fn get(&self) -> BTreeMap<String, usize> {
        let mut m = self.0.lock().unwrap().clone();
        m.remove("/robots.txt");
        m
    }
}

/// The pages `/wide` links: more than a one-record buffer holds.
const WIDE: [&str; 30] = [
    "/w/0", "/w/1", "/w/2", "/w/3", "/w/4", "/w/5", "/w/6", "/w/7", "/w/8", "/w/9", "/w/10",
    "/w/11", "/w/12", "/w/13", "/w/14", "/w/15", "/w/16", "/w/17", "/w/18", "/w/19", "/w/20",
    "/w/21", "/w/22", "/w/23", "/w/24", "/w/25", "/w/26", "/w/27", "/w/28", "/w/29",
];

/// `/` links `/a` and `/b`; `/a` links `/c`; `/extra` links `/d`; `/wide`
/// links thirty `/w/N` pages without links; others link back to `/`.
async fn page(State(hits): State<Hits>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    *hits.0.lock().unwrap().entry(path.clone()).or_default() += 1;
    let links: &[&str] = match path.as_str() {
        "/" => &["/a", "/b"],
        "/a" => &["/c"],
        "/b" | "/c" | "/d" => &["/"],
        "/extra" => &["/d"],
        "/wide" => &WIDE,
        p if p.starts_with("/w/") => &[],
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let body: String = links
        .iter()
        .map(|l| format!("<a href=\"{l}\">{l}</a>"))
        .collect();
    Html(format!(
        "<html><head><title>{path}</title></head><body>{body}</body></html>"
    ))
    .into_response()
}

async fn site() -> (String, Hits) {
    let hits = Hits::default();
    let app = axum::Router::new().fallback(page).with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), hits)
}

fn config(dir: &Path, seeds: &[String]) -> String {
    config_when_full(dir, seeds, "block")
}

/// With `drop_newest`, a one-record buffer and a short SQLite busy
/// timeout, so a locked database fills the pipeline at once.
fn config_when_full(dir: &Path, seeds: &[String], when_full: &str) -> String {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    let (buffer, busy) = if when_full == "drop_newest" {
        (1, "50ms")
    } else {
        (1000, "5s")
    };
    format!(
        r#"
data_dir = "{data}"
drain_timeout = "5s"
buffer = {buffer}

[sources.web]
kind = "crawl"
seeds = [{seeds}]
concurrency = 4
when_full = "{when_full}"

[sinks.db]
kind = "sqlite"
inputs = ["web"]
path = "{db}"
busy_timeout = "{busy}"
batch = {{ timeout = "5ms", max_records = 1 }}
"#,
        data = p(&dir.join("data")),
        seeds = seeds.join(", "),
        db = p(&dir.join("pages.db")),
    )
}

/// (id, title) of every page record written.
async fn pages(path: &Path) -> Vec<(String, String)> {
    if !path.exists() {
        return Vec::new();
    }
    let pool = db(path).await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT record_id, payload FROM records ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    pool.close().await;
    rows.into_iter()
        .map(|(id, payload)| {
            let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
            (id, v["title"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawls_into_the_pipeline_and_resumes_without_refetching() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("pages.db");
    let (base, hits) = site().await;
    let running = start(&config(d, &[format!("{base}/")])).await;
    wait_until("four pages", || async { pages(&out).await.len() >= 4 }).await;
    wait_until("every ack back", || async {
        running.pipeline.stats().sources["web"].acks_pending == 0
    })
    .await;
    let got = pages(&out).await;
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    for path in ["/", "/a", "/b", "/c"] {
        assert!(
            ids.contains(&format!("{base}{path}").as_str()),
            "{path} in {ids:?}"
        );
    }
    assert!(
        got.iter().any(|(_, t)| t == "/a"),
        "records carry the page fields"
    );
    assert_eq!(
        hits.get().values().sum::<usize>(),
        4,
        "each page fetched once"
    );

    // A reload with one more seed: the crawl resumes its state and fetches
    // only what is new.
    let seeds = [format!("{base}/"), format!("{base}/extra")];
    let report = running
        .pipeline
        .reload(Config::parse(&config(d, &seeds), "c.toml").unwrap())
        .await
        .unwrap();
    assert_eq!(report.restarted, vec!["web".to_owned()]);
    wait_until("six pages", || async { pages(&out).await.len() >= 6 }).await;
    let h = hits.get();
    assert_eq!(
        h.get("/"),
        Some(&1),
        "the first seed was not fetched again: {h:?}"
    );
    assert_eq!(h.get("/extra"), Some(&1));
    assert_eq!(h.get("/d"), Some(&1));
    assert!(running.stop().await);

    // A new process: the state says everything is done.
    let running = start(&config(d, &seeds)).await;
    wait_until("the crawl to start", || async {
        running.pipeline.stats().sources["web"].starts == 1
    })
    .await;
    // Nothing to wait for but the absence of fetches: give the crawl a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(running.stop().await);
    assert_eq!(
        hits.get().values().sum::<usize>(),
        6,
        "no page fetched twice"
    );
    assert_eq!(pages(&out).await.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_leaves_dropped_pages_queued_for_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("pages.db");
    let (base, hits) = site().await;
    let cfg = config_when_full(d, &[format!("{base}/wide")], "drop_newest");
    let all: Vec<String> = std::iter::once("/wide")
        .chain(WIDE)
        .map(|p| format!("{base}{p}"))
        .collect();

    // The sink cannot write while the crawl runs: most records are dropped.
    let running = start(&cfg).await;
    let mut locked = hold_write_lock(&out).await;
    wait_until("every page fetched", || async {
        hits.get().len() == all.len()
    })
    .await;
    wait_until("the last records handed over", || async {
        let s = &running.pipeline.stats().sources["web"];
        s.records_in + s.dropped >= all.len() as u64
    })
    .await;
    let dropped = running.pipeline.stats().sources["web"].dropped;
    assert!(dropped > 0, "nothing was dropped");
    sqlx::query("ROLLBACK").execute(&mut locked).await.unwrap();
    drop(locked);
    wait_until("every ack back", || async {
        running.pipeline.stats().sources["web"].acks_pending == 0
    })
    .await;
    assert!(running.stop().await);
    let first: Vec<String> = pages(&out).await.into_iter().map(|(id, _)| id).collect();
    assert!(
        first.len() < all.len(),
        "dropped records are not written: {} of {}",
        first.len(),
        all.len()
    );

    // The next run (blocking, so it drops nothing itself) fetches what was
    // dropped, and only that.
    let running = start(&config_when_full(d, &[format!("{base}/wide")], "block")).await;
    wait_until("every page written", || async {
        pages(&out).await.len() == all.len()
    })
    .await;
    assert!(running.stop().await);
    let mut ids: Vec<String> = pages(&out).await.into_iter().map(|(id, _)| id).collect();
    ids.sort();
    let mut want = all.clone();
    want.sort();
    assert_eq!(ids, want, "every page once");
    let h = hits.get();
    for id in &first {
        let path = id.strip_prefix(&base).unwrap();
        assert_eq!(
            h.get(path),
            Some(&1),
            "{path} was written, yet fetched again"
        );
    }
}
