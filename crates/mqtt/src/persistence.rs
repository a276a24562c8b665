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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_codec::{
    decode, Decoded, Packet, Publish, QoS, SubscribeOptions, UserProperty, Version,
};
use outpost_store::{MetaOp, RecordId, Store, StreamId};
use tokio::sync::{mpsc, oneshot};

use crate::{Broker, Message};

pub(crate) const SESSIONS: &str = "mqtt_sessions";
const RETAINED_STREAM: &str = "mqtt/retained";

/// The stream of a persistent session.
pub(crate) fn session_stream(client: &str) -> String {
    format!("mqtt/session/{client}")
}

/// Waits until the records of one message are durable. Also tells the publisher's connection
/// whether a connected subscriber is falling behind (see [`Durable::under_pressure`]).
#[derive(Debug, Default)]
pub struct Durable {
    waits: Vec<oneshot::Receiver<()>>,
    pressure: bool,
}

impl Durable {
    /// True when nothing had to be stored.
    pub fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }

    pub(crate) fn push(&mut self, rx: oneshot::Receiver<()>) {
        self.waits.push(rx);
    }

    pub(crate) fn set_pressure(&mut self) {
        self.pressure = true;
    }

    /// A connected subscriber of this message has a long queue: the publisher's connection
    /// should give the subscribers' tasks a turn before reading more.
    pub fn under_pressure(&self) -> bool {
        self.pressure
    }

    /// Resolves once every record is durable (or the store gave up; that is logged where it failed).
    pub async fn wait(self) {
        for rx in self.waits {
            let _ = rx.await;
        }
    }
}

pub(crate) enum Job {
    /// Append a delivery to a session's stream.
    Store {
        client: Arc<str>,
        stream: StreamId,
        delivery: u64,
        bytes: Bytes,
        done: oneshot::Sender<()>,
    },
    /// Retain (Some) or clear (None) the message of a topic.
    Retain {
        topic: Arc<str>,
        bytes: Option<Bytes>,
        done: Option<oneshot::Sender<()>>,
    },
    Kill(RecordId),
    SaveSession {
        client: Arc<str>,
        bytes: Vec<u8>,
        done: Option<oneshot::Sender<()>>,
    },
    DropSession {
        client: Arc<str>,
        stream: Option<StreamId>,
    },
    /// Answers once every job queued before it is done (graceful shutdown).
    Flush(oneshot::Sender<()>),
}

