//! The broker engine: sessions, wills and routing, driven by decoded packets from any listener.
//!
//! One lock guards the engine state. Every operation under it is short (index lookups and queue
//! pushes, no I/O), and the connection tasks do their encoding and socket writes outside it. Sharding
//! the lock is the known next step when profiles show contention (see `docs/adr`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_codec::{Connect, Publish, QoS, ReasonCode, Subscribe, Unsubscribe, Version};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::outbox::{AckError, Offer, Outbox, OutboxLimits, Send};
use crate::persistence::{
    self, Durable, Job, Persister, RefSpec, Stored, StoredDelivery, SubChange,
};
use crate::{Inbox, Incoming, Message, Retained, Router, Subscription};
use outpost_store::{Store, StoreError, StreamId};

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
    /// Most levels in a topic name or filter (`a/b/c` has three). Deeper ones are refused: Topic
    /// Name invalid (0x90) or Topic Filter invalid (0x8F) for MQTT 5 clients, a disconnect or a
    /// SUBACK failure for MQTT 3.1.1.
    pub max_topic_levels: usize,
    /// Most QoS 1/2 messages in flight to one client: an MQTT 5 client's Receive Maximum is
    /// lowered to this (a client cannot make the broker hold an unbounded window).
    pub max_inflight: u16,
    /// Most retained messages; a new retained topic past it is refused with Quota exceeded.
    pub max_retained_messages: usize,
    /// Most bytes (topics and payloads) of retained messages.
    pub max_retained_bytes: usize,
    /// Most persistent sessions (connected or not); a new one past it is refused with Quota
    /// exceeded (MQTT 5) or Server unavailable (MQTT 3.1.1).
    pub max_persistent_sessions: usize,
    /// Flow control: a connected subscriber with this many QoS 1/2 messages queued makes the
    /// publishers that feed it stop reading until it is down to half (their TCP windows fill);
    /// nothing acknowledged is dropped for a connected subscriber that keeps up eventually.
    pub flow_control_queue: usize,
    /// A connected subscriber that holds publishers back this long without draining is
    /// disconnected (its persistent session keeps what was queued).
    pub stall_timeout: Duration,
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
            max_topic_levels: 128,
            max_inflight: 256,
            max_retained_messages: 100_000,
            max_retained_bytes: 64 * 1024 * 1024,
            max_persistent_sessions: 100_000,
            flow_control_queue: 1_000,
            stall_timeout: Duration::from_secs(30),
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
    /// Notified when another connection took the session over (close with Session Taken Over),
    /// or when the connection stalled its publishers too long (see `stalled`).
    pub kick: Arc<Notify>,
    /// Set before `kick` when the subscriber held its publishers back past the stall timeout:
    /// close with Quota exceeded, the session ending as for any broken connection.
    pub stalled: Arc<AtomicBool>,
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

/// What [`Broker::save_session`] writes.
enum Save {
    /// The session's record (expiry, stream).
    Record,
    /// Record and every subscription (the session just became persistent).
    Whole,
    /// Subscription changes only.
    Changes(Vec<SubChange>),
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
    /// Refused (nothing routed) with this reason code: in the PUBACK/PUBREC of an MQTT 5 QoS 1/2
    /// message, otherwise as the reason to disconnect with.
    Refused(ReasonCode),
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
    stalled: Arc<AtomicBool>,
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
    /// The session's stream in the store (persistent sessions with a store), and its name.
    stream: Option<(StreamId, Arc<str>)>,
    /// Flow control: since when the queue has been over the limit (publishers wait while set).
    over_since: Option<Instant>,
    /// Notified when the queue drains below half the limit, or the session stops holding
    /// publishers back (disconnected, stalled, ended).
    drained: Arc<Notify>,
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
    /// QoS 1/2 messages refused because a session's queue was full.
    pub refused_overflow: AtomicU64,
    /// Subscriptions refused (quota, invalid or too deep filters).
    pub refused_subscriptions: AtomicU64,
    /// Retained messages refused by the retained quota.
    pub refused_retained: AtomicU64,
    /// Topics refused for having too many levels.
    pub refused_deep_topics: AtomicU64,
    /// Connections refused by the persistent-session quota.
    pub refused_sessions: AtomicU64,
    /// Changes the store could not make durable (their acknowledgements said so).
    pub persist_failures: AtomicU64,
    /// Subscribers disconnected for holding their publishers back past the stall timeout.
    pub stalled: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    router: Router<Arc<Message>>,
    sessions: HashMap<Arc<str>, Session>,
    /// Wills waiting for their delay: (due, client, message).
    wills: Vec<(Instant, Arc<str>, Message)>,
    /// Retained messages and their bytes (topics and payloads) counted against the quotas: all
    /// but the broker's own `$SYS` topics (a client's `$SYS` message counts; see `route_locked`).
    retained_counted: usize,
    retained_bytes: usize,
    /// Persistent sessions (those with a stream).
    persistent: usize,
    /// A few clients named in the next "refused" log line (see [`Broker::tick`]).
    refused_clients: Vec<Arc<str>>,
}

