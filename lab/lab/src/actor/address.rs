//! The sending side of a mailbox: tell (wait for room), try_tell (refuse
//! when full), ask (request and await the reply).

use tokio::sync::{mpsc, oneshot};

/// Where an asked actor sends its answer.
pub(crate) type Reply<R> = oneshot::Sender<R>;

/// A handle to a running actor; cheap to clone, valid across restarts.
#[derive(Debug)]
pub(crate) struct Address<M> {
    tx: mpsc::Sender<M>,
}

impl<M> Clone for Address<M> {
    fn clone(&self) -> Self {
        Address {
            tx: self.tx.clone(),
        }
    }
}

/// Why a message was not delivered; it is handed back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TellError<M> {
    /// The mailbox is at capacity (only from [`Address::try_tell`]).
    Full(M),
    /// The actor is gone for good (its supervisor gave up or was dropped).
    Stopped(M),
}

/// Why an [`Address::ask`] got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AskError {
    /// The actor is gone for good.
    Stopped,
    /// The request was taken but dropped unanswered: the incarnation that
    /// took it panicked (or the actor stopped before reaching it).
    NoReply,
}

impl std::fmt::Display for AskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AskError::Stopped => "the actor has stopped",
            AskError::NoReply => "the actor dropped the request unanswered",
        })
    }
}

impl std::error::Error for AskError {}

impl<M: Send> Address<M> {
    pub(super) fn new(tx: mpsc::Sender<M>) -> Self {
        Address { tx }
    }

    /// Sends, waiting while the mailbox is full: the sender slows to the
    /// actor's pace (backpressure).
    pub(crate) async fn tell(&self, msg: M) -> Result<(), TellError<M>> {
        self.tx
            .send(msg)
            .await
            .map_err(|mpsc::error::SendError(m)| TellError::Stopped(m))
    }

    /// Sends if there is room now; otherwise hands the message back, so an
    /// overloaded actor sheds load at its door instead of queueing it.
    pub(crate) fn try_tell(&self, msg: M) -> Result<(), TellError<M>> {
        self.tx.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) => TellError::Full(m),
            mpsc::error::TrySendError::Closed(m) => TellError::Stopped(m),
        })
    }

    /// Request/reply: builds the message around a reply sender, waits for
    /// room in the mailbox, then for the answer.
    pub(crate) async fn ask<R>(&self, make: impl FnOnce(Reply<R>) -> M) -> Result<R, AskError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| AskError::Stopped)?;
        answer.await.map_err(|_| AskError::NoReply)
    }
}
