//! The `http_poll` source against an HTTP server in the test: pages
//! followed by a JSON pointer, the cursor committed after the sink commits
//! and kept across restarts, and Retry-After honoured.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use support::{p, payloads, start, wait_rows, wait_until};

#[derive(Default)]
struct Site {
    /// Item ids available, ascending.
    items: Vec<u64>,
    /// `since` of every first-page request, in order.
    asked: Vec<String>,
    /// When each request came.
    times: Vec<Instant>,
    /// Answer 429 with Retry-After to this many requests first.
    refuse: usize,
}

type Shared = Arc<Mutex<Site>>;

async fn prices(
    State(site): State<Shared>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let mut s = site.lock().unwrap();
    s.times.push(Instant::now());
    if s.refuse > 0 {
        s.refuse -= 1;
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("1"));
        return (StatusCode::TOO_MANY_REQUESTS, h, "slow down").into_response();
    }
    let since: u64 = q.get("since").and_then(|v| v.parse().ok()).unwrap_or(0);
    let page: usize = q.get("page").and_then(|v| v.parse().ok()).unwrap_or(0);
    if page == 0 {
        s.asked.push(q.get("since").cloned().unwrap_or_default());
    }
    let newer: Vec<u64> = s.items.iter().copied().filter(|i| *i > since).collect();
    let chunk: Vec<u64> = newer.iter().copied().skip(page * 2).take(2).collect();
    let more = newer.len() > (page + 1) * 2;
    let body = serde_json::json!({
        "items": chunk.iter().map(|i| serde_json::json!({"id": i, "price": i * 10})).collect::<Vec<_>>(),
        "next": if more { serde_json::Value::from(format!("/prices?since={since}&page={}", page + 1)) } else { serde_json::Value::Null },
        "last": newer.last().copied().unwrap_or(since).to_string(),
    });
    axum::Json(body).into_response()
}