/// The sending side, held by the engine.
#[derive(Debug, Clone)]
pub(crate) struct Persister {
    pub store: Store,
    pub jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Persister {
    pub(crate) fn send(&self, job: Job) {
        if self.jobs.send(job).is_err() {
            tracing::error!("persistence task stopped; a change was not stored");
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

/// A persistent session's definition: expiry and subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedSession {
    pub expiry: u32,
    pub subscriptions: Vec<(String, SubscribeOptions, Option<u32>)>,
}

pub(crate) fn encode_session(s: &SavedSession) -> Vec<u8> {
    // A SUBSCRIBE-like layout: expiry, then (filter, options byte, identifier) entries.
    let mut out = Vec::new();
    out.extend_from_slice(&s.expiry.to_be_bytes());
    for (filter, o, id) in &s.subscriptions {
        out.extend_from_slice(&(filter.len() as u16).to_be_bytes());
        out.extend_from_slice(filter.as_bytes());
        let byte = o.qos as u8
            | u8::from(o.no_local) << 2
            | u8::from(o.retain_as_published) << 3
            | (o.retain_handling as u8) << 4;
        out.push(byte);
        out.extend_from_slice(&id.unwrap_or(0).to_be_bytes());
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
        let options = SubscribeOptions {
            qos: QoS::from_u8(byte & 3)?,
            no_local: byte & 4 != 0,
            retain_as_published: byte & 8 != 0,
            retain_handling: match (byte >> 4) & 3 {
                0 => outpost_codec::RetainHandling::SendAtSubscribe,
                1 => outpost_codec::RetainHandling::SendIfNew,
                _ => outpost_codec::RetainHandling::DoNotSend,
            },
        };
        subscriptions.push((filter, options, (id != 0).then_some(id)));
    }
    Some(SavedSession {
        expiry,
        subscriptions,
    })
}

/// Most jobs of one kind written in one batch.
const MAX_BATCH: usize = 512;

/// Appends a batch of queued deliveries, one `append_batch` per stream, all in flight together,
/// then reports each to the engine in queue order.
async fn store_batch(broker: &Arc<Broker>, store: &Store, batch: Vec<Job>) {
    let mut streams: Vec<(StreamId, Vec<usize>)> = Vec::new();
    for (i, job) in batch.iter().enumerate() {
        if let Job::Store { stream, .. } = job {
            match streams.iter_mut().find(|(s, _)| s == stream) {
                Some((_, idx)) => idx.push(i),
                None => streams.push((*stream, vec![i])),
            }
        }
    }
    let mut ids: Vec<Option<RecordId>> = vec![None; batch.len()];
    let handles: Vec<_> = streams
        .into_iter()
        .map(|(stream, idx)| {
            let payloads = idx
                .iter()
                .filter_map(|&i| match &batch[i] {
                    Job::Store { bytes, .. } => Some(bytes.clone()),
                    _ => None,
                })
                .collect();
            let store = store.clone();
            let task = tokio::spawn(async move { store.append_batch(stream, payloads).await });
            (idx, task)
        })
        .collect();
    for (idx, task) in handles {
        match task.await {
            Ok(Ok(got)) => {
                for (i, id) in idx.into_iter().zip(got) {
                    ids[i] = Some(id);
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "queued messages not stored"),
            Err(e) => tracing::error!(error = %e, "the store task failed"),
        }
    }
    let mut dead = Vec::new();
    for (job, id) in batch.into_iter().zip(ids) {
        if let (
            Job::Store {
                client,
                delivery,
                done,
                ..
            },
            Some(id),
        ) = (job, id)
        {
            if let Some(d) = broker.persisted(&client, delivery, id) {
                dead.push(d);
            }
            let _ = done.send(());
        }
    }
    if !dead.is_empty() {
        if let Err(e) = store.mark_dead(&dead).await {
            tracing::error!(error = %e, "delivered messages not marked dead");
        }
    }
}

/// The persistence task: runs the engine's jobs in order.
pub(crate) async fn run(broker: Arc<Broker>, store: Store, mut rx: mpsc::UnboundedReceiver<Job>) {
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
        match job {
            store_job @ Job::Store { .. } => {
                // Everything already queued goes to the disk together: one group commit for
                // the batch instead of one fsync per message.
                let mut batch = vec![store_job];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(j @ Job::Store { .. }) => batch.push(j),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                store_batch(&broker, &store, batch).await;
            }
            Job::Kill(id) => {
                let mut ids = vec![id];
                while ids.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(Job::Kill(id)) => ids.push(id),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if let Err(e) = store.mark_dead(&ids).await {
                    tracing::error!(error = %e, "delivered messages not marked dead");
                }
            }
            Job::Retain { topic, bytes, done } => {
                if let Some(old) = retained.remove(&topic) {
                    kill(&store, old).await;
                }
                if let Some(bytes) = bytes {
                    match store.append(retained_stream, bytes).await {
                        Ok(id) => {
                            retained.insert(topic, id);
                        }
                        Err(e) => {
                            tracing::error!(topic = &*topic, error = %e, "retained message not stored")
                        }
                    }
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Job::Flush(done) => {
                let _ = done.send(());
            }
            Job::SaveSession {
                client,
                bytes,
                done,
            } => {
                let op = MetaOp::Put {
                    table: SESSIONS,
                    key: client.as_bytes(),
                    value: &bytes,
                };
                if let Err(e) = store.meta().apply(&[op]) {
                    tracing::error!(client = &*client, error = %e, "session not saved");
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Job::DropSession { client, stream } => {
                let op = MetaOp::Delete {
                    table: SESSIONS,
                    key: client.as_bytes(),
                };
                if let Err(e) = store.meta().apply(&[op]) {
                    tracing::error!(client = &*client, error = %e, "session not removed");
                }
                if let Some(stream) = stream {
                    let ids: Vec<RecordId> = store
                        .scan(stream, 0, usize::MAX)
                        .into_iter()
                        .map(|r| r.id)
                        .collect();
                    if let Err(e) = store.mark_dead(&ids).await {
                        tracing::error!(client = &*client, error = %e, "queued messages of an ended session not removed");
                    }
                }
            }
        }
    }
}

async fn kill(store: &Store, id: RecordId) {
    if let Err(e) = store.mark_dead(&[id]).await {
        tracing::error!(error = %e, "delivered message not marked dead");
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
