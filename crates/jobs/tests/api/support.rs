//! A real server for each test: a SQLite file in a temp dir (or a
//! PostgreSQL schema of its own), the API on 127.0.0.1:0, a reqwest
//! client, and a hand-written SSE reader.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_jobs::api::{self, ApiConfig, ApiState};
use sluice_jobs::kinds::BuiltinOptions;
use sluice_jobs::{
    AsyncKind, Client, JobContext, JobError, KindOptions, QueueConfig, Registry, Runner,
    RunnerConfig, SqliteConfig, SqliteStore, Store,
};
use tempfile::TempDir;

use crate::pg_schema::{PgSchema, postgres_url};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// `flaky {succeed_on}`: fails (permanently) until attempt `succeed_on`.
struct Flaky;

#[derive(Deserialize)]
struct FlakyArgs {
    succeed_on: u32,
}

impl AsyncKind for Flaky {
    type Args = FlakyArgs;
    async fn run(&self, a: FlakyArgs, ctx: JobContext) -> Result<Value, JobError> {
        if ctx.attempt() >= a.succeed_on {
            Ok(json!({ "attempt": ctx.attempt() }))
        } else {
            Err(JobError::permanent(format!(
                "failed attempt {}",
                ctx.attempt()
            )))
        }
    }
}

pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) store: Arc<dyn Store>,
    registry: Arc<Registry>,
    stop: Option<oneshot::Sender<()>>,
    pub(crate) task: Option<JoinHandle<std::io::Result<()>>>,
    _dir: TempDir,
    /// Last, so it is dropped after the store.
    _schema: Option<PgSchema>,
}

impl Server {
    /// A server with default settings.
    pub(crate) async fn start() -> Self {
        Self::with(|_| {}).await
    }

    /// A server with settings changed by `tweak`.
    pub(crate) async fn with(tweak: impl FnOnce(&mut ApiConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(SqliteConfig::at(dir.path().join("sluice.db")))
                .await
                .expect("open store"),
        );
        Self::on(store, dir, None, tweak).await
    }

    /// The same on PostgreSQL, or `None` (skipped) without a server.
    pub(crate) async fn postgres_with(tweak: impl FnOnce(&mut ApiConfig)) -> Option<Self> {
        let schema = PgSchema::new(postgres_url()?);
        let store: Arc<dyn Store> = Arc::new(schema.open().await);
        let dir = tempfile::tempdir().expect("tempdir");
        Some(Self::on(store, dir, Some(schema), tweak).await)
    }

    async fn on(
        store: Arc<dyn Store>,
        dir: TempDir,
        schema: Option<PgSchema>,
        tweak: impl FnOnce(&mut ApiConfig),
    ) -> Self {
        let mut registry = Registry::with_builtins(BuiltinOptions::default());
        registry.register_async(
            "flaky",
            Flaky,
            KindOptions {
                max_attempts: 1,
                ..KindOptions::default()
            },
        );
        let registry = Arc::new(registry);
        let client = Client::new(store.clone(), registry.clone());
        let mut config = ApiConfig {
            events_min_interval: Duration::from_millis(10),
            ..ApiConfig::default()
        };
        tweak(&mut config);
        let router = api::router(ApiState::new(client, config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(api::serve(listener, router, async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            http: reqwest::Client::new(),
            store,
            registry,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
            _schema: schema,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A runner working the `default` queue of this server's store.
    pub(crate) fn runner(&self) -> Runner {
        let config = RunnerConfig {
            queues: vec![QueueConfig::new("default")],
            poll_interval: Duration::from_millis(10),
            heartbeat_interval: Duration::from_millis(100),
            rescue_interval: Duration::from_millis(50),
            cpu_threads: 1,
            retention: None,
            ..RunnerConfig::default()
        };
        Runner::start(self.store.clone(), self.registry.clone(), config).expect("runner")
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        answer(self.http.get(self.url(path)).send().await).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        answer(self.http.post(self.url(path)).json(&body).send().await).await
    }

    pub(crate) async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        answer(
            self.http
                .post(self.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await,
        )
        .await
    }

    pub(crate) async fn delete(&self, path: &str) -> (u16, Value) {
        answer(self.http.delete(self.url(path)).send().await).await
    }

    /// Submits noop jobs as one batch; returns the batch id and job ids.
    pub(crate) async fn submit_noops(&self, n: usize) -> (String, Vec<String>) {
        let jobs: Vec<Value> = (0..n).map(|_| json!({"kind": "noop"})).collect();
        let (status, body) = self.post("/v1/batches", json!({ "jobs": jobs })).await;
        assert_eq!(status, 201, "{body}");
        let ids = body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["id"].as_str().expect("id").to_owned())
            .collect();
        (body["batch_id"].as_str().expect("batch id").to_owned(), ids)
    }

    /// Polls a job until it is in `state` (or panics after a while).
    pub(crate) async fn wait_job(&self, id: &str, state: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..500 {
            let (_, job) = self.get(&format!("/v1/jobs/{id}")).await;
            if job["state"] == state {
                return job;
            }
            last = job;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("job {id} never reached {state}: {last}");
    }

    /// Stops the server and waits for it.
    pub(crate) async fn stop(mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.take() {
            Some(t) => t.await.expect("server task"),
            None => Ok(()),
        }
    }
}

async fn answer(res: reqwest::Result<reqwest::Response>) -> (u16, Value) {
    let res = res.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Asserts an error answer: status, code, and returns the body's `error`.
pub(crate) fn expect_error(answer: &(u16, Value), status: u16, code: &str) -> Value {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], code, "{}", answer.1);
    answer.1["error"].clone()
}

/// One parsed Server-Sent Event.
#[derive(Clone, Debug)]
pub(crate) struct SseEvent {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: Value,
}

/// Reads an SSE response by hand: lines of `field: value`, events ended by
/// a blank line, comments (`:`) skipped.
pub(crate) struct SseReader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseReader {
    pub(crate) fn new(res: reqwest::Response) -> Self {
        assert_eq!(res.status().as_u16(), 200);
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(ct.starts_with("text/event-stream"), "content type {ct}");
        Self {
            body: res.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next event; panics if none comes within 10 s (a hung stream).
    pub(crate) async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(Duration::from_secs(10), self.read())
            .await
            .expect("an event within 10 s")
    }

    async fn read(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                let mut any = false;
                for line in block.lines() {
                    if line.starts_with(':') || line.is_empty() {
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    any = true;
                    match field {
                        "id" => ev.id = Some(value.to_owned()),
                        "event" => ev.event = value.to_owned(),
                        "data" => {
                            if !data.is_empty() {
                                data.push('\n');
                            }
                            data.push_str(value);
                        }
                        _ => {}
                    }
                }
                if !any {
                    continue;
                }
                ev.data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(ev);
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Some(Err(e)) => panic!("stream error: {e}"),
                None => return None,
            }
        }
    }
}
