//! Experiment `select`: cancellation safety in `tokio::select!`, counted.
//!
//! `select!` polls its branches and, when one completes, drops the others.
//! A dropped future that had already taken something (popped a message,
//! moved a value into a `send`) loses it. Each pattern here moves `--messages`
//! messages through an mpsc channel while a 1 ms interval races it in the
//! same `select!`, and counts what arrived:
//!
//! - `recv-then-await` (not cancel safe): a receive helper that pops a
//!   message and then awaits again (reading the rest of a frame) before
//!   returning it; when the tick wins during the second await, the popped
//!   message is dropped with the future.
//! - `recv-pinned` (safe): the same helper, but its future is created once,
//!   pinned outside the loop and polled by reference, so losing the race
//!   only postpones it; a new one is made only after it completes.
//! - `recv-branch` (safe): `Receiver::recv`, which is cancel safe, as the
//!   branch; the slow second step runs in the branch body, after `select!`
//!   has chosen it.
//! - `send-value` (not cancel safe): `tx.send(next())` as a branch on a full
//!   channel; the value is taken before the send waits, and dropped with it.
//! - `send-reserve` (safe): `tx.reserve()` as the branch; the value is taken
//!   only once a slot is held, so a lost race costs nothing.
//!
//! A second table shows `tokio::time::timeout` on an operation slower than
//! its deadline: it returns `Elapsed` at the deadline and the operation's
//! future is dropped, giving back the semaphore permit it held.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{MissedTickBehavior, interval, sleep, timeout};

use super::Experiment;
use crate::report::{Cell, Report, Table};

/// Options of `sluice-lab run select`.
#[derive(Debug, Args)]
pub(crate) struct Select {
    /// Messages each pattern moves through its channel
    #[arg(long, default_value_t = 500)]
    messages: u64,
    /// How long the slow second step of a receive (or the consumer per message) takes
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    step: Duration,
    /// Period of the interval that races each pattern in `select!`
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    tick: Duration,
    /// Deadline of the timeout demonstration
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    deadline: Duration,
}

/// One way of writing the `select!` loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    RecvThenAwait,
    RecvPinned,
    RecvBranch,
    SendValue,
    SendReserve,
}

impl Pattern {
    pub(crate) const ALL: [Pattern; 5] = [
        Pattern::RecvThenAwait,
        Pattern::RecvPinned,
        Pattern::RecvBranch,
        Pattern::SendValue,
        Pattern::SendReserve,
    ];

    fn name(self) -> &'static str {
        match self {
            Pattern::RecvThenAwait => "recv-then-await",
            Pattern::RecvPinned => "recv-pinned",
            Pattern::RecvBranch => "recv-branch",
            Pattern::SendValue => "send-value",
            Pattern::SendReserve => "send-reserve",
        }
    }

    /// Whether the pattern is cancel safe (and so must lose nothing).
    pub(crate) fn cancel_safe(self) -> bool {
        !matches!(self, Pattern::RecvThenAwait | Pattern::SendValue)
    }
}

/// What one pattern's run counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    /// Times the racing interval won a `select!`.
    pub(crate) ticks: u64,
}

impl Outcome {
    pub(crate) fn lost(&self) -> u64 {
        self.sent - self.received
    }
}

/// Pops a message, then awaits again before returning it: the shape of a
/// frame read in two steps. Not cancel safe: dropped after the pop, the
/// message goes with it.
async fn recv_then_await(rx: &mut mpsc::Receiver<u64>, step: Duration) -> Option<u64> {
    let v = rx.recv().await?;
    sleep(step).await;
    Some(v)
}

/// [`recv_then_await`] owning its receiver, so a new future can replace a
/// finished one in a pinned slot.
async fn recv_then_await_owned(
    mut rx: mpsc::Receiver<u64>,
    step: Duration,
) -> (Option<u64>, mpsc::Receiver<u64>) {
    let v = recv_then_await(&mut rx, step).await;
    (v, rx)
}

