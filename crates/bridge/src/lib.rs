//! Bridges: how one gateway reaches past itself, onto an existing upstream (an MQTT broker such
//! as AWS IoT Core, EMQX, mosquitto or another Outpost, or SQS/SNS), with store-and-forward so
//! an uplink that drops for days loses nothing the gateway acknowledged.
//!
//! The pieces, and the life of a forwarded message:
//! - [`Bridges`] is a publish tap: every client PUBLISH is matched against each bridge's `out`
//!   rules, and a match is appended to that bridge's backlog (a store stream) before the
//!   publisher's PUBACK — the same durability as any other acknowledged message.
//! - A link per bridge reads its backlog in order and sends it upstream: over MQTT with a
//!   window of QoS 1 messages in flight, to SQS/SNS in batches of 10. A message leaves the
//!   backlog only when the upstream acknowledged it; after a reconnect, a restart or `kill -9`,
//!   forwarding resumes from the oldest message still owed.
//! - `in` rules subscribe upstream and publish what arrives as the broker's own messages, which
//!   no tap sees: a message brought in is never forwarded back out.
//! - Loops between brokers are broken by a hop marker: forwarded MQTT 5 messages carry the user
//!   property `outpost-hop` with this broker's node id; a message that already carries it is
//!   not forwarded again, and the upstream subscriptions use No Local.

// Without AWS bridges, the parts of the backlog and the status only they use stay unused.
#![cfg_attr(not(feature = "aws"), allow(unused))]

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "aws")]
mod aws_link;
mod backlog;
mod backoff;
mod config;
mod mqtt_link;
mod shadow_sync;
mod status;
#[cfg(feature = "tls")]
mod tls;
#[cfg(not(feature = "tls"))]
#[path = "no_tls.rs"]
mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use outpost_codec::{Packet, Publish, QoS, UserProperty, Version};
use outpost_mqtt::{Broker, Message, PublishTap, TapWait};
#[cfg(feature = "aws")]
use outpost_queues::Queues;
use outpost_shutdown::Shutdown;
use outpost_store::Store;
use parking_lot::Mutex;

use crate::backlog::{Backlog, Target};
use crate::config::map_topic;
pub use crate::config::{
    BridgeConfig, BridgeTls, ConfigError, InRule, OutRule, QueueRule, ShadowRule, TopicRule,
};
pub use crate::status::Snapshot;
use crate::status::Status;

/// The user property that marks a message forwarded by an Outpost bridge; its value is the
/// forwarding broker's node id.
pub const HOP: &str = "outpost-hop";

/// Longest a PUBACK waits for a live link to catch up (`pace_above`).
pub const LONGEST_PACE: Duration = Duration::from_secs(2);

/// Why bridges could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A configuration mistake.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store refused the backlog stream.
    #[error("bridge {0}: backlog: {1}")]
    Store(String, outpost_store::StoreError),
}

/// One bridge as the tap and the status see it.
struct Outlet {
    config: BridgeConfig,
    backlog: Arc<Backlog>,
    status: Arc<Status>,
    /// Device shadows this bridge keeps in sync, if any.
    sync: Option<Arc<shadow_sync::ShadowSync>>,
}

/// The local queues and topics that AWS bridges move upstream (cargo feature `aws`; a build
/// without SQS and SNS has none, and refuses `kind = "aws"` bridges).
#[cfg(feature = "aws")]
#[derive(Clone)]
pub struct Local {
    /// The queue engine.
    pub queues: Arc<Queues>,
    /// The topic engine.
    pub topics: Arc<outpost_topics::Topics>,
}

/// The local queues and topics that AWS bridges move upstream: none in this build.
#[cfg(not(feature = "aws"))]
#[derive(Clone)]
pub struct Local;

/// Every configured bridge.
pub struct Bridges {
    outlets: Vec<Outlet>,
    node: Arc<str>,
    local: Local,
    /// Forwarded counts at the last rate sample, per bridge.
    rate: Mutex<(Instant, Vec<u64>, Vec<f64>)>,
}

impl std::fmt::Debug for Bridges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridges")
            .field("bridges", &self.outlets.len())
            .field("node", &self.node)
            .finish()
    }
}

