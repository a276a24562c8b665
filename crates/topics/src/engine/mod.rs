//! The topic engine: every SNS operation, on the store and the queue engine.
//!
//! Definitions (topics, subscriptions, their attributes and tags) live in the metadata store, one
//! atomic write per change. A publish answers only once every copy it owes is durable: the copies
//! for queue subscriptions are in their queues, and the deliveries to HTTP/S endpoints and MQTT
//! topics are recorded as one pending record per message (not one per subscription) in the
//! `sns.pending` stream, which a crash replays (see `docs/adr/0010-topic-fan-out.md`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use outpost_queues::Queues;
use outpost_store::{MetaOp, Store, StreamId};
use parking_lot::RwLock;

use crate::endpoints::{HttpSender, MqttPublisher};
use crate::error::{Result, TopicError};
use crate::signing::Signer;
use crate::subscription::{Subscription, SubscriptionDef};
use crate::topic::{Topic, TopicDef};

mod admin;
mod deliver;
mod publish;
mod subscribe;

pub use admin::TopicSummary;
pub use deliver::DeliveryStats;
pub use publish::{BatchFailure, PublishEntry, PublishRequest, PublishResult};
pub use subscribe::SubscriptionSummary;

/// One metadata change: table, key, and the new value (`None`: delete).
use outpost_store::MetaChange;

const TOPICS_TABLE: &str = "sns_topics";
const SUBSCRIPTIONS_TABLE: &str = "sns_subscriptions";
const PENDING_STREAM: &str = "sns.pending";

pub use outpost_store::now_ms;

/// Where topic ARNs point and how messages are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicsConfig {
    /// Region in ARNs.
    pub region: String,
    /// Account id in ARNs (and every topic's `Owner`).
    pub account: String,
    /// The broker's HTTP address as receivers reach it, for `SigningCertURL`, `SubscribeURL`
    /// and `UnsubscribeURL` (e.g. `http://gateway.local:9324`).
    pub public_url: String,
    /// Folder of the signing key and certificate.
    pub signing_dir: PathBuf,
    /// RSA key size, bits, used when the key is created.
    pub signing_key_bits: usize,
    /// Most topics; CreateTopic past it is `TopicLimitExceeded`.
    pub max_topics: usize,
    /// Most HTTP/S and MQTT deliveries one subscription may owe at once; past it (or past
    /// `max_pending_bytes`) a message goes to the subscription's dead-letter queue, or is
    /// dropped and counted.
    pub max_pending_deliveries: usize,
    /// Most bytes of messages one subscription may owe at once.
    pub max_pending_bytes: u64,
    /// Most HTTP/S deliveries owed to one endpoint host at once, across its subscriptions.
    pub max_pending_deliveries_per_host: usize,
    /// Most bytes of messages owed to one endpoint host at once.
    pub max_pending_bytes_per_host: u64,
    /// Most bytes of filter policies one principal's subscriptions may hold in all; past it
    /// Subscribe and SetSubscriptionAttributes are `FilterPolicyLimitExceeded`.
    pub max_filter_policy_bytes_per_principal: usize,
}

/// All topics and subscriptions.
pub struct Topics {
    store: Store,
    queues: Arc<Queues>,
    config: TopicsConfig,
    /// The signing key, made when the first topic is (or loaded at start when one was made
    /// before): a broker whose SNS API is never used generates no RSA key (issue 29: it took
    /// ~0.5 s of CPU on a first start, and a few KB for the broker's life).
    signer: std::sync::OnceLock<Arc<Signer>>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    subscriptions: RwLock<HashMap<String, Arc<Subscription>>>,
    /// Serializes definition changes and their metadata writes.
    defs: tokio::sync::Mutex<()>,
    pending: StreamId,
    http: RwLock<Option<Arc<dyn HttpSender>>>,
    mqtt: RwLock<Option<Arc<dyn MqttPublisher>>>,
    /// Who may do what: subscriptions write as their owners (ADR 0015).
    gate: outpost_access::Gate,
    /// Deliveries (and bytes) owed to each HTTP/S endpoint host now.
    hosts: parking_lot::Mutex<HashMap<String, (usize, u64)>>,
    /// Pending records found at start, resumed by [`Topics::attach`].
    recovered: parking_lot::Mutex<Vec<deliver::Recovered>>,
    stats: deliver::Counters,
    published: AtomicU64,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("topics", &self.topics.read().len())
            .finish()
    }
}

