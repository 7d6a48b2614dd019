//! The runner: claims jobs from a [`Store`] and runs them.
//!
//! - Concurrency: one `Semaphore` for the whole runner and one per queue;
//!   permits are taken *before* claiming, so a runner never holds a lease
//!   on a job it has no slot for.
//! - Claims come in batches (up to `claim_batch`), best priority first; an
//!   idle runner wakes on the store's notification or its poll interval
//!   (which is also how `run_at` and retry delays come due).
//! - Async kinds run on the tokio runtime and are dropped on timeout or
//!   cancel. CPU kinds run on a dedicated rayon pool, bridged by a oneshot,
//!   so they never occupy a runtime worker; on timeout or cancel their
//!   cooperative flag is raised and the job is recorded at once, while the
//!   slot stays taken until the thread actually returns.
//! - One heartbeat task extends every running job's lease in one store
//!   call and stops jobs whose lease was lost (cancelled, or rescued after
//!   a stall).
//! - A maintenance task rescues expired leases and prunes old jobs.
//! - [`Runner::shutdown`] is the SIGTERM path: stop claiming, let running
//!   jobs finish within a deadline, release the rest.

use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::kinds::{CpuContext, Executor, JobContext, JobError, ProgressCell, Registry};
use crate::model::{BatchId, DEFAULT_QUEUE, ErrorKind, JobId, Timestamp};
use crate::store::{
    CancelResult, ClaimRequest, ClaimedJob, Completion, Heartbeat, Lease, Outcome, Store,
    StoreError,
};

/// A queue this runner claims from.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Queue name.
    pub name: String,
    /// Most jobs of this queue running at once here; `None`: only the
    /// runner's overall bound applies.
    pub concurrency: Option<usize>,
}

impl QueueConfig {
    /// A queue bounded only by the runner's overall concurrency.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            concurrency: None,
        }
    }
}

/// Settings of a [`Runner`].
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// This worker's name in leases and logs; unique per process.
    pub worker_id: String,
    /// Queues to claim from; claim slots are dealt to them in turn.
    pub queues: Vec<QueueConfig>,
    /// Most jobs running at once, all queues together.
    pub concurrency: usize,
    /// Most jobs claimed in one store call.
    pub claim_batch: u32,
    /// How often an idle runner looks for due jobs without a wake-up.
    pub poll_interval: Duration,
    /// Lease length; a job whose worker stops heartbeating runs again
    /// elsewhere after at most `lease + rescue_interval`.
    pub lease: Duration,
    /// How often leases are extended (well under `lease`).
    pub heartbeat_interval: Duration,
    /// How often expired leases are looked for.
    pub rescue_interval: Duration,
    /// How long [`Runner::shutdown`] lets running jobs finish.
    pub shutdown_deadline: Duration,
    /// Threads of the rayon pool for CPU-bound kinds.
    pub cpu_threads: usize,
    /// Finished jobs older than this are pruned; `None` keeps them.
    pub retention: Option<Duration>,
    /// How often pruning runs.
    pub prune_interval: Duration,
    /// Jobs deleted per prune transaction.
    pub prune_batch: u32,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            worker_id: format!("worker-{}-{}", std::process::id(), &id[..8]),
            queues: vec![QueueConfig::new(DEFAULT_QUEUE)],
            concurrency: 64,
            claim_batch: 64,
            poll_interval: Duration::from_millis(100),
            lease: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(5),
            rescue_interval: Duration::from_secs(5),
            shutdown_deadline: Duration::from_secs(30),
            cpu_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            prune_interval: Duration::from_secs(60),
            prune_batch: 1_000,
        }
    }
}

/// Why a runner could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A setting is out of range.
    #[error("invalid runner config: {0}")]
    Config(String),
    /// The rayon pool could not be built.
    #[error("cpu pool: {0}")]
    CpuPool(#[from] rayon::ThreadPoolBuildError),
}

/// What [`Runner::shutdown`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether every running job finished within the deadline.
    pub drained: bool,
    /// Jobs whose leases were given back because the deadline passed.
    pub released: usize,
}

const REASON_NONE: u8 = 0;
/// Cancelled, or the lease is gone: write nothing, the store has moved on.
const REASON_LOST: u8 = 1;
/// Shutdown deadline: give the lease back.
const REASON_RELEASE: u8 = 2;

