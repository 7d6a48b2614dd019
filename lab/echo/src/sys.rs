//! What the benchmark asks of the operating system: a process's resident
//! memory, the open-files limit, and CPU pinning.

use std::io;
use std::time::Duration;

/// Resident memory of process `pid` in KiB: the `VmRSS` line of
/// `/proc/PID/status`. `None` where `/proc` is missing (not Linux) or the
/// process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

/// The `VmRSS:   1234 kB` line of a `/proc/PID/status` text, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The unit of `utime` and `stime` in `/proc/PID/stat`: `USER_HZ`, which
/// Linux's ABI fixes at 100 on every architecture (`sysconf(_SC_CLK_TCK)`
/// would need libc, and the workspace forbids `unsafe`).
const USER_HZ: u64 = 100;

/// CPU time process `pid` has used so far, user and system, all its threads
/// (live or exited): `utime + stime` of `/proc/PID/stat`, in steps of 10 ms.
/// `None` where `/proc` is missing or the process is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line, in ticks.
/// The command name (field 2) may hold spaces and parentheses, so fields
/// are counted from its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // `rest` starts at field 3 (the state letter): fields 14 and 15 are
    // its 12th and 13th words.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Threads of process `pid` (the `Threads:` line of `/proc/PID/status`).
pub fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|rest| rest.trim().parse().ok())
}

/// The open-files limit after trying to raise it to `wanted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// What was asked for.
    pub wanted: u64,
    /// The soft limit now in force (children inherit it).
    pub soft: u64,
}

impl NofileLimit {
    /// True when the hard limit kept the soft limit below `wanted`.
    pub fn capped(&self) -> bool {
        self.soft < self.wanted
    }
}

/// Raises this process's `RLIMIT_NOFILE` soft limit towards `wanted` (as
/// far as the hard limit allows; never lowers it).
pub fn raise_nofile(wanted: u64) -> io::Result<NofileLimit> {
    let soft = rlimit::increase_nofile_limit(wanted)?;
    Ok(NofileLimit { wanted, soft })
}

/// Pins the calling thread to CPU `core`; threads it starts afterwards
/// inherit the pin. False if the core does not exist or pinning failed.
pub fn pin_current_thread(core: usize) -> bool {
    core_affinity::get_core_ids()
        .and_then(|ids| ids.into_iter().find(|c| c.id == core))
        .is_some_and(core_affinity::set_for_current)
}

/// Number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_status_text() {
        let text = "Name:\tx\nVmPeak:\t  9999 kB\nVmRSS:\t    1234 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(text), Some(1234));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_ticks_are_read_past_a_command_name_with_spaces() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        let line = "42 (echo (x) y) S 1 42 42 0 -1 4194304 100 0 0 0 250 37 0 0 20 0 3";
        assert_eq!(parse_cpu_ticks(line), Some(287));
        assert_eq!(parse_cpu_ticks("42 (short) S 1 2"), None);
    }

    #[test]
    fn own_cpu_time_grows_while_spinning() {
        let me = std::process::id();
        let Some(before) = cpu_time(me) else {
            eprintln!("skipped: no /proc");
            return;
        };
        // Spin until the clock ticks over (it counts in 10 ms steps), for at
        // most 5 s of wall time on a busy machine.
        let start = std::time::Instant::now();
        let mut after = before;
        let mut x = 0u64;
        while after == before && start.elapsed() < Duration::from_secs(5) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            after = cpu_time(me).unwrap();
        }
        assert!(after > before, "{before:?} -> {after:?}");
    }

    #[test]
    fn own_rss_and_threads_are_visible_on_linux() {
        if !std::path::Path::new("/proc/self/status").exists() {
            eprintln!("skipped: no /proc");
            return;
        }
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|k| k > 0));
        assert!(threads(me).is_some_and(|t| t >= 1));
    }

    #[test]
    fn nofile_limit_never_goes_down() {
        let before = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0;
        let got = raise_nofile(64).unwrap();
        assert!(got.soft >= before.min(64));
        assert!(!got.capped() || got.soft < 64);
    }
}
