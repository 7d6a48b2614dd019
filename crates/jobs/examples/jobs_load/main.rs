//! Load generator for the sluice side of `bench/jobs.sh` (issue 3).
//!
//! Talks to a running `sluice server` over its REST API and prints one JSON
//! object per command on stdout, in the shape of `bench/jobs/celery_bench.py`'s
//! rows, so `bench/jobs/report.py` can set the two side by side. Written in Rust
//! because a Python client would be the bottleneck at sluice's rates.
//!
//! ```text
//! jobs_load enqueue    --url U --n N [--batch B] [--conc C] [--ids FILE]
//! jobs_load drain-wait --url U --ids FILE --n N [--pid PID] [--timeout S]
//! jobs_load latency    --url U --rate R --secs S [--warm W] [--wait S]
//! jobs_load burn-fill  --url U --n K --ms MS [--queue burn] [--ids FILE]
//! jobs_load queued     --url U --queue Q
//! ```
//!
//! Build with `cargo build --release -p sluice-jobs --example jobs_load`.

mod args;
mod burn;
mod drain;
mod enqueue;
mod http;
mod latency;
mod stats;

use std::process::ExitCode;

use serde_json::json;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let Some(cmd) = argv.next() else {
        eprintln!("{}", args::USAGE);
        return ExitCode::from(2);
    };
    let opts = match args::Opts::parse(argv) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("jobs_load {cmd}: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let res = match cmd.as_str() {
        "enqueue" => enqueue::run(&opts).await,
        "drain-wait" => drain::run(&opts).await,
        "latency" => latency::run(&opts).await,
        "burn-fill" => burn::fill(&opts).await,
        "queued" => burn::queued(&opts).await,
        "-h" | "--help" | "help" => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("jobs_load: unknown command `{other}`\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let res = res.and_then(|r| opts.check_all_used().map(|()| r));
    match res {
        Ok((value, ok)) => {
            println!("{value}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            // Still one JSON object on stdout, so the script can log what went wrong.
            println!("{}", json!({ "error": e.to_string() }));
            eprintln!("jobs_load {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