struct Running {
    lease: Lease,
    batch_id: Option<BatchId>,
    cancel: CancellationToken,
    reason: Arc<AtomicU8>,
    progress: ProgressCell,
}

impl Running {
    fn stop(&self, reason: u8) {
        self.reason.store(reason, Ordering::SeqCst);
        self.cancel.cancel();
    }
}

struct Shared {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    config: RunnerConfig,
    global: Arc<Semaphore>,
    queues: Vec<(String, Option<Arc<Semaphore>>)>,
    running: Mutex<HashMap<JobId, Running>>,
    slot_freed: Notify,
    cpu: rayon::ThreadPool,
    /// Set by [`Runner::abandon`]: behave as a killed process, write nothing.
    abandoned: AtomicBool,
    /// Ends heartbeats, maintenance and waits on stuck CPU threads.
    force: CancellationToken,
}

impl Shared {
    fn running(&self) -> MutexGuard<'_, HashMap<JobId, Running>> {
        // A poisoned map only means a panic elsewhere while holding it; the
        // map itself is still consistent (single inserts and removes).
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running job runner. Dropping it does not stop it; call
/// [`Runner::shutdown`].
pub struct Runner {
    shared: Arc<Shared>,
    stop_claiming: CancellationToken,
    claim_loop: JoinHandle<()>,
    jobs: TaskTracker,
    loops: TaskTracker,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("worker_id", &self.shared.config.worker_id)
            .finish()
    }
}

type Permits = (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>);

