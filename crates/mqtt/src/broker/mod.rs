//! The broker engine: sessions, wills and routing, driven by decoded packets from any listener.
//!
//! The state is split the way the work splits, so publishers on different cores do not queue
//! behind one lock:
//! - the subscription index is read-mostly: routing takes a read lock (many publishers route at
//!   once); SUBSCRIBE, UNSUBSCRIBE and a session's end take the write lock;
//! - every session has its own lock: routing locks each target session in turn to queue a
//!   delivery, a connection locks only its own session for its acknowledgements and sends;
//! - retained messages, delayed wills and the session map have locks of their own.
//!
//! No lock is held across I/O or encoding (the connection tasks encode and write; the
//! persistence tasks encode and call the store). Locks are taken in one order, never the
//! reverse, which is what keeps this free of deadlocks (`crates/mqtt/tests/engine_stress.rs` hammers
//! it):
//! session map → one session → subscription index → retained messages / wills / small leaves.
//! Routing reads the map and the index together, lets both go, then locks target sessions one
//! at a time.
//!
//! The engine's operations are split by concept: `connect` (a session's start and end), `routing`
//! (PUBLISH, SUBSCRIBE), `outgoing` (what a connection sends and its acknowledgements),
//! `storage` (restore and persistence), `status` (tick, metrics, `$SYS`).
//!
//! Over 700 lines with its unit tests (about 150); the engine's state, constructors and the
//! helpers every part above shares.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_codec::{Connect, Publish, QoS, ReasonCode, Subscribe, Unsubscribe, Version};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

mod admin;
mod connect;
mod incoming;
mod lifecycle;
mod offline;
mod outgoing;
mod queues;
mod status;
mod storage;

pub use admin::{ConnectionInfo, HeldMessage, RetainedSummary, SessionSummary};
pub use lifecycle::{DisconnectReason, EVENTS_PREFIX};
pub use status::BrokerStatus;

use crate::outbox::{AckError, Offer, Outbox, OutboxLimits, Send};
use crate::persistence::{
    self, Durable, Job, Persister, RefSpec, Stored, StoredDelivery, SubChange,
};
use crate::small_map::SmallMap;
use crate::{Inbox, Incoming, Message, Retained, RetainedTree, Router, Subscription, Wakes};
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
    /// lowered to this (a client cannot make the broker hold an unbounded window); an MQTT 3.1.1
    /// client, which announces no window, gets this one.
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
    /// This broker's node id, told to MQTT 5 clients in the CONNACK user property
    /// `outpost-node` (empty: not told). A bridge from another Outpost reads it so that it does
    /// not send back what came from here.
    pub node_id: String,
    /// What a QoS 1/2 message is told when a matching session's queue is full (ADR 0008).
    pub overflow: OverflowPolicy,
    /// AWS IoT Core's lifecycle events under `$aws/events/` (connected, disconnected,
    /// connect_failed, subscribed, unsubscribed).
    pub lifecycle_events: bool,
}

/// What happens to a QoS 1/2 message that a matching session's full queue cannot take. Either
/// way that session's loss is counted under its client identifier (`$SYS`, `/metrics`, a log
/// line a second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// When no matching session (nor a rule or bridge) took it, the publisher is refused: MQTT 5
    /// hears Quota exceeded (0x97), MQTT 3.1.1 loses its connection without the acknowledgement,
    /// other doors get their refusal. A message some session took is acknowledged.
    #[default]
    Refuse,
    /// mosquitto's behaviour: the message is acknowledged and dropped for that session.
    Drop,
}

/// What routing did with one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Routed {
    /// Matching sessions it was offered to.
    pub matched: usize,
    /// Of those, the sessions that queued it.
    pub took: usize,
    /// QoS 1/2 deliveries a full queue did not take.
    pub refused: usize,
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
            node_id: String::new(),
            overflow: OverflowPolicy::Refuse,
            lifecycle_events: true,
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
    /// The queue message it carries (`$queue/` subscriptions): acknowledged, it is deleted.
    pub queue: Option<Arc<crate::QueueReceipt>>,
}

impl crate::outbox::Outgoing for Delivery {
    fn qos(&self) -> QoS {
        self.qos
    }
    fn size(&self) -> usize {
        self.message.size()
    }
}