impl Bridges {
    /// Opens every bridge's backlog and starts its link (inside a tokio runtime). The links
    /// stop when `shutdown` fires. `node` names this broker in hop markers.
    pub fn start(
        configs: &[BridgeConfig],
        node: &str,
        broker: Arc<Broker>,
        store: Store,
        local: Local,
        shadows: Arc<outpost_shadows::Shadows>,
        shutdown: Shutdown,
    ) -> Result<Arc<Bridges>, BridgeError> {
        let node: Arc<str> = node.into();
        let mut outlets = Vec::new();
        let mut names = std::collections::HashSet::new();
        for c in configs {
            c.validate()?;
            if !names.insert(c.name.clone()) {
                return Err(ConfigError {
                    bridge: c.name.clone(),
                    reason: "two bridges have this name".into(),
                }
                .into());
            }
            let status = Arc::new(Status::default());
            let max_age = (c.max_backlog_age > 0).then(|| Duration::from_secs(c.max_backlog_age));
            let backlog = Arc::new(
                Backlog::open(
                    store.clone(),
                    &c.name,
                    c.max_backlog_bytes,
                    max_age,
                    c.pace_above,
                    status.clone(),
                )
                .map_err(|e| BridgeError::Store(c.name.clone(), e))?,
            );
            let sync = shadow_sync::ShadowSync::new(&c.shadows, shadows.clone());
            if let Some(s) = &sync {
                // Changes sent before a restart and not yet answered stay the gateway's.
                let mut from = 0;
                loop {
                    let entries = backlog.read(from, 1024);
                    let Some(last) = entries.last() else { break };
                    from = last.id.seq + 1;
                    for e in &entries {
                        if let Ok(outpost_codec::Decoded::Packet(Packet::Publish(p), _)) =
                            outpost_codec::decode(&e.publish, Version::V5, usize::MAX)
                        {
                            s.restore(p.topic, p.payload);
                        }
                    }
                }
            }
            let config_error = |reason: String| ConfigError {
                bridge: c.name.clone(),
                reason,
            };
            match c.kind.as_str() {
                #[cfg(not(feature = "aws"))]
                "aws" => {
                    return Err(config_error(
                        "this build has no AWS bridges (cargo features `sqs` and `sns`)".into(),
                    )
                    .into())
                }
                #[cfg(feature = "aws")]
                "aws" => {
                    let link = Arc::new(
                        aws_link::AwsLink::new(c.clone(), backlog.clone(), status.clone())
                            .map_err(config_error)?,
                    );
                    for rule in &c.queues {
                        tokio::spawn(link.clone().move_queue(
                            local.queues.clone(),
                            rule.clone(),
                            shutdown.clone(),
                        ));
                    }
                    for rule in &c.topics {
                        tokio::spawn(link.clone().forward_topic(
                            local.queues.clone(),
                            local.topics.clone(),
                            rule.clone(),
                            shutdown.clone(),
                        ));
                    }
                    tokio::spawn(link.run(shutdown.clone()));
                }
                _ => {
                    let link = Arc::new(
                        mqtt_link::MqttLink::new(
                            c.clone(),
                            (backlog.clone(), status.clone()),
                            broker.clone(),
                            node.clone(),
                            sync.clone(),
                        )
                        .map_err(config_error)?,
                    );
                    // The link runs on a thread of its own: a flood of local publishers keeps
                    // the broker's workers busy, and must not starve the uplink that drains it.
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| config_error(format!("a thread for the link: {e}")))?;
                    let stop = shutdown.clone();
                    std::thread::Builder::new()
                        .name(format!("bridge-{}", c.name))
                        .spawn(move || runtime.block_on(link.run(stop)))
                        .map_err(|e| config_error(format!("a thread for the link: {e}")))?;
                }
            }
            tokio::spawn(keep_bounds(
                c.name.clone(),
                backlog.clone(),
                shutdown.clone(),
            ));
            tracing::info!(bridge = %c.name, kind = %c.kind, backlog = backlog.size().0, "bridge started");
            outlets.push(Outlet {
                config: c.clone(),
                backlog,
                status,
                sync,
            });
        }
        let n = outlets.len();
        Ok(Arc::new(Bridges {
            outlets,
            node,
            local,
            rate: Mutex::new((Instant::now(), vec![0; n], vec![0.0; n])),
        }))
    }

    /// Every bridge's state now.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        let rates = self.rates();
        // Only bridges that move queues need the queues' figures; read them once for all.
        #[cfg(feature = "aws")]
        let moving = self
            .outlets
            .iter()
            .any(|o| !o.config.queues.is_empty() || !o.config.topics.is_empty());
        #[cfg(feature = "aws")]
        let queue_stats = if moving {
            self.local.queues.stats()
        } else {
            Vec::new()
        };

        self.outlets
            .iter()
            .zip(rates)
            .map(|(o, rate)| {
                let s = &o.status;
                let (mut messages, bytes) = o.backlog.size();
                let mut oldest = o.backlog.oldest_age().as_secs();
                // A moved queue's backlog is the queue itself.
                #[cfg(feature = "aws")]
                for q in &queue_stats {
                    let moved = o.config.queues.iter().any(|r| r.local == q.name)
                        || o.config
                            .topics
                            .iter()
                            .any(|t| t.queue(&o.config.name) == q.name);
                    if moved {
                        messages += q.visible + q.inflight + q.delayed;
                        oldest = oldest.max(q.oldest_age_seconds);
                    }
                }
                Snapshot {
                    name: o.config.name.clone(),
                    kind: o.config.kind.clone(),
                    connected: s.connected.load(std::sync::atomic::Ordering::Relaxed),
                    backlog_messages: messages,
                    backlog_bytes: bytes,
                    oldest_age_seconds: oldest,
                    forwarded: Status::load(&s.forwarded),
                    forwarded_per_second: rate,
                    received: Status::load(&s.received),
                    retries: Status::load(&s.retries),
                    dropped: Status::load(&s.dropped),
                    connects: Status::load(&s.connects),
                    paced: Status::load(&s.paced),
                    last_error: s.last_error.lock().clone(),
                }
            })
            .collect()
    }

    /// Messages forwarded per second per bridge, over the time since the previous sample (at
    /// least a second; the last rate is kept in between).
    fn rates(&self) -> Vec<f64> {
        let mut r = self.rate.lock();
        let elapsed = r.0.elapsed().as_secs_f64();
        if elapsed >= 1.0 {
            let now: Vec<u64> = self
                .outlets
                .iter()
                .map(|o| Status::load(&o.status.forwarded))
                .collect();
            r.2 = now
                .iter()
                .zip(&r.1)
                .map(|(n, before)| n.saturating_sub(*before) as f64 / elapsed)
                .collect();
            r.1 = now;
            r.0 = Instant::now();
        }
        r.2.clone()
    }

    /// `$SYS/broker/bridge/<name>/…` values, for the broker's status publisher.
    pub fn sys_values(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for s in self.snapshots() {
            let p = format!("bridge/{}", s.name);
            out.push((format!("{p}/connected"), u8::from(s.connected).to_string()));
            out.push((
                format!("{p}/backlog/messages"),
                s.backlog_messages.to_string(),
            ));
            out.push((format!("{p}/backlog/bytes"), s.backlog_bytes.to_string()));
            out.push((
                format!("{p}/backlog/oldest seconds"),
                s.oldest_age_seconds.to_string(),
            ));
            out.push((format!("{p}/messages/forwarded"), s.forwarded.to_string()));
            out.push((
                format!("{p}/messages/forwarded per second"),
                format!("{:.1}", s.forwarded_per_second),
            ));
            out.push((format!("{p}/messages/received"), s.received.to_string()));
            out.push((format!("{p}/messages/dropped"), s.dropped.to_string()));
            out.push((format!("{p}/messages/paced"), s.paced.to_string()));
            out.push((format!("{p}/retries"), s.retries.to_string()));
            let error = if s.last_error.is_empty() {
                "none".to_string()
            } else {
                s.last_error
            };
            out.push((format!("{p}/last error"), error));
        }
        out
    }
}

