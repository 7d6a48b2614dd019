//! Job kinds: the [`Registry`] and the public API to add your own.
//!
//! A kind is either async ([`AsyncKind`], for I/O: it runs on the tokio
//! runtime and is dropped on timeout or cancel) or CPU-bound ([`CpuKind`]: it
//! runs on the runner's rayon pool and watches a cooperative cancel flag).
//! Each kind declares its typed `Args`; the registry checks submitted args
//! against them before anything is stored, and names the failing field.
//!
//! Built-ins: `noop`, `sleep`, `burn`, `checksum`, `http`, `exec` (only when
//! enabled) and `sluice.webhook` (batch webhooks).

mod burn;
mod checksum;
mod exec;
mod http;
mod noop;
mod sleep;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::model::{Backoff, BatchId, JobId};

pub use self::burn::Burn;
pub use self::checksum::Checksum;
pub use self::exec::{Exec, ExecOptions};
pub use self::http::{Http, HttpOptions, WEBHOOK_KIND, Webhook};
pub use self::noop::Noop;
pub use self::sleep::Sleep;

/// A boxed, sendable future: what an erased async kind returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why an attempt failed, as a kind reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobError {
    /// Human-readable detail, stored with the attempt.
    pub message: String,
    /// A permanent error fails the job at once; others are retried while
    /// attempts remain.
    pub permanent: bool,
}

