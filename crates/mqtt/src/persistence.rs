//! What survives a restart: retained messages, persistent sessions (their subscriptions and expiry) and
//! the QoS 1/2 messages queued or in flight for them.
//!
//! - Messages are records in the store, encoded as MQTT 5 PUBLISH packets (our own codec, so nothing
//!   new to parse): retained messages in one stream, each persistent session's messages in a stream of
//!   its own. A delivered (PUBACK/PUBCOMP) or discarded message is marked dead.
//! - Session definitions live in the metadata store.
//! - The engine never waits for disk under its lock: it hands jobs, in order, to one persistence task;
//!   a PUBACK waits for the jobs of its message (`Durable`), so an acknowledged message survives
//!   `kill -9`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_codec::ReasonCode;
use outpost_codec::{
    decode, Decoded, Packet, Publish, QoS, SubscribeOptions, UserProperty, Version,
};
use outpost_store::{MetaOp, RecordId, Store, StoreError, StreamId};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::{Broker, Message};

/// Sessions as first stored: expiry and every subscription in one value, rewritten on each change
/// (read at startup and moved to the tables below).
pub(crate) const LEGACY_SESSIONS: &str = "mqtt_sessions";
/// Persistent sessions: client id -> expiry and the session's stream.
pub(crate) const SESSIONS: &str = "mqtt_sessions_v2";
/// Subscriptions of persistent sessions, one entry each: [`subscription_key`] -> options and
/// identifier. A SUBSCRIBE writes only what it changes.
pub(crate) const SUBSCRIPTIONS: &str = "mqtt_subscriptions";
const RETAINED_STREAM: &str = "mqtt/retained";

/// The stream of a session stored before streams were per session lifetime.
pub(crate) fn legacy_session_stream(client: &str) -> String {
    format!("mqtt/session/{client}")
}

/// A new stream name for a new persistent session of `client`: a session that ends and starts
/// again gets a new stream, so removing the old one can never touch the new one's messages.
pub(crate) fn new_session_stream(client: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "mqtt/session/{client}#{now:x}.{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The key prefix of a client's subscriptions (length-prefixed, so no client id is a prefix of
/// another's).
pub(crate) fn subscriptions_prefix(client: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + client.len());
    k.extend_from_slice(&(client.len() as u32).to_be_bytes());
    k.extend_from_slice(client.as_bytes());
    k
}

fn subscription_key(client: &str, filter: &str) -> Vec<u8> {
    let mut k = subscriptions_prefix(client);
    k.extend_from_slice(filter.as_bytes());
    k
}

/// Splits a [`SUBSCRIPTIONS`] key into (client, filter).
pub(crate) fn split_subscription_key(k: &[u8]) -> Option<(&str, &str)> {
    let len = u32::from_be_bytes(k.get(..4)?.try_into().ok()?) as usize;
    let client = std::str::from_utf8(k.get(4..4 + len)?).ok()?;
    let filter = std::str::from_utf8(k.get(4 + len..)?).ok()?;
    Some((client, filter))
}

/// Options byte and identifier of one stored subscription.
pub(crate) fn encode_subscription(o: &SubscribeOptions, id: Option<u32>) -> [u8; 5] {
    let byte = o.qos as u8
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4;
    let id = id.unwrap_or(0).to_be_bytes();
    [byte, id[0], id[1], id[2], id[3]]
}

pub(crate) fn decode_subscription(v: &[u8]) -> Option<(SubscribeOptions, Option<u32>)> {
    let byte = *v.first()?;
    let id = u32::from_be_bytes(v.get(1..5)?.try_into().ok()?);
    Some((options_from_byte(byte)?, (id != 0).then_some(id)))
}

fn options_from_byte(byte: u8) -> Option<SubscribeOptions> {
    Some(SubscribeOptions {
        qos: QoS::from_u8(byte & 3)?,
        no_local: byte & 4 != 0,
        retain_as_published: byte & 8 != 0,
        retain_handling: match (byte >> 4) & 3 {
            0 => outpost_codec::RetainHandling::SendAtSubscribe,
            1 => outpost_codec::RetainHandling::SendIfNew,
            _ => outpost_codec::RetainHandling::DoNotSend,
        },
    })
}

/// The stream holding each message stored for persistent sessions, once.
pub(crate) const MESSAGES_STREAM: &str = "mqtt/messages";

/// First byte of a record in [`MESSAGES_STREAM`]: a message, then its key and its MQTT 5 PUBLISH
/// encoding.
const MESSAGE_RECORD: u8 = 0x01;
/// First byte of a reference record in a session's stream: then the message's key, the delivery's
/// QoS and RETAIN flag, and its subscription identifiers. (A record starting with a PUBLISH fixed
/// header, 0x30 to 0x3F, is a whole message, as sessions stored them before.)
const REFERENCE_RECORD: u8 = 0x00;
/// First byte of a record holding several QoS 1 references of one session (those of one group
/// commit): a count (u16), then each reference's key, QoS, RETAIN flag and subscription
/// identifiers as in [`REFERENCE_RECORD`]. One record per session per commit instead of one per
/// message: a fan-out to many offline sessions costs a record per session per batch.
const REFERENCES_RECORD: u8 = 0x02;

/// A message record: marker, key, the message as a PUBLISH packet.
pub(crate) fn encode_message_record(key: u64, m: &Message) -> Bytes {
    let body = encode_message(m, m.qos, m.retain, &[]);
    let mut out = bytes::BytesMut::with_capacity(9 + body.len());
    out.extend_from_slice(&[MESSAGE_RECORD]);
    out.extend_from_slice(&key.to_be_bytes());
    out.extend_from_slice(&body);
    out.freeze()
}

