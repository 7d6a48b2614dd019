//! `exec {argv, env, cwd}`: runs a program. Registered only when enabled
//! (`--allow-exec`): it runs anything the worker's user may run.
//!
//! stdout and stderr are captured up to a cap each (the rest is read and
//! dropped so the child never blocks on a full pipe); the child is killed
//! when the attempt is cancelled or times out, because dropping the future
//! drops the `Child` and `kill_on_drop` is set.

use std::collections::BTreeMap;
use std::process::Stdio;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::{ArgsError, AsyncKind, JobContext, JobError};

/// Settings of `exec`.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// Most bytes kept of stdout and of stderr each.
    pub max_output_bytes: usize,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            max_output_bytes: 64 * 1024,
        }
    }
}

/// The `exec` kind.
#[derive(Clone, Debug)]
pub struct Exec {
    options: ExecOptions,
}

impl Exec {
    /// An exec kind.
    pub fn new(options: ExecOptions) -> Self {
        Self { options }
    }
}

/// Args of [`Exec`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecArgs {
    /// Program and arguments; no shell.
    pub argv: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// Kills a job's process group when dropped before the job ended: the
/// run future is dropped on timeout and cancel.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

async fn capture(mut r: impl AsyncRead + Unpin, cap: usize) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, truncated));
        }
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..room.min(n)]);
        truncated |= n > room;
    }
}

impl AsyncKind for Exec {
    type Args = ExecArgs;

    fn check(&self, args: &ExecArgs) -> Result<(), ArgsError> {
        if args.argv.is_empty() || args.argv[0].is_empty() {
            return Err(ArgsError::new("argv", "must name a program"));
        }
        Ok(())
    }

    async fn run(&self, args: ExecArgs, _ctx: JobContext) -> Result<Value, JobError> {
        self.check(&args).map_err(JobError::permanent)?;
        let mut cmd = Command::new(&args.argv[0]);
        cmd.args(&args.argv[1..])
            .envs(&args.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout or cancel can kill
            // everything it started (a shell's children too), not only it.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &args.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| JobError::permanent(format!("spawn {}: {e}", args.argv[0])))?;
        let mut group = GroupGuard(child.id());
        let cap = self.options.max_output_bytes;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| JobError::retryable("no stdout"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| JobError::retryable("no stderr"))?;
        let (out, err, status) =
            tokio::try_join!(capture(stdout, cap), capture(stderr, cap), child.wait())
                .map_err(|e| JobError::retryable(format!("wait: {e}")))?;
        // It ended by itself: what it left running is its own business.
        group.0 = None;
        let result = json!({
            "exit_code": status.code(),
            "stdout": String::from_utf8_lossy(&out.0),
            "stderr": String::from_utf8_lossy(&err.0),
            "truncated": out.1 || err.1,
        });
        if status.success() {
            Ok(result)
        } else {
            Err(JobError::retryable(format!(
                "exit status {status}: {}",
                String::from_utf8_lossy(&err.0).trim()
            )))
        }
    }
}
