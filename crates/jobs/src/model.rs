//! Jobs, batches, their states and the one table of allowed state transitions.
//!
//! Everything here is plain data: what a client submits ([`JobSpec`],
//! [`BatchSpec`]), what the store keeps ([`Job`], [`Batch`]) and the state
//! machine ([`JobState`], [`TRANSITIONS`]). The store and the runner only move
//! a job along an edge listed in [`TRANSITIONS`]; `docs/jobs.md` prints the
//! same table.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The queue a job goes to when its spec names none.
pub const DEFAULT_QUEUE: &str = "default";

/// A job's id: a UUID v7, so ids sort by creation time and index well.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A batch's id: a UUID v7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchId(pub Uuid);

impl BatchId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for BatchId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A point in time: milliseconds since the Unix epoch, UTC.
///
/// Milliseconds in an `i64` are what both stores index cheaply (SQLite
/// INTEGER, PostgreSQL BIGINT) and compare without time-zone surprises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The wall clock now.
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self(ms)
    }

    /// This instant plus `d` (saturating).
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    /// This instant minus `d` (saturating).
    pub fn minus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }
}

/// Where a job is in its life. See [`TRANSITIONS`] for every allowed move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Stored, not runnable yet: its `run_at` is in the future or a
    /// dependency has not finished.
    Scheduled,
    /// Runnable: waits for a worker to claim it.
    Queued,
    /// Claimed by a worker that holds its lease.
    Running,
    /// An attempt failed or timed out and attempts remain; runs again at `run_at`.
    Retrying,
    /// Final: the last attempt returned a result.
    Succeeded,
    /// Final: attempts exhausted, a permanent error, or a failed dependency.
    Failed,
    /// Final: cancelled by a client, or by a failed dependency under the
    /// `cancel` policy.
    Cancelled,
    /// Final: the last attempt ran past its timeout.
    TimedOut,
}

impl JobState {
    /// Every state, in the order of [`StateCounts`] and the docs.
    pub const ALL: [JobState; 8] = [
        JobState::Scheduled,
        JobState::Queued,
        JobState::Running,
        JobState::Retrying,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::TimedOut,
    ];

    /// The name used in the store, the API and the docs.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::TimedOut => "timed_out",
        }
    }

    /// Parses [`JobState::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A final state has no way out: the job is done for good.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::TimedOut
        )
    }

    /// Position in [`JobState::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One allowed move of the state machine and what causes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: JobState,
    /// State after.
    pub to: JobState,
    /// What makes the move happen (for the docs and logs).
    pub cause: &'static str,
}

const fn t(from: JobState, to: JobState, cause: &'static str) -> Transition {
    Transition { from, to, cause }
}

use JobState::{
    Cancelled as C, Failed as F, Queued as Q, Retrying as RT, Running as R, Scheduled as S,
    Succeeded as OK, TimedOut as TO,
};

/// Every allowed state transition. Anything not listed is a bug; the store
/// checks each move it makes against this table in debug builds.
pub const TRANSITIONS: &[Transition] = &[
    t(
        S,
        Q,
        "run_at reached and every dependency finished as required",
    ),
    t(S, F, "a dependency failed and the batch policy is `fail`"),
    t(
        S,
        C,
        "cancelled, or a dependency failed and the batch policy is `cancel`",
    ),
    t(
        Q,
        R,
        "claimed by a worker (new lease, fencing token + 1, attempt + 1)",
    ),
    t(Q, C, "cancelled"),
    t(R, OK, "the attempt returned a result"),
    t(R, RT, "the attempt failed or timed out and attempts remain"),
    t(
        R,
        F,
        "the attempt failed and no attempts remain, or the error is permanent",
    ),
    t(R, TO, "the last attempt ran past its timeout"),
    t(
        R,
        C,
        "cancelled while running (the worker's later completion is ignored)",
    ),
    t(
        R,
        Q,
        "released by a stopping worker (attempt not counted), or its lease expired",
    ),
    t(RT, Q, "the backoff delay passed, or retried by hand"),
    t(RT, C, "cancelled"),
    t(F, Q, "retried by hand: one more attempt"),
    t(TO, Q, "retried by hand: one more attempt"),
    t(C, Q, "retried by hand: one more attempt"),
];

/// Whether [`TRANSITIONS`] allows `from` → `to`.
pub fn can_transition(from: JobState, to: JobState) -> bool {
    TRANSITIONS.iter().any(|tr| tr.from == from && tr.to == to)
}

