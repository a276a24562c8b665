//! The routing engine: event buses, rules and targets (stored in the metadata store, one atomic
//! write per change), the rule index of every bus, and the durable delivery of matched events.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use outpost_queues::Queues;
use outpost_store::{Record, Store, StreamId};
use outpost_topics::{MqttPublisher, Topics};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::error::{EventsError, Result};
use crate::index::RuleIndex;
use crate::rule::{Rule, RuleDef};

mod admin;
mod archive;
mod deliver;
mod put;
mod replay;
mod schedules;

pub use admin::BusSummary;
pub use archive::ArchiveSummary;
pub use put::{PutEntry, PutResult};
pub use replay::ReplaySummary;
pub use schedules::Clock;

/// The bus every account has, and where MQTT messages become events.
pub const DEFAULT_BUS: &str = "default";
const BUSES_TABLE: &str = "events_buses";
const RULES_TABLE: &str = "events_rules";
const PENDING_STREAM: &str = "events.pending";

/// One metadata change: table, key, and the new value (`None`: delete).
use outpost_store::MetaChange;

/// Where ARNs point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// Region in ARNs.
    pub region: String,
    /// Account id in ARNs and events.
    pub account: String,
    /// Most rules on one bus; PutRule past it is `LimitExceededException`.
    pub max_rules_per_bus: usize,
    /// Most archives on one bus (each keeps a copy of the bus's events); CreateArchive past it
    /// is `LimitExceededException`.
    pub max_archives_per_bus: usize,
}

/// A bus as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BusDef {
    pub name: String,
    pub description: Option<String>,
    pub created_ms: u64,
    pub modified_ms: u64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A live bus.
#[derive(Debug)]
pub(crate) struct Bus {
    pub def: RwLock<BusDef>,
    pub arn: String,
    pub rules: RwLock<BTreeMap<String, Arc<Rule>>>,
    /// Rebuilt on every rule change; events read a snapshot.
    pub index: RwLock<Arc<RuleIndex>>,
}

impl Bus {
    fn new(def: BusDef, arn: String) -> Bus {
        Bus {
            def: RwLock::new(def),
            arn,
            rules: RwLock::new(BTreeMap::new()),
            index: RwLock::new(Arc::new(RuleIndex::default())),
        }
    }

    pub(crate) fn reindex(&self) {
        let index = RuleIndex::build(self.rules.read().values());
        *self.index.write() = Arc::new(index);
    }

    pub(crate) fn snapshot(&self) -> Arc<RuleIndex> {
        self.index.read().clone()
    }
}

/// Routing figures since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct RoutingStats {
    /// Events accepted (PutEvents entries, MQTT and HTTP publishes offered to the rules that
    /// matched at least one rule).
    pub events: AtomicU64,
    /// Rule matches.
    pub matched: AtomicU64,
    /// Copies delivered to targets.
    pub delivered: AtomicU64,
    /// Delivery attempts retried.
    pub retried: AtomicU64,
    /// Deliveries that failed for good.
    pub failed: AtomicU64,
    /// Of those, sent to a dead-letter queue.
    pub dead_lettered: AtomicU64,
    /// Deliveries waiting for a retry now.
    pub pending: AtomicU64,
}

/// Every bus, rule and target.
pub struct Events {
    store: Store,
    queues: Arc<Queues>,
    topics: Arc<Topics>,
    config: EventsConfig,
    buses: RwLock<BTreeMap<String, Arc<Bus>>>,
    /// Serializes definition changes and their metadata writes.
    defs: tokio::sync::Mutex<()>,
    pending: StreamId,
    mqtt: RwLock<Option<Arc<dyn MqttPublisher>>>,
    /// Who may do what: rules read MQTT events and targets write as their owners (ADR 0015).
    gate: outpost_access::Gate,
    recovered: parking_lot::Mutex<Vec<Record>>,
    stats: RoutingStats,
    archives: RwLock<BTreeMap<String, Arc<archive::Archive>>>,
    replays: RwLock<BTreeMap<String, Arc<replay::Replay>>>,
    schedules: schedules::Schedules,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("buses", &self.buses.read().len())
            .finish()
    }
}

pub(crate) use outpost_store::now_ms;

/// A new UUID (v4) in its text form.
pub(crate) fn uuid() -> String {
    outpost_queues::message::uuid_text()
}

fn rule_key(bus: &str, name: &str) -> Vec<u8> {
    format!("{bus}\0{name}").into_bytes()
}

