//! `noop`: returns at once; the unit of scheduler overhead in benchmarks.

use serde_json::Value;

use super::{AsyncKind, JobContext, JobError};

/// Does nothing and succeeds with `null`. Accepts any args.
#[derive(Clone, Copy, Debug, Default)]
pub struct Noop;

impl AsyncKind for Noop {
    type Args = Value;

    async fn run(&self, _args: Value, _ctx: JobContext) -> Result<Value, JobError> {
        Ok(Value::Null)
    }
}
