//! The broker engine: sessions, wills and routing, driven by decoded packets from any listener.
//!
//! One lock guards the engine state. Every operation under it is short (index lookups and queue
//! pushes, no I/O), and the connection tasks do their encoding and socket writes outside it. Sharding
//! the lock is the known next step when profiles show contention (see `docs/adr`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_codec::{Connect, Publish, QoS, ReasonCode, Subscribe, Unsubscribe, Version};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::outbox::{AckError, Offer, Outbox, OutboxLimits, Send};
use crate::persistence::{self, Durable, Job, Persister, SavedSession};
use crate::{Inbox, Incoming, Message, Retained, Router, Subscription};
use outpost_store::{RecordId, Store, StreamId};

/// Limits and defaults of the engine.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// QoS 1/2 messages a client may have unacknowledged towards the broker (CONNACK Receive Maximum).
    pub receive_maximum: u16,
    /// Topic aliases a client may use (CONNACK Topic Alias Maximum).
    pub topic_alias_maximum: u16,
    /// Largest packet accepted (CONNACK Maximum Packet Size).
    pub max_packet_size: u32,
    /// Outgoing limits per session; Receive Maximum of MQTT 5 clients overrides the window.
    pub outbox: OutboxLimits,
    /// Session expiry for MQTT 3.1.1 clients with Clean Session 0 (`u32::MAX`: never).
    pub v311_session_expiry: u32,
    /// Whether QoS 0 messages are queued for disconnected persistent sessions.
    pub queue_qos0_offline: bool,
    /// Subscriptions one session may hold; more are refused with Quota exceeded (a SUBSCRIBE flood
    /// cannot grow the broker's memory without bound).
    pub max_subscriptions_per_session: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            receive_maximum: 100,
            topic_alias_maximum: 64,
            max_packet_size: 16 * 1024 * 1024,
            outbox: OutboxLimits::default(),
            v311_session_expiry: u32::MAX,
            queue_qos0_offline: false,
            max_subscriptions_per_session: 10_000,
        }
    }
}

/// A message on its way to one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Unique per delivery (links it to its record in the store).
    pub id: u64,
    /// The shared message.
    pub message: Arc<Message>,
    /// QoS to send with.
    pub qos: QoS,
    /// RETAIN flag to send with.
    pub retain: bool,
    /// Identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
}

impl crate::outbox::Outgoing for Delivery {
    fn qos(&self) -> QoS {
        self.qos
    }
    fn size(&self) -> usize {
        self.message.payload.len() + self.message.topic.len()
    }
}

/// The handle a connection task keeps.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    /// The session's client identifier (assigned if the client sent none).
    pub client_id: Arc<str>,
    /// Identifies this connection among all connections of the same client.
    pub conn_id: u64,
    /// Notified when there is something to send.
    pub wake: Arc<Notify>,
    /// Notified when another connection took the session over: close with Session Taken Over.
    pub kick: Arc<Notify>,
    /// Protocol version.
    pub version: Version,
}

/// What CONNACK says, and what to send right after it.
#[derive(Debug)]
pub struct Accepted {
    /// The connection's handle.
    pub handle: ConnectionHandle,
    /// A stored session was resumed.
    pub session_present: bool,
    /// Set when the broker chose the client identifier.
    pub assigned_client_id: Option<Arc<str>>,
    /// In-flight messages of a resumed session, to send again before anything else.
    pub resend: Vec<Send<Delivery>>,
}

/// Queued messages of a connected subscriber above which its publishers are asked to slow down.
const PRESSURE_QUEUE: usize = 256;

/// What happened to an incoming PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Routed to this many subscribers.
    Routed(usize),
    /// A QoS 2 retransmission already handled: acknowledge again, nothing routed.
    Duplicate,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// DISCONNECT with Normal disconnection: the will is discarded.
    Normal,
    /// DISCONNECT with Disconnect with Will Message (MQTT 5): the will is published.
    WithWill,
    /// The connection broke, timed out or sent garbage: the will is published.
    Abrupt,
}

#[derive(Debug)]
struct Will {
    message: Message,
    delay: u32,
}

#[derive(Debug)]
struct Connection {
    id: u64,
    wake: Arc<Notify>,
    kick: Arc<Notify>,
}

#[derive(Debug)]
struct Session {
    outbox: Outbox<Delivery>,
    inbox: Inbox,
    subscriptions: HashMap<Arc<str>, Subscription>,
    connection: Option<Connection>,
    /// Seconds the session outlives its connection (`u32::MAX`: forever).
    expiry: u32,
    disconnected_at: Option<Instant>,
    will: Option<Will>,
    /// The session's stream in the store (persistent sessions with a store).
    stream: Option<StreamId>,
    /// Deliveries stored in the stream, by delivery id.
    persisted: HashMap<u64, RecordId>,
    /// Deliveries completed before their record was stored (the record is removed once it is).
    completed: HashSet<u64>,
}