/// Drops what is past a backlog's bounds, twice a second.
async fn keep_bounds(name: String, backlog: Arc<Backlog>, mut shutdown: Shutdown) {
    let mut every = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.recv() => return,
        }
        let dropped = backlog.enforce_bounds().await;
        if dropped > 0 {
            tracing::warn!(bridge = %name, dropped, "bridge backlog over its bounds: the oldest messages were dropped");
        }
    }
}

/// The backlog record of a forwarded message: the entry header, then the message as an MQTT 5
/// PUBLISH (topic, QoS, properties, payload), encoded in place.
fn record(
    target: Target,
    address: &str,
    m: &Message,
    topic: &str,
    qos: QoS,
    node: &str,
) -> Option<Bytes> {
    let mut users: Vec<UserProperty<'_>> = m.user_properties();
    if target == Target::Mqtt {
        // The hop marker: an Outpost that gets this message back does not forward it again.
        users.push(UserProperty::new(HOP, node));
    }
    let properties = m.publish_properties(Instant::now(), &[], &users);
    let p = Packet::Publish(Publish {
        dup: false,
        qos,
        retain: m.retain,
        topic,
        // Any non-zero id: the link sets its own.
        pkid: if qos == QoS::AtMostOnce { 0 } else { 1 },
        properties,
        payload: &m.payload,
    });
    let mut out = BytesMut::with_capacity(64 + address.len() + topic.len() + m.payload.len());
    let flags = if m.properties.message_expiry_interval.is_some() {
        backlog::EXPIRES
    } else {
        0
    };
    backlog::put_header(&mut out, target, flags, address);
    p.encode_to(Version::V5, &mut out).ok()?;
    Some(out.freeze())
}

