//! The async scenario: probes at a fixed rate, first idle, then while
//! CPU-burning jobs keep the process's CPU busy. The burn jobs go to a queue of
//! their own with a worker of their own (concurrency `burn_conc`, fetching that
//! many at a time), as Celery's separate burn worker (prefetch 1) and sluice's
//! `--queues default,burn:2` do; the probes keep their worker.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::job::Job;
use crate::latency::{QUEUE, Window, window};
use crate::store::{Error, Store};

pub struct Burn {
    /// Length of one burn job.
    pub ms: u64,
    /// Burn jobs queued before the burn window (enough to outlast it).
    pub n: usize,
    /// Burn jobs run at once.
    pub conc: usize,
}

/// Returns the idle row and the burn row (with `burn_left`, the burn jobs still
/// queued after the window: 0 means CPU0 was not saturated throughout).
pub async fn run(store: &Arc<Store>, w: &Window, conc: usize, b: &Burn) -> Result<(Value, Value), Error> {
    let _probes = store.spawn_worker("bench-probe", QUEUE, conc, conc.clamp(10, 1000));
    let _burners = store.spawn_worker("bench-burn", "burn", b.conc, b.conc);
    let idle = window(store, 10, w).await?;
    let mut sent = 0;
    while sent < b.n {
        let chunk = (b.n - sent).min(1_000);
        store.push_all("burn", vec![Job::Burn(b.ms); chunk]).await?;
        sent += chunk;
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // the burn worker is busy before the window opens
    let mut burn = window(store, 20, w).await?;
    burn["burn_left"] = store.count("burn", "Pending").await?.into();
    Ok((idle, burn))
}