/// The handle a connection task keeps.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    /// The session's client identifier (assigned if the client sent none).
    pub client_id: Arc<str>,
    /// Identifies this connection among all connections of the same client.
    pub conn_id: u64,
    /// Notified when there is something to send, or when the broker closes the connection
    /// (a takeover, a stalled subscriber, an operator, the shutdown: [`Signals::closing`]).
    pub signals: Arc<crate::Signals>,
    /// Protocol version.
    pub version: Version,
    /// Who the client logged in as: what it publishes (its will too) acts as this identity.
    pub identity: outpost_access::Identity,
    /// The session this connection serves (locked directly: no map lookup per packet).
    pub(crate) session: Arc<SessionCell>,
}

/// A session behind its own lock.
#[derive(Debug)]
pub(crate) struct SessionCell {
    state: Mutex<Session>,
    /// Mirrors `state.connection.is_some()`: routing reads it, with no session lock, to pick a
    /// connected member of a share group.
    connected: AtomicBool,
    /// Its number in the offline log while it takes its messages from there (0: it does not;
    /// see [`crate::offline`]). Written under the log's lock; routing reads it first without.
    offline: AtomicU32,
}

impl SessionCell {
    fn new(session: Session) -> Arc<SessionCell> {
        Arc::new(SessionCell {
            state: Mutex::new(session),
            connected: AtomicBool::new(false),
            offline: AtomicU32::new(0),
        })
    }
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

/// Client publishes under this prefix are commands for a plug-in (`$CONTROL/dynamic-security/v1`).
pub const CONTROL_PREFIX: &str = "$CONTROL/";

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
    /// The ACL does not let this client publish to the topic: MQTT 5 QoS 1/2 is told (0x87),
    /// otherwise the message is acknowledged and dropped, as mosquitto does (an MQTT 3.1.1
    /// client has no way to hear "not authorized" short of losing its connection).
    Denied,
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

/// A will waiting for its delay: when it is due, whose it is, the will.
type DelayedWill = (Instant, Arc<str>, Box<Will>);

#[derive(Debug)]
struct Will {
    message: Message,
    delay: u32,
    /// Who set it: the will is published as this identity, checked again when it is sent.
    identity: outpost_access::Identity,
}

#[derive(Debug)]
struct Connection {
    id: u64,
    signals: Arc<crate::Signals>,
    /// The identity's name (an operator disconnects a user's connections by it).
    who: Arc<str>,
    version: Version,
}

#[derive(Debug)]
struct Session {
    outbox: Outbox<Delivery>,
    inbox: Inbox,
    /// A short list for most sessions (one or two filters), a hash map past a few.
    /// Keyed by the filter as the client sent it (shared with the subscription tree), each
    /// with its options and identifier (8 bytes; the filter is not kept twice: issue 29).
    subscriptions: SmallMap<Arc<str>, Subscription>,
    connection: Option<Connection>,
    /// Seconds the session outlives its connection (`u32::MAX`: forever).
    expiry: u32,
    /// When its connection ended (kept to the millisecond in 8 bytes: `Moment`).
    disconnected_at: Option<crate::moment::Moment>,
    /// Boxed: most sessions have none, and a message is large.
    will: Option<Box<Will>>,
    /// The session's stream in the store (persistent sessions with a store), and its name.
    stream: Option<Box<(StreamId, Arc<str>)>>,
    /// Flow control, from the first time its queue went over the limit until it drains below
    /// half (boxed: most sessions never hold a publisher back; issue 29).
    flow: Option<Box<Flow>>,
    /// The connection was woken and has not yet asked what to send: further deliveries need no
    /// wake-up of their own (a fan-out or a burst wakes a subscriber once, not per message).
    woken: bool,
    /// The session ended (removed from the map): a route that found it just before queues
    /// nothing more in it.
    ended: bool,
    /// Numbers the session among this broker start's sessions (lifecycle events'
    /// `sessionIdentifier`).
    serial: u64,
}

/// A session's flow control while its backlog holds (or held) publishers back (ADR 0015).
#[derive(Debug, Default)]
struct Flow {
    /// Since when the queue has been over the limit (publishers wait while set).
    over_since: Option<Instant>,
    /// The backlog over the limit already held publishers for the whole stall timeout: until it
    /// drains below half, it holds no one again, whatever the subscriber does in between
    /// (reconnecting resets nothing: ADR 0015).
    stall_spent: bool,
    /// How long the backlog held publishers on earlier connections (counted until it drains
    /// below half): a subscriber that reconnects before the stall timeout does not start over.
    held_for: Duration,
    /// Notified when the queue drains below half the limit, or the session stops holding
    /// publishers back (disconnected, stalled, ended).
    drained: Arc<Notify>,
}

impl Session {
    /// Wakes the publishers this session holds back.
    fn release_publishers(&self) {
        if let Some(f) = &self.flow {
            f.drained.notify_waiters();
        }
    }

