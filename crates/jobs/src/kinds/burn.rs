//! `burn {ms}`: CPU-bound busy work for benchmarks and tests of the rayon
//! bridge; it stops early when its cancel flag is raised.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::{CpuContext, CpuKind, JobError};

/// Spins a CPU for `ms` milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Burn;

/// Args of [`Burn`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnArgs {
    /// How long to spin.
    pub ms: u64,
}

impl CpuKind for Burn {
    type Args = BurnArgs;

    fn run(&self, args: BurnArgs, ctx: &CpuContext) -> Result<Value, JobError> {
        let until = Instant::now() + Duration::from_millis(args.ms);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rounds: u64 = 0;
        while Instant::now() < until {
            // A few thousand rounds of xorshift between clock and flag checks.
            for _ in 0..4096 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            rounds += 1;
            if ctx.is_cancelled() {
                return Err(JobError::retryable("cancelled"));
            }
        }
        Ok(json!({ "rounds": rounds, "state": black_box(x) }))
    }
}
