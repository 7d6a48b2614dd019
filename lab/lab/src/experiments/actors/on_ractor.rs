//! The counter on `ractor`: the actor, a supervisor that restarts it, and
//! a credit gate that bounds its mailbox.
//!
//! ractor's mailboxes are unbounded `mpsc` channels and it has no option to
//! bound them; its maintainer points to factories, whose queue can shed
//! load (`DiscardSettings`), for that. For one actor, [`Bounded`] does it
//! with credits: a `Semaphore` of `capacity` permits, one taken before each
//! send and carried inside the message ([`Credited`]), released when the
//! handler has finished with it. So at most `capacity` messages are queued
//! *or being handled* (the hand-written actor counts only queued ones), a
//! sender waits for a credit ([`Bounded::tell`]) or is refused at once
//! ([`Bounded::try_tell`]), and messages lost with a dead actor's mailbox
//! give their credits back as they are dropped.
//!
//! A restarted ractor actor is a new actor with a new `ActorRef`: the
//! supervisor publishes each one on a `watch` channel that [`Bounded`] reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use super::INDUCED_PANIC;

/// Why [`Bounded`] did not deliver a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Every credit is taken (only from [`Bounded::try_tell`]).
    Full,
    /// The current incarnation is dead and the next not yet published.
    Stopped,
}

/// The counter's messages.
pub(crate) enum Msg {
    Add(u64),
    Get(RpcReplyPort<u64>),
    /// Panics in the handler (restart tests and timings).
    Panic,
    /// Tells the sender it has started, then waits for the release: keeps
    /// the actor busy while a test fills its mailbox.
    Hold(oneshot::Sender<()>, oneshot::Receiver<()>),
}

/// A message with the credit it took, if it went through [`Bounded`].
pub(crate) struct Credited {
    msg: Msg,
    _credit: Option<OwnedSemaphorePermit>,
}

impl From<Msg> for Credited {
    fn from(msg: Msg) -> Self {
        Credited { msg, _credit: None }
    }
}

/// The counter actor; its state is the sum.
pub(crate) struct Counter;

impl Actor for Counter {
    type Msg = Credited;
    type State = u64;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Credited>,
        (): (),
    ) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Credited>,
        message: Credited,
        sum: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        // The credit (if any) is dropped when `message` is, after this returns.
        match message.msg {
            Msg::Add(n) => *sum += n,
            Msg::Get(reply) => {
                // The caller may have given up waiting: nothing to do then.
                let _ = reply.send(*sum);
            }
            Msg::Panic => panic!("{INDUCED_PANIC}"),
            Msg::Hold(started, release) => {
                let _ = started.send(());
                let _ = release.await;
            }
        }
        Ok(())
    }
}

/// Supervises one [`Counter`], spawning a fresh one whenever it fails.
pub(crate) struct Supervisor;

/// The latest incarnation of the counter (`None` only before the first).
type Current = watch::Sender<Option<ActorRef<Credited>>>;

/// What the supervisor is started with.
pub(crate) struct SupervisorArgs {
    publish: Current,
    restarts: Arc<AtomicU64>,
}

/// The supervisor's state: its child, and where it publishes a new one.
pub(crate) struct SupervisorState {
    child: ActorRef<Credited>,
    args: SupervisorArgs,
}

impl Actor for Supervisor {
    type Msg = ();
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let (child, _) = Actor::spawn_linked(None, Counter, (), myself.get_cell()).await?;
        args.publish.send_replace(Some(child.clone()));
        Ok(SupervisorState { child, args })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(who, _) = event
            && who.get_id() == state.child.get_id()
        {
            let (child, _) = Actor::spawn_linked(None, Counter, (), myself.get_cell()).await?;
            state.child = child.clone();
            state.args.restarts.fetch_add(1, Ordering::SeqCst);
            state.args.publish.send_replace(Some(child));
        }
        Ok(())
    }
}

/// A supervised counter behind a credit gate of `capacity`.
pub(crate) struct Bounded {
    current: watch::Receiver<Option<ActorRef<Credited>>>,
    credits: Arc<Semaphore>,
    restarts: Arc<AtomicU64>,
    supervisor: ActorRef<()>,
}

impl Bounded {
    /// Spawns the supervisor, which spawns the counter before it returns.
    pub(crate) async fn start(capacity: usize) -> anyhow::Result<Bounded> {
        let (publish, current) = watch::channel(None);
        let restarts = Arc::new(AtomicU64::new(0));
        let args = SupervisorArgs {
            publish,
            restarts: restarts.clone(),
        };
        let (supervisor, _) = Actor::spawn(None, Supervisor, args).await?;
        let mut current = current;
        // The first child was published in `pre_start`: seen, so that
        // `next_incarnation` waits for the one after it.
        current.borrow_and_update();
        Ok(Bounded {
            current,
            credits: Arc::new(Semaphore::new(capacity)),
            restarts,
            supervisor,
        })
    }

    /// The counter's current incarnation, unbounded: a plain `ActorRef`.
    pub(crate) fn actor(&self) -> ActorRef<Credited> {
        self.current
            .borrow()
            .clone()
            .expect("the supervisor publishes a child before start returns")
    }

    /// Restarts so far.
    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// Waits until the supervisor has published a new incarnation since
    /// the last call (or since start).
    pub(crate) async fn next_incarnation(&mut self) {
        let _ = self.current.changed().await;
    }

    /// Sends once a credit is free: backpressure.
    pub(crate) async fn tell(&self, msg: Msg) -> Result<(), Refused> {
        let credit = self
            .credits
            .clone()
            .acquire_owned()
            .await
            .expect("the credit semaphore is never closed");
        self.send(msg, credit)
    }

    /// Sends if a credit is free now; refuses otherwise.
    pub(crate) fn try_tell(&self, msg: Msg) -> Result<(), Refused> {
        let credit = self
            .credits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Full)?;
        self.send(msg, credit)
    }

    fn send(&self, msg: Msg, credit: OwnedSemaphorePermit) -> Result<(), Refused> {
        self.actor()
            .cast(Credited {
                msg,
                _credit: Some(credit),
            })
            // A dead incarnation: the message (and its credit) is dropped.
            .map_err(|_| Refused::Stopped)
    }

    /// Request/reply through the gate: `call` with a credit in the message.
    /// `None` when the incarnation died before answering.
    pub(crate) async fn ask(&self) -> Option<u64> {
        let credit = self
            .credits
            .clone()
            .acquire_owned()
            .await
            .expect("the credit semaphore is never closed");
        match self
            .actor()
            .call(
                |reply| Credited {
                    msg: Msg::Get(reply),
                    _credit: Some(credit),
                },
                None,
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(sum)) => Some(sum),
            _ => None,
        }
    }
}

impl Drop for Bounded {
    fn drop(&mut self) {
        // Stopping the supervisor stops its linked child too.
        self.supervisor.stop(None);
    }
}
