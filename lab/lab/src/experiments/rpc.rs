//! Experiment `rpc`: a unary gRPC call on tonic, with and without tracing.
//!
//! The roadmap's last stage is "distributed async with tonic + tracing":
//! calls between services, each side with its spans, joined by an id that
//! travels with the call. Here one process holds both sides on loopback,
//! each on its own runtime (`--workers` threads each): a hand-written
//! `lab.Adder/Add` service (`service`, what `tonic-build` would generate)
//! served by tonic's `Server`, and clients on one `Channel` (one HTTP/2
//! connection) making `--calls` calls, `--concurrency` at a time.
//!
//! Two contenders, interleaved `--runs` times:
//!
//! - `tonic`: no subscriber, so every span and event is a disabled no-op
//!   (in the `console` build: tokio-console's, which then sees its tasks);
//! - `tonic + tracing`: a span per call on the client (`rpc.client`) and on
//!   the server (`rpc.server`, opened by `Server::trace_fn` from the
//!   `x-request-id` metadata the client sent: see `propagate`), an event in
//!   the handler, all formatted by `tracing-subscriber`'s fmt layer into
//!   `io::sink`.
//!
//! Figures: calls per second, call latency p50/p99 (client side, from
//! before the call to its reply), CPU time per call of the whole process
//! (client and server), and ratios to `tonic`. A unit test checks that the
//! server's span of each call carries the id of the client's span.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use clap::Args;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tracing::{Dispatch, Instrument};

use super::Experiment;
use crate::measure::{self, Sample, median};
use crate::report::{Cell, Report, Table};

mod propagate;
mod service;

use propagate::Tracing;
use service::{AdderClient, AdderServer};

/// Options of `sluice-lab run rpc`.
#[derive(Debug, Args)]
pub(crate) struct Rpc {
    /// Calls per run
    #[arg(long, default_value_t = 20_000)]
    calls: u64,
    /// Calls in flight at once, comma-separated: one row per value
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,
    /// Worker threads of the server's runtime, and of the client's
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Interleaved repetitions; rates and CPU are medians, latencies pooled
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// One contender: a server and a client runtime reporting to the same
/// subscriber, and a channel from the client to the server.
struct Rig {
    server: Runtime,
    client: Runtime,
    channel: Channel,
    stop: oneshot::Sender<()>,
    served: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Rig {
    fn start(dispatch: Option<Dispatch>, workers: usize) -> Result<Rig> {
        let server =
            propagate::runtime(workers, dispatch.clone()).context("building the server runtime")?;
        let client =
            propagate::runtime(workers, dispatch).context("building the client runtime")?;
        let listener = server
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .context("binding the server")?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let served = server.spawn(
            Server::builder()
                .trace_fn(propagate::server_span)
                .add_service(AdderServer)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                }),
        );
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?;
        let channel = client
            .block_on(client.spawn(async move { endpoint.connect().await }))?
            .context("connecting to the server")?;
        Ok(Rig {
            server,
            client,
            channel,
            stop,
            served,
        })
    }

    /// `calls` calls, `concurrency` at a time: what the run cost and each
    /// call's latency.
    fn run(&self, calls: u64, concurrency: usize) -> Result<(Sample, Vec<Duration>)> {
        let channel = self.channel.clone();
        let mut latencies = Err(anyhow!("the run did not start"));
        let sample = measure::time(|| {
            latencies = self
                .client
                .block_on(self.client.spawn(drive(channel, calls, concurrency)))
                .map_err(anyhow::Error::from)
                .and_then(|r| r);
        });
        Ok((sample, latencies?))
    }

    /// Stops the server (it finishes open calls) and waits for it, five
    /// seconds at most.
    fn stop(self) -> Result<()> {
        drop(self.channel);
        let _ = self.stop.send(());
        let served = self.served;
        self.server
            // The timer is made inside `block_on`, where the runtime is.
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), served).await })
            .context("the server did not stop within 5 s")?
            .context("the server task")?
            .context("the server")?;
        Ok(())
    }
}

