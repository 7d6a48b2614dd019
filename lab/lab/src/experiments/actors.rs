//! Experiment `actors`: the same counter actor hand-written on tokio
//! ([`crate::actor`]: bounded `mpsc` mailbox, `oneshot` replies, a
//! supervisor task awaiting the `JoinHandle`) and on `ractor` (its
//! supervision, `call`, and a credit gate for a bounded mailbox: see
//! `on_ractor`).
//!
//! Figures, each on one runtime of `--workers` threads, repeated `--runs`
//! times interleaved (median):
//!
//! - tell: `--messages` adds sent one after another, then one ask to make
//!   sure all were handled; messages per second. Hand-written: `tell`
//!   (bounded, waits for room); ractor: `cast` (unbounded) and `cast`
//!   through the credit gate (bounded).
//! - ask: `--asks` requests one at a time, each latency; p50 and p99.
//! - restart: `--restarts` times, a message that panics in the handler,
//!   then an ask; the time from the panic's send to the answer of the next
//!   incarnation; p50 and p99.
//! - overload: the actor is held busy while `2 x --capacity` messages are
//!   offered without waiting; accepted and refused per implementation.

use std::sync::Once;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Args;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Experiment;
use crate::actor::{self, Address, Reply, TellError};
use crate::measure::median;
use crate::report::{Cell, Report, Table};

mod on_ractor;

/// The payload of the panics this experiment causes on purpose; the panic
/// hook keeps them off stderr.
pub(crate) const INDUCED_PANIC: &str = "induced panic (actors experiment)";

/// Options of `sluice-lab run actors`.
#[derive(Debug, Args)]
pub(crate) struct Actors {
    /// Messages per tell run
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Requests per ask run
    #[arg(long, default_value_t = 20_000)]
    asks: usize,
    /// Restarts per restart run
    #[arg(long, default_value_t = 200)]
    restarts: usize,
    /// Mailbox capacity (hand-written) and credits (ractor)
    #[arg(long, default_value_t = 1024)]
    capacity: usize,
    /// Worker threads of the tokio runtime
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Interleaved repetitions; figures are medians
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// The hand-written counter's messages.
#[derive(Debug)]
pub(crate) enum Msg {
    Add(u64),
    Get(Reply<u64>),
    /// Panics in the handler.
    Panic,
    /// Says it started, then waits for the release (keeps the actor busy).
    Hold(oneshot::Sender<()>, oneshot::Receiver<()>),
}

/// The hand-written counter: the sum of its adds.
#[derive(Default)]
pub(crate) struct Counter {
    sum: u64,
}

impl actor::Actor for Counter {
    type Msg = Msg;

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Add(n) => self.sum += n,
            Msg::Get(reply) => {
                // The asker may have given up: nothing to do then.
                let _ = reply.send(self.sum);
            }
            Msg::Panic => panic!("{INDUCED_PANIC}"),
            Msg::Hold(started, release) => {
                let _ = started.send(());
                let _ = release.await;
            }
        }
    }
}

/// Keeps this experiment's own panics quiet; every other panic is reported
/// by the hook that was there before.
fn quiet_induced_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied());
            if payload != Some(INDUCED_PANIC) {
                previous(info);
            }
        }));
    });
}

fn spawn_counter(capacity: usize) -> (Address<Msg>, actor::Supervised) {
    actor::spawn(Counter::default, capacity, u64::MAX)
}

/// What one run of each measurement found.
#[derive(Debug, Clone, Default)]
struct Figures {
    tell_per_sec: f64,
    tell_unbounded_per_sec: f64,
    ask: Vec<Duration>,
    restart: Vec<Duration>,
}

fn quantile(l: &[Duration], q: f64) -> Duration {
    let mut l = l.to_vec();
    if l.is_empty() {
        return Duration::ZERO;
    }
    l.sort_unstable();
    let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
    l[i]
}

