//! Counters: a live snapshot ([`Stats`]) and the final word of a shutdown
//! ([`ShutdownReport`]). Both are read under the pool's one lock, so their
//! fields agree with each other exactly.
//!
//! Counts are in *jobs* (closures given to `execute`, `submit` or `batch`);
//! `queued` and `peak_queued` are in *queue entries*, where a batch chunk
//! holding many jobs is one entry, because that is what the capacity bounds.

/// A snapshot of the pool's counters; see [`crate::ThreadPool::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Jobs accepted into the queue.
    pub submitted: u64,
    /// Jobs that ran to completion.
    pub completed: u64,
    /// Jobs that panicked (their workers survived).
    pub panicked: u64,
    /// Jobs dropped unrun by a forced shutdown.
    pub cancelled: u64,
    /// Queue entries waiting now.
    pub queued: usize,
    /// The most queue entries ever waiting at once.
    pub peak_queued: usize,
    /// Workers running a job now.
    pub active: usize,
    /// Times a worker found the queue empty and went to sleep (after a short
    /// spin). Many sleeps per job mean a producer that cannot keep the
    /// workers busy: each sleep costs a wake-up later.
    pub worker_sleeps: u64,
}

/// What a shutdown did; see [`crate::ThreadPool::shutdown`].
///
/// After a shutdown `submitted == completed + panicked + cancelled` always
/// holds: every accepted job was run or dropped, none is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Jobs accepted over the pool's life.
    pub submitted: u64,
    /// Jobs that ran to completion.
    pub completed: u64,
    /// Jobs that panicked.
    pub panicked: u64,
    /// Jobs dropped unrun (forced shutdown only).
    pub cancelled: u64,
    /// Worker threads that died (a bug in the pool, not in a job; expect 0).
    pub workers_lost: usize,
}
