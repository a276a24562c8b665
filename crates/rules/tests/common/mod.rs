//! The real engines (store, queues, topics, rules) opened in a folder, with an injected clock and
//! an MQTT door the test supplies: what the in-process tests of the rules engine share.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use outpost_queues::{Queues, QueuesConfig, ReceiveRequest};
use outpost_rules::{Clock, Events, EventsConfig, EventsError, MqttPublisher};
use outpost_store::{Store, StoreConfig};
use outpost_topics::{Topics, TopicsConfig};
use serde_json::Value;

pub const MINUTE: u64 = 60_000;
pub const ACCOUNT: &str = "000000000000";
pub const REGION: &str = "us-east-1";

/// A clock the test moves.
pub struct Manual(pub AtomicU64);

impl Clock for Manual {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Manual {
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

pub struct Engines {
    pub queues: Arc<Queues>,
    pub events: Arc<Events>,
    pub clock: Arc<Manual>,
    // Dropped last: the engines hold the store.
    _store: Store,
}

pub fn open(dir: &Path, now: u64) -> Engines {
    open_with(dir, now, None)
}

/// The engines, with `mqtt` as the MQTT door rule targets publish through.
pub fn open_with(dir: &Path, now: u64, mqtt: Option<Arc<dyn MqttPublisher>>) -> Engines {
    let store = Store::open(dir.join("data"), StoreConfig::default()).expect("store");
    let queues = Queues::open(store.clone(), QueuesConfig::default()).expect("queues");
    let topics = Topics::open(
        store.clone(),
        queues.clone(),
        TopicsConfig {
            region: REGION.into(),
            account: ACCOUNT.into(),
            public_url: "http://127.0.0.1:9324".into(),
            signing_dir: dir.join("signing"),
            signing_key_bits: 2048,
            max_topics: 100,
            max_pending_deliveries: 100,
            max_pending_bytes: 1 << 20,
            max_filter_policy_bytes_per_principal: 1 << 20,
            max_pending_deliveries_per_host: 100,
            max_pending_bytes_per_host: 1 << 20,
        },
    )
    .expect("topics");
    let events = Events::open(
        store.clone(),
        queues.clone(),
        topics,
        EventsConfig {
            region: REGION.into(),
            account: ACCOUNT.into(),
            max_rules_per_bus: 100,
            max_archives_per_bus: 10,
        },
    )
    .expect("events");
    let clock = Arc::new(Manual(AtomicU64::new(now)));
    events.set_clock(clock.clone());
    events.attach(mqtt);
    Engines {
        queues,
        events,
        clock,
        _store: store,
    }
}

pub fn owner() -> outpost_access::Identity {
    outpost_access::Identity::anonymous(ACCOUNT)
}

/// PutRule with an event pattern or a schedule (on `bus`, or the default bus), as the anonymous
/// owner.
pub async fn put_rule(
    events: &Events,
    name: &str,
    bus: Option<&str>,
    pattern: Option<String>,
    schedule: Option<String>,
) -> Result<String, EventsError> {
    events
        .put_rule(
            name,
            bus,
            pattern,
            schedule,
            None,
            None,
            None,
            BTreeMap::new(),
            &owner(),
        )
        .await
}

/// PutRule with only a schedule.
pub async fn put_schedule(
    events: &Events,
    name: &str,
    bus: Option<&str>,
    schedule: &str,
) -> Result<String, EventsError> {
    put_rule(events, name, bus, None, Some(schedule.into())).await
}

pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
}

/// 2026-12-04 10:02:00 UTC.
pub const T0: u64 = 1_796_378_520_000;

impl Engines {
    pub async fn queue(&self, name: &str) {
        self.queues
            .create_queue(name, &BTreeMap::new(), &BTreeMap::new())
            .await
            .expect("queue");
    }

    /// A scheduled rule and its targets.
    pub async fn rule(&self, name: &str, schedule: &str, targets: Vec<Value>) -> String {
        self.rule_with(name, None, Some(schedule.into()), targets)
            .await
    }

    /// A rule with an event pattern and its targets.
    pub async fn pattern_rule(&self, name: &str, pattern: &Value, targets: Vec<Value>) -> String {
        self.rule_with(name, Some(pattern.to_string()), None, targets)
            .await
    }

    async fn rule_with(
        &self,
        name: &str,
        pattern: Option<String>,
        schedule: Option<String>,
        targets: Vec<Value>,
    ) -> String {
        let arn = put_rule(&self.events, name, None, pattern, schedule)
            .await
            .expect("rule");
        self.events
            .put_targets(name, None, targets, &owner())
            .await
            .expect("targets");
        arn
    }

    /// Bodies waiting in a queue (received and deleted).
    pub async fn drain(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let got = self
                .queues
                .receive(
                    name,
                    ReceiveRequest {
                        max_messages: Some(10),
                        visibility_timeout: Some(30),
                        wait_seconds: Some(0),
                        attempt_id: None,
                    },
                )
                .await
                .expect("receive");
            if got.is_empty() {
                return out;
            }
            for m in got {
                out.push(String::from_utf8(m.message.body.to_vec()).expect("utf-8"));
                self.queues
                    .delete_message(name, &m.receipt)
                    .await
                    .expect("delete");
            }
        }
    }

    pub async fn run_at(&self, ms: u64) -> Option<u64> {
        self.clock.set(ms);
        self.events.run_schedules().await
    }
}