async fn hand_written(o: &Actors) -> Result<Figures> {
    let (addr, sup) = spawn_counter(o.capacity);
    let t = Instant::now();
    for _ in 0..o.messages {
        addr.tell(Msg::Add(1))
            .await
            .map_err(|_| anyhow::anyhow!("the counter stopped"))?;
    }
    let sum = addr.ask(Msg::Get).await?;
    let tell = t.elapsed();
    ensure!(
        sum == o.messages,
        "hand-written: sum {sum}, sent {}",
        o.messages
    );

    let mut ask = Vec::with_capacity(o.asks);
    for _ in 0..o.asks {
        let t = Instant::now();
        addr.ask(Msg::Get).await?;
        ask.push(t.elapsed());
    }

    let mut restart = Vec::with_capacity(o.restarts);
    for _ in 0..o.restarts {
        let t = Instant::now();
        addr.tell(Msg::Panic)
            .await
            .map_err(|_| anyhow::anyhow!("the counter stopped"))?;
        // Queued behind the panic, so the next incarnation answers it.
        let sum: Result<u64, actor::AskError> = addr.ask(Msg::Get).await;
        let sum = sum.context("asking the restarted counter")?;
        restart.push(t.elapsed());
        ensure!(sum == 0, "a restarted counter starts from 0, not {sum}");
    }
    ensure!(sup.restarts() == o.restarts as u64);
    // The last address gone, the actor drains its mailbox and stops.
    drop(addr);
    let exit = sup.join().await;
    ensure!(
        exit == actor::Exit::Stopped,
        "the counter ended with {exit:?}"
    );
    Ok(Figures {
        tell_per_sec: o.messages as f64 / tell.as_secs_f64(),
        tell_unbounded_per_sec: f64::NAN,
        ask,
        restart,
    })
}

async fn on_ractor(o: &Actors) -> Result<Figures> {
    let mut b = on_ractor::Bounded::start(o.capacity).await?;
    let per_sec = |n: u64, d: Duration| n as f64 / d.as_secs_f64();

    let t = Instant::now();
    for _ in 0..o.messages {
        b.tell(on_ractor::Msg::Add(1))
            .await
            .map_err(|e| anyhow::anyhow!("ractor tell: {e:?}"))?;
    }
    let sum = b.ask().await.context("ractor ask")?;
    let tell = t.elapsed();
    ensure!(sum == o.messages, "ractor: sum {sum}, sent {}", o.messages);

    let actor = b.actor();
    let t = Instant::now();
    for _ in 0..o.messages {
        actor
            .cast(on_ractor::Msg::Add(1).into())
            .map_err(|_| anyhow::anyhow!("ractor cast: the counter stopped"))?;
    }
    let sum = b.ask().await.context("ractor ask")?;
    let unbounded = t.elapsed();
    ensure!(sum == 2 * o.messages, "ractor: sum {sum}");

    let mut ask = Vec::with_capacity(o.asks);
    for _ in 0..o.asks {
        let t = Instant::now();
        let r = actor
            .call(|reply| on_ractor::Msg::Get(reply).into(), None)
            .await;
        ensure!(
            matches!(r, Ok(ractor::rpc::CallResult::Success(_))),
            "ractor call failed"
        );
        ask.push(t.elapsed());
    }

    let mut restart = Vec::with_capacity(o.restarts);
    for _ in 0..o.restarts {
        let t = Instant::now();
        b.actor()
            .cast(on_ractor::Msg::Panic.into())
            .map_err(|_| anyhow::anyhow!("ractor cast: the counter stopped"))?;
        // ractor's mailbox dies with the actor: wait for the new one's address.
        b.next_incarnation().await;
        let sum = b.ask().await.context("ractor ask after a restart")?;
        restart.push(t.elapsed());
        ensure!(sum == 0, "a restarted counter starts from 0, not {sum}");
    }
    ensure!(b.restarts() == o.restarts as u64);
    Ok(Figures {
        tell_per_sec: per_sec(o.messages, tell),
        tell_unbounded_per_sec: per_sec(o.messages, unbounded),
        ask,
        restart,
    })
}

/// Offers `offered` messages without waiting while the actor is held busy;
/// returns how many were accepted (the rest were refused), after checking
/// that the actor, released, handled exactly the accepted ones.
pub(crate) async fn overload_hand_written(capacity: usize, offered: usize) -> Result<usize> {
    let (addr, _sup) = spawn_counter(capacity);
    let (started, release) = hold_messages();
    addr.tell(Msg::Hold(started.0, release.1))
        .await
        .map_err(|_| anyhow::anyhow!("the counter stopped"))?;
    started.1.await?;
    let mut accepted = 0;
    for _ in 0..offered {
        match addr.try_tell(Msg::Add(1)) {
            Ok(()) => accepted += 1,
            Err(TellError::Full(_)) => {}
            Err(TellError::Stopped(_)) => anyhow::bail!("the counter stopped"),
        }
    }
    let _ = release.0.send(());
    let sum = addr.ask(Msg::Get).await?;
    ensure!(sum == accepted as u64, "handled {sum}, accepted {accepted}");
    Ok(accepted)
}