/// A metadata key's new value (`None`: deleted), by table.
type MetaChange = (&'static str, Vec<u8>, Option<Vec<u8>>);

/// Bytes a retained message counts against the retained quota.
fn retained_size(m: &Message) -> usize {
    m.topic.len() + m.payload.len()
}

/// True when `topic` has more than `max` levels (counted lazily: a 100,000-level topic costs no
/// more than `max` steps).
fn too_deep(topic: &str, max: usize) -> bool {
    max != 0 && topic.split('/').nth(max).is_some()
}

/// The one shutdown signal every connection watches.
#[derive(Debug)]
struct Shutdown(tokio::sync::watch::Sender<bool>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(tokio::sync::watch::channel(false).0)
    }
}

/// Last counter values logged by [`Broker::tick`].
#[derive(Debug, Default)]
struct Logged {
    overflow: u64,
    subscriptions: u64,
    retained: u64,
    deep: u64,
    sessions: u64,
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
    logged: Mutex<Logged>,
    shutdown: Shutdown,
    /// When a store failure was last logged, and how many happened since.
    failure_log: Mutex<(Option<Instant>, u64)>,
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
    ///
    /// Fails when what was stored cannot be read: starting with no sessions would silently drop
    /// every acknowledged message queued for them.
    pub fn with_store(config: BrokerConfig, store: Store) -> Result<Arc<Broker>, StoreError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (retained_tx, retained_rx) = tokio::sync::mpsc::unbounded_channel();
        let broker = Arc::new(Broker {
            config,
            persist: Some(Persister {
                store: store.clone(),
                jobs: tx,
                retained_jobs: retained_tx,
                backlog: Default::default(),
                drained: Default::default(),
            }),
            ..Broker::default()
        });
        let stored = broker.restore(&store)?;
        tokio::spawn(persistence::run(broker.clone(), store.clone(), stored, rx));
        tokio::spawn(persistence::run_retained(
            broker.clone(),
            store,
            retained_rx,
        ));
        Ok(broker)
    }

    /// `n` changes could not be stored: counted, and logged at most once a second (a full disk
    /// fails every write; one line says so).
    pub(crate) fn persistence_failed(&self, n: usize, error: &dyn std::fmt::Display) {
        self.stats
            .persist_failures
            .fetch_add(n as u64, Ordering::Relaxed);
        let mut log = self.failure_log.lock();
        log.1 += n as u64;
        if log.0.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            tracing::error!(
                failed = log.1,
                %error,
                "store writes failed; acknowledgements that depended on them report the failure"
            );
            *log = (Some(Instant::now()), 0);
        }
    }

    /// Starts a graceful shutdown: every connection closes (MQTT 5 clients get DISCONNECT 0x8B,
    /// Server shutting down) after writing what it has; then call [`Broker::flush_persistence`].
    pub fn shut_down(&self) {
        self.shutdown.0.send_replace(true);
    }

    /// Resolves when a shutdown has started (at once if it already has).
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown_watch();
        let _ = rx.wait_for(|down| *down).await;
    }

    /// The shutdown signal, to watch from a loop (`wait_for(|down| *down)`).
    pub fn shutdown_watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.0.subscribe()
    }

    pub(crate) fn persister(&self) -> Option<&Persister> {
        self.persist.as_ref()
    }

    /// Waits while the store is far behind the engine (a flood of messages to persistent sessions
    /// or retained topics): connections call it before reading more, so publishers slow down
    /// instead of memory growing.
    pub async fn wait_for_persistence(&self) {
        if let Some(p) = &self.persist {
            p.wait_for_room().await;
        }
    }

    fn restore(&self, store: &Store) -> Result<Stored, StoreError> {
        let mut st = self.state.lock();
        let max_levels = self.config.max_topic_levels;
        let mut skipped = 0usize;
        for (m, qos) in persistence::stored_retained(store) {
            if too_deep(&m.topic, max_levels) {
                // Stored under other limits; today's would refuse it. Never crash on it.
                skipped += 1;
                continue;
            }
            let topic = m.topic.clone();
            st.retained_bytes += retained_size(&m);
            st.retained_counted += 1;
            st.router.retain(
                &topic,
                Some(Retained {
                    message: Arc::new(m),
                    qos,
                }),
            );
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                max_topic_levels = max_levels,
                "stored retained messages with too many topic levels skipped"
            );
        }
        self.migrate_legacy_sessions(store)?;
        let records = store.meta().scan(persistence::SESSIONS, b"")?;
        let mut subscriptions: HashMap<
            String,
            Vec<(String, outpost_codec::SubscribeOptions, Option<u32>)>,
        > = HashMap::new();
        for (k, v) in store.meta().scan(persistence::SUBSCRIPTIONS, b"")? {
            let (Some((client, filter)), Some((options, id))) = (
                persistence::split_subscription_key(&k),
                persistence::decode_subscription(&v),
            ) else {
                tracing::warn!("an unreadable stored subscription skipped");
                continue;
            };
            subscriptions.entry(client.to_string()).or_default().push((
                filter.to_string(),
                options,
                id,
            ));
        }
        let now_ms = persistence::outpost_store_now_ms();
        // Messages stored once for persistent sessions, by key; keys and delivery ids continue
        // after the largest key seen, so they stay unique across restarts.
        let mut stored = Stored::default();
        let mut shared: HashMap<u64, Arc<Message>> = HashMap::new();
        let mut dangling = Vec::new();
        let messages_stream = store.stream(persistence::MESSAGES_STREAM)?;
        for r in store.scan(messages_stream, 0, usize::MAX) {
            let age = Duration::from_millis(now_ms.saturating_sub(r.timestamp));
            let Some((key, m)) = persistence::decode_message_record(&r.payload, age) else {
                tracing::warn!("an unreadable stored message skipped");
                continue;
            };
            self.next_delivery.fetch_max(key + 1, Ordering::Relaxed);
            stored.add_message(key, r.id);
            shared.insert(key, Arc::new(m));
        }
        let mut sessions = 0;
        let mut messages = 0;
        let mut deep_filters = 0usize;
        for (key, value) in records {
            let (Ok(client), Some((expiry, stream_name))) = (
                String::from_utf8(key),
                persistence::decode_session_record(&value),
            ) else {
                tracing::warn!("an unreadable stored session skipped");
                continue;
            };
            let stream = Some((store.stream(stream_name)?, Arc::<str>::from(stream_name)));
            let client: Arc<str> = client.into();
            let mut session = self.new_session(expiry, stream.clone());
            session.disconnected_at = Some(Instant::now());
            for (filter, options, id) in subscriptions.remove(&*client).unwrap_or_default() {
                if too_deep(&filter, max_levels) {
                    deep_filters += 1;
                    continue;
                }
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
            if let Some((stream, _)) = stream {
                for r in store.scan(stream, 0, usize::MAX) {
                    let age = Duration::from_millis(now_ms.saturating_sub(r.timestamp));
                    let (message, key, qos, retain, ids) =
                        match persistence::decode_delivery(&r.payload, age) {
                            Some(StoredDelivery::Reference {
                                key,
                                qos,
                                retain,
                                subscription_ids,
                            }) => match shared.get(&key) {
                                Some(m) => (m.clone(), Some(key), qos, retain, subscription_ids),
                                None => {
                                    // Its message is gone (removed with a last reference
                                    // before a crash): nothing to deliver.
                                    dangling.push(r.id);
                                    continue;
                                }
                            },
                            Some(StoredDelivery::Whole(m, qos, retain, ids)) => {
                                (Arc::new(m), None, qos, retain, ids)
                            }
                            None => continue,
                        };
                    let id = self.next_delivery.fetch_add(1, Ordering::Relaxed);
                    stored.add_delivery(id, r.id, key);
                    let _ = session.outbox.offer(Delivery {
                        id,
                        message,
                        qos,
                        retain,
                        subscription_ids: ids,
                    });
                    messages += 1;
                }
            }
            st.sessions.insert(client, session);
            st.persistent += 1;
            sessions += 1;
        }
        if deep_filters > 0 {
            tracing::warn!(
                skipped = deep_filters,
                max_topic_levels = max_levels,
                "stored subscriptions with too many topic levels skipped"
            );
        }
        tracing::info!(
            sessions,
            queued_messages = messages,
            retained = st.router.retained_count(),
            "MQTT state restored from the store"
        );
        if !dangling.is_empty() {
            store.mark_dead_later(&dangling);
        }
        Ok(stored)
    }

    /// Moves sessions stored in the first layout (one value holding every subscription) to the
    /// current one (a record per session, an entry per subscription), once, at startup.
    fn migrate_legacy_sessions(&self, store: &Store) -> Result<(), StoreError> {
        let legacy = store.meta().scan(persistence::LEGACY_SESSIONS, b"")?;
        if legacy.is_empty() {
            return Ok(());
        }
        let mut owned: Vec<MetaChange> = Vec::new();
        for (key, value) in &legacy {
            owned.push((persistence::LEGACY_SESSIONS, key.clone(), None));
            let (Ok(client), Some(saved)) =
                (std::str::from_utf8(key), persistence::decode_session(value))
            else {
                continue;
            };
            owned.push((
                persistence::SESSIONS,
                key.clone(),
                Some(persistence::encode_session_record(
                    saved.expiry,
                    &persistence::legacy_session_stream(client),
                )),
            ));
            for (filter, options, id) in saved.subscriptions {
                let mut k = persistence::subscriptions_prefix(client);
                k.extend_from_slice(filter.as_bytes());
                owned.push((
                    persistence::SUBSCRIPTIONS,
                    k,
                    Some(persistence::encode_subscription(&options, id).to_vec()),
                ));
            }
        }
        let ops: Vec<outpost_store::MetaOp<'_>> = owned
            .iter()
            .map(|(table, key, value)| match value {
                Some(value) => outpost_store::MetaOp::Put { table, key, value },
                None => outpost_store::MetaOp::Delete { table, key },
            })
            .collect();
        store.meta().apply(&ops)?;
        tracing::info!(
            sessions = legacy.len(),
            "stored sessions moved to the current layout"
        );
        Ok(())
    }

    fn new_session(&self, expiry: u32, stream: Option<(StreamId, Arc<str>)>) -> Session {
        Session {
            outbox: Outbox::new(self.config.outbox),
            inbox: Inbox::new(self.config.receive_maximum, self.config.topic_alias_maximum),
            subscriptions: HashMap::new(),
            connection: None,
            expiry,
            disconnected_at: None,
            will: None,
            stream,
            over_since: None,
            drained: Arc::new(Notify::new()),
        }
    }

    /// A delivery is complete (acknowledged, expired or discarded): its record, if any, goes.
    fn complete(&self, s: &mut Session, d: &Delivery) {
        if s.stream.is_none() || d.qos == QoS::AtMostOnce {
            return;
        }
        if let Some(p) = &self.persist {
            // The persistence task knows which record holds it (no round trip to this lock).
            p.send(Job::Done(d.id));
        }
    }

    /// Queues a change of a persistent session for the metadata store; the returned `Durable`
    /// resolves once it is saved. Only what changed is written (a SUBSCRIBE of one filter writes
    /// one entry, whatever the session holds).
    fn save_session(&self, client: &Arc<str>, s: &Session, what: Save) -> Durable {
        let mut durable = Durable::default();
        let (Some(p), Some((_, stream))) = (&self.persist, &s.stream) else {
            return durable;
        };
        let record = Some((s.expiry, stream.clone()));
        let (record, replace, changes) = match what {
            Save::Record => (record, false, Vec::new()),
            Save::Whole => (
                record,
                true,
                s.subscriptions
                    .values()
                    .map(|sub| SubChange::Put(sub.filter.clone(), sub.options, sub.id))
                    .collect(),
            ),
            Save::Changes(changes) if changes.is_empty() => return durable,
            Save::Changes(changes) => (None, false, changes),
        };
        let (done, rx) = tokio::sync::oneshot::channel();
        durable.push(rx);
        p.send(Job::SaveSession {
            client: client.clone(),
            record,
            replace,
            changes,
            done: Some(done),
        });
        durable
    }

    /// Resolves once everything queued for the store so far is stored (for a graceful shutdown).
    pub fn flush_persistence(&self) -> Durable {
        let mut durable = Durable::default();
        if let Some(p) = &self.persist {
            for rx in p.flush() {
                durable.push(rx);
            }
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

    /// The client identifier of a CONNECT (one is assigned when it is empty), and whether it
    /// was assigned.
    fn client_id(&self, c: &Connect<'_>) -> Result<(Arc<str>, bool), ReasonCode> {
        if !c.client_id.is_empty() {
            return Ok((c.client_id.into(), false));
        }
        // §3.1.3.1: 3.1.1 allows an empty id only with Clean Session.
        if c.protocol == Version::V311 && !c.clean_start {
            return Err(ReasonCode::ClientIdentifierNotValid);
        }
        Ok((
            format!(
                "outpost-{:016x}",
                self.next_conn.fetch_add(1, Ordering::Relaxed) ^ random_seed()
            )
            .into(),
            true,
        ))
    }

    /// Handles CONNECT. An error is the CONNACK reason code to refuse with. A new persistent
    /// session's stream is created here, on a blocking thread (it is a metadata commit), before
    /// the engine's lock is taken.
    pub async fn connect(&self, c: &Connect<'_>) -> Result<Accepted, ReasonCode> {
        let (client_id, assigned) = self.client_id(c)?;
        let expiry = session_expiry(c, &self.config);
        let mut fresh = None;
        if let (Some(p), true) = (&self.persist, expiry > 0) {
            let has_stream = !c.clean_start
                && self
                    .state
                    .lock()
                    .sessions
                    .get(&client_id)
                    .is_some_and(|s| s.stream.is_some());
            if !has_stream {
                let name = persistence::new_session_stream(&client_id);
                let store = p.store.clone();
                let lookup = name.clone();
                match tokio::task::spawn_blocking(move || store.stream(&lookup)).await {
                    Ok(Ok(id)) => fresh = Some((id, Arc::<str>::from(name))),
                    Ok(Err(e)) => {
                        tracing::error!(client = &*client_id, error = %e, "no stream for a persistent session; connection refused");
                        return Err(ReasonCode::ServerUnavailable);
                    }
                    Err(e) => {
                        tracing::error!(client = &*client_id, error = %e, "no stream for a persistent session; connection refused");
                        return Err(ReasonCode::ServerUnavailable);
                    }
                }
            }
        }
        let result = self.connect_with(c, client_id, assigned, expiry, fresh.clone());
        if let (Err(_), Some((stream, name)), Some(p)) = (&result, fresh, &self.persist) {
            p.send(Job::DropStream { stream, name });
        }
        result
    }

    fn connect_with(
        &self,
        c: &Connect<'_>,
        client_id: Arc<str>,
        assigned: bool,
        expiry: u32,
        fresh: Option<(StreamId, Arc<str>)>,
    ) -> Result<Accepted, ReasonCode> {
        if let Some(w) = &c.will {
            if too_deep(w.topic, self.config.max_topic_levels) {
                self.stats
                    .refused_deep_topics
                    .fetch_add(1, Ordering::Relaxed);
                return Err(ReasonCode::TopicNameInvalid);
            }
        }
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let kick = Arc::new(Notify::new());
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

        let mut st = self.state.lock();
        // The persistent-session quota counts sessions kept in the store; a client resuming its
        // own session is never refused.
        let resumes_persistent = !c.clean_start
            && st
                .sessions
                .get(&client_id)
                .is_some_and(|s| s.stream.is_some());
        let replaces_persistent = st
            .sessions
            .get(&client_id)
            .is_some_and(|s| s.stream.is_some());
        if expiry > 0
            && self.persist.is_some()
            && !resumes_persistent
            && !replaces_persistent
            && st.persistent >= self.config.max_persistent_sessions
        {
            self.stats.refused_sessions.fetch_add(1, Ordering::Relaxed);
            if st.refused_clients.len() < 5 {
                st.refused_clients.push(client_id.clone());
            }
            return Err(match c.protocol {
                Version::V5 => ReasonCode::QuotaExceeded,
                Version::V311 => ReasonCode::ServerUnavailable,
            });
        }
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
        // §3.3.4 / MQTT 5 Receive Maximum: the client's window, but never more than the server's.
        let receive_maximum = match c.protocol {
            Version::V5 => c
                .properties
                .receive_maximum
                .unwrap_or(u16::MAX)
                .min(self.config.max_inflight.max(1)),
            Version::V311 => self.config.outbox.receive_maximum,
        };
        let session = st
            .sessions
            .entry(client_id.clone())
            .or_insert_with(|| self.new_session(expiry, None));
        let mut became_persistent = false;
        let mut unused = fresh;
        if expiry > 0 && session.stream.is_none() {
            session.stream = unused.take();
            became_persistent = session.stream.is_some();
        }
        session.outbox.set_receive_maximum(receive_maximum);
        session.inbox.reset_aliases();
        let expiry_changed = session.expiry != expiry;
        session.expiry = expiry;
        session.disconnected_at = None;
        session.will = will;
        let stalled = Arc::new(AtomicBool::new(false));
        session.connection = Some(Connection {
            id: conn_id,
            wake: wake.clone(),
            kick: kick.clone(),
            stalled: stalled.clone(),
        });
        session.over_since = None;
        let resend = session.outbox.resend();
        let mut persistent_delta: isize = 0;
        if expiry > 0 {
            if became_persistent {
                persistent_delta = 1;
                self.save_session(&client_id, session, Save::Whole);
            } else if expiry_changed {
                self.save_session(&client_id, session, Save::Record);
            }
        } else if let (Some(p), Some(stream)) = (&self.persist, session.stream.take()) {
            // The session stopped being persistent: forget what was stored for it.
            persistent_delta = -1;
            p.send(Job::DropSession {
                client: client_id.clone(),
                stream: Some(stream),
            });
        }
        st.persistent = st.persistent.saturating_add_signed(persistent_delta);
        if let (Some(p), Some((stream, name))) = (&self.persist, unused) {
            // Another connection of this client made the session persistent meanwhile.
            p.send(Job::DropStream { stream, name });
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
                stalled,
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
        // Checked before the alias table can remember it, so every alias names a checked topic.
        if too_deep(p.topic, self.config.max_topic_levels) {
            self.stats
                .refused_deep_topics
                .fetch_add(1, Ordering::Relaxed);
            return Err(ReasonCode::TopicNameInvalid);
        }
        let topic = match session.inbox.publish(p)? {
            Incoming::Duplicate => return Ok((Published::Duplicate, Durable::default())),
            Incoming::Deliver { topic } => topic,
        };
        if p.qos == QoS::AtLeastOnce {
            // Acknowledged once routed (held in memory).
            session.inbox.acked_qos1(p.pkid);
        }
        if p.retain
            && !payload.is_empty()
            && !self.retained_fits(&st, &topic, topic.len() + payload.len())
        {
            if p.qos == QoS::ExactlyOnce {
                // Refused in PUBREC: the exchange ends there (§4.3.3), nothing awaits PUBREL.
                if let Some(s) = st.sessions.get_mut(&h.client_id) {
                    s.inbox.pubrel(p.pkid);
                }
            }
            self.stats.refused_retained.fetch_add(1, Ordering::Relaxed);
            return Ok((
                Published::Refused(ReasonCode::QuotaExceeded),
                Durable::default(),
            ));
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

    /// True when retaining `size` bytes on `topic` stays within the retained quotas (replacing a
    /// topic's message frees the old one's bytes first).
    fn retained_fits(&self, st: &State, topic: &str, size: usize) -> bool {
        let old = st.router.retained(topic).map(|r| retained_size(&r.message));
        let count = st.retained_counted + usize::from(old.is_none());
        let bytes = st.retained_bytes - old.unwrap_or(0) + size;
        count <= self.config.max_retained_messages && bytes <= self.config.max_retained_bytes
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
            let added = retained.as_ref().map(|r| retained_size(&r.message));
            let old = st.router.retain(&message.topic, retained);
            // The broker's own `$SYS` values do not count against the clients' quota.
            if !(from.is_empty() && message.topic.starts_with("$SYS/")) {
                let removed = old.map(|r| retained_size(&r.message));
                st.retained_bytes = st.retained_bytes + added.unwrap_or(0) - removed.unwrap_or(0);
                st.retained_counted = st.retained_counted + usize::from(added.is_some())
                    - usize::from(removed.is_some());
            }
        }
        let sessions = &st.sessions;
        let available = |c: &str| sessions.get(c).is_some_and(|s| s.connection.is_some());
        let targets = st
            .router
            .route(from, &message.topic, message.qos, message.retain, available);
        let message = Arc::new(message);
        let mut delivered = 0;
        // Persistent sessions this message is stored for: one record of the message, a small
        // reference per session (written by the persistence task, encoded there, off this lock).
        let mut refs = Vec::new();
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
            if let (Some(_), Some((stream, _)), true) =
                (&self.persist, &s.stream, t.qos != QoS::AtMostOnce)
            {
                refs.push(RefSpec {
                    stream: *stream,
                    delivery: d.id,
                    qos: d.qos,
                    retain: d.retain,
                    subscription_ids: d.subscription_ids.clone(),
                });
            }
            let qos = d.qos;
            self.offer(s, d);
            if s.connection.is_some() {
                if s.outbox.queued() >= PRESSURE_QUEUE {
                    durable.set_pressure();
                }
                // Flow control (never against oneself: a client's own queue drains only as it
                // reads, and it reads nothing while it waits).
                if qos != QoS::AtMostOnce
                    && *t.client != *from
                    && s.outbox.queued() >= self.config.flow_control_queue
                {
                    s.over_since.get_or_insert_with(Instant::now);
                    durable.hold_for(t.client.clone());
                }
            }
            delivered += 1;
        }
        if let (Some(p), false) = (&self.persist, refs.is_empty()) {
            let (done, rx) = tokio::sync::oneshot::channel();
            durable.push(rx);
            p.send(Job::Store {
                message,
                key: self.next_delivery.fetch_add(1, Ordering::Relaxed),
                refs,
                done,
            });
        }
        delivered
    }

    fn offer(&self, s: &mut Session, d: Delivery) {
        match s.outbox.offer(d) {
            Offer::Queued => {}
            Offer::QueuedEvicting(_) | Offer::DroppedQoS0 => {
                // Only QoS 0 messages are dropped here; they are never stored.
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Offer::Overflow(d) => {
                // Counted here, logged once a second by `tick` (never a line per message, never
                // under the lock).
                self.complete(s, &d);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.refused_overflow.fetch_add(1, Ordering::Relaxed);
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
        let mut changes = Vec::new();
        let refuse = |code: ReasonCode| match h.version {
            Version::V311 => ReasonCode::UnspecifiedError,
            Version::V5 => code,
        };
        for f in sub.filters.iter() {
            let id = sub.properties.subscription_identifier;
            if too_deep(f.filter, self.config.max_topic_levels) {
                self.stats
                    .refused_deep_topics
                    .fetch_add(1, Ordering::Relaxed);
                self.stats
                    .refused_subscriptions
                    .fetch_add(1, Ordering::Relaxed);
                codes.push(refuse(ReasonCode::TopicFilterInvalid));
                continue;
            }
            let full = st.sessions.get(&h.client_id).is_some_and(|s| {
                s.subscriptions.len() >= self.config.max_subscriptions_per_session
                    && !s.subscriptions.contains_key(f.filter)
            });
            if full {
                self.stats
                    .refused_subscriptions
                    .fetch_add(1, Ordering::Relaxed);
                codes.push(refuse(ReasonCode::QuotaExceeded));
                continue;
            }
            match st.router.subscribe(&h.client_id, f.filter, f.options, id) {
                Ok(done) => {
                    codes.push(match done.granted {
                        QoS::AtMostOnce => ReasonCode::Success,
                        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
                    });
                    let filter: Arc<str> = f.filter.into();
                    if let Some(s) = st.sessions.get_mut(&h.client_id) {
                        s.subscriptions.insert(
                            filter.clone(),
                            Subscription {
                                filter: filter.clone(),
                                options: f.options,
                                id,
                            },
                        );
                    }
                    changes.push(SubChange::Put(filter, f.options, id));
                    retained.extend(done.retained.into_iter().map(|(_, m, qos)| (m, qos, id)));
                }
                Err(code) => {
                    self.stats
                        .refused_subscriptions
                        .fetch_add(1, Ordering::Relaxed);
                    codes.push(refuse(code));
                }
            }
        }
        let mut durable = Durable::default();
        if let Some(s) = st.sessions.get_mut(&h.client_id) {
            durable = self.save_session(&h.client_id, s, Save::Changes(changes));
            for (m, qos, id) in retained {
                let d = Delivery {
                    id: self.next_delivery.fetch_add(1, Ordering::Relaxed),
                    message: m,
                    qos,
                    retain: true,
                    subscription_ids: id.into_iter().collect(),
                };
                self.offer(s, d);
            }
        }
        (codes, durable)
    }

    /// Handles UNSUBSCRIBE: one reason code per filter (for the MQTT 5 UNSUBACK). The session's
    /// stored subscriptions change in one write, whatever the number of filters.
    pub fn unsubscribe(&self, h: &ConnectionHandle, u: &Unsubscribe<'_>) -> Vec<ReasonCode> {
        let mut st = self.state.lock();
        let mut changes = Vec::new();
        let codes = u
            .filters
            .iter()
            .map(|f| {
                let removed = st.router.unsubscribe(&h.client_id, f);
                if let Some(s) = st.sessions.get_mut(&h.client_id) {
                    if let Some(sub) = s.subscriptions.remove(f) {
                        changes.push(SubChange::Delete(sub.filter));
                    }
                }
                if removed {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
            })
            .collect();
        if let Some(s) = st.sessions.get(&h.client_id) {
            self.save_session(&h.client_id, s, Save::Changes(changes));
        }
        codes
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
        if s.over_since.is_some() && s.outbox.queued() < self.config.flow_control_queue / 2 {
            s.over_since = None;
            s.drained.notify_waiters();
        }
        out
    }

    /// Flow control: of the subscribers a publisher's messages went to, the first one that still
    /// holds it back (connected, over half the queue limit), with a future that resolves when
    /// that may have changed. A subscriber that has held publishers back longer than the stall
    /// timeout is disconnected here, and no longer holds anyone.
    pub fn holding_back(
        &self,
        clients: &mut Vec<Arc<str>>,
    ) -> Option<tokio::sync::futures::OwnedNotified> {
        let mut st = self.state.lock();
        let half = self.config.flow_control_queue / 2;
        while let Some(client) = clients.last().cloned() {
            let Some(s) = st.sessions.get_mut(&client) else {
                clients.pop();
                continue;
            };
            let Some(conn) = &s.connection else {
                clients.pop();
                continue;
            };
            if conn.stalled.load(Ordering::Relaxed) || s.outbox.queued() < half {
                clients.pop();
                continue;
            }
            let since = *s.over_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.config.stall_timeout {
                // It has not drained for the whole stall timeout: it is the one to go.
                self.stats.stalled.fetch_add(1, Ordering::Relaxed);
                conn.stalled.store(true, Ordering::Relaxed);
                conn.kick.notify_one();
                s.drained.notify_waiters();
                clients.pop();
                continue;
            }
            // Created under the lock, so a drain that happens after the check wakes it.
            return Some(s.drained.clone().notified_owned());
        }
        None
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
        // Publishers held back by this subscriber go on: an offline session holds no one.
        s.over_since = None;
        s.drained.notify_waiters();
        if let Some(e) = session_expiry {
            s.expiry = e;
        }
        let will = s.will.take();
        let expiry = s.expiry;
        if session_expiry.is_some() && expiry > 0 {
            self.save_session(&h.client_id, s, Save::Record);
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
            old.drained.notify_waiters();
            let filters: Vec<Arc<str>> = old.subscriptions.keys().cloned().collect();
            st.router.remove_client(client, &filters);
            if let (Some(p), Some(stream)) = (&self.persist, old.stream) {
                st.persistent = st.persistent.saturating_sub(1);
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
        let clients = std::mem::take(&mut st.refused_clients);
        drop(st);
        self.log_refusals(&clients);
    }

    /// One log line per kind of refusal that happened since the last call, with the count: a
    /// flood of refused messages or filters costs a counter each, not a line each.
    fn log_refusals(&self, clients: &[Arc<str>]) {
        let mut logged = self.logged.lock();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let report = |last: &mut u64, now: u64, what: &str| {
            if now > *last {
                tracing::warn!(count = now - *last, total = now, "{what}");
                *last = now;
            }
        };
        report(
            &mut logged.overflow,
            load(&self.stats.refused_overflow),
            "QoS 1/2 messages refused: session queues full (slow or offline subscribers)",
        );
        report(
            &mut logged.subscriptions,
            load(&self.stats.refused_subscriptions),
            "subscriptions refused (quota, invalid or too deep filters)",
        );
        report(
            &mut logged.retained,
            load(&self.stats.refused_retained),
            "retained messages refused: retained quota reached",
        );
        report(
            &mut logged.deep,
            load(&self.stats.refused_deep_topics),
            "topics refused: more levels than max_topic_levels",
        );
        let sessions = load(&self.stats.refused_sessions);
        if sessions > logged.sessions {
            let names: Vec<&str> = clients.iter().map(|c| &**c).collect();
            tracing::warn!(
                count = sessions - logged.sessions,
                total = sessions,
                clients = ?names,
                "persistent sessions refused: max_persistent_sessions reached"
            );
            logged.sessions = sessions;
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
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
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
            (
                "outpost_mqtt_messages_refused_total",
                "counter",
                load(&self.stats.refused_overflow),
            ),
            (
                "outpost_mqtt_subscriptions_refused_total",
                "counter",
                load(&self.stats.refused_subscriptions),
            ),
            (
                "outpost_mqtt_retained_refused_total",
                "counter",
                load(&self.stats.refused_retained),
            ),
            (
                "outpost_mqtt_topics_refused_total",
                "counter",
                load(&self.stats.refused_deep_topics),
            ),
            (
                "outpost_mqtt_sessions_refused_total",
                "counter",
                load(&self.stats.refused_sessions),
            ),
            (
                "outpost_mqtt_persist_failures_total",
                "counter",
                load(&self.stats.persist_failures),
            ),
            (
                "outpost_mqtt_stalled_subscribers_total",
                "counter",
                load(&self.stats.stalled),
            ),
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
        let h = now(b.connect(&connect("c", true, None))).unwrap().handle;
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
        let first = now(b.connect(&connect("dev", false, None))).unwrap();
        subscribe(&b, &first.handle, &["t"]);
        let second = now(b.connect(&connect("dev", false, None))).unwrap();
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
        let watcher = now(b.connect(&connect("watcher", true, None)))
            .unwrap()
            .handle;
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
        let h = now(b.connect(&connect("dev", false, Some(will(30)))))
            .unwrap()
            .handle;
        b.disconnect(&h, Disconnect::Abrupt, None);
        b.tick(Instant::now() + Duration::from_secs(10));
        assert!(topics(&b, &watcher).is_empty(), "not before the delay");
        // Back in time: the will is cancelled.
        let h = now(b.connect(&connect("dev", false, Some(will(30)))))
            .unwrap()
            .handle;
        b.tick(Instant::now() + Duration::from_secs(60));
        assert!(topics(&b, &watcher).is_empty());
        // Gone for good: after the delay it is published.
        b.disconnect(&h, Disconnect::Abrupt, None);
        b.tick(Instant::now() + Duration::from_secs(31));
        assert_eq!(topics(&b, &watcher), ["wills/dev"]);
        // A normal DISCONNECT discards the will.
        let h = now(b.connect(&connect("dev2", true, Some(will(0)))))
            .unwrap()
            .handle;
        b.disconnect(&h, Disconnect::Normal, None);
        assert!(topics(&b, &watcher).is_empty());
    }

    /// The output of a future that is ready at its first poll (an engine without a store never
    /// waits).
    fn now<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the engine waited without a store"),
        }
    }

    /// True if the future is ready at its first poll.
    fn futures_ready<F: std::future::Future>(f: F) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        f.as_mut().poll(&mut cx).is_ready()
    }
}
