//! One queue: its definition (persisted in the metadata store), its two streams in the log, and its
//! in-memory [`QueueState`] behind one lock. The lock is never held across an `await`; long polls
//! wait on the queue's [`Notify`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use outpost_store::{RecordId, StreamId};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::attributes::Settings;
use crate::state::QueueState;

/// A queue's persisted definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDef {
    /// Internal id: names the streams, never reused.
    pub id: u64,
    /// The queue name.
    pub name: String,
    /// FIFO queue.
    pub fifo: bool,
    /// Attributes the user set (validated, normalized).
    pub attributes: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Creation, seconds since the epoch.
    pub created: u64,
    /// Last attribute change, seconds since the epoch.
    pub modified: u64,
}

/// The mutable part of a queue.
#[derive(Debug)]
pub struct Inner {
    /// Definition.
    pub def: QueueDef,
    /// Typed attributes.
    pub settings: Settings,
    /// Messages.
    pub state: QueueState,
    /// Next FIFO sequence number.
    pub next_sequence: u64,
    /// Last `PurgeQueue` (ms).
    pub last_purge_ms: u64,
    /// FIFO `ReceiveRequestAttemptId`s: when each expires and the deliveries it returned
    /// (message sequence, receipt nonce), so a retried receive gets the same messages back.
    pub attempts: HashMap<String, (u64, Vec<(u64, u64)>)>,
}

/// A live queue.
#[derive(Debug)]
pub struct Queue {
    /// Internal id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// FIFO queue.
    pub fifo: bool,
    /// Stream of message records.
    pub messages: StreamId,
    /// Stream of delivery records.
    pub deliveries: StreamId,
    /// State.
    pub inner: Mutex<Inner>,
    /// Woken when messages may have become receivable.
    pub notify: Notify,
    /// Set when the queue is deleted, so long polls end.
    pub deleted: AtomicBool,
    /// FIFO queues: held from assigning sequence numbers until the records are in the state, so
    /// concurrent senders cannot append in another order than their sequence numbers (delivery
    /// order is record order).
    pub send_order: tokio::sync::Mutex<()>,
}

impl Queue {
    /// Stream names of a queue id.
    pub fn stream_names(id: u64) -> (String, String) {
        (
            format!("queue/{id}/messages"),
            format!("queue/{id}/deliveries"),
        )
    }

    /// The id of a message record.
    pub fn message_record(&self, seq: u64) -> RecordId {
        RecordId {
            stream: self.messages,
            seq,
        }
    }

    /// The id of a delivery record.
    pub fn delivery_record(&self, seq: u64) -> RecordId {
        RecordId {
            stream: self.deliveries,
            seq,
        }
    }

    /// Whether the queue was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }
}