/// Exponential backoff with jitter between attempts.
///
/// The delay before attempt `n + 1` after `n` failed attempts is
/// `min(max_ms, base_ms * factor^(n-1))`, of which the last `jitter`
/// fraction is random, so retries of many jobs failing together spread out.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay after the first failed attempt.
    pub base_ms: u64,
    /// Cap on any delay.
    pub max_ms: u64,
    /// Growth per attempt (≥ 1).
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// Random share of each delay, 0 (none) to 1 (full jitter).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

fn default_factor() -> f64 {
    2.0
}

fn default_jitter() -> f64 {
    0.5
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base_ms: 1_000,
            max_ms: 10 * 60 * 1_000,
            factor: default_factor(),
            jitter: default_jitter(),
        }
    }
}

impl Backoff {
    /// The deterministic part of the delay after `failed_attempts` failures.
    pub fn ceiling(&self, failed_attempts: u32) -> Duration {
        let exp = failed_attempts.saturating_sub(1).min(64) as i32;
        let raw = self.base_ms as f64 * self.factor.max(1.0).powi(exp);
        let ms = if raw.is_finite() {
            raw.min(self.max_ms as f64)
        } else {
            self.max_ms as f64
        };
        Duration::from_millis(ms.max(0.0) as u64)
    }

    /// The delay after `failed_attempts` failures; `unit` is a random number
    /// in `[0, 1)` (a parameter so tests can pin it).
    pub fn delay(&self, failed_attempts: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(failed_attempts).as_millis() as f64;
        let jitter = self.jitter.clamp(0.0, 1.0);
        let fixed = ceiling * (1.0 - jitter);
        let random = ceiling * jitter * unit.clamp(0.0, 1.0);
        Duration::from_millis((fixed + random) as u64)
    }
}

/// What a client submits for one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The registered kind that runs it (`noop`, `http`, ...).
    pub kind: String,
    /// The kind's arguments.
    #[serde(default)]
    pub args: Value,
    /// Queue name; [`DEFAULT_QUEUE`] when absent.
    #[serde(default)]
    pub queue: Option<String>,
    /// Higher runs first within a queue.
    #[serde(default)]
    pub priority: i32,
    /// Not before this instant.
    #[serde(default)]
    pub run_at: Option<Timestamp>,
    /// Overrides the kind's default.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Overrides the kind's default timeout per attempt.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Overrides the kind's default backoff.
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// While a job with this key is unfinished, submitting another returns it.
    #[serde(default)]
    pub unique_key: Option<String>,
    /// Indexes (in the same batch) of the jobs this one waits for.
    #[serde(default)]
    pub depends_on: Vec<usize>,
}

impl JobSpec {
    /// A spec with defaults for everything but the kind and its args.
    pub fn new(kind: impl Into<String>, args: Value) -> Self {
        Self {
            kind: kind.into(),
            args,
            queue: None,
            priority: 0,
            run_at: None,
            max_attempts: None,
            timeout_ms: None,
            backoff: None,
            unique_key: None,
            depends_on: Vec::new(),
        }
    }
}

/// When a batch callback fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackOn {
    /// When every job is final, whatever the outcome.
    Complete,
    /// When every job succeeded.
    Success,
    /// When every job is final and at least one did not succeed.
    Failure,
}

/// What a batch callback does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackTarget {
    /// POST the batch summary as JSON to this URL (a `sluice.webhook` job,
    /// retried like any other).
    Webhook(String),
    /// Enqueue this job.
    Job(Box<JobSpec>),
}

/// A batch callback: fired exactly once, in the transaction that finishes
/// the batch. (No `deny_unknown_fields` here: serde does not support it
/// together with `flatten`.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Callback {
    /// Which outcome fires it.
    pub on: CallbackOn,
    /// What it does.
    #[serde(flatten)]
    pub target: CallbackTarget,
}

/// What happens to the dependents of a job that ends failed, cancelled or
/// timed out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyPolicy {
    /// Dependents fail (and theirs, transitively).
    #[default]
    Fail,
    /// Dependents are cancelled (and theirs, transitively).
    Cancel,
    /// Dependents run anyway once the dependency is final.
    Ignore,
}

impl DependencyPolicy {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            DependencyPolicy::Fail => "fail",
            DependencyPolicy::Cancel => "cancel",
            DependencyPolicy::Ignore => "ignore",
        }
    }

    /// Parses [`DependencyPolicy::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fail" => Some(Self::Fail),
            "cancel" => Some(Self::Cancel),
            "ignore" => Some(Self::Ignore),
            _ => None,
        }
    }
}