/// Decodes a message record: (key, message). `age`: how long ago it was stored.
pub(crate) fn decode_message_record(b: &Bytes, age: Duration) -> Option<(u64, Message)> {
    if *b.first()? != MESSAGE_RECORD {
        return None;
    }
    let key = u64::from_be_bytes(b.get(1..9)?.try_into().ok()?);
    let (m, ..) = decode_message(&b.slice(9..), age)?;
    Some((key, m))
}

/// A reference record.
pub(crate) fn encode_reference(key: u64, r: &RefSpec) -> Bytes {
    let mut out = bytes::BytesMut::with_capacity(13 + 4 * r.subscription_ids.len());
    out.extend_from_slice(&[REFERENCE_RECORD]);
    put_reference(&mut out, key, r);
    out.freeze()
}

/// A record of several references (at most `u16::MAX`).
pub(crate) fn encode_references(refs: &[(u64, &RefSpec)]) -> Bytes {
    let mut out = bytes::BytesMut::with_capacity(3 + 12 * refs.len());
    out.extend_from_slice(&[REFERENCES_RECORD]);
    out.extend_from_slice(&(refs.len().min(u16::MAX as usize) as u16).to_be_bytes());
    for (key, r) in refs.iter().take(u16::MAX as usize) {
        put_reference(&mut out, *key, r);
    }
    out.freeze()
}

fn put_reference(out: &mut bytes::BytesMut, key: u64, r: &RefSpec) {
    let ids = &r.subscription_ids[..r.subscription_ids.len().min(u16::MAX as usize)];
    out.extend_from_slice(&key.to_be_bytes());
    out.extend_from_slice(&[r.qos as u8, u8::from(r.retain)]);
    out.extend_from_slice(&(ids.len() as u16).to_be_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_be_bytes());
    }
}

/// One reference from `b` at `at`: (key, QoS, RETAIN, identifiers) and where the next begins.
fn take_reference(b: &[u8], at: usize) -> Option<(StoredDelivery, usize)> {
    let key = u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?);
    let qos = QoS::from_u8(*b.get(at + 8)?)?;
    let retain = *b.get(at + 9)? != 0;
    let n = u16::from_be_bytes(b.get(at + 10..at + 12)?.try_into().ok()?) as usize;
    let ids_at = at + 12;
    let subscription_ids = (0..n)
        .map(|i| {
            let at = ids_at + 4 * i;
            Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
        })
        .collect::<Option<Vec<u32>>>()?;
    Some((
        StoredDelivery::Reference {
            key,
            qos,
            retain,
            subscription_ids,
        },
        ids_at + 4 * n,
    ))
}

/// A session's stored delivery: a reference (key, QoS, RETAIN, subscription identifiers) or, in
/// the first layout, the whole message.
pub(crate) enum StoredDelivery {
    Reference {
        key: u64,
        qos: QoS,
        retain: bool,
        subscription_ids: Vec<u32>,
    },
    Whole(Message, QoS, bool, Vec<u32>),
}

/// The deliveries a session's record holds: one (a reference, or a whole message of the first
/// layout) or several (a references record). `None` when the record does not decode.
pub(crate) fn decode_deliveries(b: &Bytes, age: Duration) -> Option<Vec<StoredDelivery>> {
    match *b.first()? {
        REFERENCE_RECORD => Some(vec![take_reference(b, 1)?.0]),
        REFERENCES_RECORD => {
            let n = u16::from_be_bytes(b.get(1..3)?.try_into().ok()?) as usize;
            let mut at = 3;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let (d, next) = take_reference(b, at)?;
                out.push(d);
                at = next;
            }
            Some(out)
        }
        _ => {
            let (m, qos, retain, ids) = decode_message(b, age)?;
            Some(vec![StoredDelivery::Whole(m, qos, retain, ids)])
        }
    }
}

/// What the persistence task knows of stored deliveries: which record holds each delivery's
/// reference, and how many live references each stored message has. Built by the engine at
/// restore; kept by the task alone afterwards (the engine never waits for record ids).
#[derive(Debug, Default)]
pub(crate) struct Stored {
    /// Delivery id -> its record (a reference, a record of references, or a whole message of the
    /// first layout), and the key of the message it references.
    deliveries: HashMap<u64, (RecordId, Option<u64>)>,
    /// Record -> the deliveries it still holds (it dies with the last).
    records: HashMap<RecordId, Vec<u64>>,
    /// Message key -> (its record in the messages stream, live references).
    messages: HashMap<u64, (RecordId, u32)>,
    /// Deliveries completed before their reference was stored. Routing queues a delivery in a
    /// session before it sends the store job, so a fast subscriber's acknowledgement can reach
    /// this task first: the reference is then not written at all. Bounded; the oldest go first
    /// (a completed delivery that was never to be stored would otherwise stay forever).
    early_done: BTreeSet<u64>,
    /// Streams of recently ended sessions: a reference to one, routed just before its session
    /// ended, is not written (the stream is gone). Bounded; the jobs that could still name a
    /// stream are right behind its drop in the queue.
    dropped: VecDeque<StreamId>,
}

/// Most deliveries remembered as completed before their reference was stored.
const EARLY_DONE_MAX: usize = 65_536;
/// Most recently dropped streams remembered.
const DROPPED_MAX: usize = 1_024;