    /// Whether its backlog already held publishers for the whole stall timeout.
    fn stall_spent(&self) -> bool {
        self.flow.as_ref().is_some_and(|f| f.stall_spent)
    }

    /// True when connection `id` is the session's current connection (not taken over).
    fn owned_by(&self, id: u64) -> bool {
        self.connection.as_ref().is_some_and(|c| c.id == id)
    }

    /// Wakes the connection (when `wakes` is woken), unless it was woken and has not asked for
    /// its sends since.
    fn wake(&mut self, wakes: &mut Wakes) {
        if let (Some(c), false) = (&self.connection, self.woken) {
            self.woken = true;
            wakes.push(c.signals.clone());
        }
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
    /// Wills not published: their client may no longer publish there, the topic is the
    /// broker's own, or a retained will did not fit the retained quota.
    pub refused_wills: AtomicU64,
}

/// Every session by client identifier. The map is locked only to find, add or remove one.
#[derive(Debug, Default)]
struct Sessions {
    map: HashMap<Arc<str>, Arc<SessionCell>>,
    /// Persistent sessions (those with a stream).
    persistent: usize,
}

/// Retained messages, and what they count against the quotas.
#[derive(Debug, Default)]
struct RetainedIndex {
    tree: RetainedTree<Retained<Arc<Message>>>,
    /// Retained messages and their bytes (topics and payloads) counted against the quotas: all
    /// but the broker's own `$SYS` topics (a client's `$SYS` message counts; see `set_retained`).
    counted: usize,
    bytes: usize,
}

/// A metadata key's new value (`None`: deleted), by table.
type MetaChange = (&'static str, Vec<u8>, Option<Vec<u8>>);

/// Bytes a retained message counts against the retained quota.
/// True when `topic` has more than `max` levels (counted lazily: a 100,000-level topic costs no
/// more than `max` steps).
fn too_deep(topic: &str, max: usize) -> bool {
    max != 0 && topic.split('/').nth(max).is_some()
}

/// QoS 1/2 messages one session's full queue did not take, and how much of that was already
/// told (log line, `$SYS`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Loss {
    pub count: u64,
    pub logged: u64,
    pub published: u64,
}

/// Last counter values logged by [`Broker::tick`].
#[derive(Debug, Default)]
struct Logged {
    subscriptions: u64,
    retained: u64,
    deep: u64,
    sessions: u64,
}

/// The engine.
#[derive(Debug, Default)]
pub struct Broker {
    config: BrokerConfig,
    sessions: RwLock<Sessions>,
    index: RwLock<Router>,
    retained: Mutex<RetainedIndex>,
    /// Wills waiting for their delay.
    wills: Mutex<Vec<DelayedWill>>,
    /// A few clients named in the next "refused" log line (see [`Broker::tick`]).
    refused_clients: Mutex<Vec<Arc<str>>>,
    /// Per session (client identifier): QoS 1/2 messages its full queue did not take. An entry
    /// is removed once its session is gone and `$SYS` was cleared.
    losses: Mutex<HashMap<Arc<str>, Loss>>,
    next_conn: AtomicU64,
    next_delivery: AtomicU64,
    /// What offline persistent sessions are owed, one entry per message.
    offline: Mutex<crate::offline::OfflineLog>,
    /// Random at every start: makes lifecycle events' session identifiers unique across
    /// restarts.
    seed: u64,
    persist: Option<Persister>,
    /// Counters.
    pub stats: BrokerStats,
    logged: Mutex<Logged>,
    /// The one shutdown signal every connection watches.
    shutdown: outpost_shutdown::Trigger,
    /// When a store failure was last logged, and how many happened since.
    failure_log: Mutex<(Option<Instant>, u64)>,
    /// The routing layer's view of client publishes.
    tap: crate::tap::Slot<dyn crate::PublishTap>,
    /// Queues over MQTT (`$queue/`).
    queue_door: crate::tap::Slot<dyn crate::QueueDoor>,
    /// Takes client publishes to `$CONTROL/…` (dynamic security's commands): they go there
    /// only, never to subscribers, rules or bridges (they carry passwords).
    control: crate::tap::Slot<dyn crate::PublishTap>,
    /// Who may do what: asked about wills when they are sent, and by the doors that publish
    /// into the engine as somebody (ADR 0015).
    gate: outpost_access::Gate,
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
            seed: random_seed(),
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
            seed: random_seed(),
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
        {
            // The restored sessions are offline: what is routed to them now waits in the log.
            let sessions = broker.sessions.read();
            for cell in sessions.map.values() {
                broker.go_offline(cell, &cell.state.lock());
            }
        }
        // A thread of its own: woken by a connection's store job on a runtime worker, the task
        // would wait in that worker's LIFO slot (which no other worker steals) until the
        // connection had routed its whole read, so routing and storing took turns on one core
        // (a durable fan-out to 100 offline sessions ran at half the speed).
        persistence::spawn_thread(persistence::run(broker.clone(), store.clone(), stored, rx))?;
        tokio::spawn(persistence::run_retained(
            broker.clone(),
            store,
            retained_rx,
        ));
        Ok(broker)
    }

