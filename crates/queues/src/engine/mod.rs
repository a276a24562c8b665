//! The queue engine: every SQS operation, on the store.
//!
//! Durability follows the store's group commit: a send answers after its message record is
//! durable, a receive after its delivery records are (so receive counts and visibility deadlines
//! survive a crash), a delete after its tombstones are. Nothing holds a queue's lock across a disk
//! wait, so concurrent sends and receives share fsyncs instead of queueing behind each other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use outpost_store::{MetaOp, RecordId, Store};
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};

use crate::attributes::{self, RedriveAllow, Settings};
use crate::delivery::Delivery;
use crate::error::{QueueError, Result};
use crate::message::{self, encode_attributes, md5_hex, new_uuid, StoredMessage};
use crate::movetask::MoveTask;
use crate::queue::{Inner, Queue, QueueDef};
use crate::receipt::Receipt;
use crate::requests::{MoveTaskInfo, ReceiveRequest, ReceivedMessage, SendRequest, SendResult};
use crate::state::{DedupEntry, Msg, QueueState, ReceiptProblem, DEDUP_WINDOW_MS};

mod admin;
mod peek;
mod permissions;
mod receive;
mod recovery;
mod redrive;
mod send;
mod visibility;

pub use peek::Peeked;

const QUEUES_TABLE: &str = "queues";
const COUNTERS_TABLE: &str = "queue_counters";

pub use outpost_store::now_ms;

/// Where queue ARNs and URLs point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuesConfig {
    /// Region in ARNs.
    pub region: String,
    /// Account id in ARNs and URLs.
    pub account: String,
    /// Most messages in flight per queue (SQS: 120,000).
    pub max_inflight: u64,
    /// Most queues (dead-letter queues included); CreateQueue past it is `OverLimit`.
    pub max_queues: usize,
}

impl Default for QueuesConfig {
    fn default() -> Self {
        QueuesConfig {
            region: "us-east-1".into(),
            account: "000000000000".into(),
            max_inflight: 120_000,
            max_queues: 100_000,
        }
    }
}

/// Figures for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// Queue name.
    pub name: String,
    /// Visible messages.
    pub visible: u64,
    /// In flight.
    pub inflight: u64,
    /// Delayed.
    pub delayed: u64,
    /// Age of the oldest message, seconds.
    pub oldest_age_seconds: u64,
}

/// All queues.
pub struct Queues {
    store: Store,
    config: QueuesConfig,
    queues: RwLock<BTreeMap<String, Arc<Queue>>>,
    by_id: RwLock<HashMap<u64, Arc<Queue>>>,
    /// Serializes definition changes (create, delete, attributes, tags) and their metadata writes.
    defs: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<Arc<MoveTask>>>,
    sends: AtomicU64,
    receives: AtomicU64,
    deletes: AtomicU64,
    /// Set by [`Queues::shut_down`]: long polls answer at once (with what they have).
    closing: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("queues", &self.queues.read().len())
            .finish()
    }
}

fn meta_key(name: &str) -> Vec<u8> {
    name.as_bytes().to_vec()
}

fn valid_queue_name(name: &str) -> bool {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    !base.is_empty()
        && name.len() <= 80
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_fifo_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic())
}

fn ms(seconds: u32) -> u64 {
    u64::from(seconds) * 1000
}

impl Queues {
    /// Opens the engine on a store, recovering every queue.
    pub fn open(store: Store, config: QueuesConfig) -> Result<Arc<Queues>> {
        let queues = Arc::new(Queues {
            store,
            config,
            queues: RwLock::new(BTreeMap::new()),
            by_id: RwLock::new(HashMap::new()),
            defs: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
            sends: AtomicU64::new(0),
            receives: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
            closing: Default::default(),
        });
        queues.recover()?;
        Ok(queues)
    }

    /// The broker is stopping: every long poll waiting now, and any that starts later, answers
    /// at once with what is receivable (usually nothing), so HTTP requests can finish.
    pub fn shut_down(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for q in self.queues.read().values() {
            q.notify.notify_waiters();
        }
    }

    /// Runs retention every second until the engine is dropped. Spawn it once on the runtime.
    pub async fn run_maintenance(self: Arc<Self>) {
        let weak = Arc::downgrade(&self);
        drop(self);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(q) = weak.upgrade() else {
                return;
            };
            q.expire_messages(now_ms());
        }
    }

    /// The configuration.
    pub fn config(&self) -> &QueuesConfig {
        &self.config
    }

    /// A queue's ARN.
    pub fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:sqs:{}:{}:{}",
            self.config.region, self.config.account, name
        )
    }

    /// The queue name in an ARN of this region and account.
    pub fn name_from_arn(&self, arn: &str) -> Option<String> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", _, "sqs", region, account, name]
                if *region == self.config.region && *account == self.config.account =>
            {
                Some((*name).to_string())
            }
            _ => None,
        }
    }

    /// A live queue.
    pub fn queue(&self, name: &str) -> Result<Arc<Queue>> {
        self.queues
            .read()
            .get(name)
            .cloned()
            .ok_or(QueueError::QueueDoesNotExist)
    }

    /// Figures per queue.
    pub fn stats(&self) -> Vec<QueueStats> {
        let now = now_ms();
        self.queues
            .read()
            .values()
            .map(|q| {
                let mut inner = q.inner.lock();
                let (visible, inflight, delayed) = inner.state.counts(now);
                QueueStats {
                    name: q.name.clone(),
                    visible,
                    inflight,
                    delayed,
                    oldest_age_seconds: inner
                        .state
                        .oldest_sent()
                        .map_or(0, |s| now.saturating_sub(s) / 1000),
                }
            })
            .collect()
    }

    /// Messages sent, received and deleted since start.
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.sends.load(Ordering::Relaxed),
            self.receives.load(Ordering::Relaxed),
            self.deletes.load(Ordering::Relaxed),
        )
    }
}

/// A received message as handed to the caller, with the receipt of delivery `d`.
fn received(queue: &Queue, message: StoredMessage, d: &Delivery) -> ReceivedMessage {
    ReceivedMessage {
        message,
        receipt: Receipt {
            queue: queue.id,
            seq: d.seq,
            nonce: d.nonce,
        }
        .encode(),
        receive_count: d.receive_count,
        first_receive_ms: d.first_receive_ms,
    }
}

/// The message and latest delivery records of removed messages.
fn records_of(queue: &Queue, msgs: &[(u64, Msg)]) -> Vec<RecordId> {
    let mut ids = Vec::with_capacity(msgs.len() * 2);
    for (seq, m) in msgs {
        ids.push(queue.message_record(*seq));
        ids.extend(m.delivery_record.map(|d| queue.delivery_record(d)));
    }
    ids
}

fn tasks_recent(t: &MoveTask) -> bool {
    now_ms().saturating_sub(t.started_ms) < 14 * 24 * 3600 * 1000
}

fn expired(handle: &str) -> QueueError {
    QueueError::ReceiptHandleIsInvalid(format!(
        "The receipt handle \"{}\" has expired or its message was deleted or received again.",
        handle.chars().take(100).collect::<String>()
    ))
}