impl Session {
    /// True when connection `id` is the session's current connection (not taken over).
    fn owned_by(&self, id: u64) -> bool {
        self.connection.as_ref().is_some_and(|c| c.id == id)
    }
}

/// Counters for `$SYS` and `/metrics`.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// PUBLISH packets received from clients.
    pub messages_in: AtomicU64,
    /// Deliveries handed to sessions.
    pub messages_out: AtomicU64,
    /// Payload bytes received.
    pub bytes_in: AtomicU64,
    /// Messages dropped or refused by per-session limits.
    pub dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    router: Router<Arc<Message>>,
    sessions: HashMap<Arc<str>, Session>,
    /// Wills waiting for their delay: (due, client, message).
    wills: Vec<(Instant, Arc<str>, Message)>,
}

/// The engine.
#[derive(Debug, Default)]
pub struct Broker {
    config: BrokerConfig,
    state: Mutex<State>,
    next_conn: AtomicU64,
    next_delivery: AtomicU64,
    persist: Option<Persister>,
    /// Counters.
    pub stats: BrokerStats,
}

fn session_expiry(c: &Connect<'_>, config: &BrokerConfig) -> u32 {
    match c.protocol {
        Version::V5 => c.properties.session_expiry_interval.unwrap_or(0),
        Version::V311 if c.clean_start => 0,
        Version::V311 => config.v311_session_expiry,
    }
}

impl Broker {
    /// An engine with the given limits.
    pub fn new(config: BrokerConfig) -> Self {
        Broker {
            config,
            ..Broker::default()
        }
    }