    /// Starts a graceful shutdown: every connection closes (MQTT 5 clients get DISCONNECT 0x8B,
    /// Server shutting down) after writing what it has; then call [`Broker::flush_persistence`].
    pub fn shut_down(&self) {
        self.shutdown.fire();
        // Connections hear it through their own signal (one wake-up for every reason, not a
        // watch future each); one that registers after this look sees the trigger fired.
        let sessions = self.sessions.read();
        for cell in sessions.map.values() {
            if let Some(conn) = &cell.state.lock().connection {
                conn.signals.close(crate::Close::ShuttingDown);
            }
        }
    }

    /// The shutdown signal every connection receives.
    pub fn shutdown(&self) -> outpost_shutdown::Shutdown {
        self.shutdown.subscribe()
    }

    /// Installs the authorizer the engine asks about messages that act as somebody (wills, the
    /// other doors' publishes); false when one is installed already. Until then all is allowed.
    pub fn set_authorizer(&self, authorizer: Arc<dyn outpost_access::Authorizer>) -> bool {
        self.gate.set(authorizer)
    }

    /// The authorizer in force (the queue door asks it about `$queue/` sends).
    pub fn authorizer(&self) -> &dyn outpost_access::Authorizer {
        self.gate.get()
    }

    /// Installs the door of `$CONTROL/…` publishes (dynamic security); false when one is
    /// installed already.
    pub fn set_control(&self, door: Arc<dyn crate::PublishTap>) -> bool {
        self.control.set(door)
    }

    /// Installs the publish tap (the routing layer); false when one is installed already.
    pub fn set_tap(&self, tap: Arc<dyn crate::PublishTap>) -> bool {
        self.tap.set(tap)
    }