impl Stored {
    /// A message found in the messages stream at restore.
    pub(crate) fn add_message(&mut self, key: u64, record: RecordId) {
        self.messages.insert(key, (record, 0));
    }

    /// A delivery found in a session's stream at restore (or just stored).
    pub(crate) fn add_delivery(&mut self, delivery: u64, record: RecordId, key: Option<u64>) {
        self.deliveries.insert(delivery, (record, key));
        self.records.entry(record).or_default().push(delivery);
        if let Some(key) = key {
            if let Some((_, refs)) = self.messages.get_mut(&key) {
                *refs += 1;
            }
        }
    }

    /// Messages nothing references (after a crash between a reference's and a message's
    /// tombstones): their records, to remove.
    pub(crate) fn take_orphans(&mut self) -> Vec<RecordId> {
        let orphans: Vec<u64> = self
            .messages
            .iter()
            .filter(|(_, (_, refs))| *refs == 0)
            .map(|(k, _)| *k)
            .collect();
        orphans
            .into_iter()
            .filter_map(|k| self.messages.remove(&k).map(|(r, _)| r))
            .collect()
    }

    /// One reference to the message `key` is gone: the message goes with its last.
    fn release_message(&mut self, key: Option<u64>, dead: &mut Vec<RecordId>) {
        let Some(key) = key else { return };
        if let Some((msg, refs)) = self.messages.get_mut(&key) {
            *refs = refs.saturating_sub(1);
            if *refs == 0 {
                dead.push(*msg);
                self.messages.remove(&key);
            }
        }
    }

    /// A session's record goes (its session ended): every delivery it holds with it.
    fn release_record(&mut self, record: RecordId, dead: &mut Vec<RecordId>) {
        for delivery in self.records.remove(&record).unwrap_or_default() {
            if let Some((_, key)) = self.deliveries.remove(&delivery) {
                self.release_message(key, dead);
            }
        }
        dead.push(record);
    }

    /// A delivery is complete: its message loses a reference, and its record dies with its last
    /// delivery. (A record of several QoS 1 references lives until all are complete: after a crash
    /// the completed ones are delivered again, which QoS 1 allows; QoS 2 references have a record
    /// each.)
    fn release_delivery(&mut self, delivery: u64, dead: &mut Vec<RecordId>) {
        let Some((record, key)) = self.deliveries.remove(&delivery) else {
            self.early_done.insert(delivery);
            if self.early_done.len() > EARLY_DONE_MAX {
                self.early_done.pop_first();
            }
            return;
        };
        if let Some(held) = self.records.get_mut(&record) {
            held.retain(|d| *d != delivery);
            if held.is_empty() {
                self.records.remove(&record);
                dead.push(record);
            }
        }
        self.release_message(key, dead);
    }

    /// True when a reference need not be written: its delivery is already complete, or its
    /// session's stream is gone.
    fn skip(&mut self, r: &RefSpec) -> bool {
        self.early_done.remove(&r.delivery) || self.dropped.contains(&r.stream)
    }

    fn stream_dropped(&mut self, stream: StreamId) {
        self.dropped.push_back(stream);
        if self.dropped.len() > DROPPED_MAX {
            self.dropped.pop_front();
        }
    }
}

/// A [`SESSIONS`] value: expiry and stream name.
pub(crate) fn encode_session_record(expiry: u32, stream: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + stream.len());
    v.extend_from_slice(&expiry.to_be_bytes());
    v.extend_from_slice(stream.as_bytes());
    v
}

pub(crate) fn decode_session_record(v: &[u8]) -> Option<(u32, &str)> {
    let expiry = u32::from_be_bytes(v.get(..4)?.try_into().ok()?);
    Some((expiry, std::str::from_utf8(v.get(4..)?).ok()?))
}