/// [`overload_hand_written`] for ractor: through the credit gate with
/// `bounded`, or with plain `cast` (its unbounded mailbox) without.
pub(crate) async fn overload_ractor(
    capacity: usize,
    offered: usize,
    bounded: bool,
) -> Result<usize> {
    let b = on_ractor::Bounded::start(capacity).await?;
    let (started, release) = hold_messages();
    // The hold itself goes around the gate, so all credits are free.
    b.actor()
        .cast(on_ractor::Msg::Hold(started.0, release.1).into())
        .map_err(|_| anyhow::anyhow!("the counter stopped"))?;
    started.1.await?;
    let mut accepted = 0;
    for _ in 0..offered {
        let r = if bounded {
            b.try_tell(on_ractor::Msg::Add(1))
        } else {
            b.actor()
                .cast(on_ractor::Msg::Add(1).into())
                .map_err(|_| on_ractor::Refused::Stopped)
        };
        match r {
            Ok(()) => accepted += 1,
            Err(on_ractor::Refused::Full) => {}
            Err(on_ractor::Refused::Stopped) => anyhow::bail!("the counter stopped"),
        }
    }
    let _ = release.0.send(());
    let sum = b.ask().await.context("ractor ask")?;
    ensure!(sum == accepted as u64, "handled {sum}, accepted {accepted}");
    Ok(accepted)
}

type Pair = (oneshot::Sender<()>, oneshot::Receiver<()>);

/// (started: the actor says it is busy; release: the test lets it go).
fn hold_messages() -> (Pair, Pair) {
    (oneshot::channel(), oneshot::channel())
}

impl Experiment for Actors {
    const NAME: &'static str = "actors";
    const ABOUT: &'static str = "a counter actor hand-written on tokio vs ractor: tell msgs/s, ask p50/p99, restart after a panic, a bounded mailbox under overload";

    fn run(self) -> Result<Report> {
        ensure!(self.capacity > 0, "--capacity must be at least 1");
        ensure!(self.workers > 0, "--workers must be at least 1");
        ensure!(self.runs > 0, "--runs must be at least 1");
        ensure!(
            self.messages > 0 && self.asks > 0 && self.restarts > 0,
            "--messages, --asks and --restarts must be at least 1"
        );
        quiet_induced_panics();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.workers)
            .enable_all()
            .build()
            .context("building the tokio runtime")?;
        let mut hand = Vec::new();
        let mut ract = Vec::new();
        for _ in 0..self.runs {
            hand.push(rt.block_on(hand_written(&self))?);
            ract.push(rt.block_on(on_ractor(&self))?);
        }
        let offered = 2 * self.capacity;
        let overload = [
            (
                "hand-written try_tell",
                rt.block_on(overload_hand_written(self.capacity, offered))?,
            ),
            (
                "ractor + credits try_tell",
                rt.block_on(overload_ractor(self.capacity, offered, true))?,
            ),
            (
                "ractor cast (unbounded)",
                rt.block_on(overload_ractor(self.capacity, offered, false))?,
            ),
        ];
        drop(rt);

