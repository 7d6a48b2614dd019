//! apalis-bench: apalis 1.0 on SQLite or PostgreSQL in bench/jobs.sh's scenarios
//! (issue 3). Each command opens a store (apalis's migrations), runs one
//! scenario in this one process (producer and workers: pin the process), and
//! prints one JSON object per line with the fields celery_bench.py and
//! jobs_load print, for bench/jobs/report.py.
//!
//!   apalis-bench drain   STORE DB --n N [--conc C]
//!       N no-op jobs pushed with `push_all` in chunks of 1,000 (line 1: enqueue),
//!       then one worker drains them (line 2: drain)
//!   apalis-bench enqueue STORE DB --n N [--batch B]
//!       N no-op jobs pushed, B per transaction (`push_all`), or one at a time
//!       with `push` when B is 1 (the default); no worker
//!   apalis-bench latency STORE DB --rate R [--secs S] [--warm W] [--wait T] [--conc C]
//!       open-loop probes at R/s for S seconds after a W-second warm-up
//!   apalis-bench async   STORE DB [--rate R] [--secs S] [--warm W] [--wait T] [--conc C]
//!                        [--burn-ms MS] [--burn-n K] [--burn-conc B]
//!       probes at R/s idle (line 1), then while K burn jobs of MS ms run on
//!       their own worker of concurrency B (line 2)
//!
//! STORE DB: `sqlite PATH` (WAL, synchronous=NORMAL on every measured
//! connection) or `postgres URL` (as the server is configured). Defaults:
//! --conc 64, --secs 10, --warm 1, --wait 60, --rate 100 (async), --burn-ms 20,
//! --burn-n (secs+warm+20)*1000/burn-ms, --burn-conc 2.

mod burn;
mod drain;
mod job;
mod latency;
mod stats;
mod store;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use crate::latency::Window;
use crate::store::{Error, Store};

struct Args {
    cmd: String,
    store: String,
    db: String,
    opts: HashMap<String, String>,
}

impl Args {
    fn parse() -> Result<Args, Error> {
        let a: Vec<String> = std::env::args().skip(1).collect();
        if a.len() < 3 || a.len() % 2 == 0 {
            return Err("usage: apalis-bench drain|enqueue|latency|async sqlite|postgres PATH|URL [--key value]... (see src/main.rs)".into());
        }
        let mut opts = HashMap::new();
        for kv in a[3..].chunks(2) {
            let k = kv[0].strip_prefix("--").ok_or_else(|| format!("expected --key, got {}", kv[0]))?;
            opts.insert(k.to_string(), kv[1].clone());
        }
        Ok(Args { cmd: a[0].clone(), store: a[1].clone(), db: a[2].clone(), opts })
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: Option<T>) -> Result<T, Error> {
        match self.opts.get(key) {
            Some(v) => v.parse().map_err(|_| format!("bad --{key}: {v}").into()),
            None => default.ok_or_else(|| format!("--{key} is required").into()),
        }
    }

    fn window(&self, rate: Option<f64>) -> Result<Window, Error> {
        Ok(Window {
            rate: self.num("rate", rate)?,
            secs: self.num("secs", Some(10.0))?,
            warm: self.num("warm", Some(1.0))?,
            wait: self.num("wait", Some(60.0))?,
        })
    }
}

fn print(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

async fn run(a: Args) -> Result<bool, Error> {
    let store = Arc::new(Store::open(&a.store, &a.db).await?);
    let conc: usize = a.num("conc", Some(64))?;
    match a.cmd.as_str() {
        "drain" => {
            let (enq, drained) = drain::drain(&store, a.num("n", None)?, conc).await?;
            print(&enq);
            print(&drained);
            Ok(drained["results_stored"].as_u64() == drained["n"].as_u64())
        }
        "enqueue" => {
            print(&drain::enqueue(&store, a.num("n", None)?, a.num("batch", Some(1))?).await?);
            Ok(true)
        }
        "latency" => {
            let w = a.window(None)?;
            let _worker = store.spawn_worker("bench-probe", latency::QUEUE, conc, conc.clamp(10, 1000));
            let res = latency::window(&store, 0, &w).await?;
            print(&res);
            Ok(res["missing"] == 0)
        }
        "async" => {
            let w = a.window(Some(100.0))?;
            let ms: u64 = a.num("burn-ms", Some(20))?;
            let b = burn::Burn {
                ms,
                n: a.num("burn-n", Some(((w.secs + w.warm + 20.0) * 1000.0 / ms as f64) as usize))?,
                conc: a.num("burn-conc", Some(2))?,
            };
            let (idle, burnt) = burn::run(&store, &w, conc, &b).await?;
            print(&idle);
            print(&burnt);
            Ok(idle["missing"] == 0 && burnt["missing"] == 0)
        }
        other => Err(format!("unknown command {other}").into()),
    }
}

fn main() {
    let code = match Args::parse() {
        Err(e) => {
            eprintln!("{e}");
            2
        }
        Ok(a) => {
            // One runtime thread per CPU the process may use: 1 when pinned to CPU0.
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            match rt.block_on(run(a)) {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
    };
    // Workers and in-flight burn jobs are not waited for: the figures are out.
    std::process::exit(code);
}