impl Runner {
    /// Starts claiming and running jobs on the current tokio runtime.
    pub fn start(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        config: RunnerConfig,
    ) -> Result<Self, RunnerError> {
        if config.concurrency == 0 || config.claim_batch == 0 || config.queues.is_empty() {
            return Err(RunnerError::Config(
                "concurrency, claim_batch and queues must be non-zero".into(),
            ));
        }
        if config.heartbeat_interval >= config.lease {
            return Err(RunnerError::Config(
                "heartbeat_interval must be shorter than lease".into(),
            ));
        }
        let cpu = crate::cpu_pool::build(config.cpu_threads)?;
        let queues = config
            .queues
            .iter()
            .map(|q| {
                (
                    q.name.clone(),
                    q.concurrency.map(|n| Arc::new(Semaphore::new(n.max(1)))),
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            store,
            registry,
            global: Arc::new(Semaphore::new(config.concurrency)),
            queues,
            running: Mutex::new(HashMap::new()),
            slot_freed: Notify::new(),
            cpu,
            abandoned: AtomicBool::new(false),
            force: CancellationToken::new(),
            config,
        });
        let stop_claiming = CancellationToken::new();
        let jobs = TaskTracker::new();
        let loops = TaskTracker::new();
        let claim_loop = tokio::spawn(claim_loop(
            shared.clone(),
            stop_claiming.clone(),
            jobs.clone(),
        ));
        loops.spawn(heartbeat_loop(shared.clone()));
        loops.spawn(maintenance_loop(shared.clone()));
        loops.close();
        tracing::info!(worker = %shared.config.worker_id, "runner started");
        Ok(Self {
            shared,
            stop_claiming,
            claim_loop,
            jobs,
            loops,
        })
    }

    /// This runner's worker id.
    pub fn worker_id(&self) -> &str {
        &self.shared.config.worker_id
    }

    /// Jobs running here now.
    pub fn running_jobs(&self) -> usize {
        self.shared.running().len()
    }

    /// Cancels a job in the store and, when it runs here, stops it now
    /// (other runners notice at their next heartbeat).
    pub async fn cancel_job(&self, id: JobId) -> Result<CancelResult, StoreError> {
        let r = self.shared.store.cancel_job(id).await?;
        if let CancelResult::Cancelled(_) = r
            && let Some(job) = self.shared.running().get(&id)
        {
            job.stop(REASON_LOST);
        }
        Ok(r)
    }

    /// Cancels every unfinished job of a batch, stopping those running here.
    pub async fn cancel_batch(&self, id: BatchId) -> Result<CancelResult, StoreError> {
        let r = self.shared.store.cancel_batch(id).await?;
        if let CancelResult::Cancelled(_) = r {
            for job in self
                .shared
                .running()
                .values()
                .filter(|j| j.batch_id == Some(id))
            {
                job.stop(REASON_LOST);
            }
        }
        Ok(r)
    }

    /// Graceful stop (SIGTERM): stop claiming, let running jobs finish
    /// within `shutdown_deadline`, then stop the rest and give their leases
    /// back so another worker runs them at once.
    pub async fn shutdown(self) -> ShutdownReport {
        self.stop_claiming.cancel();
        let _ = self.claim_loop.await;
        self.jobs.close();
        let drained = tokio::time::timeout(self.shared.config.shutdown_deadline, self.jobs.wait())
            .await
            .is_ok();
        let mut released = 0;
        if !drained {
            for job in self.shared.running().values() {
                job.stop(REASON_RELEASE);
                released += 1;
            }
        }
        // Also ends waits on CPU threads that ignore their cancel flag.
        self.shared.force.cancel();
        self.jobs.wait().await;
        self.loops.wait().await;
        tracing::info!(worker = %self.shared.config.worker_id, drained, released, "runner stopped");
        ShutdownReport { drained, released }
    }

    /// Stops at once as if the process had been killed (SIGKILL): nothing
    /// more is written, leases are left to expire and be rescued. For crash
    /// tests, and for a process that is about to exit anyway.
    pub async fn abandon(self) {
        self.shared.abandoned.store(true, Ordering::SeqCst);
        self.stop_claiming.cancel();
        self.shared.force.cancel();
        for job in self.shared.running().values() {
            job.stop(REASON_LOST);
        }
        let _ = self.claim_loop.await;
        self.jobs.close();
        self.jobs.wait().await;
        self.loops.wait().await;
    }
}

/// Takes up to `claim_batch` slots without waiting, dealt to the queues one
/// at a time in turn (starting at `start`), so a busy queue cannot starve
/// the others of claims.
fn take_permits(
    queues: &[(String, Option<Arc<Semaphore>>)],
    global: &Arc<Semaphore>,
    mut budget: usize,
    start: usize,
) -> Vec<(String, Vec<Permits>)> {
    let n = queues.len();
    let mut grants: Vec<(String, Vec<Permits>)> = queues
        .iter()
        .map(|(name, _)| (name.clone(), Vec::new()))
        .collect();
    let mut open = vec![true; n];
    let mut i = start % n.max(1);
    while budget > 0 && open.iter().any(|&o| o) {
        if open[i] {
            let queue = match &queues[i].1 {
                Some(s) => s.clone().try_acquire_owned().ok().map(Some),
                None => Some(None),
            };
            match queue {
                None => open[i] = false,
                Some(queue) => match global.clone().try_acquire_owned() {
                    Ok(global) => {
                        grants[i].1.push((global, queue));
                        budget -= 1;
                    }
                    Err(_) => return grants.into_iter().filter(|(_, p)| !p.is_empty()).collect(),
                },
            }
        }
        i = (i + 1) % n;
    }
    grants.into_iter().filter(|(_, p)| !p.is_empty()).collect()
}

async fn claim_loop(shared: Arc<Shared>, stop: CancellationToken, jobs: TaskTracker) {
    let mut wake = shared.store.subscribe();
    let poll = shared.config.poll_interval;
    let mut round = 0usize;
    loop {
        if stop.is_cancelled() {
            break;
        }
        round = round.wrapping_add(1);
        let mut grants = take_permits(
            &shared.queues,
            &shared.global,
            shared.config.claim_batch as usize,
            round,
        );
        if grants.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = shared.slot_freed.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            continue;
        }
        let req = ClaimRequest {
            worker: shared.config.worker_id.clone(),
            queues: grants
                .iter()
                .map(|(q, p)| (q.clone(), p.len() as u32))
                .collect(),
            lease: shared.config.lease,
        };
        // Not raced against `stop`: a claim dropped mid-flight would still
        // commit, leaving leases nobody runs until they expire.
        let claimed = match shared.store.claim(req).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claim failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(poll) => {}
                }
                continue;
            }
        };
        let got = claimed.len();
        for job in claimed {
            metrics::counter!("sluice_jobs_claimed_total", "queue" => job.queue.clone())
                .increment(1);
            let permits = grants
                .iter_mut()
                .find(|(q, _)| *q == job.queue)
                .and_then(|(_, p)| p.pop());
            match permits {
                Some(p) => {
                    jobs.spawn(run_job(shared.clone(), job, p));
                }
                None => {
                    // The store returned a queue we did not ask for: a bug;
                    // give the job back rather than run it unbounded.
                    tracing::error!(job.id = %job.lease.job_id, queue = %job.queue, "claimed job without a slot");
                    let _ = shared.store.release(vec![job.lease]).await;
                }
            }
        }
        drop(grants);
        // Nothing to claim anywhere: sleep until woken. A partial claim
        // means some queue ran dry; claim again at once with the slots left.
        if got == 0 {
            tokio::select! {
                _ = stop.cancelled() => break,
                r = wake.changed() => {
                    if r.is_err() {
                        tokio::time::sleep(poll).await;
                    }
                }
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }
}