/// What a client submits for a batch: all of it is stored, or none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    /// A label for people.
    #[serde(default)]
    pub name: Option<String>,
    /// The jobs; `depends_on` refers to indexes in this list.
    pub jobs: Vec<JobSpec>,
    /// Fired once when the batch finishes.
    #[serde(default)]
    pub callbacks: Vec<Callback>,
    /// What a failed dependency does to its dependents.
    #[serde(default)]
    pub on_dependency_failure: DependencyPolicy,
    /// Submitting again with the same key returns the first batch instead
    /// of storing a second (while that batch is stored).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Why an attempt did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The kind returned an error.
    Error,
    /// The attempt ran past its timeout.
    Timeout,
    /// The worker stopped heartbeating and the lease expired.
    LeaseExpired,
    /// A dependency ended without success.
    Dependency,
    /// The kind is not registered on the worker that claimed the job.
    UnknownKind,
}

/// The error of one failed attempt; a job keeps every one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    /// The attempt number (1-based); 0 for errors outside an attempt.
    pub attempt: u32,
    /// When it happened.
    pub at: Timestamp,
    /// Why.
    pub kind: ErrorKind,
    /// Human-readable detail.
    pub message: String,
}

/// A stored job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Id.
    pub id: JobId,
    /// The batch it was submitted in, if any.
    pub batch_id: Option<BatchId>,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// Arguments.
    pub args: Value,
    /// Higher runs first.
    pub priority: i32,
    /// State.
    pub state: JobState,
    /// Earliest next run.
    pub run_at: Timestamp,
    /// Attempts started so far.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Timeout of each attempt.
    pub timeout_ms: u64,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// The result of the successful attempt.
    pub result: Option<Value>,
    /// The error of every failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    /// Progress reported by the running attempt, 0 to 1.
    pub progress: f64,
    /// Jobs this one waits for.
    pub depends_on: Vec<JobId>,
    /// Uniqueness key.
    pub unique_key: Option<String>,
    /// The worker holding the lease, while running.
    pub worker: Option<String>,
    /// When the lease expires, while running.
    pub lease_expires_at: Option<Timestamp>,
    /// Submitted.
    pub created_at: Timestamp,
    /// Last state change.
    pub updated_at: Timestamp,
    /// First attempt started.
    pub started_at: Option<Timestamp>,
    /// Reached a final state.
    pub finished_at: Option<Timestamp>,
}

/// Number of jobs in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// Scheduled.
    pub scheduled: u64,
    /// Queued.
    pub queued: u64,
    /// Running.
    pub running: u64,
    /// Retrying.
    pub retrying: u64,
    /// Succeeded.
    pub succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Timed out.
    pub timed_out: u64,
}

impl StateCounts {
    /// The count of one state.
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Scheduled => self.scheduled,
            JobState::Queued => self.queued,
            JobState::Running => self.running,
            JobState::Retrying => self.retrying,
            JobState::Succeeded => self.succeeded,
            JobState::Failed => self.failed,
            JobState::Cancelled => self.cancelled,
            JobState::TimedOut => self.timed_out,
        }
    }

    /// Sets the count of one state.
    pub fn set(&mut self, state: JobState, n: u64) {
        let slot = match state {
            JobState::Scheduled => &mut self.scheduled,
            JobState::Queued => &mut self.queued,
            JobState::Running => &mut self.running,
            JobState::Retrying => &mut self.retrying,
            JobState::Succeeded => &mut self.succeeded,
            JobState::Failed => &mut self.failed,
            JobState::Cancelled => &mut self.cancelled,
            JobState::TimedOut => &mut self.timed_out,
        };
        *slot = n;
    }

    /// Jobs in a final state.
    pub fn finished(&self) -> u64 {
        JobState::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .map(|s| self.get(s))
            .sum()
    }

    /// All jobs.
    pub fn total(&self) -> u64 {
        JobState::ALL.into_iter().map(|s| self.get(s)).sum()
    }
}

/// A batch's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Some job is not final yet.
    Running,
    /// Every job succeeded.
    Succeeded,
    /// Every job is final and some did not succeed.
    Failed,
    /// Cancelled by a client.
    Cancelled,
}

