//! The dashboard in real headless Chromium against the real server: the
//! API and the dashboard on one router, a SQLite store in a temp dir and a
//! runner working its jobs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_jobs::api::{self, ApiConfig, ApiState};
use sluice_jobs::kinds::BuiltinOptions;
use sluice_jobs::{
    AsyncKind, Client, JobContext, JobError, KindOptions, QueueConfig, Registry, Runner,
    RunnerConfig, SqliteConfig, SqliteStore, Store, ui,
};
use tempfile::TempDir;
use tokio::sync::oneshot;

use crate::cdp::{Browser, chromium_binary};

/// Generous: two cores are shared with other builds.
const DEADLINE: Duration = Duration::from_secs(30);

/// The message of the job that always fails.
const DOOM: &str = "the reactor is on fire (test failure 4711)";

/// `doomed`: every attempt fails permanently with [`DOOM`].
struct Doomed;

impl AsyncKind for Doomed {
    type Args = Value;
    async fn run(&self, _args: Value, _ctx: JobContext) -> Result<Value, JobError> {
        Err(JobError::permanent(DOOM))
    }
}

/// The API and the dashboard on 127.0.0.1:0, with a runner.
struct Server {
    base: String,
    runner: Option<Runner>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: TempDir,
}

impl Server {
    async fn start(tokens: Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(SqliteConfig::at(dir.path().join("sluice.db")))
                .await
                .expect("open store"),
        );
        let mut registry = Registry::with_builtins(BuiltinOptions::default());
        registry.register_async(
            "doomed",
            Doomed,
            KindOptions {
                max_attempts: 1,
                ..KindOptions::default()
            },
        );
        let registry = Arc::new(registry);
        let config = ApiConfig {
            tokens,
            events_min_interval: Duration::from_millis(20),
            ..ApiConfig::default()
        };
        let state = ApiState::new(Client::new(store.clone(), registry.clone()), config);
        // How the server mounts the dashboard: its routes merged into the API's.
        let router = api::router(state).merge(ui::routes());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(api::serve(listener, router, async move {
            let _ = stopped.await;
        }));
        let runner = Runner::start(
            store,
            registry,
            RunnerConfig {
                queues: vec![QueueConfig::new("default")],
                // Two at a time, so the page sees the batch part-way.
                concurrency: 2,
                poll_interval: Duration::from_millis(20),
                cpu_threads: 1,
                ..RunnerConfig::default()
            },
        )
        .expect("runner");
        Self {
            base,
            runner: Some(runner),
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut req = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("POST");
        let status = res.status();
        let body: Value = res.json().await.expect("JSON answer");
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    async fn stop(mut self) {
        if let Some(r) = self.runner.take() {
            r.shutdown().await;
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// A JS string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_follows_a_batch_live_to_the_end_and_retries_a_job() {
    let Some(chromium) = chromium_binary() else {
        eprintln!("skipping: no Chromium (set SLUICE_TEST_CHROMIUM or put chromium on PATH)");
        return;
    };
    let server = Server::start(Vec::new()).await;
    let mut browser = Browser::launch(&chromium).await;
    let page = browser.open(&format!("{}/", server.base)).await;

    // The overview is up and its stream open before anything is submitted,
    // so the batch can only reach the page through live updates.
    browser
        .wait_for(
            &page,
            "the overview with a live stream",
            "!!document.querySelector('[data-testid=overview]') && window.__sluice.stream",
            DEADLINE,
            |v| v == "live",
        )
        .await;
    // Set once; a reload would lose it.
    browser
        .eval(
            &page,
            "window.__marker = 'same page'; window.__sluice.loadedAt",
        )
        .await
        .expect("marker");

    let mut jobs: Vec<Value> = (0..6)
        .map(|i| json!({ "kind": "sleep", "args": { "ms": 300 + 100 * i } }))
        .collect();
    jobs.insert(2, json!({ "kind": "doomed" }));
    let answer = server
        .post(
            "/v1/batches",
            None,
            json!({ "name": "browser-test", "jobs": jobs }),
        )
        .await;
    let batch = answer["batch_id"].as_str().expect("batch_id").to_owned();
    let doomed = answer["jobs"][2]["id"].as_str().expect("job id").to_owned();

    // The new batch appears in the overview without a reload; follow its link.
    let row = format!("[data-batch-id={}]", js(&batch));
    browser
        .wait_for(
            &page,
            "the new batch in the overview",
            &format!("!!document.querySelector({})", js(&row)),
            DEADLINE,
            |v| v == true,
        )
        .await;
    browser
        .eval(
            &page,
            &format!(
                "document.querySelector({}).click()",
                js(&format!("{row} [data-testid=batch-link]"))
            ),
        )
        .await
        .expect("click the batch");

    // The batch view reaches 100% and shows the failed job's error.
    let seen = browser
        .wait_for(
            &page,
            "100% and the failed job's error",
            "(() => { const bar = document.querySelector('[data-testid=batch-progress]'); \
              const errs = [...document.querySelectorAll('[data-testid=job-view] [data-testid=job-error], \
                 [data-testid=job-table] [data-testid=job-error]')].map(e => e.textContent); \
              return { pct: bar && bar.getAttribute('aria-valuenow'), \
                       text: bar && document.querySelector('[data-testid=batch-progress-text]').textContent, \
                       state: document.querySelector('[data-testid=batch-state]')?.dataset.state, \
                       errors: errs.filter(Boolean), hash: location.hash }; })()",
            DEADLINE,
            |v| {
                v["pct"] == "100"
                    && v["state"] == "failed"
                    && v["errors"].as_array().is_some_and(|e| !e.is_empty())
            },
        )
        .await;
    assert_eq!(seen["hash"], format!("#/batches/{batch}"), "{seen}");
    assert!(
        seen["text"].as_str().unwrap_or("").contains("7/7"),
        "{seen}"
    );
    let errors = seen["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "only the doomed job failed: {seen}");
    assert!(errors[0].as_str().unwrap_or("").contains(DOOM), "{seen}");

    // Filter by state: only the failed job is listed.
    browser
        .eval(
            &page,
            "document.querySelector('[data-testid=state-filter][data-state=failed]').click()",
        )
        .await
        .expect("click the failed filter");
    let rows = browser
        .wait_for(
            &page,
            "only failed jobs listed",
            "location.hash.endsWith('?state=failed') && \
             [...document.querySelectorAll('[data-testid=job-row]')].map(r => r.dataset.jobId)",
            DEADLINE,
            |v| v.as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
    assert_eq!(rows[0], doomed.as_str());

    // The job view: its error with the attempt, then a retry from its
    // button, whose second failure appears live.
    browser
        .eval(
            &page,
            &format!(
                "document.querySelector({}).click()",
                js(&format!("[data-job-id=\"{doomed}\"] a"))
            ),
        )
        .await
        .expect("click the job");
    browser
        .wait_for(
            &page,
            "the job view with one error and a retry button",
            "(() => { const v = document.querySelector('[data-testid=job-view]'); if (!v) return null; \
               const r = v.querySelector('[data-testid=retry-job]'); \
               return { errors: [...v.querySelectorAll('[data-testid=job-error]')].map(e => e.textContent), \
                        attempt: v.querySelector('[data-testid=job-attempt]')?.textContent, \
                        retry: !!r && !r.hidden }; })()",
            DEADLINE,
            |v| {
                v["retry"] == true
                    && v["attempt"] == "1 of 1"
                    && v["errors"].as_array().is_some_and(|e| {
                        e.len() == 1 && e[0].as_str().unwrap_or("").contains(DOOM)
                    })
            },
        )
        .await;
    browser
        .eval(
            &page,
            "document.querySelector('[data-testid=retry-job]').click()",
        )
        .await
        .expect("click retry");
    browser
        .wait_for(
            &page,
            "the retried job's second error",
            "(() => { const v = document.querySelector('[data-testid=job-view]'); \
               return v && { state: v.dataset.state, \
                 errors: v.querySelectorAll('[data-testid=job-error]').length }; })()",
            DEADLINE,
            |v| v["state"] == "failed" && v["errors"] == 2,
        )
        .await;

    // All of it happened in the page that was first loaded, fed by the stream.
    let after = browser
        .eval(
            &page,
            "({ marker: window.__marker, events: window.__sluice.events })",
        )
        .await
        .expect("marker");
    assert_eq!(after["marker"], "same page", "the page reloaded");
    assert!(
        after["events"].as_u64().unwrap_or(0) > 0,
        "no stream event was applied: {after}"
    );
    let problems = browser.problems(&page);
    assert!(problems.is_empty(), "the page reported: {problems:#?}");

    drop(browser);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_asks_for_a_token_and_takes_one_from_the_url() {
    let Some(chromium) = chromium_binary() else {
        eprintln!("skipping: no Chromium (set SLUICE_TEST_CHROMIUM or put chromium on PATH)");
        return;
    };
    let token = "dashboard-s3cret";
    let server = Server::start(vec![token.to_owned()]).await;
    let answer = server
        .post(
            "/v1/batches",
            Some(token),
            json!({ "name": "behind-a-token", "jobs": [{ "kind": "noop" }] }),
        )
        .await;
    let batch = answer["batch_id"].as_str().expect("batch_id").to_owned();
    let mut browser = Browser::launch(&chromium).await;

    // Without a token: the form asking for one, and no data.
    let page = browser.open(&format!("{}/", server.base)).await;
    browser
        .wait_for(
            &page,
            "the token form",
            "!!document.querySelector('[data-testid=token-input]')",
            DEADLINE,
            |v| v == true,
        )
        .await;

    // With `#token=`: it goes to sessionStorage and out of the address bar,
    // the API answers (the batch is listed) and the stream opens.
    let page = browser
        .open(&format!("{}/#token={token}", server.base))
        .await;
    let seen = browser
        .wait_for(
            &page,
            "the overview with the batch and a live stream",
            &format!(
                "({{ row: !!document.querySelector({}), stream: window.__sluice.stream, \
                   hash: location.hash, stored: sessionStorage.getItem('sluice.token') }})",
                js(&format!("[data-batch-id=\"{batch}\"]"))
            ),
            DEADLINE,
            |v| v["row"] == true && v["stream"] == "live",
        )
        .await;
    assert_eq!(seen["hash"], "#/", "{seen}");
    assert_eq!(seen["stored"], token, "{seen}");

    drop(browser);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_view_renders_a_page_of_jobs_and_loads_more_on_demand() {
    let Some(chromium) = chromium_binary() else {
        eprintln!("skipping: no Chromium (set SLUICE_TEST_CHROMIUM or put chromium on PATH)");
        return;
    };
    let server = Server::start(Vec::new()).await;
    let jobs: Vec<Value> = (0..250).map(|_| json!({ "kind": "noop" })).collect();
    let answer = server
        .post("/v1/batches", None, json!({ "name": "wide", "jobs": jobs }))
        .await;
    let batch = answer["batch_id"].as_str().expect("batch_id").to_owned();
    let mut browser = Browser::launch(&chromium).await;
    let page = browser
        .open(&format!("{}/#/batches/{batch}", server.base))
        .await;

    let rows = "(() => { const more = document.querySelector('[data-testid=load-more]'); \
                return { rows: document.querySelectorAll('[data-testid=job-row]').length, \
                         more: !!more && !more.hidden, \
                         pct: document.querySelector('[data-testid=batch-progress]').getAttribute('aria-valuenow') }; })()";
    // One page at first, however large the batch.
    browser
        .wait_for(&page, "the first page of 100 jobs", rows, DEADLINE, |v| {
            v["rows"] == 100 && v["more"] == true && v["pct"] == "100"
        })
        .await;
    let click = "document.querySelector('[data-testid=load-more]').click()";
    browser.eval(&page, click).await.expect("load more");
    browser
        .wait_for(&page, "the second page", rows, DEADLINE, |v| {
            v["rows"] == 200 && v["more"] == true
        })
        .await;
    browser.eval(&page, click).await.expect("load more");
    browser
        .wait_for(
            &page,
            "the last page, and no more button",
            rows,
            DEADLINE,
            |v| v["rows"] == 250 && v["more"] == false,
        )
        .await;
    // Every job listed once, none twice.
    let distinct = browser
        .eval(
            &page,
            "new Set([...document.querySelectorAll('[data-testid=job-row]')].map(r => r.dataset.jobId)).size",
        )
        .await
        .expect("distinct rows");
    assert_eq!(distinct, 250);
    let problems = browser.problems(&page);
    assert!(problems.is_empty(), "the page reported: {problems:#?}");

    drop(browser);
    server.stop().await;
}