/// One change to a persistent session's stored subscriptions.
#[derive(Debug)]
pub(crate) enum SubChange {
    Put(Arc<str>, SubscribeOptions, Option<u32>),
    Delete(Arc<str>),
}

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

    fn from_store(e: &StoreError) -> PersistError {
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
    pub async fn wait(self) -> Result<(), PersistError> {
        let mut result = Ok(());
        for rx in self.waits {
            let r = rx.await.unwrap_or(Err(PersistError::Failed));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// One persistent session's reference to a stored message.
#[derive(Debug, Clone)]
pub(crate) struct RefSpec {
    /// The session's client: a failed write takes the delivery back out of its queue.
    pub client: Arc<str>,
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
    fn done(&self, n: usize) {
        let before = self.backlog.fetch_sub(n, Ordering::Relaxed);
        if before >= BACKLOG_HIGH && before - n < BACKLOG_HIGH {
            self.drained.notify_waiters();
        }
    }

    /// Waits while more than [`BACKLOG_HIGH`] jobs wait for the store: a flood slows its
    /// publishers (their sockets stop being read) instead of growing the queue without bound.
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

/// Encodes a message (with the QoS, RETAIN flag and subscription identifiers of one delivery).
pub(crate) fn encode_message(
    m: &Message,
    qos: QoS,
    retain: bool,
    subscription_ids: &[u32],
) -> Bytes {
    let users: Vec<UserProperty<'_>> = m.user_properties();
    let props = m.publish_properties(Instant::now(), subscription_ids, &users);
    let p = Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: &m.topic,
        pkid: if qos == QoS::AtMostOnce { 0 } else { 1 },
        properties: props,
        payload: &m.payload,
    });
    let mut out = bytes::BytesMut::new();
    if p.encode_to(Version::V5, &mut out).is_err() {
        tracing::error!(
            topic = &*m.topic,
            "message could not be encoded for the store"
        );
    }
    out.freeze()
}

/// Decodes a stored message: (message, QoS, RETAIN, subscription identifiers). `age` is how long ago
/// it was stored, so expiry keeps counting across restarts.
pub(crate) fn decode_message(
    bytes: &Bytes,
    age: Duration,
) -> Option<(Message, QoS, bool, Vec<u32>)> {
    let Ok(Decoded::Packet(Packet::Publish(p), _)) = decode(bytes, Version::V5, usize::MAX) else {
        return None;
    };
    let payload = outpost_codec::PublishBytes::from_publish(bytes, &p).payload;
    let mut m = Message::from_publish(p.topic, &p, payload);
    m.received = Some(Instant::now().checked_sub(age).unwrap_or_else(Instant::now));
    let ids = p.properties.subscription_identifiers.iter().collect();
    Some((m, p.qos, p.retain, ids))
}

/// A persistent session as first stored ([`LEGACY_SESSIONS`]): expiry and subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedSession {
    pub expiry: u32,
    pub subscriptions: Vec<(String, SubscribeOptions, Option<u32>)>,
}

#[cfg(test)]
pub(crate) fn encode_session(s: &SavedSession) -> Vec<u8> {
    // A SUBSCRIBE-like layout: expiry, then (filter, options byte, identifier) entries.
    let mut out = Vec::new();
    out.extend_from_slice(&s.expiry.to_be_bytes());
    for (filter, o, id) in &s.subscriptions {
        out.extend_from_slice(&(filter.len() as u16).to_be_bytes());
        out.extend_from_slice(filter.as_bytes());
        out.extend_from_slice(&encode_subscription(o, *id));
    }
    out
}

pub(crate) fn decode_session(b: &[u8]) -> Option<SavedSession> {
    let expiry = u32::from_be_bytes(b.get(..4)?.try_into().ok()?);
    let mut rest = &b[4..];
    let mut subscriptions = Vec::new();
    while !rest.is_empty() {
        let len = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let filter = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_string();
        let byte = *rest.get(2 + len)?;
        let id = u32::from_be_bytes(rest.get(3 + len..7 + len)?.try_into().ok()?);
        rest = &rest[7 + len..];
        let options = options_from_byte(byte)?;
        subscriptions.push((filter, options, (id != 0).then_some(id)));
    }
    Some(SavedSession {
        expiry,
        subscriptions,
    })
}

/// Most jobs of one kind written in one batch.
const MAX_BATCH: usize = 512;

/// The references of a batch that go to one stream: (job, reference) positions and their records.
/// What one stream gets in a batch: its records, and for each record the (job, reference) pairs
/// it holds.
type StreamAppend = (StreamId, Vec<Vec<(usize, usize)>>, Vec<Bytes>);
/// A stream's references in a batch, as (job, reference) pairs: QoS 1 ones (one record
/// together), then the others (a record each).
type StreamRefs = (StreamId, Vec<(usize, usize)>, Vec<(usize, usize)>);

/// Stores a batch of routed messages: each message once in the messages stream, each session's
/// reference in its own stream, all appended together (they share the log, so one group commit
/// makes the whole batch durable), then answers each job.
async fn store_batch(
    broker: &Arc<Broker>,
    store: &Store,
    messages_stream: StreamId,
    stored: &mut Stored,
    batch: Vec<Job>,
) {
    // References not worth writing go first; a message left with none is not written either
    // (and its publisher is answered: nothing it needs is missing).
    let mut kept = Vec::with_capacity(batch.len());
    for mut job in batch {
        if let Job::Store { refs, .. } = &mut job {
            refs.retain(|r| !stored.skip(r));
            if refs.is_empty() {
                if let Job::Store { done, .. } = job {
                    let _ = done.send(Ok(()));
                }
                continue;
            }
        }
        kept.push(job);
    }
    let batch = kept;
    if batch.is_empty() {
        return;
    }
    // Encoding happens here, off the engine's locks.
    let mut message_records = Vec::new();
    // Per stream: its QoS 1 references of the whole batch (one record), then one record per
    // QoS 2 reference (a QoS 2 delivery must never come back after it completed).
    let mut streams: HashMap<StreamId, usize> = HashMap::new();
    let mut grouped: Vec<StreamRefs> = Vec::new();
    for (j, job) in batch.iter().enumerate() {
        let Job::Store {
            message, key, refs, ..
        } = job
        else {
            continue;
        };
        message_records.push(encode_message_record(*key, message));
        for (r, spec) in refs.iter().enumerate() {
            let at = *streams.entry(spec.stream).or_insert_with(|| {
                grouped.push((spec.stream, Vec::new(), Vec::new()));
                grouped.len() - 1
            });
            let (_, qos1, single) = &mut grouped[at];
            if spec.qos == QoS::AtLeastOnce && qos1.len() < u16::MAX as usize {
                qos1.push((j, r));
            } else {
                single.push((j, r));
            }
        }
    }
    let spec = |(j, r): (usize, usize)| -> (u64, &RefSpec) {
        match &batch[j] {
            Job::Store { key, refs, .. } => (*key, &refs[r]),
            _ => unreachable!("only store jobs have references"),
        }
    };
    let mut by_stream: Vec<StreamAppend> = Vec::with_capacity(grouped.len());
    for (stream, qos1, single) in grouped {
        let mut at = Vec::new();
        let mut payloads = Vec::new();
        match qos1.len() {
            0 => {}
            1 => {
                let (key, s) = spec(qos1[0]);
                payloads.push(encode_reference(key, s));
                at.push(qos1);
            }
            _ => {
                let refs: Vec<(u64, &RefSpec)> = qos1.iter().map(|p| spec(*p)).collect();
                payloads.push(encode_references(&refs));
                at.push(qos1);
            }
        }
        for p in single {
            let (key, s) = spec(p);
            payloads.push(encode_reference(key, s));
            at.push(vec![p]);
        }
        by_stream.push((stream, at, payloads));
    }
    // One request per stream, all sent before any answer is awaited: one group commit.
    let mut requests = vec![(messages_stream, message_records)];
    let mut positions = Vec::with_capacity(by_stream.len());
    for (stream, at, payloads) in by_stream {
        requests.push((stream, payloads));
        positions.push(at);
    }
    let mut results = store.append_batches(requests).await.into_iter();
    let mut failure: Option<PersistError> = None;
    let message_ids = match results.next() {
        Some(Ok(ids)) => Some(ids),
        Some(Err(e)) => {
            broker.persistence_failed(batch.len(), &e);
            failure = Some(PersistError::from_store(&e));
            None
        }
        None => {
            failure = Some(PersistError::Failed);
            None
        }
    };
    // Per job: the record of each of its references, or the failure of its stream.
    let mut ref_ids: Vec<Vec<Result<RecordId, PersistError>>> = batch
        .iter()
        .map(|j| match j {
            Job::Store { refs, .. } => vec![Err(PersistError::Failed); refs.len()],
            _ => Vec::new(),
        })
        .collect();
    for (at, result) in positions.into_iter().zip(results) {
        match result {
            Ok(ids) => {
                for (held, id) in at.into_iter().zip(ids) {
                    for (j, r) in held {
                        ref_ids[j][r] = Ok(id);
                    }
                }
            }
            Err(e) => {
                broker.persistence_failed(at.iter().map(Vec::len).sum(), &e);
                let failure = PersistError::from_store(&e);
                for (j, r) in at.into_iter().flatten() {
                    ref_ids[j][r] = Err(failure);
                }
            }
        }
    }
    let mut dead = Vec::new();
    let mut unqueue = Vec::new();
    let mut message_ids = message_ids.map(|ids| ids.into_iter());
    for (job, refs) in batch.into_iter().zip(ref_ids) {
        let Job::Store {
            key,
            refs: specs,
            done,
            ..
        } = job
        else {
            continue;
        };
        let message_id = message_ids.as_mut().and_then(|ids| ids.next());
        let mut answer = Ok(());
        match message_id {
            Some(msg) => {
                stored.add_message(key, msg);
                for (spec, id) in specs.iter().zip(refs) {
                    match id {
                        Ok(id) => stored.add_delivery(spec.delivery, id, Some(key)),
                        Err(e) => answer = Err(e),
                    }
                }
                if answer.is_err() {
                    // Partly stored: what was stored goes again, the publisher is told.
                    for spec in &specs {
                        stored.release_delivery(spec.delivery, &mut dead);
                    }
                    dead.extend(stored.take_orphans());
                }
            }
            None => {
                answer = Err(failure.unwrap_or(PersistError::Failed));
                for id in refs.into_iter().flatten() {
                    dead.push(id);
                }
            }
        }
        if answer.is_err() {
            // The publisher hears the failure: no session keeps a place for the message.
            unqueue.extend(specs.iter().map(|s| (s.client.clone(), s.delivery)));
        }
        let _ = done.send(answer);
    }
    if !unqueue.is_empty() {
        broker.unqueue_unstored(&unqueue);
    }
    if !dead.is_empty() {
        // A record of several references can be named more than once.
        dead.sort_unstable();
        dead.dedup();
        if let Err(e) = store.mark_dead(&dead).await {
            broker.persistence_failed(dead.len(), &e);
        }
    }
}

/// Takes more jobs that `fits` accepts from the queue, up to [`MAX_BATCH`]; a job that does not
/// fit is left in `next` for the following round.
fn gather(
    first: Job,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    next: &mut Option<Job>,
    fits: impl Fn(&Job) -> bool,
) -> Vec<Job> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(j) if fits(&j) => batch.push(j),
            Ok(other) => {
                *next = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

/// Saves a batch of session changes in one metadata transaction (one fsync for all of them).
async fn save_sessions(broker: &Broker, store: &Store, batch: Vec<Job>) {
    let store2 = store.clone();
    let (dones, result) = tokio::task::spawn_blocking(move || {
        let meta = store2.meta();
        // The final state of every key the batch touches, later changes winning.
        let mut last: HashMap<(&'static str, Vec<u8>), Option<Vec<u8>>> = HashMap::new();
        let mut dones = Vec::new();
        for job in batch {
            let Job::SaveSession {
                client,
                record,
                replace,
                changes,
                done,
            } = job
            else {
                continue;
            };
            if replace {
                match meta.scan(SUBSCRIPTIONS, &subscriptions_prefix(&client)) {
                    Ok(old) => {
                        for (k, _) in old {
                            last.insert((SUBSCRIPTIONS, k), None);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "stored subscriptions not read"),
                }
            }
            if let Some((expiry, stream)) = record {
                last.insert(
                    (SESSIONS, client.as_bytes().to_vec()),
                    Some(encode_session_record(expiry, &stream)),
                );
            }
            for c in changes {
                match c {
                    SubChange::Put(filter, options, id) => last.insert(
                        (SUBSCRIPTIONS, subscription_key(&client, &filter)),
                        Some(encode_subscription(&options, id).to_vec()),
                    ),
                    SubChange::Delete(filter) => {
                        last.insert((SUBSCRIPTIONS, subscription_key(&client, &filter)), None)
                    }
                };
            }
            dones.extend(done);
        }
        let ops: Vec<MetaOp<'_>> = last
            .iter()
            .map(|((table, key), value)| match value {
                Some(value) => MetaOp::Put { table, key, value },
                None => MetaOp::Delete { table, key },
            })
            .collect();
        (dones, meta.apply(&ops))
    })
    .await
    .unwrap_or_else(|e| {
        (
            Vec::new(),
            Err(outpost_store::StoreError::Meta(e.to_string())),
        )
    });
    let answer = match &result {
        Ok(()) => Ok(()),
        Err(e) => {
            broker.persistence_failed(dones.len().max(1), e);
            Err(PersistError::from_store(e))
        }
    };
    for done in dones {
        let _ = done.send(answer);
    }
}

/// Forgets an ended session: record, subscriptions, queued messages and stream.
async fn drop_session(
    store: &Store,
    stored: &mut Stored,
    client: Arc<str>,
    stream: Option<(StreamId, Arc<str>)>,
) {
    let store2 = store.clone();
    let client2 = client.clone();
    let meta_result = tokio::task::spawn_blocking(move || {
        let meta = store2.meta();
        let subs = meta.scan(SUBSCRIPTIONS, &subscriptions_prefix(&client2))?;
        let mut ops: Vec<MetaOp<'_>> = subs
            .iter()
            .map(|(k, _)| MetaOp::Delete {
                table: SUBSCRIPTIONS,
                key: k,
            })
            .collect();
        ops.push(MetaOp::Delete {
            table: SESSIONS,
            key: client2.as_bytes(),
        });
        meta.apply(&ops)
    })
    .await;
    if !matches!(meta_result, Ok(Ok(()))) {
        tracing::error!(
            client = &*client,
            "ended session not removed from the store"
        );
    }
    if let Some((stream, name)) = stream {
        drop_stream(store, stored, stream, name).await;
    }
}

/// Kills what is left in a session's stream (and messages no other session references), then
/// removes the stream's name.
async fn drop_stream(store: &Store, stored: &mut Stored, stream: StreamId, name: Arc<str>) {
    stored.stream_dropped(stream);
    let reader = store.clone();
    // Reading a long queue is disk work: off the async workers.
    let records = tokio::task::spawn_blocking(move || reader.scan(stream, 0, usize::MAX))
        .await
        .unwrap_or_default();
    let mut ids: Vec<RecordId> = Vec::new();
    for r in records {
        stored.release_record(r.id, &mut ids);
    }
    if let Err(e) = store.mark_dead(&ids).await {
        tracing::error!(stream = &*name, error = %e, "queued messages of an ended session not removed");
        return;
    }
    let store = store.clone();
    let removed = tokio::task::spawn_blocking(move || store.remove_stream(&name)).await;
    if let Ok(Err(e)) = removed {
        tracing::warn!(error = %e, "stream of an ended session not removed");
    }
}

/// The persistence task: runs the engine's jobs (deliveries, acknowledgements, sessions) in order.
pub(crate) async fn run(
    broker: Arc<Broker>,
    store: Store,
    mut stored: Stored,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let Some(persister) = broker.persister().cloned() else {
        return;
    };
    let messages_stream = match store.stream(MESSAGES_STREAM) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "no messages stream; messages for offline sessions will not persist");
            return;
        }
    };
    let orphans = stored.take_orphans();
    if !orphans.is_empty() {
        if let Err(e) = store.mark_dead(&orphans).await {
            broker.persistence_failed(orphans.len(), &e);
        }
    }
    // A job taken from the queue while batching that belongs to the next round.
    let mut next: Option<Job> = None;
    loop {
        let job = match next.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => break,
            },
        };
        let n = match job {
            store_job @ Job::Store { .. } => {
                // Everything already queued goes to the disk together: one group commit for
                // the batch instead of one fsync per message.
                let batch = gather(store_job, &mut rx, &mut next, |j| {
                    matches!(j, Job::Store { .. })
                });
                let n = batch.len();
                store_batch(&broker, &store, messages_stream, &mut stored, batch).await;
                n
            }
            Job::Done(delivery) => {
                let batch = gather(Job::Done(delivery), &mut rx, &mut next, |j| {
                    matches!(j, Job::Done(_))
                });
                let n = batch.len();
                let mut ids: Vec<RecordId> = Vec::new();
                for job in batch {
                    if let Job::Done(d) = job {
                        stored.release_delivery(d, &mut ids);
                    }
                }
                if !ids.is_empty() {
                    if let Err(e) = store.mark_dead(&ids).await {
                        broker.persistence_failed(ids.len(), &e);
                    }
                }
                n
            }
            save @ Job::SaveSession { .. } => {
                let batch = gather(save, &mut rx, &mut next, |j| {
                    matches!(j, Job::SaveSession { .. })
                });
                let n = batch.len();
                save_sessions(&broker, &store, batch).await;
                n
            }
            Job::DropSession { client, stream } => {
                drop_session(&store, &mut stored, client, stream).await;
                1
            }
            Job::DropStream { stream, name } => {
                drop_stream(&store, &mut stored, stream, name).await;
                1
            }
            Job::Flush(done) => {
                let _ = done.send(Ok(()));
                1
            }
            Job::Retain { .. } => {
                tracing::error!("a retained message reached the session task; not stored");
                1
            }
        };
        persister.done(n);
    }
}