/// How one attempt ended, before it is recorded.
enum Ran {
    Done(Result<serde_json::Value, JobError>),
    TimedOut,
    Interrupted,
    UnknownKind,
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_owned()
    }
}

type CpuResult = std::thread::Result<Result<serde_json::Value, JobError>>;

async fn execute(
    shared: &Shared,
    job: &ClaimedJob,
    cancel: &CancellationToken,
    progress: &ProgressCell,
) -> (Ran, Option<oneshot::Receiver<CpuResult>>) {
    let Some(entry) = shared.registry.get(&job.kind) else {
        return (Ran::UnknownKind, None);
    };
    match entry.exec.clone() {
        Executor::Async(run) => {
            let ctx = JobContext {
                id: job.lease.job_id,
                batch_id: job.batch_id,
                attempt: job.attempt,
                cancel: cancel.child_token(),
                progress: progress.clone(),
            };
            let child = ctx.cancel.clone();
            let fut = AssertUnwindSafe(run(job.args.clone(), ctx)).catch_unwind();
            let ran = tokio::select! {
                biased;
                _ = cancel.cancelled() => Ran::Interrupted,
                r = tokio::time::timeout(job.timeout, fut) => match r {
                    Err(_) => Ran::TimedOut,
                    Ok(Err(p)) => Ran::Done(Err(JobError::retryable(panic_message(&*p)))),
                    Ok(Ok(r)) => Ran::Done(r),
                },
            };
            child.cancel();
            (ran, None)
        }
        Executor::Cpu(run) => {
            let flag = Arc::new(AtomicBool::new(false));
            let ctx = CpuContext {
                id: job.lease.job_id,
                attempt: job.attempt,
                cancelled: flag.clone(),
                progress: progress.clone(),
            };
            let (tx, mut rx) = oneshot::channel::<CpuResult>();
            let args = job.args.clone();
            let span = tracing::Span::current();
            shared.cpu.spawn(move || {
                let _e = span.enter();
                let r = std::panic::catch_unwind(AssertUnwindSafe(|| run(args, &ctx)));
                let _ = tx.send(r);
            });
            let r = tokio::select! {
                biased;
                _ = cancel.cancelled() => None,
                r = tokio::time::timeout(job.timeout, &mut rx) => Some(r),
            };
            match r {
                None => {
                    flag.store(true, Ordering::Relaxed);
                    (Ran::Interrupted, None)
                }
                Some(Err(_elapsed)) => {
                    flag.store(true, Ordering::Relaxed);
                    (Ran::TimedOut, Some(rx))
                }
                Some(Ok(Ok(Ok(r)))) => (Ran::Done(r), None),
                Some(Ok(Ok(Err(p)))) => (
                    Ran::Done(Err(JobError::retryable(panic_message(&*p)))),
                    None,
                ),
                Some(Ok(Err(_))) => (
                    Ran::Done(Err(JobError::retryable("cpu pool dropped the job"))),
                    None,
                ),
            }
        }
    }
}

fn retry_at(job: &ClaimedJob, permanent: bool) -> Option<Timestamp> {
    if permanent || job.attempt >= job.max_attempts {
        return None;
    }
    let delay = job.backoff.delay(job.attempt, rand::random::<f64>());
    Some(Timestamp::now().plus(delay))
}

async fn run_job(shared: Arc<Shared>, job: ClaimedJob, permits: Permits) {
    let span = tracing::info_span!(
        "job",
        job.id = %job.lease.job_id,
        batch.id = job.batch_id.map(|b| b.to_string()),
        kind = %job.kind,
        attempt = job.attempt,
    );
    run_job_inner(&shared, job).instrument(span).await;
    drop(permits);
    shared.slot_freed.notify_one();
}

