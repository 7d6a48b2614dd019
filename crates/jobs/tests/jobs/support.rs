//! Shared helpers: a store (SQLite in a temp dir, or PostgreSQL in a schema
//! of its own), fast runner settings, test kinds and polling helpers.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_jobs::kinds::{BuiltinOptions, ExecOptions, HttpOptions};
use sluice_jobs::store::{JobFilter, Submitted};
use sluice_jobs::{
    AsyncKind, Batch, BatchId, BatchSpec, Client, CpuContext, CpuKind, Job, JobContext, JobError,
    JobId, JobSpec, JobState, KindOptions, QueueConfig, Registry, Runner, RunnerConfig,
    SqliteConfig, SqliteStore, Store,
};
use tempfile::TempDir;

pub(crate) use crate::pg_schema::{PgSchema, postgres_url};

/// Shared counters the test kinds write to.
#[derive(Clone, Default)]
pub(crate) struct Probes {
    pub(crate) current: Arc<AtomicUsize>,
    pub(crate) max: Arc<AtomicUsize>,
    pub(crate) runs: Arc<AtomicUsize>,
    pub(crate) flag_seen: Arc<AtomicBool>,
}

/// `flaky {succeed_on, permanent}`: fails until attempt `succeed_on`.
struct Flaky;

#[derive(Deserialize)]
struct FlakyArgs {
    succeed_on: u32,
    #[serde(default)]
    permanent: bool,
}

impl AsyncKind for Flaky {
    type Args = FlakyArgs;
    async fn run(&self, a: FlakyArgs, ctx: JobContext) -> Result<Value, JobError> {
        if ctx.attempt() >= a.succeed_on {
            Ok(json!({ "attempt": ctx.attempt() }))
        } else if a.permanent {
            Err(JobError::permanent(format!(
                "permanent failure on attempt {}",
                ctx.attempt()
            )))
        } else {
            Err(JobError::retryable(format!(
                "failure on attempt {}",
                ctx.attempt()
            )))
        }
    }
}

/// `gauge {ms}`: sleeps while counting concurrent runs.
struct Gauge(Probes);

#[derive(Deserialize)]
struct GaugeArgs {
    ms: u64,
}

impl AsyncKind for Gauge {
    type Args = GaugeArgs;
    async fn run(&self, a: GaugeArgs, _ctx: JobContext) -> Result<Value, JobError> {
        self.0.runs.fetch_add(1, Ordering::SeqCst);
        let now = self.0.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(a.ms)).await;
        self.0.current.fetch_sub(1, Ordering::SeqCst);
        Ok(Value::Null)
    }
}

/// `cpu_probe {max_ms}`: reports its thread; spins until its cancel flag is
/// raised or `max_ms` passes, and records whether it saw the flag.
struct CpuProbe(Probes);

#[derive(Deserialize)]
struct CpuProbeArgs {
    max_ms: u64,
}

impl CpuKind for CpuProbe {
    type Args = CpuProbeArgs;
    fn run(&self, a: CpuProbeArgs, ctx: &CpuContext) -> Result<Value, JobError> {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        let until = std::time::Instant::now() + Duration::from_millis(a.max_ms);
        while std::time::Instant::now() < until {
            if ctx.is_cancelled() {
                self.0.flag_seen.store(true, Ordering::SeqCst);
                return Err(JobError::retryable("flag"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(json!({ "thread": thread }))
    }
}

/// `panic`: panics.
struct Panics;

impl AsyncKind for Panics {
    type Args = Value;
    async fn run(&self, _a: Value, _ctx: JobContext) -> Result<Value, JobError> {
        panic!("boom")
    }
}

pub(crate) fn registry(probes: &Probes, http: HttpOptions) -> Registry {
    let mut r = Registry::with_builtins(BuiltinOptions {
        http,
        exec: Some(ExecOptions {
            max_output_bytes: 64,
        }),
    });
    let fast = KindOptions {
        max_attempts: 3,
        timeout: Duration::from_secs(10),
        backoff: sluice_jobs::Backoff {
            base_ms: 10,
            max_ms: 100,
            factor: 2.0,
            jitter: 0.0,
        },
    };
    r.register_async("flaky", Flaky, fast.clone());
    r.register_async("gauge", Gauge(probes.clone()), fast.clone());
    r.register_cpu("cpu_probe", CpuProbe(probes.clone()), fast.clone());
    r.register_async(
        "panic",
        Panics,
        KindOptions {
            max_attempts: 1,
            ..fast
        },
    );
    r
}

/// Runner settings for tests: short polls, leases and deadlines.
pub(crate) fn fast_config() -> RunnerConfig {
    RunnerConfig {
        queues: vec![QueueConfig::new("default")],
        concurrency: 8,
        claim_batch: 8,
        poll_interval: Duration::from_millis(10),
        lease: Duration::from_secs(5),
        heartbeat_interval: Duration::from_millis(100),
        rescue_interval: Duration::from_millis(50),
        shutdown_deadline: Duration::from_secs(5),
        cpu_threads: 2,
        retention: None,
        ..RunnerConfig::default()
    }
}

/// Runs each named `async fn(Harness)` as two tests, `NAME::sqlite` and
/// `NAME::postgres`; the second skips when `SLUICE_TEST_POSTGRES_URL` is
/// unset.
macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(crate::support::Harness::new().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(h) = crate::support::Harness::postgres().await {
                    super::$name(h).await;
                }
            }
        }
    )+};
}