impl JobError {
    /// An error worth retrying.
    pub fn retryable(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            permanent: false,
        }
    }

    /// An error that retrying cannot fix.
    pub fn permanent(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            permanent: true,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

/// Bad args for a kind: which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgsError {
    /// Path inside the args, like `args.ms` or `args.headers.accept`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ArgsError {
    /// An error about `args.<field>` (`field` empty for the args as a whole).
    pub fn new(field: &str, message: impl fmt::Display) -> Self {
        let field = if field.is_empty() {
            "args".to_owned()
        } else {
            format!("args.{field}")
        };
        Self {
            field,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Progress shared between a running attempt and the heartbeat that stores it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProgressCell(Arc<AtomicU64>);

impl ProgressCell {
    pub(crate) fn set(&self, p: f64) {
        let p = if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.0.store(p.to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// What an async kind gets besides its args.
#[derive(Clone, Debug)]
pub struct JobContext {
    pub(crate) id: JobId,
    pub(crate) batch_id: Option<BatchId>,
    pub(crate) attempt: u32,
    pub(crate) cancel: CancellationToken,
    pub(crate) progress: ProgressCell,
}

impl JobContext {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The job's batch.
    pub fn batch_id(&self) -> Option<BatchId> {
        self.batch_id
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Fires on cancel, timeout, lost lease or forced shutdown. The future is
    /// dropped right after, so most kinds need not watch it; it is there for
    /// clean-up that must happen before.
    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Reports progress (0 to 1); stored with the next heartbeat.
    pub fn set_progress(&self, progress: f64) {
        self.progress.set(progress);
    }
}

/// What a CPU-bound kind gets besides its args.
#[derive(Clone, Debug)]
pub struct CpuContext {
    pub(crate) id: JobId,
    pub(crate) attempt: u32,
    pub(crate) cancelled: Arc<AtomicBool>,
    pub(crate) progress: ProgressCell,
}

impl CpuContext {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// True once the attempt timed out or was cancelled. A CPU kind cannot
    /// be interrupted: check this in its loops and return early.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Reports progress (0 to 1); stored with the next heartbeat.
    pub fn set_progress(&self, progress: f64) {
        self.progress.set(progress);
    }
}

/// An async job kind.
///
/// ```
/// use serde::Deserialize;
/// use serde_json::{json, Value};
/// use sluice_jobs::kinds::{AsyncKind, JobContext, JobError};
///
/// struct Greet;
///
/// #[derive(Deserialize)]
/// struct GreetArgs { name: String }
///
/// impl AsyncKind for Greet {
///     type Args = GreetArgs;
///     async fn run(&self, args: GreetArgs, _ctx: JobContext) -> Result<Value, JobError> {
///         Ok(json!({ "greeting": format!("hello {}", args.name) }))
///     }
/// }
/// ```
pub trait AsyncKind: Send + Sync + 'static {
    /// Typed args, parsed from the job's JSON.
    type Args: DeserializeOwned + Send + 'static;

    /// Runs one attempt; the returned JSON is stored as the job's result.
    fn run(
        &self,
        args: Self::Args,
        ctx: JobContext,
    ) -> impl Future<Output = Result<Value, JobError>> + Send;

    /// Checks beyond what parsing catches, at submission.
    fn check(&self, _args: &Self::Args) -> Result<(), ArgsError> {
        Ok(())
    }
}

/// A CPU-bound job kind, run on the rayon pool.
pub trait CpuKind: Send + Sync + 'static {
    /// Typed args, parsed from the job's JSON.
    type Args: DeserializeOwned + Send + 'static;

    /// Runs one attempt; return early when [`CpuContext::is_cancelled`].
    fn run(&self, args: Self::Args, ctx: &CpuContext) -> Result<Value, JobError>;

    /// Checks beyond what parsing catches, at submission.
    fn check(&self, _args: &Self::Args) -> Result<(), ArgsError> {
        Ok(())
    }
}

/// Per-kind defaults; a job may override each.
#[derive(Clone, Debug, PartialEq)]
pub struct KindOptions {
    /// Attempts before a job fails for good.
    pub max_attempts: u32,
    /// Timeout of each attempt.
    pub timeout: Duration,
    /// Delay between attempts.
    pub backoff: Backoff,
}

impl Default for KindOptions {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            timeout: Duration::from_secs(60),
            backoff: Backoff::default(),
        }
    }
}

type CheckFn = dyn Fn(&Value) -> Result<(), ArgsError> + Send + Sync;
type AsyncFn = dyn Fn(Value, JobContext) -> BoxFuture<Result<Value, JobError>> + Send + Sync;
type CpuFn = dyn Fn(Value, &CpuContext) -> Result<Value, JobError> + Send + Sync;

/// How the runner executes a kind.
#[derive(Clone)]
pub(crate) enum Executor {
    Async(Arc<AsyncFn>),
    Cpu(Arc<CpuFn>),
}

/// A registered kind, type-erased.
#[derive(Clone)]
pub(crate) struct KindEntry {
    pub(crate) options: KindOptions,
    check: Arc<CheckFn>,
    pub(crate) exec: Executor,
}

/// Parses args into `A`, naming the failing field. Null args parse as `{}`
/// so kinds whose fields all have defaults accept a missing `args`.
pub fn parse_args<A: DeserializeOwned>(args: &Value) -> Result<A, ArgsError> {
    let empty = Value::Object(Default::default());
    let args = if args.is_null() { &empty } else { args };
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ArgsError::new(&path, e.inner())
    })
}

/// Which built-in kinds to register and how.
#[derive(Clone, Debug, Default)]
pub struct BuiltinOptions {
    /// Settings of `http` and `sluice.webhook`.
    pub http: HttpOptions,
    /// `exec` is registered only when this is set (`--allow-exec`).
    pub exec: Option<ExecOptions>,
}

/// The kinds a runner can execute and a submission may name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<String, KindEntry>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// No kinds at all.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in kinds.
    pub fn with_builtins(options: BuiltinOptions) -> Self {
        let mut r = Self::empty();
        let quick = KindOptions {
            timeout: Duration::from_secs(60),
            ..KindOptions::default()
        };
        r.register_async("noop", Noop, quick.clone());
        r.register_async("sleep", Sleep, quick.clone());
        r.register_cpu("burn", Burn, quick.clone());
        r.register_cpu(
            "checksum",
            Checksum,
            KindOptions {
                timeout: Duration::from_secs(600),
                ..quick.clone()
            },
        );
        let http = Http::new(options.http.clone());
        r.register_async("http", http.clone(), quick.clone());
        r.register_async(
            WEBHOOK_KIND,
            Webhook::new(http),
            KindOptions {
                max_attempts: 10,
                ..quick.clone()
            },
        );
        if let Some(exec) = options.exec {
            r.register_async(
                "exec",
                Exec::new(exec),
                KindOptions {
                    max_attempts: 1,
                    ..quick
                },
            );
        }
        r
    }

    /// Registers (or replaces) an async kind.
    pub fn register_async<K: AsyncKind>(
        &mut self,
        name: impl Into<String>,
        kind: K,
        options: KindOptions,
    ) -> &mut Self {
        let kind = Arc::new(kind);
        let check_kind = kind.clone();
        let check = move |args: &Value| {
            let parsed: K::Args = parse_args(args)?;
            check_kind.check(&parsed)
        };
        let run = move |args: Value, ctx: JobContext| -> BoxFuture<Result<Value, JobError>> {
            let kind = kind.clone();
            Box::pin(async move {
                let args: K::Args = parse_args(&args).map_err(JobError::permanent)?;
                kind.run(args, ctx).await
            })
        };
        let entry = KindEntry {
            options,
            check: Arc::new(check),
            exec: Executor::Async(Arc::new(run)),
        };
        self.kinds.insert(name.into(), entry);
        self
    }

    /// Registers (or replaces) a CPU-bound kind.
    pub fn register_cpu<K: CpuKind>(
        &mut self,
        name: impl Into<String>,
        kind: K,
        options: KindOptions,
    ) -> &mut Self {
        let kind = Arc::new(kind);
        let check_kind = kind.clone();
        let check = move |args: &Value| {
            let parsed: K::Args = parse_args(args)?;
            check_kind.check(&parsed)
        };
        let run = move |args: Value, ctx: &CpuContext| {
            let args: K::Args = parse_args(&args).map_err(JobError::permanent)?;
            kind.run(args, ctx)
        };
        let entry = KindEntry {
            options,
            check: Arc::new(check),
            exec: Executor::Cpu(Arc::new(run)),
        };
        self.kinds.insert(name.into(), entry);
        self
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.kinds.contains_key(name)
    }

    /// Registered kind names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// A kind's defaults.
    pub fn options(&self, name: &str) -> Option<&KindOptions> {
        self.kinds.get(name).map(|k| &k.options)
    }

    /// Checks `args` for kind `name` (which must be registered).
    pub fn check(&self, name: &str, args: &Value) -> Result<(), ArgsError> {
        match self.kinds.get(name) {
            Some(k) => (k.check)(args),
            None => Err(ArgsError {
                field: "kind".into(),
                message: format!("unknown kind `{name}`"),
            }),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&KindEntry> {
        self.kinds.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn args_errors_name_the_field() {
        let r = Registry::with_builtins(BuiltinOptions::default());
        let e = r.check("sleep", &json!({"ms": "soon"})).unwrap_err();
        assert_eq!(e.field, "args.ms");
        let e = r.check("sleep", &json!({})).unwrap_err();
        assert_eq!(e.field, "args");
        assert!(e.message.contains("ms"), "{e}");
        let e = r
            .check("checksum", &json!({"path": "/x", "algo": "md5"}))
            .unwrap_err();
        assert_eq!(e.field, "args.algo");
        assert!(r.check("noop", &Value::Null).is_ok());
        assert!(r.check("sleep", &json!({"ms": 5})).is_ok());
    }

    #[test]
    fn exec_is_only_there_when_enabled() {
        assert!(!Registry::with_builtins(BuiltinOptions::default()).contains("exec"));
        let opts = BuiltinOptions {
            exec: Some(ExecOptions::default()),
            ..Default::default()
        };
        assert!(Registry::with_builtins(opts).contains("exec"));
    }

    #[test]
    fn progress_is_clamped() {
        let p = ProgressCell::default();
        p.set(1.5);
        assert_eq!(p.get(), 1.0);
        p.set(f64::NAN);
        assert_eq!(p.get(), 0.0);
        p.set(0.25);
        assert_eq!(p.get(), 0.25);
    }
}
