//! Delivering matched events to targets: every copy is tried at once; what fails is written to
//! one pending record per event (before the caller is answered), retried with exponential
//! backoff along the target's `RetryPolicy`, and finally sent to its `DeadLetterConfig` queue
//! with EventBridge's error attributes. A crash replays the live pending records (at least once,
//! as EventBridge).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use outpost_queues::message::{AttributeValue, MessageAttribute};
use outpost_queues::SendRequest;
use outpost_store::RecordId;
use outpost_topics::{MqttMessage, PublishEntry, PublishRequest};
use serde::{Deserialize, Serialize};

use super::*;
use crate::event::Event;
use crate::json_path::fill_topic;
use crate::target::{Destination, Target};

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Where one copy goes, resolved when the event matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum To {
    Queue {
        name: String,
        group_id: Option<String>,
        dedup_id: Option<String>,
    },
    Topic(String),
    Mqtt(String),
    /// The target can't take this event (e.g. an MQTT topic template naming a missing field).
    Unresolvable(String),
    /// The target's owner may not write there (any more): never attempted.
    Denied(String),
}

/// One copy owed to one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Delivery {
    pub event_id: String,
    pub event_ms: u64,
    pub rule_arn: String,
    pub target_arn: String,
    pub to: To,
    pub body: String,
    pub dlq: Option<String>,
    pub max_attempts: u32,
    pub max_age_secs: u64,
    pub attempts: u32,
    /// Who the copy is written as (the target's owner, encoded); `None` in records written
    /// before owners were kept.
    #[serde(default)]
    pub owner: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PendingRecord {
    deliveries: Vec<Delivery>,
}

/// Why a copy failed: an error code and message (EventBridge's dead-letter attributes).
type Failure = (String, String);

fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_secs(1u64 << attempts.saturating_sub(1).min(16)).min(MAX_BACKOFF);
    // Up to 10 % of jitter, so retries of many events don't move in lockstep.
    let jitter = base.mul_f64(rand::random::<f64>() * 0.1);
    base + jitter
}

impl Events {
    fn delivery(&self, event: &Event, rule: &Rule, target: &Target) -> Delivery {
        // An input over an event's size is never stored nor sent (nor dead-lettered in full).
        let (body, too_large) = match target.render(&event.json, &rule.def.name, &rule.arn) {
            Ok(body) => (body, None),
            Err(why) => (String::new(), Some(why)),
        };
        let to = match &target.destination {
            Destination::Queue { name, group_id } => To::Queue {
                name: name.clone(),
                group_id: group_id.clone(),
                // FIFO queues deduplicate a replayed or retried copy of the same event.
                dedup_id: group_id
                    .as_ref()
                    .map(|_| format!("{}-{}", event.id, target.id)),
            },
            Destination::Topic(arn) => To::Topic(arn.clone()),
            Destination::Mqtt(template) => match fill_topic(template, &event.json) {
                // `$SYS` and other `$` topics are the broker's own, whatever an event says.
                Ok(topic) if outpost_access::check_topic(&topic).is_ok() => To::Mqtt(topic),
                Ok(topic) => To::Unresolvable(format!(
                    "{:?} is not a topic name a rule may publish to",
                    topic.chars().take(128).collect::<String>()
                )),
                Err(e) => To::Unresolvable(e),
            },
        };
        let to = match too_large {
            Some(why) => To::Unresolvable(why),
            None => to,
        };
        // Written as the target's owner, asked now (a revoked right stops the copies).
        let owner = rule.def.target_owner(&target.id, &self.config.account);
        // A template is asked about the topic this event made of it.
        let resolved;
        let dest = match &to {
            To::Unresolvable(_) => None,
            To::Mqtt(topic) => {
                resolved = Destination::Mqtt(topic.clone());
                Some(&resolved)
            }
            _ => Some(&target.destination),
        };
        let dlq = target.dead_letter_queue.as_deref();
        let to = match dest.map(|d| self.may_write(&owner, d, dlq)) {
            Some(Err(why)) => To::Denied(why),
            _ => to,
        };
        Delivery {
            event_id: event.id.clone(),
            event_ms: event.time_ms,
            rule_arn: rule.arn.clone(),
            target_arn: target.arn.clone(),
            to,
            body,
            dlq: target.dead_letter_queue.clone(),
            max_attempts: target.max_attempts,
            max_age_secs: target.max_age_secs,
            attempts: 0,
            owner: Some(owner.encode()),
        }
    }