impl Events {
    /// Opens the engine: every bus and rule, and the deliveries a crash left pending (resumed by
    /// [`Events::attach`]).
    pub fn open(
        store: Store,
        queues: Arc<Queues>,
        topics: Arc<Topics>,
        config: EventsConfig,
    ) -> Result<Arc<Events>> {
        let pending = store.stream(PENDING_STREAM)?;
        let events = Events {
            store,
            queues,
            topics,
            config,
            buses: RwLock::new(BTreeMap::new()),
            defs: tokio::sync::Mutex::new(()),
            pending,
            mqtt: RwLock::new(None),
            gate: outpost_access::Gate::default(),
            recovered: parking_lot::Mutex::new(Vec::new()),
            stats: RoutingStats::default(),
            archives: RwLock::new(BTreeMap::new()),
            replays: RwLock::new(BTreeMap::new()),
            schedules: schedules::Schedules::default(),
        };
        events.recover()?;
        Ok(Arc::new(events))
    }

    fn recover(&self) -> Result<()> {
        let now = now_ms();
        let default = BusDef {
            name: DEFAULT_BUS.into(),
            description: None,
            created_ms: now,
            modified_ms: now,
            tags: BTreeMap::new(),
        };
        self.buses.write().insert(
            DEFAULT_BUS.into(),
            Arc::new(Bus::new(default, self.bus_arn(DEFAULT_BUS))),
        );
        for (_, value) in self.store.meta().scan(BUSES_TABLE, b"")? {
            let def: BusDef = serde_json::from_slice(&value)
                .map_err(|e| EventsError::Internal(format!("stored event bus unreadable: {e}")))?;
            let arn = self.bus_arn(&def.name);
            self.buses
                .write()
                .insert(def.name.clone(), Arc::new(Bus::new(def, arn)));
        }
        for (_, value) in self.store.meta().scan(RULES_TABLE, b"")? {
            let def: RuleDef = serde_json::from_slice(&value)
                .map_err(|e| EventsError::Internal(format!("stored rule unreadable: {e}")))?;
            let Some(bus) = self.buses.read().get(&def.bus).cloned() else {
                continue;
            };
            let arn = self.rule_arn(&def.bus, &def.name);
            match Rule::new(def, arn, &self.config.region, &self.config.account) {
                Ok(rule) => {
                    bus.rules
                        .write()
                        .insert(rule.def.name.clone(), Arc::new(rule));
                }
                Err(e) => tracing::error!(error = %e, "a stored rule no longer parses; skipped"),
            }
        }
        for bus in self.buses.read().values() {
            bus.reindex();
        }
        for (_, value) in self.store.meta().scan(archive::ARCHIVES_TABLE, b"")? {
            let def: archive::ArchiveDef = serde_json::from_slice(&value)
                .map_err(|e| EventsError::Internal(format!("stored archive unreadable: {e}")))?;
            let name = def.name.clone();
            match self.open_archive(def) {
                Ok(a) => {
                    self.archives.write().insert(name, Arc::new(a));
                }
                Err(e) => {
                    tracing::error!(archive = %name, error = %e, "a stored archive can't be opened; skipped")
                }
            }
        }
        self.recover_replays()?;
        self.recover_schedules()?;
        *self.recovered.lock() = self.store.scan(self.pending, 0, usize::MAX);
        Ok(())
    }

    /// Plugs in the MQTT engine (for MQTT targets) and resumes the deliveries a crash left
    /// pending. Call once, before serving requests.
    pub fn attach(self: &Arc<Self>, mqtt: Option<Arc<dyn MqttPublisher>>) {
        *self.mqtt.write() = mqtt;
        let recovered = std::mem::take(&mut *self.recovered.lock());
        self.resume(recovered);
        self.resume_replays();
    }

    /// Installs the authorizer rules and targets are checked with; false when one is installed
    /// already. Until then all is allowed.
    pub fn set_authorizer(&self, authorizer: Arc<dyn outpost_access::Authorizer>) -> bool {
        self.gate.set(authorizer)
    }

