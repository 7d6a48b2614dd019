//! `sleep {ms}`: waits on the async runtime without using a thread.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{AsyncKind, JobContext, JobError};

/// Sleeps `ms` milliseconds, then succeeds with `{"slept_ms": ms}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sleep;

/// Args of [`Sleep`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    /// How long.
    pub ms: u64,
}

impl AsyncKind for Sleep {
    type Args = SleepArgs;

    async fn run(&self, args: SleepArgs, _ctx: JobContext) -> Result<Value, JobError> {
        tokio::time::sleep(Duration::from_millis(args.ms)).await;
        Ok(json!({ "slept_ms": args.ms }))
    }
}