impl BatchState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Running => "running",
            BatchState::Succeeded => "succeeded",
            BatchState::Failed => "failed",
            BatchState::Cancelled => "cancelled",
        }
    }

    /// Parses [`BatchState::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Self::Running),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// A stored batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Id.
    pub id: BatchId,
    /// Label.
    pub name: Option<String>,
    /// State.
    pub state: BatchState,
    /// Jobs stored for this batch (jobs deduplicated by unique key belong
    /// to their own batch and are not counted).
    pub total: u64,
    /// Jobs per state; changed in the same transaction as each job.
    pub counts: StateCounts,
    /// Finished share, 0 to 1.
    pub progress: f64,
    /// Callbacks as submitted.
    pub callbacks: Vec<Callback>,
    /// Dependency failure policy.
    pub on_dependency_failure: DependencyPolicy,
    /// Jobs enqueued by callbacks (webhooks included), once fired.
    pub callback_jobs: Vec<JobId>,
    /// Submitted.
    pub created_at: Timestamp,
    /// First job claimed.
    pub started_at: Option<Timestamp>,
    /// Last job final.
    pub finished_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_leave_only_by_a_manual_retry_and_success_never() {
        for tr in TRANSITIONS.iter().filter(|tr| tr.from.is_final()) {
            assert_ne!(tr.from, JobState::Succeeded, "succeeded -> {}", tr.to);
            assert_eq!(tr.to, JobState::Queued, "{} -> {}", tr.from, tr.to);
            assert!(tr.cause.contains("retried by hand"), "{}", tr.cause);
        }
    }

    #[test]
    fn every_state_is_reachable_from_submission() {
        // Submission stores a job as scheduled or queued.
        let mut seen = vec![JobState::Scheduled, JobState::Queued];
        loop {
            let before = seen.len();
            for tr in TRANSITIONS {
                if seen.contains(&tr.from) && !seen.contains(&tr.to) {
                    seen.push(tr.to);
                }
            }
            if seen.len() == before {
                break;
            }
        }
        for s in JobState::ALL {
            assert!(seen.contains(&s), "{s} unreachable");
        }
    }

    #[test]
    fn every_non_final_state_can_end() {
        for s in JobState::ALL.into_iter().filter(|s| !s.is_final()) {
            assert!(TRANSITIONS.iter().any(|t| t.from == s), "{s} is a dead end");
        }
    }

    #[test]
    fn table_has_no_duplicates_and_matches_can_transition() {
        for (i, a) in TRANSITIONS.iter().enumerate() {
            for b in &TRANSITIONS[i + 1..] {
                assert!(
                    !(a.from == b.from && a.to == b.to),
                    "{} -> {} twice",
                    a.from,
                    a.to
                );
            }
        }
        assert!(can_transition(JobState::Queued, JobState::Running));
        assert!(can_transition(JobState::Running, JobState::Queued));
        assert!(!can_transition(JobState::Succeeded, JobState::Queued));
        assert!(!can_transition(JobState::Scheduled, JobState::Running));
        assert!(!can_transition(JobState::Retrying, JobState::Failed));
    }

    #[test]
    fn state_names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(JobState::parse("done"), None);
    }

    #[test]
    fn backoff_grows_exponentially_and_caps() {
        let b = Backoff {
            base_ms: 100,
            max_ms: 1_000,
            factor: 2.0,
            jitter: 0.0,
        };
        assert_eq!(b.delay(1, 0.9), Duration::from_millis(100));
        assert_eq!(b.delay(2, 0.9), Duration::from_millis(200));
        assert_eq!(b.delay(4, 0.9), Duration::from_millis(800));
        assert_eq!(b.delay(5, 0.9), Duration::from_millis(1_000));
        assert_eq!(b.delay(60, 0.9), Duration::from_millis(1_000));
    }

    #[test]
    fn backoff_jitter_stays_within_its_share() {
        let b = Backoff {
            base_ms: 1_000,
            max_ms: 60_000,
            factor: 3.0,
            jitter: 0.5,
        };
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(1_500));
        assert_eq!(b.delay(2, 0.999_999), Duration::from_millis(2_999));
        let full = Backoff { jitter: 1.0, ..b };
        assert_eq!(full.delay(1, 0.0), Duration::ZERO);
    }

    #[test]
    fn callbacks_parse_from_json() {
        let cb: Callback =
            serde_json::from_str(r#"{"on":"success","webhook":"http://127.0.0.1:1/done"}"#)
                .unwrap();
        assert_eq!(
            cb.target,
            CallbackTarget::Webhook("http://127.0.0.1:1/done".into())
        );
        let cb: Callback =
            serde_json::from_str(r#"{"on":"complete","job":{"kind":"noop"}}"#).unwrap();
        assert!(matches!(cb.target, CallbackTarget::Job(ref j) if j.kind == "noop"));
    }
}
