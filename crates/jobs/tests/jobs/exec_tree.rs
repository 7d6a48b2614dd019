//! `exec` on timeout or cancel kills every process the job started, not
//! only the one it spawned.

use std::time::Duration;

use serde_json::json;
use sluice_jobs::{JobSpec, JobState};

use crate::support::{Harness, eventually};

fn gone(pid: u32) -> bool {
    // Killed and reaped, or a zombie waiting for its parent.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next())
                == Some("Z")
        }
    }
}

#[tokio::test]
async fn a_timed_out_exec_job_takes_its_grandchildren_with_it() {
    let h = Harness::new().await;
    let runner = h.runner(|_| {});
    let pidfile = h.dir.path().join("grandchild");
    // The shell starts a background sleep (a grandchild of the runner),
    // records its pid, and waits.
    let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
    let mut spec = JobSpec::new("exec", json!({"argv": ["sh", "-c", script]}));
    spec.timeout_ms = Some(500);
    spec.max_attempts = Some(1);
    let id = h.client.submit_job(&spec).await.unwrap();
    eventually("the grandchild wrote its pid", || async {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
    })
    .await;
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!gone(pid), "the grandchild runs while the job does");
    h.wait_state(id, JobState::TimedOut).await;
    eventually("the grandchild was killed with the job", || async {
        gone(pid)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    runner.shutdown().await;
}