/// Runs one pattern over `messages` messages with an interval of period
/// `tick` racing it.
pub(crate) async fn run_pattern(
    pattern: Pattern,
    messages: u64,
    step: Duration,
    tick: Duration,
) -> Outcome {
    let mut ticker = interval(tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate
    let mut ticks = 0;
    match pattern {
        Pattern::RecvThenAwait | Pattern::RecvPinned | Pattern::RecvBranch => {
            // Every message is queued before the loop starts: whatever is
            // missing at the end was lost by the receiving side.
            let (tx, mut rx) = mpsc::channel(messages.max(1) as usize);
            for v in 0..messages {
                tx.try_send(v).expect("the channel holds every message");
            }
            drop(tx);
            let mut received = 0;
            match pattern {
                Pattern::RecvThenAwait => loop {
                    tokio::select! {
                        v = recv_then_await(&mut rx, step) => match v {
                            Some(_) => received += 1,
                            None => break,
                        },
                        _ = ticker.tick() => ticks += 1,
                    }
                },
                Pattern::RecvPinned => {
                    let mut fut = pin!(recv_then_await_owned(rx, step));
                    loop {
                        tokio::select! {
                            (v, rx) = &mut fut => match v {
                                Some(_) => {
                                    received += 1;
                                    fut.set(recv_then_await_owned(rx, step));
                                }
                                None => break,
                            },
                            _ = ticker.tick() => ticks += 1,
                        }
                    }
                }
                _ => loop {
                    tokio::select! {
                        v = rx.recv() => match v {
                            Some(_) => {
                                sleep(step).await;
                                received += 1;
                            }
                            None => break,
                        },
                        _ = ticker.tick() => ticks += 1,
                    }
                },
            }
            Outcome {
                sent: messages,
                received,
                ticks,
            }
        }
        Pattern::SendValue | Pattern::SendReserve => {
            // A slow consumer behind a one-slot channel keeps sends waiting.
            let (tx, mut rx) = mpsc::channel::<u64>(1);
            let consumer = tokio::spawn(async move {
                let mut received = 0u64;
                while rx.recv().await.is_some() {
                    received += 1;
                    sleep(step).await;
                }
                received
            });
            let mut next = 0u64;
            while next < messages {
                if pattern == Pattern::SendValue {
                    tokio::select! {
                        // The argument is evaluated (the value taken) every
                        // time the loop enters select!.
                        r = tx.send({ let v = next; next += 1; v }) => r.expect("the consumer is alive"),
                        _ = ticker.tick() => ticks += 1,
                    }
                } else {
                    tokio::select! {
                        permit = tx.reserve() => {
                            permit.expect("the consumer is alive").send(next);
                            next += 1;
                        }
                        _ = ticker.tick() => ticks += 1,
                    }
                }
            }
            drop(tx);
            let received = consumer.await.expect("the consumer does not panic");
            Outcome {
                sent: messages,
                received,
                ticks,
            }
        }
    }
}

/// What the timeout demonstration saw.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeoutOutcome {
    pub(crate) timed_out: bool,
    pub(crate) elapsed: Duration,
    /// The slow operation's guard ran its `Drop`.
    pub(crate) dropped: bool,
    /// Permits of the one-permit semaphore free after the timeout.
    pub(crate) permits_after: usize,
}

/// Sets a flag when dropped: shows that a timed-out future was dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// An operation that holds a semaphore permit and a guard for `takes`.
async fn slow_op(sem: Arc<Semaphore>, flag: Arc<AtomicBool>, takes: Duration) {
    let _permit = sem.acquire().await.expect("the semaphore is open");
    let _guard = DropFlag(flag);
    sleep(takes).await;
}

/// Runs an operation that takes 100 deadlines under `timeout(deadline, ..)`.
pub(crate) async fn run_timeout(deadline: Duration) -> TimeoutOutcome {
    let sem = Arc::new(Semaphore::new(1));
    let flag = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let result = timeout(deadline, slow_op(sem.clone(), flag.clone(), deadline * 100)).await;
    TimeoutOutcome {
        timed_out: result.is_err(),
        elapsed: start.elapsed(),
        dropped: flag.load(Ordering::SeqCst),
        permits_after: sem.available_permits(),
    }
}

