//! Execution settings shared by `sluice server`, `sluice worker` and
//! `sluice up`: queues, CPU threads, leases, retention, the `http` kind's
//! allow-list, `exec`. Turned into a registry and a runner config here.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use sluice_jobs::kinds::{BuiltinOptions, ExecOptions, HttpOptions};
use sluice_jobs::{QueueConfig, Registry, RunnerConfig};

/// Flags that decide how jobs run.
#[derive(Clone, Debug, Args)]
pub(crate) struct RunSettings {
    /// Queues to run, in turn: `NAME` or `NAME:MAX` (most jobs of it at
    /// once here), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    pub(crate) queues: Vec<String>,
    /// Threads for CPU-bound kinds (checksum, burn); default: one per core.
    #[arg(long)]
    pub(crate) cpu_threads: Option<usize>,
    /// How long a job's lease lasts without a heartbeat; a worker that dies
    /// has its jobs run again elsewhere after at most this plus 5 s.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub(crate) lease: Duration,
    /// Keep finished jobs this long (`0s` keeps them forever).
    #[arg(long, default_value = "7days", value_parser = humantime::parse_duration)]
    pub(crate) retention: Duration,
    /// On SIGTERM, how long running jobs get to finish before their leases
    /// are given back.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) shutdown_deadline: Duration,
    /// Hosts `http` jobs may call (exact or `*.suffix`), comma-separated;
    /// unset allows every host.
    #[arg(long, value_delimiter = ',')]
    pub(crate) http_allow: Option<Vec<String>>,
    /// Register the `exec` kind (runs programs on this machine).
    #[arg(long)]
    pub(crate) allow_exec: bool,
}

impl RunSettings {
    /// The kinds this process can run and accept.
    pub(crate) fn registry(&self) -> Registry {
        Registry::with_builtins(BuiltinOptions {
            http: HttpOptions {
                allow_hosts: self.http_allow.clone(),
                ..HttpOptions::default()
            },
            exec: self.allow_exec.then(ExecOptions::default),
        })
    }

    /// The runner's settings with `concurrency` job slots.
    pub(crate) fn runner_config(&self, concurrency: usize) -> anyhow::Result<RunnerConfig> {
        let mut c = RunnerConfig {
            queues: parse_queues(&self.queues)?,
            concurrency: concurrency.max(1),
            claim_batch: concurrency.clamp(1, 256) as u32,
            lease: self.lease,
            heartbeat_interval: (self.lease / 3).max(Duration::from_millis(100)),
            shutdown_deadline: self.shutdown_deadline,
            retention: (!self.retention.is_zero()).then_some(self.retention),
            ..RunnerConfig::default()
        };
        if let Some(n) = self.cpu_threads {
            c.cpu_threads = n.max(1);
        }
        Ok(c)
    }
}

/// `NAME` or `NAME:MAX`.
fn parse_queues(specs: &[String]) -> anyhow::Result<Vec<QueueConfig>> {
    let mut out = Vec::new();
    for spec in specs {
        let (name, max) = match spec.split_once(':') {
            Some((n, m)) => match m.parse::<usize>() {
                Ok(m) if m > 0 => (n, Some(m)),
                _ => bail!("--queues `{spec}`: `{m}` is not a positive number"),
            },
            None => (spec.as_str(), None),
        };
        if name.is_empty() {
            bail!("--queues `{spec}`: empty queue name");
        }
        out.push(QueueConfig {
            name: name.to_owned(),
            concurrency: max,
        });
    }
    if out.is_empty() {
        bail!("--queues: at least one queue");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_take_an_optional_bound() {
        let q = parse_queues(&["default".into(), "mail:4".into()]).unwrap();
        assert_eq!(q[0].name, "default");
        assert_eq!(q[0].concurrency, None);
        assert_eq!((q[1].name.as_str(), q[1].concurrency), ("mail", Some(4)));
        let e = parse_queues(&["mail:x".into()]).unwrap_err();
        assert!(
            e.to_string().contains("`x` is not a positive number"),
            "{e}"
        );
        assert!(parse_queues(&[":3".into()]).is_err());
    }
}