impl PublishTap for Bridges {
    fn offer(&self, client_id: &str, message: &Message) -> Option<TapWait> {
        if self.outlets.is_empty() {
            return None;
        }
        // Been through this broker's bridges before: forwarding it again would loop.
        if message
            .properties
            .user_properties
            .iter()
            .any(|(k, v)| k == HOP && *v == *self.node)
        {
            return None;
        }
        let mut waits: Vec<TapWait> = Vec::new();
        for o in &self.outlets {
            // A local shadow change goes up as an update of the same shadow.
            if let Some((topic, payload)) = o
                .sync
                .as_ref()
                .and_then(|s| s.up(&message.topic, &message.payload))
            {
                let update = Message::new(&topic, payload, QoS::AtLeastOnce, false);
                if let Some(record) = record(
                    Target::Mqtt,
                    "",
                    &update,
                    &topic,
                    QoS::AtLeastOnce,
                    &self.node,
                ) {
                    match o.backlog.append(record) {
                        Ok(wait) => waits.push(Box::pin(wait)),
                        Err(e) => {
                            tracing::warn!(bridge = %o.config.name, error = %e, "a shadow change could not be queued for the upstream");
                        }
                    }
                }
            }
            for rule in &o.config.out {
                if !outpost_codec::topic::matches(&rule.filter, &message.topic) {
                    continue;
                }
                let (target, address, topic, qos) = if !rule.sqs.is_empty() {
                    (
                        Target::Sqs,
                        rule.sqs.as_str(),
                        message.topic.to_string(),
                        QoS::AtLeastOnce,
                    )
                } else if !rule.sns.is_empty() {
                    (
                        Target::Sns,
                        rule.sns.as_str(),
                        message.topic.to_string(),
                        QoS::AtLeastOnce,
                    )
                } else {
                    let topic =
                        map_topic(&rule.topic, &rule.strip_prefix, &message.topic, client_id);
                    let qos = QoS::from_u8(rule.qos).unwrap_or(QoS::AtLeastOnce);
                    (Target::Mqtt, "", topic, qos)
                };
                if !outpost_codec::topic::is_valid_topic_name(&topic) {
                    tracing::warn!(bridge = %o.config.name, topic = %topic, "an out rule made an invalid remote topic; not forwarded");
                    continue;
                }
                let Some(record) = record(target, address, message, &topic, qos, &self.node) else {
                    continue;
                };
                match o.backlog.append(record) {
                    Ok(wait) => waits.push(Box::pin(wait)),
                    Err(e) => {
                        let e = e.to_string();
                        waits.push(Box::pin(async move { Err(e) }));
                    }
                }
            }
        }
        outpost_mqtt::all_of(waits)
    }
}
