//! Registering your own job kinds: one async (I/O-shaped) and one
//! CPU-bound, next to the built-ins, then running a small batch where the
//! CPU job depends on the async one.
//!
//! Run with `cargo run -p sluice-jobs --example custom_kind`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_jobs::kinds::BuiltinOptions;
use sluice_jobs::{
    AsyncKind, BatchSpec, Client, CpuContext, CpuKind, JobContext, JobError, JobSpec, KindOptions,
    Registry, Runner, RunnerConfig, SqliteConfig, SqliteStore, Store,
};

/// An async kind: waits a little, as a call to a slow service would.
struct Greet;

#[derive(Deserialize)]
struct GreetArgs {
    name: String,
}

impl AsyncKind for Greet {
    type Args = GreetArgs;

    async fn run(&self, args: GreetArgs, ctx: JobContext) -> Result<Value, JobError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        ctx.set_progress(1.0);
        Ok(json!({ "greeting": format!("hello, {}", args.name) }))
    }
}

/// A CPU-bound kind: counts primes below `limit` on the rayon pool,
/// checking its cancel flag so a timeout can stop it.
struct CountPrimes;

#[derive(Deserialize)]
struct CountPrimesArgs {
    limit: u64,
}

impl CpuKind for CountPrimes {
    type Args = CountPrimesArgs;

    fn check(&self, args: &CountPrimesArgs) -> Result<(), sluice_jobs::kinds::ArgsError> {
        if args.limit > 50_000_000 {
            return Err(sluice_jobs::kinds::ArgsError::new(
                "limit",
                "at most 50,000,000",
            ));
        }
        Ok(())
    }

    fn run(&self, args: CountPrimesArgs, ctx: &CpuContext) -> Result<Value, JobError> {
        let mut count = 0u64;
        for n in 2..args.limit {
            if n % 10_000 == 0 {
                if ctx.is_cancelled() {
                    return Err(JobError::retryable("cancelled"));
                }
                ctx.set_progress(n as f64 / args.limit as f64);
            }
            if (2..).take_while(|d| d * d <= n).all(|d| n % d != 0) {
                count += 1;
            }
        }
        Ok(json!({ "primes": count }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("sluice-example-{}", std::process::id()));
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::at(dir.join("sluice.db"))).await?);

    let mut registry = Registry::with_builtins(BuiltinOptions::default());
    registry.register_async("greet", Greet, KindOptions::default());
    registry.register_cpu(
        "count_primes",
        CountPrimes,
        KindOptions {
            timeout: Duration::from_secs(30),
            ..KindOptions::default()
        },
    );
    let registry = Arc::new(registry);

    let runner = Runner::start(store.clone(), registry.clone(), RunnerConfig::default())?;
    let client = Client::new(store, registry);

    let mut primes = JobSpec::new("count_primes", json!({ "limit": 200_000 }));
    primes.depends_on = vec![0];
    let batch = BatchSpec {
        name: Some("example".into()),
        jobs: vec![JobSpec::new("greet", json!({ "name": "sluice" })), primes],
        ..Default::default()
    };
    let submitted = client.submit_batch(&batch).await?;
    let batch_id = submitted.batch_id.ok_or("no batch id")?;

    loop {
        let b = client.batch(batch_id).await?.ok_or("batch vanished")?;
        println!("batch {}: {:?} {:.0}%", b.id, b.state, b.progress * 100.0);
        if b.finished_at.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for job in &submitted.jobs {
        let j = client.job(job.id).await?.ok_or("job vanished")?;
        println!(
            "{} {}: {} {}",
            j.kind,
            j.id,
            j.state,
            j.result.unwrap_or_default()
        );
    }
    runner.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