    /// One attempt at one copy.
    async fn attempt(&self, d: &Delivery) -> std::result::Result<(), Failure> {
        match &d.to {
            To::Queue {
                name,
                group_id,
                dedup_id,
            } => {
                let req = SendRequest {
                    body: d.body.clone(),
                    group_id: group_id.clone(),
                    dedup_id: dedup_id.clone(),
                    ..SendRequest::default()
                };
                self.queues
                    .send(name, req)
                    .await
                    .map(|_| ())
                    .map_err(|e| (e.code().to_string(), e.to_string()))
            }
            To::Topic(arn) => {
                let req = PublishRequest {
                    topic_arn: Some(arn.clone()),
                    entry: PublishEntry {
                        message: Some(d.body.clone()),
                        ..PublishEntry::default()
                    },
                    ..PublishRequest::default()
                };
                self.topics
                    .publish(req)
                    .await
                    .map(|_| ())
                    .map_err(|e| (e.code().to_string(), e.to_string()))
            }
            To::Mqtt(topic) => {
                let Some(mqtt) = self.mqtt.read().clone() else {
                    return Err((
                        "InternalFailure".into(),
                        "the MQTT engine is not attached".into(),
                    ));
                };
                mqtt.publish(MqttMessage {
                    topic: topic.clone(),
                    payload: Bytes::from(d.body.clone()),
                    content_type: Some("application/json"),
                    user_properties: Vec::new(),
                    who: crate::rule::principal(d.owner.as_deref(), &self.config.account),
                })
                .await
                .map_err(|e| match e {
                    outpost_topics::MqttRefusal::Refused(why) => ("AccessDenied".to_string(), why),
                    outpost_topics::MqttRefusal::Failed(why) => {
                        ("InternalFailure".to_string(), why)
                    }
                })
            }
            To::Unresolvable(why) => Err(("InvalidTopicName".into(), why.clone())),
            To::Denied(why) => Err(("AccessDenied".into(), why.clone())),
        }
    }

    fn expired(d: &Delivery) -> bool {
        now_ms().saturating_sub(d.event_ms) > d.max_age_secs * 1000
    }

    /// Delivers matched events; per event, true when every copy was delivered or is owed by a
    /// durable pending record.
    pub(super) async fn dispatch(
        self: &Arc<Self>,
        items: Vec<(Event, Vec<Arc<Rule>>)>,
    ) -> Vec<bool> {
        let mut all: Vec<(usize, Delivery)> = Vec::new();
        for (i, (event, rules)) in items.iter().enumerate() {
            self.stats
                .matched
                .fetch_add(rules.len() as u64, Ordering::Relaxed);
            for rule in rules {
                for target in &rule.targets {
                    all.push((i, self.delivery(event, rule, target)));
                }
            }
        }
        let results = join_all(all.iter().map(|(_, d)| self.attempt(d))).await;
        let mut owed: BTreeMap<usize, Vec<Delivery>> = BTreeMap::new();
        for ((i, mut d), r) in all.into_iter().zip(results) {
            match r {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(failure) => {
                    d.attempts = 1;
                    let permanent = matches!(d.to, To::Unresolvable(_) | To::Denied(_))
                        || failure.0 == "AccessDenied";
                    if permanent || d.max_attempts == 0 || Self::expired(&d) {
                        self.give_up(&d, failure).await;
                    } else {
                        tracing::debug!(target = %d.target_arn, code = %failure.0, "delivery to a target failed; will retry");
                        owed.entry(i).or_default().push(d);
                    }
                }
            }
        }
        let mut ok = vec![true; items.len()];
        if owed.is_empty() {
            return ok;
        }
        let (events, lists): (Vec<usize>, Vec<Vec<Delivery>>) = owed.into_iter().unzip();
        let records: Vec<Bytes> = lists
            .iter()
            .map(|deliveries| {
                Bytes::from(
                    serde_json::to_vec(&PendingRecord {
                        deliveries: deliveries.clone(),
                    })
                    .unwrap_or_default(),
                )
            })
            .collect();
        match self.store.append_batch(self.pending, records).await {
            Ok(ids) => {
                for (record, deliveries) in ids.into_iter().zip(lists) {
                    self.spawn_retries(record, deliveries);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "pending deliveries of routed events could not be stored");
                for i in events {
                    ok[i] = false;
                }
            }
        }
        ok
    }