async fn run_job_inner(shared: &Shared, job: ClaimedJob) {
    if shared.abandoned.load(Ordering::SeqCst) {
        return;
    }
    let id = job.lease.job_id;
    let cancel = CancellationToken::new();
    let reason = Arc::new(AtomicU8::new(REASON_NONE));
    let progress = ProgressCell::default();
    shared.running().insert(
        id,
        Running {
            lease: job.lease,
            batch_id: job.batch_id,
            cancel: cancel.clone(),
            reason: reason.clone(),
            progress: progress.clone(),
        },
    );
    tracing::debug!("job started");
    let started = std::time::Instant::now();
    let (ran, cpu_rest) = execute(shared, &job, &cancel, &progress).await;
    let label = match &ran {
        Ran::Done(Ok(_)) => "succeeded",
        Ran::Done(Err(_)) => "error",
        Ran::TimedOut => "timeout",
        Ran::Interrupted => "interrupted",
        Ran::UnknownKind => "unknown_kind",
    };
    metrics::counter!("sluice_jobs_attempts_total", "kind" => job.kind.clone(), "outcome" => label)
        .increment(1);
    metrics::histogram!("sluice_jobs_attempt_seconds", "kind" => job.kind.clone())
        .record(started.elapsed().as_secs_f64());
    shared.running().remove(&id);
    if shared.abandoned.load(Ordering::SeqCst) {
        return;
    }
    let outcome = match ran {
        Ran::Interrupted => {
            if reason.load(Ordering::SeqCst) == REASON_RELEASE {
                match shared.store.release(vec![job.lease]).await {
                    Ok(_) => {
                        metrics::counter!("sluice_jobs_released_total").increment(1);
                        tracing::info!("job released at shutdown");
                    }
                    Err(e) => tracing::warn!(error = %e, "release failed; the lease will expire"),
                }
            } else {
                tracing::info!("job stopped: cancelled or lease lost");
            }
            return;
        }
        Ran::Done(Ok(v)) => Outcome::Succeeded(v),
        Ran::Done(Err(e)) => Outcome::Failed {
            kind: ErrorKind::Error,
            retry_at: retry_at(&job, e.permanent),
            message: e.message,
        },
        Ran::TimedOut => Outcome::Failed {
            kind: ErrorKind::Timeout,
            message: format!("timed out after {} ms", job.timeout.as_millis()),
            retry_at: retry_at(&job, false),
        },
        Ran::UnknownKind => Outcome::Failed {
            kind: ErrorKind::UnknownKind,
            message: format!(
                "kind `{}` is not registered on worker {}",
                job.kind, shared.config.worker_id
            ),
            retry_at: retry_at(&job, false),
        },
    };
    let ok = matches!(outcome, Outcome::Succeeded(_));
    match shared
        .store
        .complete(Completion {
            lease: job.lease,
            outcome,
        })
        .await
    {
        Ok(true) => tracing::debug!(succeeded = ok, "job completed"),
        Ok(false) => {
            metrics::counter!("sluice_jobs_stale_completions_total").increment(1);
            tracing::info!("stale completion ignored: the job was cancelled or rescued");
        }
        Err(e) => {
            tracing::warn!(error = %e, "completion failed; the lease will expire and the job run again")
        }
    }
    if let Some(rx) = cpu_rest {
        // The timed-out CPU job is recorded; keep its slot until its thread
        // returns so stuck jobs cannot oversubscribe the pool.
        tokio::select! {
            _ = rx => {}
            _ = shared.force.cancelled() => {}
        }
    }
}