async fn serve(site: Shared) -> std::net::SocketAddr {
    let app = Router::new().route("/prices", get(prices)).with_state(site);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn config(dir: &std::path::Path, addr: std::net::SocketAddr) -> String {
    format!(
        r#"
data_dir = "{data}"

[sources.prices]
kind = "http_poll"
url = "http://{addr}/prices?since={{{{cursor}}}}"
interval = "50ms"
jitter = "10ms"
timeout = "5s"
records = "/items"
next = "/next"
cursor = "/last"
initial_cursor = "0"
id_field = "id"

[sinks.db]
kind = "sqlite"
inputs = ["prices"]
path = "{db}"
batch = {{ timeout = "5ms" }}
"#,
        data = p(&dir.join("data")),
        db = p(&dir.join("out.db")),
    )
}

fn ids(rows: &[String]) -> Vec<u64> {
    let mut v: Vec<u64> = rows
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(r).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_cursor_and_restart() {
    let site: Shared = Arc::new(Mutex::new(Site {
        items: (1..=5).collect(),
        ..Site::default()
    }));
    let addr = serve(site.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let cfg = config(dir.path(), addr);

    let run = start(&cfg).await;
    // Five items in three pages of one poll.
    wait_rows(&db, 5).await;
    wait_until("the cursor moves on", || async {
        site.lock().unwrap().asked.iter().any(|a| a == "5")
    })
    .await;
    site.lock().unwrap().items.extend([6, 7]);
    wait_rows(&db, 7).await;
    wait_until("the cursor moves on again", || async {
        site.lock().unwrap().asked.iter().any(|a| a == "7")
    })
    .await;
    assert!(run.stop().await);
    assert_eq!(ids(&payloads(&db).await), (1..=7).collect::<Vec<_>>());
    let asked = site.lock().unwrap().asked.clone();
    assert_eq!(asked[0], "0", "the first poll uses initial_cursor");

    // Restarted: the first poll starts from the committed cursor.
    let before = site.lock().unwrap().asked.len();
    let run = start(&cfg).await;
    wait_until("a poll after the restart", || async {
        site.lock().unwrap().asked.len() > before
    })
    .await;
    assert!(run.stop().await);
    assert_eq!(site.lock().unwrap().asked[before], "7");
    assert_eq!(ids(&payloads(&db).await), (1..=7).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_puts_the_next_poll_off() {
    let site: Shared = Arc::new(Mutex::new(Site {
        items: vec![1],
        refuse: 1,
        ..Site::default()
    }));
    let addr = serve(site.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let run = start(&config(dir.path(), addr)).await;
    wait_until("the row", || async { !payloads(&db).await.is_empty() }).await;
    assert!(run.stop().await);
    let times = site.lock().unwrap().times.clone();
    assert!(times.len() >= 2);
    // A lower bound only: the interval is 50 ms, Retry-After says 1 s.
    assert!(
        times[1] - times[0] >= Duration::from_millis(950),
        "the second request came {:?} after the 429",
        times[1] - times[0]
    );
}

/// Requests `/linked` and `/slow` saw: the `at` parameter of each.
type Seen = Arc<Mutex<Vec<String>>>;

/// `/linked`: items 1–2, then (by `Link: rel="next"`) item 3. `/slow`:
/// answers after 2 s, long past the poll's deadline.
async fn serve_linked_and_slow(seen: Seen) -> std::net::SocketAddr {
    async fn linked(
        State(seen): State<Seen>,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> Response {
        let at = q.get("at").cloned().unwrap_or_default();
        seen.lock().unwrap().push(at);
        if q.get("page").map(String::as_str) == Some("1") {
            return axum::Json(serde_json::json!([{"id": 3}])).into_response();
        }
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(r#"</linked?page=1>; rel="next", </linked>; rel="first""#),
        );
        (h, axum::Json(serde_json::json!([{"id": 1}, {"id": 2}]))).into_response()
    }
    async fn slow(State(seen): State<Seen>) -> Response {
        seen.lock().unwrap().push("slow".into());
        tokio::time::sleep(Duration::from_secs(2)).await;
        axum::Json(serde_json::json!([{"id": 9}])).into_response()
    }
    let app = Router::new()
        .route("/linked", get(linked))
        .route("/slow", get(slow))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn one_source(dir: &std::path::Path, url: &str, extra: &str) -> String {
    format!(
        r#"
data_dir = "{data}"

[sources.feed]
kind = "http_poll"
url = "{url}"
interval = "50ms"
id_field = "id"
{extra}

[sinks.db]
kind = "sqlite"
inputs = ["feed"]
path = "{db}"
batch = {{ timeout = "5ms" }}
"#,
        data = p(&dir.join("data")),
        db = p(&dir.join("out.db")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_header_pages_and_the_now_template() {
    let seen: Seen = Arc::default();
    let addr = serve_linked_and_slow(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let url = format!("http://{addr}/linked?at={{{{now}}}}");
    let run = start(&one_source(dir.path(), &url, "next = \"link\"")).await;
    wait_rows(&db, 3).await;
    assert!(run.stop().await);
    assert_eq!(ids(&payloads(&db).await)[..3], [1, 2, 3]);
    // The first page of each poll carries `{{now}}` filled in (RFC 3339, UTC);
    // the next page is the server's own link.
    let at = seen.lock().unwrap()[0].clone();
    let t = humantime::parse_rfc3339(&at).unwrap_or_else(|e| panic!("{at:?}: {e}"));
    let age = std::time::SystemTime::now().duration_since(t).unwrap();
    assert!(age < Duration::from_secs(600), "{at} is not now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_past_its_deadline_sends_nothing_and_keeps_the_cursor() {
    let seen: Seen = Arc::default();
    let addr = serve_linked_and_slow(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let url = format!("http://{addr}/slow?since={{{{cursor}}}}");
    let run = start(&one_source(dir.path(), &url, "timeout = \"200ms\"")).await;
    wait_until("two polls", || async { seen.lock().unwrap().len() >= 2 }).await;
    assert!(run.stop().await);
    assert!(payloads(&db).await.is_empty(), "a late answer is dropped");
    assert!(
        !dir.path()
            .join("data")
            .join("cursors")
            .join("feed.json")
            .exists(),
        "no cursor committed"
    );
}