        let med = |f: &dyn Fn(&Figures) -> f64, runs: &[Figures]| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[(v.len() - 1) / 2]
        };
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let pooled = |runs: &[Figures], pick: fn(&Figures) -> &Vec<Duration>| {
            runs.iter()
                .flat_map(|f| pick(f).iter().copied())
                .collect::<Vec<_>>()
        };
        let (h_ask, r_ask) = (pooled(&hand, |f| &f.ask), pooled(&ract, |f| &f.ask));
        let (h_rs, r_rs) = (pooled(&hand, |f| &f.restart), pooled(&ract, |f| &f.restart));
        let figures: Vec<(&str, f64, f64)> = vec![
            (
                "tell, bounded (msgs/s)",
                med(&|f| f.tell_per_sec, &hand),
                med(&|f| f.tell_per_sec, &ract),
            ),
            (
                "tell, unbounded (msgs/s)",
                f64::NAN,
                med(&|f| f.tell_unbounded_per_sec, &ract),
            ),
            (
                "ask p50 (µs)",
                us(median(h_ask.clone())),
                us(median(r_ask.clone())),
            ),
            (
                "ask p99 (µs)",
                us(quantile(&h_ask, 0.99)),
                us(quantile(&r_ask, 0.99)),
            ),
            (
                "restart p50 (µs)",
                us(median(h_rs.clone())),
                us(median(r_rs.clone())),
            ),
            (
                "restart p99 (µs)",
                us(quantile(&h_rs, 0.99)),
                us(quantile(&r_rs, 0.99)),
            ),
        ];
        let rows = figures
            .into_iter()
            .map(|(name, h, r)| {
                vec![
                    Cell::Text(name.to_owned()),
                    Cell::Num(h, 1),
                    Cell::Num(r, 1),
                    Cell::Num(if h > 0.0 { r / h } else { f64::NAN }, 2),
                ]
            })
            .collect();
        let overload_rows = overload
            .iter()
            .map(|(name, accepted)| {
                vec![
                    Cell::Text((*name).to_owned()),
                    Cell::Num(offered as f64, 0),
                    Cell::Num(*accepted as f64, 0),
                    Cell::Num((offered - accepted) as f64, 0),
                ]
            })
            .collect();
        Ok(Report {
            experiment: Self::NAME,
            settings: vec![
                ("messages", self.messages.to_string()),
                ("asks", self.asks.to_string()),
                ("restarts", self.restarts.to_string()),
                ("capacity", self.capacity.to_string()),
                ("workers", self.workers.to_string()),
                ("runs", self.runs.to_string()),
            ],
            tables: vec![
                Table {
                    title: "actors: hand-written (tokio mpsc + oneshot + JoinHandle supervisor) vs ractor".to_owned(),
                    header: vec!["figure", "hand-written", "ractor", "ractor x hand"],
                    rows,
                },
                Table {
                    title: format!("overload: {offered} messages offered without waiting while the actor is busy"),
                    header: vec!["mailbox", "offered", "accepted", "refused"],
                    rows: overload_rows,
                },
            ],
            notes: vec![
                "tell: median over runs. ask and restart: quantiles over all runs' samples. ractor's bounded tell goes through a credit Semaphore (ractor has no bounded mailbox).".to_owned(),
                "restart: from sending the message that panics to the answer of an ask served by the next incarnation; for ractor this includes waiting for the supervisor to publish the new ActorRef.".to_owned(),
                "overload: the hand-written mailbox holds `capacity` queued messages besides the one being handled; the credit gate counts the one being handled too (it was sent around the gate here, so both accept `capacity`).".to_owned(),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        quiet_induced_panics();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn hand_written_request_reply_answers() {
        rt().block_on(async {
            let (addr, _sup) = spawn_counter(8);
            addr.tell(Msg::Add(3)).await.unwrap();
            addr.tell(Msg::Add(4)).await.unwrap();
            assert_eq!(addr.ask(Msg::Get).await, Ok(7));
        });
    }

    #[test]
    fn hand_written_restarts_after_a_panic_and_keeps_its_mailbox() {
        rt().block_on(async {
            let (addr, sup) = spawn_counter(8);
            addr.tell(Msg::Add(5)).await.unwrap();
            addr.tell(Msg::Panic).await.unwrap();
            // Queued behind the panic: handled by the next incarnation, from 0.
            addr.tell(Msg::Add(2)).await.unwrap();
            assert_eq!(addr.ask(Msg::Get).await, Ok(2));
            assert_eq!(sup.restarts(), 1);
        });
    }

    #[test]
    fn hand_written_supervisor_gives_up_after_its_limit() {
        rt().block_on(async {
            let (addr, sup) = actor::spawn(Counter::default, 8, 1);
            addr.tell(Msg::Panic).await.unwrap();
            addr.tell(Msg::Panic).await.unwrap();
            assert_eq!(sup.join().await, actor::Exit::GaveUp { restarts: 1 });
            assert!(matches!(
                addr.tell(Msg::Add(1)).await,
                Err(TellError::Stopped(Msg::Add(1)))
            ));
            assert_eq!(addr.ask(Msg::Get).await, Err(actor::AskError::Stopped));
        });
    }

    #[test]
    fn hand_written_stops_when_every_address_is_dropped() {
        rt().block_on(async {
            let (addr, sup) = spawn_counter(8);
            addr.tell(Msg::Add(1)).await.unwrap();
            drop(addr);
            assert_eq!(sup.join().await, actor::Exit::Stopped);
        });
    }

    #[test]
    fn hand_written_mailbox_refuses_when_full_and_tell_waits() {
        rt().block_on(async {
            let (addr, _sup) = spawn_counter(2);
            let (started, release) = hold_messages();
            addr.tell(Msg::Hold(started.0, release.1)).await.unwrap();
            started.1.await.unwrap();
            addr.try_tell(Msg::Add(1)).unwrap();
            addr.try_tell(Msg::Add(1)).unwrap();
            assert!(matches!(
                addr.try_tell(Msg::Add(1)),
                Err(TellError::Full(Msg::Add(1)))
            ));
            // A waiting tell cannot finish while the actor is held.
            let waiting = {
                let addr = addr.clone();
                tokio::spawn(async move { addr.tell(Msg::Add(10)).await.is_ok() })
            };
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            assert!(!waiting.is_finished());
            release.0.send(()).unwrap();
            assert!(waiting.await.unwrap());
            assert_eq!(addr.ask(Msg::Get).await, Ok(12));
        });
    }

    #[test]
    fn ractor_request_reply_answers() {
        rt().block_on(async {
            let b = on_ractor::Bounded::start(8).await.unwrap();
            b.tell(on_ractor::Msg::Add(3)).await.unwrap();
            b.tell(on_ractor::Msg::Add(4)).await.unwrap();
            assert_eq!(b.ask().await, Some(7));
        });
    }

    #[test]
    fn ractor_supervisor_restarts_a_panicking_counter() {
        rt().block_on(async {
            let mut b = on_ractor::Bounded::start(8).await.unwrap();
            b.tell(on_ractor::Msg::Add(5)).await.unwrap();
            let first = b.actor().get_id();
            b.tell(on_ractor::Msg::Panic).await.unwrap();
            b.next_incarnation().await;
            assert_ne!(b.actor().get_id(), first);
            assert_eq!(b.ask().await, Some(0));
            assert_eq!(b.restarts(), 1);
        });
    }

    #[test]
    fn ractor_credit_gate_refuses_when_full_and_tell_waits() {
        rt().block_on(async {
            let b = on_ractor::Bounded::start(2).await.unwrap();
            let (started, release) = hold_messages();
            // Through the gate: the held message keeps its credit while handled.
            b.tell(on_ractor::Msg::Hold(started.0, release.1))
                .await
                .unwrap();
            started.1.await.unwrap();
            b.try_tell(on_ractor::Msg::Add(1)).unwrap();
            assert_eq!(
                b.try_tell(on_ractor::Msg::Add(1)),
                Err(on_ractor::Refused::Full)
            );
            let b = std::sync::Arc::new(b);
            let waiting = {
                let b = b.clone();
                tokio::spawn(async move { b.tell(on_ractor::Msg::Add(10)).await.is_ok() })
            };
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            assert!(!waiting.is_finished());
            release.0.send(()).unwrap();
            assert!(waiting.await.unwrap());
            assert_eq!(b.ask().await, Some(11));
        });
    }

    #[test]
    fn overload_bounds_hold_and_unbounded_takes_everything() {
        rt().block_on(async {
            assert_eq!(overload_hand_written(4, 20).await.unwrap(), 4);
            assert_eq!(overload_ractor(4, 20, true).await.unwrap(), 4);
            assert_eq!(overload_ractor(4, 20, false).await.unwrap(), 20);
        });
    }

    #[test]
    fn the_experiment_runs_small() {
        let report = Actors {
            messages: 500,
            asks: 50,
            restarts: 3,
            capacity: 16,
            workers: 2,
            runs: 1,
        }
        .run()
        .unwrap();
        assert_eq!(report.tables[0].rows.len(), 6);
        assert_eq!(report.tables[1].rows.len(), 3);
    }
}