/// The retained-message task: writes retained messages in batches (a later message for a topic
/// replaces an earlier one in the same batch; one group commit for all).
pub(crate) async fn run_retained(
    broker: Arc<Broker>,
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let Some(persister) = broker.persister().cloned() else {
        return;
    };
    let retained_stream = match store.stream(RETAINED_STREAM) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "no retained stream; retained messages will not persist");
            return;
        }
    };
    let mut retained: HashMap<Arc<str>, RecordId> = store
        .scan(retained_stream, 0, usize::MAX)
        .into_iter()
        .filter_map(|r| {
            let (m, ..) = decode_message(&r.payload, Duration::ZERO)?;
            Some((m.topic, r.id))
        })
        .collect();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let n = batch.len();
        // The newest value per topic, in first-seen order.
        let mut latest: Vec<(Arc<str>, Option<Bytes>)> = Vec::new();
        let mut index: HashMap<Arc<str>, usize> = HashMap::new();
        let mut dones = Vec::new();
        for job in batch {
            match job {
                Job::Retain { topic, bytes, done } => {
                    dones.extend(done);
                    match index.get(&topic) {
                        Some(&i) => latest[i].1 = bytes,
                        None => {
                            index.insert(topic.clone(), latest.len());
                            latest.push((topic, bytes));
                        }
                    }
                }
                Job::Flush(done) => dones.push(done),
                _ => {}
            }
        }
        let touched: Vec<Arc<str>> = latest.iter().map(|(t, _)| t.clone()).collect();
        let (topics, payloads): (Vec<Arc<str>>, Vec<Bytes>) = latest
            .into_iter()
            .filter_map(|(t, b)| b.map(|b| (t, b)))
            .unzip();
        let mut answer = Ok(());
        let mut appended = Vec::new();
        if !payloads.is_empty() {
            match store.append_batch(retained_stream, payloads).await {
                Ok(ids) => appended = ids,
                Err(e) => {
                    broker.persistence_failed(topics.len(), &e);
                    answer = Err(PersistError::from_store(&e));
                }
            }
        }
        if answer.is_ok() {
            // The new values are durable: the ones they replace (or clear) can go.
            let dead: Vec<RecordId> = touched.iter().filter_map(|t| retained.remove(t)).collect();
            retained.extend(topics.into_iter().zip(appended));
            if !dead.is_empty() {
                if let Err(e) = store.mark_dead(&dead).await {
                    // The old records stay live on disk: after a restart an older value of a
                    // topic could come back, so this is a failure of the batch too.
                    broker.persistence_failed(dead.len(), &e);
                    answer = Err(PersistError::from_store(&e));
                }
            }
        }
        for done in dones {
            let _ = done.send(answer);
        }
        persister.done(n);
    }
}