/// Makes `calls` calls from `concurrency` tasks sharing one channel, each
/// call in its client span with its id sent along; checks every sum.
async fn drive(channel: Channel, calls: u64, concurrency: usize) -> Result<Vec<Duration>> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let mut client = AdderClient::new(channel.clone());
        let next = next.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= calls {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let start = Instant::now();
                let sum = client
                    .add(id, 1, id)
                    .instrument(propagate::client_span(id))
                    .await
                    .with_context(|| format!("call {id}"))?;
                latencies.push(start.elapsed());
                ensure!(sum == id + 1, "call {id}: {id} + 1 came back as {sum}");
            }
        });
    }
    let mut all = Vec::with_capacity(calls as usize);
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// One contender's figures at one concurrency.
struct Figures {
    calls_per_sec: f64,
    p50: Duration,
    p99: Duration,
    cpu_per_call: Duration,
}

impl Experiment for Rpc {
    const NAME: &'static str = "rpc";
    const ABOUT: &'static str = "a unary gRPC call on tonic with and without tracing (spans on both sides joined by a request id in the metadata): calls/s, p50/p99, CPU per call";

    fn run(self) -> Result<Report> {
        ensure!(self.calls > 0, "--calls must be at least 1");
        ensure!(self.workers > 0, "--workers must be at least 1");
        ensure!(self.runs > 0, "--runs must be at least 1");
        ensure!(
            !self.concurrency.is_empty() && self.concurrency.iter().all(|&c| c > 0),
            "--concurrency takes numbers of at least 1"
        );
        let contenders = [Tracing::Off, Tracing::Fmt];
        let rigs = contenders
            .iter()
            .map(|t| Rig::start(t.dispatch(), self.workers))
            .collect::<Result<Vec<_>>>()?;
        // Warm-up: connections, buffers and the allocator's pools.
        for rig in &rigs {
            rig.run(self.calls.min(2_000), 8)?;
        }
        let mut rows = Vec::new();
        for &concurrency in &self.concurrency {
            let mut samples: Vec<Vec<Sample>> = rigs.iter().map(|_| Vec::new()).collect();
            let mut latencies: Vec<Vec<Duration>> = rigs.iter().map(|_| Vec::new()).collect();
            for _ in 0..self.runs {
                for (i, rig) in rigs.iter().enumerate() {
                    let (sample, l) = rig.run(self.calls, concurrency)?;
                    samples[i].push(sample);
                    latencies[i].extend(l);
                }
            }
            let figures: Vec<Figures> = samples
                .into_iter()
                .zip(latencies)
                .map(|(s, mut l)| {
                    l.sort_unstable();
                    let wall = median(s.iter().map(|x| x.wall).collect());
                    let cpu = median(s.iter().map(|x| x.cpu).collect());
                    Figures {
                        calls_per_sec: self.calls as f64 / wall.as_secs_f64(),
                        p50: quantile(&l, 0.5),
                        p99: quantile(&l, 0.99),
                        cpu_per_call: cpu / self.calls as u32,
                    }
                })
                .collect();
            let base = &figures[0];
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            for (t, f) in contenders.iter().zip(&figures) {
                rows.push(vec![
                    Cell::Num(concurrency as f64, 0),
                    Cell::Text(t.name().to_owned()),
                    Cell::Num(f.calls_per_sec, 0),
                    Cell::Num(f.calls_per_sec / base.calls_per_sec, 2),
                    Cell::Num(us(f.p50), 1),
                    Cell::Num(us(f.p99), 1),
                    Cell::Num(us(f.cpu_per_call), 1),
                    Cell::Num(
                        f.cpu_per_call.as_secs_f64() / base.cpu_per_call.as_secs_f64(),
                        2,
                    ),
                ]);
            }
        }
        for rig in rigs {
            rig.stop()?;
        }
        Ok(Report {
            experiment: Self::NAME,
            settings: vec![
                ("calls", self.calls.to_string()),
                (
                    "concurrency",
                    self.concurrency
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                ("workers", self.workers.to_string()),
                ("runs", self.runs.to_string()),
            ],
            tables: vec![Table {
                title: "rpc: unary gRPC calls on one HTTP/2 connection, tracing off vs on".to_owned(),
                header: vec![
                    "in flight",
                    "contender",
                    "calls/s",
                    "x tonic",
                    "p50 µs",
                    "p99 µs",
                    "CPU µs/call",
                    "CPU x tonic",
                ],
                rows,
            }],
            notes: vec![
                "tonic: no subscriber (spans and events disabled). tonic + tracing: a client span and a server span per call, joined by request.id sent in the x-request-id metadata, and one event in the handler, formatted by tracing-subscriber's fmt layer into io::sink.".to_owned(),
                "calls/s and CPU: medians over runs; CPU is the whole process (client and server runtimes). p50/p99: pooled over runs, measured by the caller.".to_owned(),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::fmt;
    use std::sync::Mutex;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing::{Subscriber, info_span};
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};

    use super::*;

    /// A span as recorded: its name and its `request.id`, if any.
    type Seen = (&'static str, Option<u64>);

    /// Records each new span's name and `request.id`.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Seen>>>);

    struct RequestId(Option<u64>);

    impl Visit for RequestId {
        fn record_u64(&mut self, field: &Field, value: u64) {
            if field.name() == "request.id" {
                self.0 = Some(value);
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
    }

    impl<S: Subscriber> Layer<S> for Capture {
        fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: LayerContext<'_, S>) {
            let mut id = RequestId(None);
            attrs.record(&mut id);
            self.0.lock().unwrap().push((attrs.metadata().name(), id.0));
        }
    }

    impl Capture {
        fn ids(&self, span: &str) -> BTreeSet<u64> {
            let spans = self.0.lock().unwrap();
            let named: Vec<_> = spans.iter().filter(|(n, _)| *n == span).collect();
            assert!(!named.is_empty(), "no {span} span recorded");
            named
                .iter()
                .map(|(_, id)| id.unwrap_or_else(|| panic!("a {span} span without request.id")))
                .collect()
        }
    }

    #[test]
    fn the_server_span_carries_the_callers_request_id() {
        let capture = Capture::default();
        let dispatch = Some(Dispatch::new(
            tracing_subscriber::registry().with(capture.clone()),
        ));
        let rig = Rig::start(dispatch, 1).unwrap();
        let (_, latencies) = rig.run(40, 4).unwrap();
        rig.stop().unwrap();
        assert_eq!(latencies.len(), 40);
        let expected: BTreeSet<u64> = (0..40).collect();
        assert_eq!(capture.ids("rpc.client"), expected);
        assert_eq!(capture.ids("rpc.server"), expected);
    }

    #[test]
    fn without_a_subscriber_no_span_is_recorded_and_calls_still_add_up() {
        let capture = Capture::default();
        let rig = Rig::start(Tracing::Off.dispatch(), 1).unwrap();
        // The capture is the default only on this thread, not the rig's.
        let _guard = tracing::dispatcher::set_default(&Dispatch::new(
            tracing_subscriber::registry().with(capture.clone()),
        ));
        let (_, latencies) = rig.run(100, 8).unwrap();
        rig.stop().unwrap();
        assert_eq!(latencies.len(), 100);
        drop(info_span!("rpc.test", request.id = 7_u64));
        assert_eq!(capture.ids("rpc.test"), BTreeSet::from([7]));
        let spans = capture.0.lock().unwrap();
        assert!(
            !spans
                .iter()
                .any(|(n, _)| *n == "rpc.client" || *n == "rpc.server")
        );
    }

    #[test]
    fn an_unknown_method_is_unimplemented() {
        let rig = Rig::start(Tracing::Off.dispatch(), 1).unwrap();
        let channel = rig.channel.clone();
        let status = rig
            .client
            .block_on(rig.client.spawn(async move {
                let mut grpc = tonic::client::Grpc::new(channel);
                grpc.ready().await.unwrap();
                grpc.unary::<_, service::AddReply, _>(
                    tonic::Request::new(service::AddRequest { a: 1, b: 2 }),
                    http::uri::PathAndQuery::from_static("/lab.Adder/Subtract"),
                    tonic_prost::ProstCodec::default(),
                )
                .await
            }))
            .unwrap()
            .unwrap_err();
        rig.stop().unwrap();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    }

    #[test]
    fn the_experiment_runs_small() {
        let report = Rpc {
            calls: 200,
            concurrency: vec![1, 8],
            workers: 1,
            runs: 1,
        }
        .run()
        .unwrap();
        assert_eq!(report.tables[0].rows.len(), 4);
    }
}
