//! Percentiles (nearest rank, as celery_bench.py and jobs_load compute them) and
//! CPU time from `/proc`; a copy of crates/jobs/examples/jobs_load/stats.rs.

/// The p-th percentile (nearest rank) of sorted values, as celery_bench.py computes it.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as f64;
    let k = ((p / 100.0 * n + 0.5).round() as i64 - 1).clamp(0, sorted.len() as i64 - 1);
    Some(sorted[k as usize])
}

/// Rounds to `d` decimals, for compact JSON.
pub fn round(v: f64, d: i32) -> f64 {
    let m = 10f64.powi(d);
    (v * m).round() / m
}

// USER_HZ: the unit of /proc's utime/stime, fixed at 100 by Linux's ABI on every
// architecture (sysconf(_SC_CLK_TCK) would need libc, and unsafe is forbidden).
const USER_HZ: f64 = 100.0;

/// The fields of `/proc/PID/stat` after the command name (field 3 onwards).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    // Field 3 (state) is a letter: map it to 0 so the rest parse as numbers.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// utime+stime of a process (all its threads, live or exited), in seconds.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let f = stat_fields(&pid.to_string())?;
    // Fields 14 and 15 are at indices 11 and 12 when counting from field 3.
    Some((f[11] + f[12]) as f64 / USER_HZ)
}

/// CPU seconds of every process named `comm` (e.g. `postgres`: the server
/// and all its backends), plus what the root of each tree has reaped from
/// exited children (backends of closed connections), so the difference of two
/// readings counts the work in between.
pub fn processes_cpu_secs(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut procs = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{name}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != comm {
            continue;
        }
        if let Some(f) = stat_fields(&name) {
            // Index 1 is field 4 (ppid).
            procs.push((name.parse::<u64>().unwrap_or(0), f));
        }
    }
    let pids: Vec<u64> = procs.iter().map(|(p, _)| *p).collect();
    let ticks: u64 = procs
        .iter()
        .map(|(_, f)| {
            let own = f[11] + f[12];
            // A root (its parent is not one of them) also carries its reaped children.
            if pids.contains(&f[1]) {
                own
            } else {
                own + f[13] + f[14]
            }
        })
        .sum();
    ticks as f64 / USER_HZ
}

/// utime+stime of this process, in seconds.
pub fn self_cpu_secs() -> f64 {
    process_cpu_secs(std::process::id()).unwrap_or(0.0)
}