impl Experiment for Select {
    const NAME: &'static str = "select";
    const ABOUT: &'static str = "cancellation safety in select!: messages lost by non-cancel-safe branches vs none by the safe patterns; timeout drops the slow op";

    fn run(self) -> Result<Report> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the tokio runtime")?;
        let mut rows = Vec::new();
        for pattern in Pattern::ALL {
            let start = Instant::now();
            let o = rt.block_on(run_pattern(pattern, self.messages, self.step, self.tick));
            rows.push(vec![
                Cell::Text(pattern.name().to_owned()),
                Cell::Text(if pattern.cancel_safe() { "yes" } else { "no" }.to_owned()),
                Cell::Num(o.sent as f64, 0),
                Cell::Num(o.received as f64, 0),
                Cell::Num(o.lost() as f64, 0),
                Cell::Num(o.ticks as f64, 0),
                Cell::Num(start.elapsed().as_secs_f64() * 1e3, 0),
            ]);
        }
        let t = rt.block_on(run_timeout(self.deadline));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Ok(Report {
            experiment: Self::NAME,
            settings: vec![
                ("messages", self.messages.to_string()),
                ("step", humantime::format_duration(self.step).to_string()),
                ("tick", humantime::format_duration(self.tick).to_string()),
                (
                    "deadline",
                    humantime::format_duration(self.deadline).to_string(),
                ),
            ],
            tables: vec![
                Table {
                    title: "select!: each pattern racing an interval".to_owned(),
                    header: vec![
                        "pattern",
                        "cancel safe",
                        "sent",
                        "received",
                        "lost",
                        "ticks won",
                        "ms",
                    ],
                    rows,
                },
                Table {
                    title: "timeout: an operation taking 100 deadlines".to_owned(),
                    header: vec![
                        "deadline ms",
                        "elapsed ms",
                        "timed out",
                        "future dropped",
                        "permits back",
                    ],
                    rows: vec![vec![
                        Cell::Num(ms(self.deadline), 1),
                        Cell::Num(ms(t.elapsed), 1),
                        Cell::Text(t.timed_out.to_string()),
                        Cell::Text(t.dropped.to_string()),
                        Cell::Num(t.permits_after as f64, 0),
                    ]],
                },
            ],
            notes: vec![
                "lost: messages sent but never received; a cancel-safe pattern loses none however often the interval wins.".to_owned(),
                "recv-then-await pops, then awaits `step` (a frame's second read); send-value evaluates `send(next())` on a full one-slot channel.".to_owned(),
                "ticks won: select! rounds the interval won; each such round dropped the other branch's future.".to_owned(),
                "timeout: the operation holds a one-permit semaphore; `permits back` = 1 means dropping the timed-out future released it.".to_owned(),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    const STEP: Duration = Duration::from_millis(1);

    #[test]
    fn a_recv_that_pops_then_awaits_loses_messages() {
        let o = rt().block_on(run_pattern(Pattern::RecvThenAwait, 200, STEP, STEP));
        assert!(o.ticks > 0, "{o:?}");
        assert!(o.lost() > 0, "{o:?}");
    }

    #[test]
    fn a_send_with_its_value_in_the_branch_loses_messages() {
        let o = rt().block_on(run_pattern(Pattern::SendValue, 200, STEP, STEP));
        assert!(o.lost() > 0, "{o:?}");
    }

    #[test]
    fn cancel_safe_patterns_lose_nothing_while_the_timer_wins() {
        for pattern in Pattern::ALL.into_iter().filter(|p| p.cancel_safe()) {
            let o = rt().block_on(run_pattern(pattern, 200, STEP, STEP));
            assert_eq!(o.lost(), 0, "{pattern:?}: {o:?}");
            assert_eq!(o.received, 200, "{pattern:?}: {o:?}");
            assert!(o.ticks > 0, "{pattern:?}: the timer never won: {o:?}");
        }
    }

    #[test]
    fn a_timed_out_operation_is_dropped_and_gives_its_permit_back() {
        let t = rt().block_on(run_timeout(Duration::from_millis(20)));
        assert!(t.timed_out);
        assert!(t.dropped);
        assert_eq!(t.permits_after, 1);
    }
}