pub(crate) struct Harness {
    pub(crate) dir: TempDir,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) client: Client,
    pub(crate) probes: Probes,
    /// Last, so it is dropped after the store.
    _schema: Option<PgSchema>,
}

impl Harness {
    /// SQLite in a temp dir.
    pub(crate) async fn new() -> Self {
        Self::with_http(HttpOptions::default()).await
    }

    pub(crate) async fn with_http(http: HttpOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            SqliteStore::open(SqliteConfig::at(dir.path().join("db/sluice.db")))
                .await
                .expect("open store"),
        );
        Self::build(dir, store, http, None)
    }

    /// PostgreSQL in a fresh schema, or `None` (skipped) without a server.
    pub(crate) async fn postgres() -> Option<Self> {
        let schema = PgSchema::new(postgres_url()?);
        let store = Arc::new(schema.open().await);
        let dir = tempfile::tempdir().expect("tempdir");
        Some(Self::build(
            dir,
            store,
            HttpOptions::default(),
            Some(schema),
        ))
    }

    fn build(
        dir: TempDir,
        store: Arc<dyn Store>,
        http: HttpOptions,
        schema: Option<PgSchema>,
    ) -> Self {
        let probes = Probes::default();
        let registry = Arc::new(registry(&probes, http));
        let client = Client::new(store.clone(), registry.clone());
        Self {
            dir,
            store,
            registry,
            client,
            probes,
            _schema: schema,
        }
    }

    pub(crate) fn dyn_store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub(crate) fn runner(&self, tweak: impl FnOnce(&mut RunnerConfig)) -> Runner {
        let mut config = fast_config();
        tweak(&mut config);
        Runner::start(self.dyn_store(), self.registry.clone(), config).expect("runner")
    }

    /// Submit `jobs` as one batch with default settings.
    pub(crate) async fn submit_jobs(&self, jobs: Vec<JobSpec>) -> Submitted {
        self.client
            .submit_batch(&BatchSpec {
                jobs,
                ..Default::default()
            })
            .await
            .expect("batch accepted")
    }

    pub(crate) async fn job(&self, id: JobId) -> Job {
        self.client
            .job(id)
            .await
            .expect("get job")
            .expect("job exists")
    }

    pub(crate) async fn batch(&self, id: BatchId) -> Batch {
        self.client
            .batch(id)
            .await
            .expect("get batch")
            .expect("batch exists")
    }

    pub(crate) async fn jobs_of_kind(&self, kind: &str) -> Vec<Job> {
        self.client
            .jobs(JobFilter {
                kind: Some(kind.into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("list")
    }

    /// Waits (up to 10 s) for a job to reach `state`.
    pub(crate) async fn wait_state(&self, id: JobId, state: JobState) -> Job {
        let mut last = None;
        for _ in 0..1000 {
            let job = self.job(id).await;
            if job.state == state {
                return job;
            }
            last = Some(job);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("job never reached {state}: {last:#?}");
    }

    /// Waits (up to 10 s) for a batch to finish.
    pub(crate) async fn wait_batch(&self, id: BatchId) -> Batch {
        let mut last = None;
        for _ in 0..1000 {
            let b = self.batch(id).await;
            if b.finished_at.is_some() {
                return b;
            }
            last = Some(b);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("batch never finished: {last:#?}");
    }
}

/// Polls `f` every 10 ms for up to 10 s.
pub(crate) async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..1000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// Webhook deliveries: the `Idempotency-Key` header and the JSON body.
type Hooks = Arc<std::sync::Mutex<Vec<(Option<String>, Value)>>>;

/// A local HTTP server for webhook and `http` kind tests.
pub(crate) struct TestServer {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) hooks: Hooks,
    shutdown: tokio_util::sync::CancellationToken,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::{get, post};

        let hooks: Hooks = Arc::default();
        async fn hook(
            State(h): State<Hooks>,
            headers: HeaderMap,
            body: axum::Json<Value>,
        ) -> StatusCode {
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            h.lock().unwrap().push((key, body.0));
            StatusCode::OK
        }
        async fn status(Path(code): Path<u16>) -> (StatusCode, &'static str) {
            (StatusCode::from_u16(code).unwrap(), "status body")
        }
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .route("/big", get(|| async { "x".repeat(100) }))
            .route("/status/{code}", get(status))
            .route("/echo", post(|body: String| async move { body }))
            .with_state(hooks.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .unwrap();
        });
        Self {
            addr,
            hooks,
            shutdown,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn hooks(&self) -> Vec<(Option<String>, Value)> {
        self.hooks.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