/// Retained messages stored before the restart.
pub(crate) fn stored_retained(store: &Store) -> Vec<(Message, QoS)> {
    let Ok(stream) = store.stream(RETAINED_STREAM) else {
        return Vec::new();
    };
    let now = outpost_store_now_ms();
    store
        .scan(stream, 0, usize::MAX)
        .into_iter()
        .filter_map(|r| {
            let age = Duration::from_millis(now.saturating_sub(r.timestamp));
            let (m, qos, ..) = decode_message(&r.payload, age)?;
            Some((m, qos))
        })
        .collect()
}

pub(crate) fn outpost_store_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageProperties;

    #[test]
    fn messages_round_trip_through_the_record_format() {
        let m = Message {
            properties: MessageProperties {
                content_type: Some("text/plain".into()),
                message_expiry_interval: Some(100),
                user_properties: vec![("k".into(), "v".into())],
                ..MessageProperties::default()
            },
            ..Message::new("a/b", Bytes::from_static(b"hello"), QoS::ExactlyOnce, true)
        };
        let b = encode_message(&m, QoS::AtLeastOnce, true, &[7, 9]);
        let (back, qos, retain, ids) = decode_message(&b, Duration::from_secs(30)).unwrap();
        assert_eq!((qos, retain, ids), (QoS::AtLeastOnce, true, vec![7, 9]));
        assert_eq!(back.topic, m.topic);
        assert_eq!(back.payload, m.payload);
        assert_eq!(back.properties.content_type, m.properties.content_type);
        assert_eq!(
            back.properties.user_properties,
            m.properties.user_properties
        );
        let left = back.remaining_expiry(Instant::now()).unwrap();
        assert!((69..=70).contains(&left), "expiry keeps counting: {left}");
    }

    #[test]
    fn a_durable_wait_reports_the_first_failure_and_a_vanished_task() {
        let waits = |answers: Vec<Option<Result<(), PersistError>>>| {
            let mut d = Durable::default();
            for a in answers {
                let (tx, rx) = oneshot::channel();
                d.push(rx);
                if let Some(a) = a {
                    let _ = tx.send(a);
                }
            }
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let mut f = std::pin::pin!(d.wait());
            match f.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(r) => r,
                std::task::Poll::Pending => panic!("every answer is in"),
            }
        };
        use std::future::Future;
        assert_eq!(waits(vec![Some(Ok(())), Some(Ok(()))]), Ok(()));
        assert_eq!(
            waits(vec![
                Some(Ok(())),
                Some(Err(PersistError::DiskFull)),
                Some(Err(PersistError::Failed))
            ]),
            Err(PersistError::DiskFull)
        );
        assert_eq!(
            waits(vec![None]),
            Err(PersistError::Failed),
            "a dropped sender is a failure"
        );
        assert_eq!(
            PersistError::DiskFull.reason_code(),
            ReasonCode::QuotaExceeded
        );
        assert_eq!(
            PersistError::Failed.reason_code(),
            ReasonCode::UnspecifiedError
        );
    }

    fn rec(stream: u64, seq: u64) -> RecordId {
        RecordId {
            stream: StreamId(stream),
            seq,
        }
    }

    #[test]
    fn a_shared_message_goes_with_its_last_reference() {
        let mut stored = Stored::default();
        stored.add_message(7, rec(1, 1));
        stored.add_message(8, rec(1, 2));
        stored.add_delivery(100, rec(2, 1), Some(7));
        stored.add_delivery(101, rec(3, 1), Some(7));
        assert_eq!(
            stored.take_orphans(),
            vec![rec(1, 2)],
            "key 8 has no reference"
        );
        let mut dead = Vec::new();
        stored.release_delivery(100, &mut dead);
        assert_eq!(
            dead,
            vec![rec(2, 1)],
            "another session still references the message"
        );
        dead.clear();
        stored.release_delivery(101, &mut dead);
        assert_eq!(
            dead,
            vec![rec(3, 1), rec(1, 1)],
            "the last reference takes the message"
        );
        dead.clear();
        stored.release_delivery(101, &mut dead);
        assert!(dead.is_empty(), "releasing twice is harmless");
    }

    #[test]
    fn a_record_of_references_lives_until_its_last_delivery() {
        let mut stored = Stored::default();
        stored.add_message(7, rec(1, 1));
        stored.add_message(8, rec(1, 2));
        // One record holds both deliveries of a session.
        stored.add_delivery(100, rec(2, 1), Some(7));
        stored.add_delivery(101, rec(2, 1), Some(8));
        let mut dead = Vec::new();
        stored.release_delivery(100, &mut dead);
        assert_eq!(dead, vec![rec(1, 1)], "the record still holds 101");
        dead.clear();
        stored.release_delivery(101, &mut dead);
        assert_eq!(dead, vec![rec(2, 1), rec(1, 2)]);
        // A session's end takes a record with everything it holds.
        stored.add_message(9, rec(1, 3));
        stored.add_delivery(102, rec(2, 2), Some(9));
        stored.add_delivery(103, rec(2, 2), Some(9));
        dead.clear();
        stored.release_record(rec(2, 2), &mut dead);
        assert_eq!(dead, vec![rec(1, 3), rec(2, 2)]);
        dead.clear();
        stored.release_delivery(103, &mut dead);
        assert!(dead.is_empty(), "gone with its record");
    }

    #[test]
    fn references_and_message_records_round_trip() {
        let m = Message::new(
            "a/b",
            Bytes::from_static(b"payload"),
            QoS::ExactlyOnce,
            true,
        );
        let rec = encode_message_record(42, &m);
        let (key, back) = decode_message_record(&rec, Duration::ZERO).unwrap();
        assert_eq!(
            (key, &*back.topic, &back.payload[..]),
            (42, "a/b", &b"payload"[..])
        );
        let spec = RefSpec {
            client: "c".into(),
            stream: StreamId(3),
            delivery: 9,
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![5, 6],
        };
        let refs = |b: &Bytes| -> Vec<(u64, QoS, bool, Vec<u32>)> {
            decode_deliveries(b, Duration::ZERO)
                .expect("decodes")
                .into_iter()
                .map(|d| match d {
                    StoredDelivery::Reference {
                        key,
                        qos,
                        retain,
                        subscription_ids,
                    } => (key, qos, retain, subscription_ids),
                    StoredDelivery::Whole(..) => panic!("a reference"),
                })
                .collect()
        };
        assert_eq!(
            refs(&encode_reference(42, &spec)),
            [(42, QoS::AtLeastOnce, false, vec![5, 6])]
        );
        let other = RefSpec {
            retain: true,
            subscription_ids: Vec::new(),
            ..spec.clone()
        };
        assert_eq!(
            refs(&encode_references(&[(42, &spec), (43, &other)])),
            [
                (42, QoS::AtLeastOnce, false, vec![5, 6]),
                (43, QoS::AtLeastOnce, true, vec![])
            ]
        );
        let truncated = encode_references(&[(42, &spec), (43, &other)]);
        assert!(
            decode_deliveries(&truncated.slice(..truncated.len() - 3), Duration::ZERO).is_none()
        );
        // A whole message, as sessions stored them first, still reads.
        let whole = encode_message(&m, QoS::AtLeastOnce, false, &[1]);
        assert!(matches!(
            decode_deliveries(&whole, Duration::ZERO).as_deref(),
            Some([StoredDelivery::Whole(_, QoS::AtLeastOnce, false, _)])
        ));
    }

    #[test]
    fn sessions_round_trip() {
        let s = SavedSession {
            expiry: 3600,
            subscriptions: vec![
                (
                    "a/+".into(),
                    SubscribeOptions::qos(QoS::AtLeastOnce),
                    Some(5),
                ),
                (
                    "$share/g/b/#".into(),
                    SubscribeOptions {
                        retain_as_published: true,
                        ..SubscribeOptions::qos(QoS::ExactlyOnce)
                    },
                    None,
                ),
            ],
        };
        assert_eq!(decode_session(&encode_session(&s)), Some(s));
        assert_eq!(decode_session(&[1, 2]), None);
    }
}