async fn heartbeat_loop(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.force.cancelled() => break,
            _ = tokio::time::sleep(shared.config.heartbeat_interval) => {}
        }
        let leases: Vec<(Lease, f64)> = shared
            .running()
            .values()
            .map(|r| (r.lease, r.progress.get()))
            .collect();
        if leases.is_empty() {
            continue;
        }
        match shared
            .store
            .heartbeat(Heartbeat {
                leases,
                lease: shared.config.lease,
            })
            .await
        {
            Ok(lost) => {
                let running = shared.running();
                for id in lost {
                    if let Some(job) = running.get(&id) {
                        metrics::counter!("sluice_jobs_leases_lost_total").increment(1);
                        tracing::info!(job.id = %id, "lease lost; stopping job");
                        job.stop(REASON_LOST);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }
}

async fn maintenance_loop(shared: Arc<Shared>) {
    let mut last_prune = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shared.force.cancelled() => break,
            _ = tokio::time::sleep(shared.config.rescue_interval) => {}
        }
        match shared.store.rescue_expired().await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("sluice_jobs_rescued_total").increment(n);
                tracing::info!(rescued = n, "expired leases rescued");
            }
            Err(e) => tracing::warn!(error = %e, "rescue failed"),
        }
        let Some(retention) = shared.config.retention else {
            continue;
        };
        if last_prune.elapsed() < shared.config.prune_interval {
            continue;
        }
        last_prune = tokio::time::Instant::now();
        let before = Timestamp::now().minus(retention);
        loop {
            if shared.force.is_cancelled() {
                break;
            }
            let pruned = shared.store.prune(before, shared.config.prune_batch).await;
            if let Ok(n) = pruned {
                metrics::counter!("sluice_jobs_pruned_total").increment(n);
            }
            match pruned {
                Ok(n) if n >= u64::from(shared.config.prune_batch) => {
                    // Small transactions, with room for claims in between.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(pruned = n, "old jobs pruned");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "prune failed");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::BuiltinOptions;
    use crate::model::Backoff;
    use crate::store::{JobFilter, StoreFuture, Submitted};
    use crate::validate::NewBatch;
    use serde_json::json;

    /// `execute` never touches the store; this one refuses everything.
    struct NoStore;

    fn closed<'a, T: Send + 'a>() -> StoreFuture<'a, T> {
        Box::pin(async { Err(StoreError::Closed) })
    }

    impl Store for NoStore {
        fn submit(&self, _: NewBatch) -> StoreFuture<'_, Submitted> {
            closed()
        }
        fn claim(&self, _: ClaimRequest) -> StoreFuture<'_, Vec<ClaimedJob>> {
            closed()
        }
        fn complete(&self, _: Completion) -> StoreFuture<'_, bool> {
            closed()
        }
        fn heartbeat(&self, _: Heartbeat) -> StoreFuture<'_, Vec<JobId>> {
            closed()
        }
        fn release(&self, _: Vec<Lease>) -> StoreFuture<'_, u64> {
            closed()
        }
        fn cancel_job(&self, _: JobId) -> StoreFuture<'_, CancelResult> {
            closed()
        }
        fn cancel_batch(&self, _: BatchId) -> StoreFuture<'_, CancelResult> {
            closed()
        }
        fn rescue_expired(&self) -> StoreFuture<'_, u64> {
            closed()
        }
        fn prune(&self, _: Timestamp, _: u32) -> StoreFuture<'_, u64> {
            closed()
        }
        fn get_job(&self, _: JobId) -> StoreFuture<'_, Option<crate::model::Job>> {
            closed()
        }
        fn get_batch(&self, _: BatchId) -> StoreFuture<'_, Option<crate::model::Batch>> {
            closed()
        }
        fn list_jobs(&self, _: JobFilter) -> StoreFuture<'_, Vec<crate::model::Job>> {
            closed()
        }
        fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
            tokio::sync::watch::channel(0).1
        }
        fn retry_job(&self, _: JobId) -> StoreFuture<'_, crate::store::RetryResult> {
            closed()
        }
        fn changes(
            &self,
            _: crate::store::ChangeFilter,
            _: Option<crate::store::ChangeCursor>,
            _: u32,
        ) -> StoreFuture<'_, Vec<(crate::store::ChangeCursor, crate::model::Job)>> {
            closed()
        }
        fn subscribe_changes(&self) -> tokio::sync::watch::Receiver<u64> {
            tokio::sync::watch::channel(0).1
        }
        fn latest_change(&self) -> StoreFuture<'_, Option<crate::store::ChangeCursor>> {
            closed()
        }
        fn list_batches(
            &self,
            _: crate::store::BatchFilter,
        ) -> StoreFuture<'_, Vec<crate::model::Batch>> {
            closed()
        }
        fn queue_counts(&self) -> StoreFuture<'_, Vec<crate::store::QueueCounts>> {
            closed()
        }
    }

    fn shared() -> Shared {
        let config = RunnerConfig {
            cpu_threads: 1,
            ..RunnerConfig::default()
        };
        Shared {
            store: Arc::new(NoStore),
            registry: Arc::new(Registry::with_builtins(BuiltinOptions::default())),
            global: Arc::new(Semaphore::new(1)),
            queues: Vec::new(),
            running: Mutex::new(HashMap::new()),
            slot_freed: Notify::new(),
            cpu: rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap(),
            abandoned: AtomicBool::new(false),
            force: CancellationToken::new(),
            config,
        }
    }

    fn claimed(kind: &str, args: serde_json::Value, timeout: Duration) -> ClaimedJob {
        ClaimedJob {
            lease: Lease {
                job_id: JobId::new(),
                token: 1,
            },
            batch_id: None,
            queue: DEFAULT_QUEUE.into(),
            kind: kind.into(),
            args,
            priority: 0,
            attempt: 1,
            max_attempts: 3,
            timeout,
            backoff: Backoff::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn async_attempts_time_out_on_the_runtime_clock() {
        let shared = shared();
        let cancel = CancellationToken::new();
        let progress = ProgressCell::default();
        let t0 = tokio::time::Instant::now();
        let job = claimed("sleep", json!({"ms": 3_600_000}), Duration::from_secs(30));
        let (ran, rest) = execute(&shared, &job, &cancel, &progress).await;
        assert!(matches!(ran, Ran::TimedOut) && rest.is_none());
        // The paused clock jumped exactly to the deadline, not to the sleep.
        assert_eq!(t0.elapsed(), Duration::from_secs(30));

        let job = claimed("sleep", json!({"ms": 10_000}), Duration::from_secs(30));
        let (ran, _) = execute(&shared, &job, &cancel, &progress).await;
        assert!(matches!(ran, Ran::Done(Ok(_))));
        assert_eq!(t0.elapsed(), Duration::from_secs(40));

        let job = claimed("teleport", json!(null), Duration::from_secs(30));
        assert!(matches!(
            execute(&shared, &job, &cancel, &progress).await.0,
            Ran::UnknownKind
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_interrupts_an_async_attempt() {
        let shared = shared();
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            stop.cancel();
        });
        let t0 = tokio::time::Instant::now();
        let job = claimed("sleep", json!({"ms": 60_000}), Duration::from_secs(30));
        let (ran, _) = execute(&shared, &job, &cancel, &ProgressCell::default()).await;
        assert!(matches!(ran, Ran::Interrupted));
        assert_eq!(t0.elapsed(), Duration::from_secs(5));
    }

    #[test]
    fn no_retry_after_the_last_attempt_or_a_permanent_error() {
        let mut job = claimed("noop", json!(null), Duration::from_secs(1));
        job.backoff = Backoff {
            base_ms: 1_000,
            max_ms: 1_000,
            factor: 2.0,
            jitter: 0.0,
        };
        let before = Timestamp::now();
        let at = retry_at(&job, false).unwrap();
        assert!(at >= before.plus(Duration::from_millis(1_000)));
        assert_eq!(retry_at(&job, true), None);
        job.attempt = 3;
        assert_eq!(retry_at(&job, false), None);
    }

    fn counts(g: &[(String, Vec<Permits>)]) -> Vec<(String, usize)> {
        g.iter().map(|(q, p)| (q.clone(), p.len())).collect()
    }

    #[test]
    fn slots_are_dealt_in_turn_within_every_bound() {
        let global = Arc::new(Semaphore::new(5));
        let queues = vec![
            ("a".to_owned(), None),
            ("b".to_owned(), Some(Arc::new(Semaphore::new(1)))),
            ("c".to_owned(), None),
        ];
        let g = take_permits(&queues, &global, 100, 0);
        assert_eq!(
            counts(&g),
            vec![("a".into(), 2), ("b".into(), 1), ("c".into(), 2)]
        );
        assert_eq!(global.available_permits(), 0);
        // Everything is taken: nothing more to deal until permits return.
        assert!(take_permits(&queues, &global, 100, 1).is_empty());
        drop(g);
        assert_eq!(global.available_permits(), 5);

        // The claim budget caps the deal; the start rotates who goes first.
        let g = take_permits(&queues, &global, 2, 2);
        assert_eq!(counts(&g), vec![("a".into(), 1), ("c".into(), 1)]);
    }
}