    /// An engine whose retained messages and persistent sessions live in `store`: what was stored
    /// before is restored now, and a persistence task is started (call inside a tokio runtime).
    pub fn with_store(config: BrokerConfig, store: Store) -> Arc<Broker> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let broker = Arc::new(Broker {
            config,
            persist: Some(Persister {
                store: store.clone(),
                jobs: tx,
            }),
            ..Broker::default()
        });
        broker.restore(&store);
        tokio::spawn(persistence::run(broker.clone(), store, rx));
        broker
    }

    fn restore(&self, store: &Store) {
        let mut st = self.state.lock();
        for (m, qos) in persistence::stored_retained(store) {
            let topic = m.topic.clone();
            st.router.retain(
                &topic,
                Some(Retained {
                    message: Arc::new(m),
                    qos,
                }),
            );
        }
        let saved = store
            .meta()
            .scan(persistence::SESSIONS, b"")
            .unwrap_or_default();
        let now_ms = persistence::outpost_store_now_ms();
        let mut sessions = 0;
        let mut messages = 0;
        for (key, value) in saved {
            let (Ok(client), Some(saved)) =
                (String::from_utf8(key), persistence::decode_session(&value))
            else {
                continue;
            };
            let client: Arc<str> = client.into();
            let stream = store.stream(&persistence::session_stream(&client)).ok();
            let mut session = self.new_session(saved.expiry, stream);
            session.disconnected_at = Some(Instant::now());
            for (filter, options, id) in saved.subscriptions {
                if st.router.subscribe(&client, &filter, options, id).is_ok() {
                    let filter: Arc<str> = filter.into();
                    session.subscriptions.insert(
                        filter.clone(),
                        Subscription {
                            filter,
                            options,
                            id,
                        },
                    );
                }
            }
            if let Some(stream) = stream {
                for r in store.scan(stream, 0, usize::MAX) {
                    let age = Duration::from_millis(now_ms.saturating_sub(r.timestamp));
                    let Some((m, qos, retain, ids)) = persistence::decode_message(&r.payload, age)
                    else {
                        continue;
                    };
                    let id = self.next_delivery.fetch_add(1, Ordering::Relaxed);
                    session.persisted.insert(id, r.id);
                    let _ = session.outbox.offer(Delivery {
                        id,
                        message: Arc::new(m),
                        qos,
                        retain,
                        subscription_ids: ids,
                    });
                    messages += 1;
                }
            }
            st.sessions.insert(client, session);
            sessions += 1;
        }
        tracing::info!(
            sessions,
            queued_messages = messages,
            retained = st.router.retained_count(),
            "MQTT state restored from the store"
        );
    }

    fn new_session(&self, expiry: u32, stream: Option<StreamId>) -> Session {
        Session {
            outbox: Outbox::new(self.config.outbox),
            inbox: Inbox::new(self.config.receive_maximum, self.config.topic_alias_maximum),
            subscriptions: HashMap::new(),
            connection: None,
            expiry,
            disconnected_at: None,
            will: None,
            stream,
            persisted: HashMap::new(),
            completed: HashSet::new(),
        }
    }

    /// A delivery's record was stored: returns it if the delivery completed meanwhile (to remove).
    pub(crate) fn persisted(
        &self,
        client: &str,
        delivery: u64,
        record: RecordId,
    ) -> Option<RecordId> {
        let mut st = self.state.lock();
        let Some(s) = st.sessions.get_mut(client) else {
            return Some(record);
        };
        if s.completed.remove(&delivery) {
            return Some(record);
        }
        s.persisted.insert(delivery, record);
        None
    }

    /// A delivery is complete (acknowledged, expired or discarded): its record, if any, goes.
    fn complete(&self, s: &mut Session, d: &Delivery) {
        if s.stream.is_none() || d.qos == QoS::AtMostOnce {
            return;
        }
        match s.persisted.remove(&d.id) {
            Some(record) => {
                if let Some(p) = &self.persist {
                    p.send(Job::Kill(record));
                }
            }
            None => {
                s.completed.insert(d.id);
            }
        }
    }

    /// Queues the session's definition for the metadata store; the returned `Durable` resolves once
    /// it is saved.
    fn save_session(&self, client: &Arc<str>, s: &Session) -> Durable {
        let mut durable = Durable::default();
        let (Some(p), Some(_)) = (&self.persist, s.stream) else {
            return durable;
        };
        let saved = SavedSession {
            expiry: s.expiry,
            subscriptions: s
                .subscriptions
                .values()
                .map(|sub| (sub.filter.to_string(), sub.options, sub.id))
                .collect(),
        };
        let (done, rx) = tokio::sync::oneshot::channel();
        durable.push(rx);
        p.send(Job::SaveSession {
            client: client.clone(),
            bytes: persistence::encode_session(&saved),
            done: Some(done),
        });
        durable
    }

    /// Resolves once everything queued for the store so far is stored (for a graceful shutdown).
    pub fn flush_persistence(&self) -> Durable {
        let mut durable = Durable::default();
        if let Some(p) = &self.persist {
            let (done, rx) = tokio::sync::oneshot::channel();
            durable.push(rx);
            p.send(Job::Flush(done));
        }
        durable
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Clients with a live connection.
    pub fn connected(&self) -> usize {
        self.state
            .lock()
            .sessions
            .values()
            .filter(|s| s.connection.is_some())
            .count()
    }

    /// Sessions, connected or not.
    pub fn sessions(&self) -> usize {
        self.state.lock().sessions.len()
    }

    /// Retained messages.
    pub fn retained(&self) -> usize {
        self.state.lock().router.retained_count()
    }

    /// Handles CONNECT. An error is the CONNACK reason code to refuse with.
    pub fn connect(&self, c: &Connect<'_>) -> Result<Accepted, ReasonCode> {
        let (client_id, assigned): (Arc<str>, bool) = if c.client_id.is_empty() {
            // §3.1.3.1: 3.1.1 allows an empty id only with Clean Session.
            if c.protocol == Version::V311 && !c.clean_start {
                return Err(ReasonCode::ClientIdentifierNotValid);
            }
            (
                format!(
                    "outpost-{:016x}",
                    self.next_conn.fetch_add(1, Ordering::Relaxed) ^ random_seed()
                )
                .into(),
                true,
            )
        } else {
            (c.client_id.into(), false)
        };
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let kick = Arc::new(Notify::new());
        let expiry = session_expiry(c, &self.config);
        let will = c.will.map(|w| Will {
            message: Message {
                topic: w.topic.into(),
                payload: Bytes::copy_from_slice(w.payload),
                qos: w.qos,
                retain: w.retain,
                properties: crate::message::MessageProperties {
                    payload_format_indicator: w.properties.payload_format_indicator,
                    message_expiry_interval: w.properties.message_expiry_interval,
                    content_type: w.properties.content_type.map(str::to_string),
                    response_topic: w.properties.response_topic.map(str::to_string),
                    correlation_data: w.properties.correlation_data.map(Bytes::copy_from_slice),
                    user_properties: w
                        .properties
                        .user_properties
                        .iter()
                        .map(|u| (u.name.to_string(), u.value.to_string()))
                        .collect(),
                },
                received: Some(Instant::now()),
            },
            delay: w.properties.will_delay_interval.unwrap_or(0),
        });

        // A persistent session needs its stream; looked up (or created) before taking the lock.
        let stream = match (&self.persist, expiry) {
            (Some(p), e) if e > 0 => p
                .store
                .stream(&persistence::session_stream(&client_id))
                .ok(),
            _ => None,
        };
        let mut st = self.state.lock();
        let mut due_now = Vec::new();
        // A resumed session cancels a will still waiting for its delay (§3.1.3.2.2).
        st.wills.retain(|(_, id, _)| *id != client_id);
        if let Some(old) = st.sessions.get_mut(&client_id) {
            if let Some(conn) = old.connection.take() {
                // Takeover (§3.1.4): the old connection is closed; its will goes out unless the
                // session continues and the will was delayed.
                conn.kick.notify_one();
                if let Some(w) = old.will.take() {
                    if c.clean_start || w.delay == 0 {
                        due_now.push(w.message);
                    }
                }
            }
        }
        let mut session_present = false;
        if c.clean_start {
            self.end_session(&mut st, &client_id);
        } else {
            session_present = st.sessions.contains_key(&client_id);
        }
        let receive_maximum = match c.protocol {
            Version::V5 => c.properties.receive_maximum.unwrap_or(u16::MAX),
            Version::V311 => self.config.outbox.receive_maximum,
        };
        let session = st
            .sessions
            .entry(client_id.clone())
            .or_insert_with(|| self.new_session(expiry, None));
        if session.stream.is_none() {
            session.stream = stream;
        }
        session.outbox.set_receive_maximum(receive_maximum);
        session.inbox.reset_aliases();
        session.expiry = expiry;
        session.disconnected_at = None;
        session.will = will;
        session.connection = Some(Connection {
            id: conn_id,
            wake: wake.clone(),
            kick: kick.clone(),
        });
        let resend = session.outbox.resend();
        if expiry > 0 {
            self.save_session(&client_id, session);
        } else if let (Some(p), Some(stream)) = (&self.persist, session.stream.take()) {
            // The session stopped being persistent: forget what was stored for it.
            p.send(Job::DropSession {
                client: client_id.clone(),
                stream: Some(stream),
            });
        }
        let mut durable = Durable::default();
        for m in due_now {
            self.route_locked(&mut st, &client_id, m, &mut durable);
        }
        Ok(Accepted {
            handle: ConnectionHandle {
                client_id: client_id.clone(),
                conn_id,
                wake,
                kick,
                version: c.protocol,
            },
            session_present,
            assigned_client_id: assigned.then_some(client_id),
            resend,
        })
    }

    /// Handles an incoming PUBLISH; an error is the reason code to disconnect with.
    pub fn publish(
        &self,
        h: &ConnectionHandle,
        p: &Publish<'_>,
        payload: Bytes,
    ) -> Result<(Published, Durable), ReasonCode> {
        let mut st = self.state.lock();
        let session = st
            .sessions
            .get_mut(&h.client_id)
            .ok_or(ReasonCode::UnspecifiedError)?;
        if !session.owned_by(h.conn_id) {
            return Err(ReasonCode::SessionTakenOver);
        }
        let topic = match session.inbox.publish(p)? {
            Incoming::Duplicate => return Ok((Published::Duplicate, Durable::default())),
            Incoming::Deliver { topic } => topic,
        };
        if p.qos == QoS::AtLeastOnce {
            // Acknowledged once routed (held in memory).
            session.inbox.acked_qos1(p.pkid);
        }
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_in
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let message = Message::from_publish(&topic, p, payload);
        let mut durable = Durable::default();
        let n = self.route_locked(&mut st, &h.client_id, message, &mut durable);
        Ok((Published::Routed(n), durable))
    }

    /// Publishes a message from the broker itself (e.g. `$SYS` topics, HTTP publish).
    pub fn publish_internal(&self, message: Message) -> (usize, Durable) {
        let mut st = self.state.lock();
        let mut durable = Durable::default();
        let n = self.route_locked(&mut st, "", message, &mut durable);
        (n, durable)
    }

    fn route_locked(
        &self,
        st: &mut State,
        from: &str,
        message: Message,
        durable: &mut Durable,
    ) -> usize {
        if message.retain {
            let retained = (!message.payload.is_empty()).then(|| Retained {
                message: Arc::new(message.clone()),
                qos: message.qos,
            });
            // `$SYS` values are regenerated after a restart; storing them would only churn the disk.
            let keep = !message.topic.starts_with("$SYS/");
            if let (Some(p), true) = (&self.persist, keep) {
                let (done, rx) = tokio::sync::oneshot::channel();
                durable.push(rx);
                let bytes = retained
                    .as_ref()
                    .map(|r| persistence::encode_message(&r.message, r.qos, true, &[]));
                p.send(Job::Retain {
                    topic: message.topic.clone(),
                    bytes,
                    done: Some(done),
                });
            }
            st.router.retain(&message.topic, retained);
        }
        let sessions = &st.sessions;
        let available = |c: &str| sessions.get(c).is_some_and(|s| s.connection.is_some());
        let targets = st
            .router
            .route(from, &message.topic, message.qos, message.retain, available);
        let message = Arc::new(message);
        let mut delivered = 0;
        for t in targets {
            let Some(s) = st.sessions.get_mut(&t.client) else {
                continue;
            };
            if s.connection.is_none() && t.qos == QoS::AtMostOnce && !self.config.queue_qos0_offline
            {
                continue;
            }
            let d = Delivery {
                id: self.next_delivery.fetch_add(1, Ordering::Relaxed),
                message: message.clone(),
                qos: t.qos,
                retain: t.retain,
                subscription_ids: t.subscription_ids,
            };
            if let (Some(p), Some(stream), true) =
                (&self.persist, s.stream, t.qos != QoS::AtMostOnce)
            {
                let (done, rx) = tokio::sync::oneshot::channel();
                durable.push(rx);
                p.send(Job::Store {
                    client: t.client.clone(),
                    stream,
                    delivery: d.id,
                    bytes: persistence::encode_message(
                        &d.message,
                        d.qos,
                        d.retain,
                        &d.subscription_ids,
                    ),
                    done,
                });
            }
            self.offer(&t.client, s, d);
            if s.connection.is_some() && s.outbox.queued() >= PRESSURE_QUEUE {
                durable.set_pressure();
            }
            delivered += 1;
        }
        delivered
    }

    fn offer(&self, client: &str, s: &mut Session, d: Delivery) {
        match s.outbox.offer(d) {
            Offer::Queued => {}
            Offer::QueuedEvicting(_) | Offer::DroppedQoS0 => {
                // Only QoS 0 messages are dropped here; they are never stored.
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Offer::Overflow(d) => {
                self.complete(s, &d);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    client,
                    "session queue full: QoS 1/2 message refused (slow or offline subscriber)"
                );
            }
        }
        self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &s.connection {
            c.wake.notify_one();
        }
    }

    /// Handles SUBSCRIBE: one reason code per filter (for SUBACK); retained messages are queued.
    /// The `Durable` resolves once a persistent session's new subscriptions are stored: send SUBACK then.
    pub fn subscribe(
        &self,
        h: &ConnectionHandle,
        sub: &Subscribe<'_>,
    ) -> (Vec<ReasonCode>, Durable) {
        let mut st = self.state.lock();
        let mut codes = Vec::new();
        let mut retained = Vec::new();
        for f in sub.filters.iter() {
            let id = sub.properties.subscription_identifier;
            let full = st.sessions.get(&h.client_id).is_some_and(|s| {
                s.subscriptions.len() >= self.config.max_subscriptions_per_session
                    && !s.subscriptions.contains_key(f.filter)
            });
            if full {
                tracing::warn!(
                    client = &*h.client_id,
                    "subscription limit reached; SUBSCRIBE refused"
                );
                codes.push(match h.version {
                    Version::V311 => ReasonCode::UnspecifiedError,
                    Version::V5 => ReasonCode::QuotaExceeded,
                });
                continue;
            }
            match st.router.subscribe(&h.client_id, f.filter, f.options, id) {
                Ok(done) => {
                    codes.push(match done.granted {
                        QoS::AtMostOnce => ReasonCode::Success,
                        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
                    });
                    if let Some(s) = st.sessions.get_mut(&h.client_id) {
                        s.subscriptions.insert(
                            f.filter.into(),
                            Subscription {
                                filter: f.filter.into(),
                                options: f.options,
                                id,
                            },
                        );
                    }
                    retained.extend(done.retained.into_iter().map(|(_, m, qos)| (m, qos, id)));
                }
                Err(code) => codes.push(match h.version {
                    Version::V311 => ReasonCode::UnspecifiedError,
                    Version::V5 => code,
                }),
            }
        }
        let mut durable = Durable::default();
        if let Some(s) = st.sessions.get_mut(&h.client_id) {
            durable = self.save_session(&h.client_id, s);
            for (m, qos, id) in retained {
                let d = Delivery {
                    id: self.next_delivery.fetch_add(1, Ordering::Relaxed),
                    message: m,
                    qos,
                    retain: true,
                    subscription_ids: id.into_iter().collect(),
                };
                self.offer(&h.client_id, s, d);
            }
        }
        (codes, durable)
    }

    /// Handles UNSUBSCRIBE: one reason code per filter (for the MQTT 5 UNSUBACK).
    pub fn unsubscribe(&self, h: &ConnectionHandle, u: &Unsubscribe<'_>) -> Vec<ReasonCode> {
        let mut st = self.state.lock();
        u.filters
            .iter()
            .map(|f| {
                let removed = st.router.unsubscribe(&h.client_id, f);
                if let Some(s) = st.sessions.get_mut(&h.client_id) {
                    s.subscriptions.remove(f);
                    self.save_session(&h.client_id, s);
                }
                if removed {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
            })
            .collect()
    }

    /// Messages that may be sent now on this connection (expired ones are dropped on the way).
    pub fn sendable(&self, h: &ConnectionHandle) -> Vec<Send<Delivery>> {
        let mut st = self.state.lock();
        let Some(s) = st.sessions.get_mut(&h.client_id) else {
            return Vec::new();
        };
        if !s.owned_by(h.conn_id) {
            return Vec::new();
        }
        let now = Instant::now();
        let mut out = Vec::new();
        while let Some(send) = s.outbox.next_sendable() {
            if let Send::Publish { pkid, message, .. } = &send {
                if message.message.expired(now) {
                    // §3.3.2.3.3: an expired message is not delivered; release its identifier.
                    if *pkid != 0 {
                        if let Ok(d) = s.outbox.discard(*pkid) {
                            self.complete(s, &d);
                        }
                    }
                    continue;
                }
            }
            out.push(send);
        }
        out
    }

    /// Forgets an in-flight message the connection will not send (too large for the client).
    pub fn discard(&self, h: &ConnectionHandle, pkid: u16) {
        let _ = self.with_session(h, |s| s.outbox.discard(pkid).map(|d| self.complete(s, &d)));
    }

    /// PUBACK from the client.
    pub fn puback(&self, h: &ConnectionHandle, pkid: u16) -> Result<(), AckError> {
        self.with_session(h, |s| s.outbox.puback(pkid).map(|d| self.complete(s, &d)))
    }

    /// PUBREC from the client: returns the PUBREL to send.
    pub fn pubrec(&self, h: &ConnectionHandle, pkid: u16) -> Result<Send<Delivery>, AckError> {
        self.with_session(h, |s| s.outbox.pubrec(pkid))
    }

    /// PUBCOMP from the client.
    pub fn pubcomp(&self, h: &ConnectionHandle, pkid: u16) -> Result<(), AckError> {
        self.with_session(h, |s| s.outbox.pubcomp(pkid).map(|d| self.complete(s, &d)))
    }

    /// PUBREL from the client: the reason code for PUBCOMP.
    pub fn pubrel(&self, h: &ConnectionHandle, pkid: u16) -> ReasonCode {
        self.with_session(h, |s| Ok(s.inbox.pubrel(pkid)))
            .unwrap_or(ReasonCode::PacketIdentifierNotFound)
    }

    fn with_session<T>(
        &self,
        h: &ConnectionHandle,
        f: impl FnOnce(&mut Session) -> Result<T, AckError>,
    ) -> Result<T, AckError> {
        let mut st = self.state.lock();
        let s = st
            .sessions
            .get_mut(&h.client_id)
            .ok_or(AckError::UnknownPacketId(0))?;
        let r = f(s);
        if let Some(c) = &s.connection {
            // An acknowledgement may have opened the window.
            c.wake.notify_one();
        }
        r
    }

    /// The connection ended. `session_expiry` is a new expiry the client sent in DISCONNECT.
    pub fn disconnect(&self, h: &ConnectionHandle, how: Disconnect, session_expiry: Option<u32>) {
        let mut st = self.state.lock();
        let Some(s) = st.sessions.get_mut(&h.client_id) else {
            return;
        };
        if !s.owned_by(h.conn_id) {
            return; // taken over: the new connection owns the session
        }
        s.connection = None;
        s.disconnected_at = Some(Instant::now());
        if let Some(e) = session_expiry {
            s.expiry = e;
        }
        let will = s.will.take();
        let expiry = s.expiry;
        if session_expiry.is_some() && expiry > 0 {
            self.save_session(&h.client_id, s);
        }
        if let (Some(w), true) = (will, how != Disconnect::Normal) {
            let delay = w.delay.min(expiry);
            if delay == 0 {
                let mut durable = Durable::default();
                self.route_locked(&mut st, &h.client_id, w.message, &mut durable);
            } else {
                st.wills.push((
                    Instant::now() + Duration::from_secs(u64::from(delay)),
                    h.client_id.clone(),
                    w.message,
                ));
            }
        }
        if expiry == 0 {
            self.end_session(&mut st, &h.client_id);
        }
    }

    fn end_session(&self, st: &mut State, client: &Arc<str>) {
        if let Some(old) = st.sessions.remove(client) {
            let filters: Vec<Arc<str>> = old.subscriptions.keys().cloned().collect();
            st.router.remove_client(client, &filters);
            if let (Some(p), Some(stream)) = (&self.persist, old.stream) {
                p.send(Job::DropSession {
                    client: client.clone(),
                    stream: Some(stream),
                });
            }
        }
    }

    /// Publishes delayed wills that are due and ends expired sessions. Call about once a second.
    pub fn tick(&self, now: Instant) {
        let mut st = self.state.lock();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut st.wills)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        st.wills = later;
        let mut durable = Durable::default();
        for (_, client, message) in due {
            self.route_locked(&mut st, &client, message, &mut durable);
        }
        let expired: Vec<Arc<str>> = st
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.connection.is_none()
                    && s.expiry != u32::MAX
                    && s.disconnected_at.is_some_and(|at| {
                        now.saturating_duration_since(at)
                            >= Duration::from_secs(u64::from(s.expiry))
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for client in expired {
            // A will still waiting goes out when its session ends (§3.1.3.2.2).
            let pending: Vec<Message> = {
                let mut out = Vec::new();
                st.wills.retain(|(_, c, m)| {
                    if *c == client {
                        out.push(m.clone());
                        false
                    } else {
                        true
                    }
                });
                out
            };
            for m in pending {
                self.route_locked(&mut st, &client, m, &mut durable);
            }
            self.end_session(&mut st, &client);
        }
    }
}

/// The engine's figures, for `$SYS` topics and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStatus {
    /// Connected clients.
    pub connected: u64,
    /// Sessions (connected or kept for later).
    pub sessions: u64,
    /// Retained messages.
    pub retained: u64,
    /// Subscriptions.
    pub subscriptions: u64,
    /// PUBLISH packets received.
    pub messages_in: u64,
    /// PUBLISH packets sent.
    pub messages_out: u64,
    /// Messages dropped by backpressure.
    pub dropped: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
}

impl Broker {
    /// Current figures.
    pub fn status(&self) -> BrokerStatus {
        let st = self.state.lock();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BrokerStatus {
            connected: st
                .sessions
                .values()
                .filter(|s| s.connection.is_some())
                .count() as u64,
            sessions: st.sessions.len() as u64,
            retained: st.router.retained_count() as u64,
            subscriptions: st.router.subscriptions() as u64,
            messages_in: load(&self.stats.messages_in),
            messages_out: load(&self.stats.messages_out),
            dropped: load(&self.stats.dropped),
            bytes_in: load(&self.stats.bytes_in),
        }
    }

    /// The figures in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let s = self.status();
        let mut out = String::new();
        for (name, kind, v) in [
            ("outpost_mqtt_clients_connected", "gauge", s.connected),
            ("outpost_mqtt_sessions", "gauge", s.sessions),
            ("outpost_mqtt_retained_messages", "gauge", s.retained),
            ("outpost_mqtt_subscriptions", "gauge", s.subscriptions),
            (
                "outpost_mqtt_messages_received_total",
                "counter",
                s.messages_in,
            ),
            (
                "outpost_mqtt_messages_sent_total",
                "counter",
                s.messages_out,
            ),
            ("outpost_mqtt_messages_dropped_total", "counter", s.dropped),
            ("outpost_mqtt_bytes_received_total", "counter", s.bytes_in),
        ] {
            out.push_str(&format!("# TYPE {name} {kind}\n{name} {v}\n"));
        }
        out
    }

    /// Publishes the `$SYS/broker/...` status topics (retained, like mosquitto), so monitoring tools
    /// see the broker's state. `extra` adds values the engine does not know (store size, ...).
    pub fn publish_sys(&self, uptime: Duration, extra: &[(&str, String)]) {
        let s = self.status();
        let mut values = vec![
            ("version", format!("outpost {}", env!("CARGO_PKG_VERSION"))),
            ("uptime", format!("{} seconds", uptime.as_secs())),
            ("clients/connected", s.connected.to_string()),
            ("clients/total", s.sessions.to_string()),
            ("subscriptions/count", s.subscriptions.to_string()),
            ("retained messages/count", s.retained.to_string()),
            ("messages/received", s.messages_in.to_string()),
            ("messages/sent", s.messages_out.to_string()),
            ("messages/dropped", s.dropped.to_string()),
            ("bytes/received", s.bytes_in.to_string()),
        ];
        values.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        for (name, value) in values {
            let topic = format!("$SYS/broker/{name}");
            let _ = self.publish_internal(Message::new(
                &topic,
                Bytes::from(value),
                QoS::AtMostOnce,
                true,
            ));
        }
    }
}

