//! What a publisher waits on: the answer of the persistence task for each record of its message,
//! and the flow-control hints the routing left with it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use outpost_codec::ReasonCode;
use outpost_store::StoreError;
use tokio::sync::oneshot;

/// Why a change could not be made durable. The engine keeps serving; the client is told (a
/// failure reason code, or a disconnect where its protocol version has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PersistError {
    /// The disk is full.
    #[error("the disk is full")]
    DiskFull,
    /// Any other store failure (I/O error, a failed sync, the store closed).
    #[error("the store failed")]
    Failed,
}

impl PersistError {
    /// The MQTT 5 reason code that tells a client: Quota exceeded (0x97) for a full disk,
    /// Unspecified error (0x80) for the rest.
    pub fn reason_code(self) -> ReasonCode {
        match self {
            PersistError::DiskFull => ReasonCode::QuotaExceeded,
            PersistError::Failed => ReasonCode::UnspecifiedError,
        }
    }

    pub(super) fn from_store(e: &StoreError) -> PersistError {
        match e {
            StoreError::DiskFull => PersistError::DiskFull,
            _ => PersistError::Failed,
        }
    }
}

/// What a persistence job answers.
pub(crate) type Done = oneshot::Sender<Result<(), PersistError>>;

/// Waits until the records of one message are durable. Also tells the publisher's connection
/// whether a connected subscriber is falling behind (see [`Durable::under_pressure`]).
#[derive(Debug, Default)]
pub struct Durable {
    waits: Vec<oneshot::Receiver<Result<(), PersistError>>>,
    /// How many of `waits` have answered (they are polled in order, each once to completion),
    /// and the first failure among them.
    answered: usize,
    failure: Option<PersistError>,
    pressure: bool,
    /// Connected subscribers whose queues are over the flow-control limit.
    held_by: Vec<Arc<str>>,
}

impl Durable {
    /// True when nothing had to be stored.
    pub fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }

    pub(crate) fn push(&mut self, rx: oneshot::Receiver<Result<(), PersistError>>) {
        self.waits.push(rx);
    }

    pub(crate) fn set_pressure(&mut self) {
        self.pressure = true;
    }

    pub(crate) fn hold_for(&mut self, client: Arc<str>) {
        if !self.held_by.contains(&client) {
            self.held_by.push(client);
        }
    }

    /// Flow control: the connected subscribers this message went to whose queues are full. The
    /// publisher's connection reads no more PUBLISH packets until they drain (see
    /// `Broker::holding_back`).
    pub fn take_held_by(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.held_by)
    }

    /// A connected subscriber of this message has a long queue: the publisher's connection
    /// should give the subscribers' tasks a turn before reading more.
    pub fn under_pressure(&self) -> bool {
        self.pressure
    }

    /// Resolves once every record is durable, or with the first failure (a stopped persistence
    /// task counts as one: nothing it did not confirm is durable).
    pub async fn wait(mut self) -> Result<(), PersistError> {
        std::future::poll_fn(|cx| self.poll_settled(cx)).await
    }

    /// [`Durable::wait`] without giving the `Durable` up: a connection asks each of its pending
    /// acknowledgements whether it may go out yet, and keeps waiting on the first that may not.
    /// Ready with the same answer on every call once every record has answered.
    pub fn poll_settled(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        while let Some(rx) = self.waits.get_mut(self.answered) {
            let answer = match Pin::new(rx).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(answer) => answer.unwrap_or(Err(PersistError::Failed)),
            };
            self.answered += 1;
            if let (Err(e), None) = (answer, self.failure) {
                self.failure = Some(e);
            }
        }
        Poll::Ready(self.failure.map_or(Ok(()), Err))
    }
}