    /// Whether `who` may write where a target points: `sqs:SendMessage` on a queue (and on its
    /// dead-letter queue), `sns:Publish` on a topic (their own policies asked too), publishing
    /// to an MQTT topic (a template is checked per event, when it has a topic). The error says
    /// what is refused.
    pub(crate) fn may_write(
        &self,
        who: &outpost_access::Identity,
        to: &crate::target::Destination,
        dead_letter_queue: Option<&str>,
    ) -> std::result::Result<(), String> {
        use crate::target::Destination;
        let gate = self.gate.get();
        if gate.is_open() {
            return match to {
                // `$SYS` and the like stay the broker's own, ACL or not.
                Destination::Mqtt(t)
                    if !t.contains("${") && outpost_access::check_topic(t).is_err() =>
                {
                    Err(who.denial("iot:Publish", t))
                }
                _ => Ok(()),
            };
        }
        let queue = |name: &str| -> std::result::Result<(), String> {
            let policy = self.queues.policy(name);
            let arn = self.queues.arn(name);
            if gate.http(who, "sqs:SendMessage", &arn, policy.as_deref()) {
                Ok(())
            } else {
                Err(who.denial("sqs:SendMessage", &arn))
            }
        };
        match to {
            Destination::Queue { name, .. } => queue(name)?,
            Destination::Topic(arn) => {
                let policy = self.topics.topic_policy(arn);
                if !gate.http(who, "sns:Publish", arn, policy.as_deref()) {
                    return Err(who.denial("sns:Publish", arn));
                }
            }
            Destination::Mqtt(template) if !template.contains("${") => {
                if outpost_access::check_topic(template).is_err()
                    || !gate.topic(who, outpost_access::TopicVerb::Publish, template)
                {
                    return Err(who.denial("iot:Publish", template));
                }
            }
            Destination::Mqtt(_) => {}
        }
        if let Some(dlq) = dead_letter_queue {
            queue(dlq)?;
        }
        Ok(())
    }

    /// Whether the rule's owner may read an MQTT event on `topic`.
    pub(crate) fn may_read(&self, rule: &Rule, topic: &str) -> bool {
        self.gate.get().topic(
            &rule.def.owner(&self.config.account),
            outpost_access::TopicVerb::Read,
            topic,
        )
    }

    /// The configuration.
    pub fn config(&self) -> &EventsConfig {
        &self.config
    }

    /// Figures since start.
    pub fn stats(&self) -> &RoutingStats {
        &self.stats
    }

    /// Buses and rules.
    pub fn counts(&self) -> (usize, usize) {
        let buses = self.buses.read();
        let rules = buses.values().map(|b| b.rules.read().len()).sum();
        (buses.len(), rules)
    }

    fn bus_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:events:{}:{}:event-bus/{name}",
            self.config.region, self.config.account
        )
    }

    fn rule_arn(&self, bus: &str, name: &str) -> String {
        let path = if bus == DEFAULT_BUS {
            name.to_string()
        } else {
            format!("{bus}/{name}")
        };
        format!(
            "arn:aws:events:{}:{}:rule/{path}",
            self.config.region, self.config.account
        )
    }

    /// The bus a name or ARN (or nothing: the default bus) names.
    pub(crate) fn bus(&self, name_or_arn: Option<&str>) -> Result<Arc<Bus>> {
        let name = bus_name(name_or_arn.unwrap_or(DEFAULT_BUS));
        self.buses.read().get(name).cloned().ok_or_else(|| {
            EventsError::not_found(format!(
                "Event bus {} does not exist.",
                crate::json_path::clip(name)
            ))
        })
    }

    async fn apply_meta(&self, ops: Vec<MetaChange>) -> Result<()> {
        Ok(self.store.apply_changes(ops).await?)
    }

    async fn save_rule(&self, def: &RuleDef) -> Result<()> {
        let bytes =
            serde_json::to_vec(def).map_err(|e| EventsError::Internal(format!("encoding: {e}")))?;
        self.apply_meta(vec![(
            RULES_TABLE,
            rule_key(&def.bus, &def.name),
            Some(bytes),
        )])
        .await
    }

    async fn save_bus(&self, def: &BusDef) -> Result<()> {
        let bytes =
            serde_json::to_vec(def).map_err(|e| EventsError::Internal(format!("encoding: {e}")))?;
        self.apply_meta(vec![(
            BUSES_TABLE,
            def.name.as_bytes().to_vec(),
            Some(bytes),
        )])
        .await
    }
}

/// A bus name from a name or a bus ARN.
pub(crate) fn bus_name(name_or_arn: &str) -> &str {
    match name_or_arn.strip_prefix("arn:") {
        Some(_) => name_or_arn
            .split_once(":event-bus/")
            .map_or(name_or_arn, |(_, n)| n),
        None => name_or_arn,
    }
}

/// EventBridge's limit on the description of a rule, bus, archive or replay: 512 characters.
pub(crate) fn check_description(description: Option<&str>) -> Result<()> {
    if description.is_some_and(|d| d.chars().count() > 512) {
        return Err(EventsError::validation(
            "Description is longer than 512 characters",
        ));
    }
    Ok(())
}