/// Some entropy for assigned client identifiers, without a dependency.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_codec::{
        ConnectProperties, List, SubscribeFilter, Will as ConnectWill, WillProperties,
    };

    fn connect<'a>(id: &'a str, clean: bool, will: Option<ConnectWill<'a>>) -> Connect<'a> {
        Connect {
            protocol: Version::V5,
            clean_start: clean,
            keep_alive: 60,
            client_id: id,
            will,
            properties: ConnectProperties {
                session_expiry_interval: Some(if clean { 0 } else { 3600 }),
                ..ConnectProperties::default()
            },
            ..Connect::default()
        }
    }

    fn subscribe(b: &Broker, h: &ConnectionHandle, filters: &[&str]) -> Vec<ReasonCode> {
        let f: Vec<SubscribeFilter<'_>> = filters
            .iter()
            .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce))
            .collect();
        b.subscribe(
            h,
            &Subscribe {
                pkid: 1,
                filters: List::new(&f),
                ..Subscribe::default()
            },
        )
        .0
    }

    fn topics(b: &Broker, h: &ConnectionHandle) -> Vec<String> {
        b.sendable(h)
            .into_iter()
            .filter_map(|s| match s {
                Send::Publish { message, .. } => Some(message.message.topic.to_string()),
                Send::PubRel { .. } => None,
            })
            .collect()
    }

    #[test]
    fn subscription_quota_refuses_the_flood_not_the_client() {
        let b = Broker::new(BrokerConfig {
            max_subscriptions_per_session: 2,
            ..BrokerConfig::default()
        });
        let h = b.connect(&connect("c", true, None)).unwrap().handle;
        let codes = subscribe(&b, &h, &["a", "b", "c"]);
        assert_eq!(
            codes,
            [
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS1,
                ReasonCode::QuotaExceeded
            ]
        );
        assert_eq!(
            subscribe(&b, &h, &["a"]),
            [ReasonCode::GrantedQoS1],
            "replacing one is fine"
        );
    }

    #[test]
    fn takeover_kicks_the_old_connection_and_keeps_the_session() {
        let b = Broker::default();
        let first = b.connect(&connect("dev", false, None)).unwrap();
        subscribe(&b, &first.handle, &["t"]);
        let second = b.connect(&connect("dev", false, None)).unwrap();
        assert!(second.session_present);
        // The old connection's permit is set: its task wakes and closes.
        assert!(futures_ready(first.handle.kick.notified()));
        b.publish_internal(Message::new(
            "t",
            Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
            false,
        ));
        assert_eq!(topics(&b, &second.handle), ["t"]);
        assert!(
            b.sendable(&first.handle).is_empty(),
            "the old connection gets nothing"
        );
        // Its late disconnect does not end the new connection's session.
        b.disconnect(&first.handle, Disconnect::Abrupt, None);
        assert_eq!(b.connected(), 1);
    }

    #[test]
    fn delayed_will_goes_out_unless_the_client_comes_back() {
        let b = Broker::default();
        let watcher = b.connect(&connect("watcher", true, None)).unwrap().handle;
        subscribe(&b, &watcher, &["wills/#"]);
        let will = |delay| ConnectWill {
            topic: "wills/dev",
            payload: b"gone",
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(delay),
                ..WillProperties::default()
            },
        };
        let h = b
            .connect(&connect("dev", false, Some(will(30))))
            .unwrap()
            .handle;
        b.disconnect(&h, Disconnect::Abrupt, None);
        b.tick(Instant::now() + Duration::from_secs(10));
        assert!(topics(&b, &watcher).is_empty(), "not before the delay");
        // Back in time: the will is cancelled.
        let h = b
            .connect(&connect("dev", false, Some(will(30))))
            .unwrap()
            .handle;
        b.tick(Instant::now() + Duration::from_secs(60));
        assert!(topics(&b, &watcher).is_empty());
        // Gone for good: after the delay it is published.
        b.disconnect(&h, Disconnect::Abrupt, None);
        b.tick(Instant::now() + Duration::from_secs(31));
        assert_eq!(topics(&b, &watcher), ["wills/dev"]);
        // A normal DISCONNECT discards the will.
        let h = b
            .connect(&connect("dev2", true, Some(will(0))))
            .unwrap()
            .handle;
        b.disconnect(&h, Disconnect::Normal, None);
        assert!(topics(&b, &watcher).is_empty());
    }

    /// True if the future is ready at its first poll.
    fn futures_ready<F: std::future::Future>(f: F) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        f.as_mut().poll(&mut cx).is_ready()
    }
}
