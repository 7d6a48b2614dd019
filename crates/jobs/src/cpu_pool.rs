//! The rayon pool that runs CPU-bound kinds, at a lower scheduling priority
//! than the async runtime.
//!
//! CPU jobs and the tokio workers share the machine's cores. At equal
//! priority, a runtime thread woken by I/O (a claim, a probe, an API call)
//! waits for the scheduler to preempt a running CPU job, up to a slice of a
//! few milliseconds; that wait is most of the async p99 under CPU saturation
//! (docs/benchmarks.md). With the pool's threads at a positive nice, Linux
//! runs a woken runtime thread at once, and the CPU jobs still take every
//! cycle the runtime leaves.

/// How much nicer than the thread that builds it the pool's threads run
/// (nice values go from -20 to 19): enough that a woken runtime thread
/// preempts a CPU job at once, not so much that CPU jobs starve while the
/// runtime is busy (10 steps down, a thread gets about a tenth of a core
/// against a busy thread).
pub(crate) const CPU_NICE_STEPS: i32 = 10;

/// The pool, `threads` wide, each thread named `sluice-cpu-N` and, on
/// Linux, [`CPU_NICE_STEPS`] nicer than the caller.
pub(crate) fn build(threads: usize) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("sluice-cpu-{i}"))
        .start_handler(|_| lower_priority())
        .build()
}

/// Lowers the calling thread's priority. On Linux a nice value belongs to
/// a thread, so this leaves the rest of the process as it is; elsewhere it
/// would renice the whole process, so it is not done there.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::nice(CPU_NICE_STEPS) {
        tracing::debug!(error = %e, "could not lower the CPU pool's thread priority");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The calling thread's nice value, from procfs (field 19 of `stat`).
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn pool_threads_run_at_the_cpu_nice_value() {
        let pool = build(2).unwrap();
        let here = own_nice();
        let there = pool.install(own_nice);
        // Pool threads start at the builder's nice (here the test thread's,
        // which `nice cargo test` may have raised), then step down, to 19 at most.
        assert_eq!(
            there,
            (here + CPU_NICE_STEPS).min(19),
            "pool at {there}, test thread at {here}"
        );
    }
}