    /// Installs the queue door (`$queue/` topics); false when one is installed already. The
    /// `$queue/` subscriptions of restored persistent sessions get their consumers now (call
    /// inside a tokio runtime).
    pub fn set_queue_door(&self, door: Arc<dyn crate::QueueDoor>) -> bool {
        if !self.queue_door.set(door.clone()) {
            return false;
        }
        let restored: Vec<(Arc<str>, String)> = self
            .sessions
            .read()
            .map
            .iter()
            .flat_map(|(client, cell)| {
                cell.state
                    .lock()
                    .subscriptions
                    .keys()
                    .filter_map(|f| crate::queue_name(f).map(|q| (client.clone(), q.to_string())))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (client, queue) in restored {
            if let Err(code) = door.subscribe(client.clone(), None, &queue) {
                tracing::warn!(client = &*client, queue = %queue, ?code, "a restored $queue subscription has no queue; it receives nothing");
            }
        }
        true
    }

    pub(crate) fn persister(&self) -> Option<&Persister> {
        self.persist.as_ref()
    }

    fn new_session(&self, expiry: u32, stream: Option<(StreamId, Arc<str>)>) -> Session {
        Session {
            outbox: Outbox::new(self.config.outbox),
            inbox: Inbox::new(self.config.receive_maximum, self.config.topic_alias_maximum),
            subscriptions: SmallMap::default(),
            connection: None,
            expiry,
            disconnected_at: None,
            will: None,
            stream: stream.map(Box::new),
            flow: None,
            woken: false,
            ended: false,
            serial: self.next_conn.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Clients with a live connection.
    pub fn connected(&self) -> usize {
        self.sessions
            .read()
            .map
            .values()
            .filter(|s| s.connected.load(Ordering::Relaxed))
            .count()
    }

    /// Sessions, connected or not.
    pub fn sessions(&self) -> usize {
        self.sessions.read().map.len()
    }

    /// Retained messages.
    pub fn retained(&self) -> usize {
        self.retained.lock().tree.len()
    }

    /// The session of `client`, if there is one (the map's lock is let go at once).
    fn session_of(&self, client: &str) -> Option<Arc<SessionCell>> {
        self.sessions.read().map.get(client).cloned()
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

    /// Every client has a session, held whether it is connected or not (issue 29: ≤ 1 KiB per
    /// idle connection): what most sessions never use (flow control, a persistent stream) is
    /// boxed, the queue's limits kept in 32 bits, the moment of disconnection in 8 bytes, the
    /// subscriptions in a two-word map: 232 B, with the `Arc`'s counts a 256-byte allocation
    /// (312 B and 336 before). A change that widens it fails here.
    #[test]
    fn a_session_stays_small() {
        let size = std::mem::size_of::<SessionCell>();
        assert!(size <= 232, "a session is {size} B");
    }

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
        assert!(futures_ready(first.handle.signals.notified()));
        assert_eq!(
            first.handle.signals.closing(),
            Some(crate::Close::TakenOver)
        );
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

    #[test]
    fn an_offline_session_gets_its_queue_then_the_offline_log_in_order() {
        let b = Broker::new(BrokerConfig {
            outbox: OutboxLimits {
                receive_maximum: 1,
                max_queued: 4,
                max_queued_bytes: 1 << 20,
            },
            max_inflight: 1,
            ..BrokerConfig::default()
        });
        let publish = |topic: &str| {
            b.publish_internal(Message::new(
                topic,
                Bytes::from_static(b"x"),
                QoS::AtLeastOnce,
                false,
            ))
            .0
        };
        let h = now(b.connect(&connect("dev", false, None))).unwrap().handle;
        subscribe(&b, &h, &["t/#"]);
        let other = now(b.connect(&connect("other", false, None)))
            .unwrap()
            .handle;
        subscribe(&b, &other, &["t/#"]);
        // One in flight, one queued while connected.
        publish("t/0");
        publish("t/1");
        assert_eq!(topics(&b, &h), ["t/0"]);
        b.disconnect(&h, Disconnect::Abrupt, None);
        b.disconnect(&other, Disconnect::Abrupt, None);
        // Offline: these wait in the log, one entry each for both sessions, until a queue's
        // limit (four queued) refuses the rest: `dev` had one queued (t/1), `other` two (it
        // took nothing in flight).
        for i in 2..6 {
            assert_eq!(publish(&format!("t/{i}")), 2, "t/{i}");
        }
        assert_eq!(b.offline.lock().messages(), 3, "t/2 to t/4");
        let summary = b.session_summary("dev").unwrap();
        assert_eq!(
            summary.queued, 5,
            "one in flight, one queued, three in the log"
        );
        let held: Vec<String> = b
            .session_messages("dev", 10)
            .unwrap()
            .into_iter()
            .map(|m| m.topic)
            .collect();
        assert_eq!(held, ["t/0", "t/1", "t/2", "t/3", "t/4"]);
        assert_eq!(b.stats.refused_overflow.load(Ordering::Relaxed), 3);
        // Back: the message in flight goes again, then the queue, then the log, in order.
        let back = now(b.connect(&connect("dev", false, None))).unwrap();
        let resent: Vec<String> = back
            .resend
            .iter()
            .filter_map(|s| match s {
                Send::Publish { message, .. } => Some(message.message.topic.to_string()),
                Send::PubRel { .. } => None,
            })
            .collect();
        assert_eq!(resent, ["t/0"]);
        let mut got = Vec::new();
        for pkid in 1..=6u16 {
            got.extend(topics(&b, &back.handle));
            let _ = b.puback(&back.handle, pkid);
        }
        assert_eq!(got, ["t/1", "t/2", "t/3", "t/4"]);
        // Connected again: routed to its queue, not the log.
        publish("t/9");
        assert_eq!(topics(&b, &back.handle), ["t/9"]);
        // The other session still needs two of the log's entries; once it ends they go.
        assert_eq!(b.offline.lock().messages(), 2);
        now(b.connect(&connect("other", true, None))).unwrap();
        assert_eq!(b.offline.lock().messages(), 0);
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
