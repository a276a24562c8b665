//! The work the engine hands to the persistence tasks, in order, and the back-pressure that keeps
//! their queue bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use outpost_codec::{QoS, SubscribeOptions};
use outpost_store::{Store, StreamId};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::Message;

use super::durable::{Done, PersistError};

/// One change to a persistent session's stored subscriptions.
#[derive(Debug)]
pub(crate) enum SubChange {
    Put(Arc<str>, SubscribeOptions, Option<u32>),
    Delete(Arc<str>),
}

/// One persistent session's reference to a stored message.
#[derive(Debug, Clone)]
pub(crate) struct RefSpec {
    /// The session's stream (a failed write takes the delivery back out of the queue of the
    /// session that has it: found by its stream, so a reference holds no copy of the client's
    /// name to count up and down on every delivery of a fan-out).
    pub stream: StreamId,
    pub delivery: u64,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
}

pub(crate) enum Job {
    /// Store a message once (in the shared messages stream, under `key`) and a small reference
    /// to it in the stream of every persistent session it goes to.
    Store {
        message: Arc<Message>,
        key: u64,
        refs: Vec<RefSpec>,
        done: Done,
    },
    /// Retain (Some) or clear (None) the message of a topic.
    Retain {
        topic: Arc<str>,
        bytes: Option<Bytes>,
        done: Option<Done>,
    },
    /// A stored delivery is complete (acknowledged, expired, discarded): its reference goes, and
    /// the message with its last reference.
    Done(u64),
    /// Saves a persistent session: its record (expiry, stream), when given, and subscription
    /// changes; `replace` first removes every stored subscription (the session just became
    /// persistent and `changes` lists all it has).
    SaveSession {
        client: Arc<str>,
        record: Option<(u32, Arc<str>)>,
        replace: bool,
        changes: Vec<SubChange>,
        done: Option<Done>,
    },
    /// Forgets a session: its record, its subscriptions, its queued messages and its stream.
    DropSession {
        client: Arc<str>,
        stream: Option<(StreamId, Arc<str>)>,
    },
    /// Removes a stream that was created for a session and not used.
    DropStream { stream: StreamId, name: Arc<str> },
    /// Answers once every job queued before it is done (graceful shutdown).
    Flush(Done),
}

/// Jobs queued for the store above which publishers wait (see [`Persister::wait_for_room`]).
pub(crate) const BACKLOG_HIGH: usize = 20_000;

/// The sending side, held by the engine. Retained messages have a task of their own, so a flood
/// of retained publishes never queues in front of a session's acknowledgements.
#[derive(Debug, Clone)]
pub(crate) struct Persister {
    pub store: Store,
    pub jobs: mpsc::UnboundedSender<Job>,
    pub retained_jobs: mpsc::UnboundedSender<Job>,
    /// Jobs sent and not yet done (both tasks).
    pub backlog: Arc<AtomicUsize>,
    /// Notified when the backlog falls below [`BACKLOG_HIGH`].
    pub drained: Arc<Notify>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Persister {
    pub(crate) fn send(&self, job: Job) {
        self.backlog.fetch_add(1, Ordering::Relaxed);
        let tx = match job {
            Job::Retain { .. } => &self.retained_jobs,
            _ => &self.jobs,
        };
        if tx.send(job).is_err() {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
            // Once is enough: from now on every change fails, and each waiter learns it.
            static REPORTED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !REPORTED.swap(true, Ordering::Relaxed) {
                tracing::error!("persistence task stopped; changes are no longer stored");
            }
        }
    }

    /// Answers once everything queued before it, in both tasks, is stored.
    pub(crate) fn flush(&self) -> Vec<oneshot::Receiver<Result<(), PersistError>>> {
        [&self.jobs, &self.retained_jobs]
            .into_iter()
            .filter_map(|tx| {
                let (done, rx) = oneshot::channel();
                self.backlog.fetch_add(1, Ordering::Relaxed);
                if tx.send(Job::Flush(done)).is_ok() {
                    Some(rx)
                } else {
                    self.backlog.fetch_sub(1, Ordering::Relaxed);
                    None
                }
            })
            .collect()
    }

    /// `n` jobs are done.
    pub(super) fn done(&self, n: usize) {
        let before = self.backlog.fetch_sub(n, Ordering::Relaxed);
        if before >= BACKLOG_HIGH && before - n < BACKLOG_HIGH {
            self.drained.notify_waiters();
        }
    }

    /// Waits while more than [`BACKLOG_HIGH`] jobs wait for the store: a flood slows its
    /// publishers (their sockets stop being read) instead of growing the queue without bound.
    pub(crate) fn behind(&self) -> bool {
        self.backlog.load(Ordering::Relaxed) >= BACKLOG_HIGH
    }

    pub(crate) async fn wait_for_room(&self) {
        loop {
            let drained = self.drained.notified();
            if self.backlog.load(Ordering::Relaxed) < BACKLOG_HIGH {
                return;
            }
            // The timeout only guards against a missed wake-up; the notification is the signal.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), drained).await;
        }
    }
}
