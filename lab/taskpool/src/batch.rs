//! Batches: many jobs submitted at once, results returned in submission order.
//!
//! A batch is cut into a few chunks (four per worker), and each chunk is one
//! queue entry that runs its jobs one after another. Per job that saves the
//! queue hand-off, the wake-up and the result slot that `submit` pays; what
//! is left is the job's own call and a `catch_unwind`. Four chunks per worker
//! rather than one keeps the workers busy when some jobs are slower than
//! others. Each chunk sends its results, with its starting index, over one
//! `mpsc` channel; a chunk that never ran (cancelled by a forced shutdown,
//! or refused by a closed pool) sends nothing, so its jobs come back as
//! [`JobError::Cancelled`].

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;

use crate::handle::JobError;
use crate::queue::{Run, Tally};

type ChunkResult<T> = (usize, Vec<Result<T, JobError>>);

/// Waits for a batch; see [`crate::ThreadPool::batch`].
#[must_use = "dropping a BatchHandle detaches the batch; call join() for the results"]
#[derive(Debug)]
pub struct BatchHandle<T> {
    len: usize,
    results: mpsc::Receiver<ChunkResult<T>>,
}

impl<T> BatchHandle<T> {
    /// Number of jobs in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch has no jobs.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Waits for every job; results are in the order the jobs were given.
    pub fn join(self) -> Vec<Result<T, JobError>> {
        // The loop ends when every chunk's sender is gone: sent, or dropped unrun.
        let mut chunks: Vec<ChunkResult<T>> = self.results.iter().collect();
        chunks.sort_unstable_by_key(|(start, _)| *start);
        let mut out = Vec::with_capacity(self.len);
        for (start, results) in chunks {
            // A gap before this chunk is a chunk that never ran.
            out.extend((out.len()..start).map(|_| Err(JobError::Cancelled)));
            out.extend(results);
        }
        out.extend((out.len()..self.len).map(|_| Err(JobError::Cancelled)));
        out
    }
}

/// One queue entry of a batch: consecutive jobs and where their results go.
pub(crate) struct Chunk<F, T> {
    start: usize,
    jobs: Vec<F>,
    results: mpsc::Sender<ChunkResult<T>>,
}

impl<F, T> Chunk<F, T> {
    /// How many jobs the chunk holds (its weight in the pool's counts).
    pub(crate) fn len(&self) -> u64 {
        self.jobs.len() as u64
    }
}

impl<F, T> Run for Chunk<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn run(self: Box<Self>) -> Tally {
        let Chunk {
            start,
            jobs,
            results,
        } = *self;
        let mut tally = Tally::default();
        let out: Vec<Result<T, JobError>> = jobs
            .into_iter()
            .map(|job| match panic::catch_unwind(AssertUnwindSafe(job)) {
                Ok(value) => {
                    tally.completed += 1;
                    Ok(value)
                }
                Err(payload) => {
                    tally.panicked += 1;
                    Err(JobError::Panicked(payload))
                }
            })
            .collect();
        // The handle may be gone (a detached batch); the results go with it.
        let _ = results.send((start, out));
        tally
    }
}

/// Cuts `jobs` into chunks of `chunk_len` and returns the batch's handle
/// with the chunks to queue.
pub(crate) fn split<F, T>(jobs: Vec<F>, chunk_len: usize) -> (BatchHandle<T>, Vec<Chunk<F, T>>) {
    let len = jobs.len();
    let chunk_len = chunk_len.max(1);
    let (tx, rx) = mpsc::channel();
    let mut chunks = Vec::with_capacity(len.div_ceil(chunk_len));
    let mut jobs = jobs.into_iter();
    let mut start = 0;
    while start < len {
        let chunk: Vec<F> = jobs.by_ref().take(chunk_len).collect();
        let n = chunk.len();
        chunks.push(Chunk {
            start,
            jobs: chunk,
            results: tx.clone(),
        });
        start += n;
    }
    (BatchHandle { len, results: rx }, chunks)
}
