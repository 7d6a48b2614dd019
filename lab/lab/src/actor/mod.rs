//! A hand-written actor on plain tokio: what `ractor` gives, in three parts.
//!
//! - [`Actor`]: the behaviour, one `handle` per message, state in `self`.
//! - `address`: the [`Address`] other tasks hold. Its mailbox is a bounded
//!   `mpsc` channel, so a sender either waits for room ([`Address::tell`]),
//!   is told the mailbox is full ([`Address::try_tell`]), or asks and awaits
//!   a reply over a `oneshot` ([`Address::ask`]).
//! - `supervisor`: [`spawn`] runs the actor as a task under a supervisor
//!   task that awaits its `JoinHandle`; a panic ends only that incarnation,
//!   and the supervisor starts a fresh one from the factory, up to a limit.
//!
//! The mailbox belongs to the supervisor, not to an incarnation, so an
//! [`Address`] stays valid across restarts and messages queued behind the
//! one that panicked are handled by the next incarnation. (In `ractor` the
//! mailbox dies with the actor: its supervisor spawns a new actor with a new
//! `ActorRef` and must hand that out again.)

mod address;
mod supervisor;

pub(crate) use address::{Address, AskError, Reply, TellError};
pub(crate) use supervisor::{Exit, Supervised, spawn};

/// An actor's behaviour: its state is `self`, its input one message at a time.
pub(crate) trait Actor: Send + 'static {
    /// What the actor's mailbox carries.
    type Msg: Send + 'static;

    /// Handles one message. A panic here ends this incarnation; the
    /// supervisor starts a new one (fresh state) for the next message.
    fn handle(&mut self, msg: Self::Msg) -> impl Future<Output = ()> + Send;
}