impl Topics {
    /// Opens the engine: every topic and subscription, the deliveries still pending from before a
    /// crash, and the signing key when there is one to load or a topic that needs it.
    pub fn open(store: Store, queues: Arc<Queues>, config: TopicsConfig) -> Result<Arc<Topics>> {
        let pending = store.stream(PENDING_STREAM)?;
        let topics = Topics {
            store,
            queues,
            config,
            signer: std::sync::OnceLock::new(),
            topics: RwLock::new(BTreeMap::new()),
            subscriptions: RwLock::new(HashMap::new()),
            defs: tokio::sync::Mutex::new(()),
            pending,
            http: RwLock::new(None),
            mqtt: RwLock::new(None),
            gate: outpost_access::Gate::default(),
            hosts: Default::default(),
            recovered: parking_lot::Mutex::new(Vec::new()),
            stats: deliver::Counters::default(),
            published: AtomicU64::new(0),
        };
        topics.recover()?;
        // A key made before is loaded (receivers cached its certificate); topics without one (its
        // files were removed) get one now: what they deliver must be signed.
        if Signer::exists(&topics.config.signing_dir) || !topics.topics.read().is_empty() {
            topics.ensure_signer_now()?;
        }
        Ok(Arc::new(topics))
    }

    fn recover(&self) -> Result<()> {
        let first_sequence = now_ms() << 16;
        for (_, value) in self.store.meta().scan(TOPICS_TABLE, b"")? {
            let def: TopicDef = serde_json::from_slice(&value)
                .map_err(|e| TopicError::Internal(format!("stored topic unreadable: {e}")))?;
            let arn = self.topic_arn(&def.name);
            let topic = Arc::new(Topic::new(def, arn, first_sequence)?);
            self.topics.write().insert(topic.name.clone(), topic);
        }
        for (_, value) in self.store.meta().scan(SUBSCRIPTIONS_TABLE, b"")? {
            let def: SubscriptionDef = serde_json::from_slice(&value).map_err(|e| {
                TopicError::Internal(format!("stored subscription unreadable: {e}"))
            })?;
            let Some(topic) = self.topic_by_arn(&def.topic_arn).ok() else {
                continue;
            };
            let sub = Arc::new(self.live_subscription(&topic, def));
            topic.subscriptions.write().push(sub.clone());
            self.subscriptions.write().insert(sub.arn.clone(), sub);
        }
        self.recover_pending();
        Ok(())
    }

    /// Installs the authorizer subscriptions are checked with; false when one is installed
    /// already. Until then all is allowed.
    pub fn set_authorizer(&self, authorizer: Arc<dyn outpost_access::Authorizer>) -> bool {
        self.gate.set(authorizer)
    }

    /// The principal a subscription delivers as.
    pub(crate) fn owner(&self, sub: &Subscription) -> outpost_access::Identity {
        sub.def
            .lock()
            .owner
            .as_deref()
            .and_then(outpost_access::Identity::decode)
            .unwrap_or_else(|| outpost_access::Identity::anonymous(&self.config.account))
    }

    /// Whether `who` may write where a subscription points: `sqs:SendMessage` on its queue (the
    /// queue's policy asked too), publishing to its MQTT topic; HTTP/S endpoints are outside the
    /// broker (their addresses are checked by the HTTP client). The error says what is refused.
    pub(crate) fn may_deliver(
        &self,
        who: &outpost_access::Identity,
        protocol: crate::subscription::Protocol,
        endpoint: &str,
    ) -> std::result::Result<(), String> {
        use crate::subscription::Protocol;
        let gate = self.gate.get();
        if gate.is_open() {
            return Ok(());
        }
        let (action, resource, ok) = match protocol {
            Protocol::Sqs => {
                let name = self.queues.name_from_arn(endpoint).unwrap_or_default();
                let policy = self.queues.policy(&name);
                let ok = gate.http(who, "sqs:SendMessage", endpoint, policy.as_deref());
                ("sqs:SendMessage", endpoint, ok)
            }
            Protocol::Mqtt => (
                "iot:Publish",
                endpoint,
                gate.topic(who, outpost_access::TopicVerb::Publish, endpoint),
            ),
            Protocol::Http | Protocol::Https => return Ok(()),
        };
        if ok {
            return Ok(());
        }
        Err(who.denial(action, resource))
    }

    /// [`Topics::may_deliver`] as the subscription's owner, who is looked up only when an ACL
    /// is in force (a fan-out asks this per message and subscription).
    pub(crate) fn owner_may_deliver(
        &self,
        sub: &Subscription,
        protocol: crate::subscription::Protocol,
        endpoint: &str,
    ) -> std::result::Result<(), String> {
        if self.gate.get().is_open() {
            return Ok(());
        }
        self.may_deliver(&self.owner(sub), protocol, endpoint)
    }

    /// Plugs in the HTTP client and the MQTT engine, and resumes the deliveries a crash left
    /// pending. Call once, before serving requests.
    pub fn attach(
        self: &Arc<Self>,
        http: Option<Arc<dyn HttpSender>>,
        mqtt: Option<Arc<dyn MqttPublisher>>,
    ) {
        *self.http.write() = http;
        *self.mqtt.write() = mqtt;
        let recovered = std::mem::take(&mut *self.recovered.lock());
        self.resume(recovered);
    }