    /// Resumes the deliveries of pending records found at start.
    pub(super) fn resume(self: &Arc<Self>, records: Vec<Record>) {
        for rec in records {
            match serde_json::from_slice::<PendingRecord>(&rec.payload) {
                Ok(p) if !p.deliveries.is_empty() => {
                    tracing::info!(
                        deliveries = p.deliveries.len(),
                        "resuming routed deliveries left pending"
                    );
                    self.spawn_retries(rec.id, p.deliveries);
                }
                _ => self.store.mark_dead_later(&[rec.id]),
            }
        }
    }

    fn spawn_retries(self: &Arc<Self>, record: RecordId, deliveries: Vec<Delivery>) {
        let this = self.clone();
        let n = deliveries.len() as u64;
        self.stats.pending.fetch_add(n, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut left = deliveries;
            while !left.is_empty() {
                let wait = left.iter().map(|d| d.attempts).min().unwrap_or(1);
                tokio::time::sleep(backoff(wait)).await;
                let results = join_all(left.iter().map(|d| this.attempt(d))).await;
                let mut next = Vec::new();
                for (mut d, r) in left.into_iter().zip(results) {
                    match r {
                        Ok(()) => {
                            this.stats.delivered.fetch_add(1, Ordering::Relaxed);
                            this.stats.pending.fetch_sub(1, Ordering::Relaxed);
                        }
                        Err(failure) => {
                            this.stats.retried.fetch_add(1, Ordering::Relaxed);
                            d.attempts += 1;
                            if d.attempts > d.max_attempts || Self::expired(&d) {
                                this.stats.pending.fetch_sub(1, Ordering::Relaxed);
                                this.give_up(&d, failure).await;
                            } else {
                                next.push(d);
                            }
                        }
                    }
                }
                left = next;
            }
            this.store.mark_dead_later(&[record]);
            let _ = n;
        });
    }

    /// A copy that will not be delivered: to the target's dead-letter queue, with
    /// EventBridge's attributes, or dropped with a log line.
    async fn give_up(&self, d: &Delivery, (code, message): Failure) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        let Some(dlq) = &d.dlq else {
            tracing::warn!(rule = %d.rule_arn, target = %d.target_arn, %code, %message, "an event could not be delivered and the target has no dead-letter queue; dropped");
            return;
        };
        let attr = |v: &str| MessageAttribute {
            data_type: "String".into(),
            value: AttributeValue::String(v.chars().take(1024).collect()),
        };
        let mut attributes = outpost_queues::message::Attributes::new();
        attributes.insert("RULE_ARN".into(), attr(&d.rule_arn));
        attributes.insert("TARGET_ARN".into(), attr(&d.target_arn));
        attributes.insert("ERROR_CODE".into(), attr(&code));
        attributes.insert("ERROR_MESSAGE".into(), attr(&message));
        let req = SendRequest {
            body: d.body.clone(),
            attributes,
            group_id: matches!(
                &d.to,
                To::Queue {
                    group_id: Some(_),
                    ..
                }
            )
            .then(|| d.event_id.clone())
            .filter(|_| dlq.ends_with(".fifo")),
            ..SendRequest::default()
        };
        match self.queues.send(dlq, req).await {
            Ok(_) => {
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::info!(rule = %d.rule_arn, target = %d.target_arn, %code, dead_letter_queue = %dlq, "an undeliverable event went to the dead-letter queue");
            }
            Err(e) => {
                tracing::warn!(rule = %d.rule_arn, target = %d.target_arn, error = %e, "an undeliverable event could not be dead-lettered; dropped");
            }
        }
    }
}