    /// The configuration.
    pub fn config(&self) -> &TopicsConfig {
        &self.config
    }

    /// The signing certificate (PEM) and the file name it is served under; none before the first
    /// topic (nothing was signed yet).
    pub fn signing_certificate(&self) -> Option<(&str, &str)> {
        let signer = self.signer.get()?;
        Some((signer.cert_pem(), signer.cert_file()))
    }

    /// The signing key; every topic's existence implies it ([`Topics::ensure_signer`]).
    pub(super) fn signer(&self) -> Option<&Arc<Signer>> {
        let signer = self.signer.get();
        if signer.is_none() {
            tracing::error!("an SNS message to sign before the signing key was made");
        }
        signer
    }

    /// Loads or makes the signing key, if not yet done (on the calling thread).
    fn ensure_signer_now(&self) -> Result<()> {
        if self.signer.get().is_none() {
            let signer =
                Signer::load_or_create(&self.config.signing_dir, self.config.signing_key_bits)?;
            let _ = self.signer.set(Arc::new(signer));
        }
        Ok(())
    }

    /// Loads or makes the signing key before the first topic is made (callers hold `defs`, so
    /// one key is made), off the async workers: generating an RSA key takes a while.
    pub(super) async fn ensure_signer(&self) -> Result<()> {
        if self.signer.get().is_some() {
            return Ok(());
        }
        let (dir, bits) = (
            self.config.signing_dir.clone(),
            self.config.signing_key_bits,
        );
        let signer = tokio::task::spawn_blocking(move || Signer::load_or_create(&dir, bits))
            .await
            .map_err(|e| TopicError::Internal(format!("signing key: {e}")))??;
        let _ = self.signer.set(Arc::new(signer));
        Ok(())
    }

    /// A topic's ARN.
    pub fn topic_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:sns:{}:{}:{}",
            self.config.region, self.config.account, name
        )
    }

    /// The topic an ARN names: `InvalidParameter` when it is not a topic ARN of this region and
    /// account, `NotFound` when there is no such topic.
    pub fn topic_by_arn(&self, arn: &str) -> Result<Arc<Topic>> {
        let name = self.topic_name(arn, "TopicArn")?;
        self.topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(TopicError::no_topic)
    }

    fn topic_name<'a>(&self, arn: &'a str, param: &str) -> Result<&'a str> {
        let parts: Vec<&str> = arn.split(':').collect();
        if parts.len() != 6
            || parts[0] != "arn"
            || parts[2] != "sns"
            || !crate::topic::valid_name(parts[5])
        {
            return Err(TopicError::invalid(param));
        }
        if parts[3] != self.config.region || parts[4] != self.config.account {
            return Err(TopicError::no_topic());
        }
        Ok(parts[5])
    }

    fn subscription(&self, arn: &str) -> Result<Arc<Subscription>> {
        let parts: Vec<&str> = arn.split(':').collect();
        if parts.len() != 7 || parts[0] != "arn" || parts[2] != "sns" {
            return Err(TopicError::invalid("SubscriptionArn"));
        }
        self.subscriptions
            .read()
            .get(arn)
            .cloned()
            .ok_or_else(TopicError::no_subscription)
    }

    fn live_subscription(&self, topic: &Topic, def: SubscriptionDef) -> Subscription {
        let policy = topic
            .delivery
            .read()
            .for_subscription(def.attributes.get("DeliveryPolicy").map(String::as_str))
            .unwrap_or_default();
        Subscription::new(def, policy)
    }

    async fn put_meta(
        &self,
        table: &'static str,
        key: &str,
        value: &impl serde::Serialize,
    ) -> Result<()> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| TopicError::Internal(format!("encoding: {e}")))?;
        let store = self.store.clone();
        let key = key.as_bytes().to_vec();
        tokio::task::spawn_blocking(move || {
            store.meta().apply(&[MetaOp::Put {
                table,
                key: &key,
                value: &bytes,
            }])
        })
        .await
        .map_err(|e| TopicError::Internal(format!("metadata task: {e}")))??;
        Ok(())
    }

    async fn apply_meta(&self, ops: Vec<MetaChange>) -> Result<()> {
        Ok(self.store.apply_changes(ops).await?)
    }

    /// Messages published since start.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Topics and subscriptions.
    pub fn counts(&self) -> (usize, usize) {
        (self.topics.read().len(), self.subscriptions.read().len())
    }
}

/// A new UUID (v4) in its text form.
pub(crate) fn uuid() -> String {
    outpost_queues::message::uuid_text()
}
