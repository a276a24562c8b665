//! A subscription: where a topic's messages go (an Outpost queue, an HTTP/S endpoint, an MQTT
//! topic), with its filter policy, raw delivery, delivery policy and dead-letter queue.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use outpost_patterns::{Dialect, Pattern};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::delivery_policy::{validate_subscription_policy, DeliveryPolicy};
use crate::error::{Result, TopicError};

/// How a subscription receives messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// An Outpost queue, by ARN.
    Sqs,
    /// An HTTP endpoint.
    Http,
    /// An HTTPS endpoint.
    Https,
    /// An MQTT topic on this broker (an Outpost extension).
    Mqtt,
}

impl Protocol {
    /// Parses `Protocol` as Subscribe takes it.
    pub fn parse(s: &str) -> Result<Protocol> {
        Ok(match s {
            "sqs" => Protocol::Sqs,
            "http" => Protocol::Http,
            "https" => Protocol::Https,
            "mqtt" => Protocol::Mqtt,
            "email" | "email-json" | "sms" | "lambda" | "application" | "firehose" => {
                return Err(TopicError::invalid(format!(
                    "Protocol: {s} subscriptions are not supported by Outpost (sqs, http, https and mqtt are)"
                )))
            }
            other => {
                return Err(TopicError::invalid(format!(
                    "Amazon SNS does not support this protocol string: {}",
                    other.chars().take(64).collect::<String>()
                )))
            }
        })
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sqs => "sqs",
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Mqtt => "mqtt",
        }
    }

    /// HTTP or HTTPS.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }
}

/// What the metadata store keeps of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionDef {
    /// Its ARN (the topic's ARN and a UUID).
    pub arn: String,
    /// The topic's ARN.
    pub topic_arn: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Endpoint: queue ARN, URL or MQTT topic.
    pub endpoint: String,
    /// Attributes as set.
    pub attributes: BTreeMap<String, String>,
    /// Confirmed (queues and MQTT at once; HTTP/S by ConfirmSubscription).
    pub confirmed: bool,
    /// The confirmation token of a pending HTTP/S subscription.
    pub token: Option<String>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Who subscribed ([`outpost_access::Identity::encode`]): deliveries write as this
    /// principal (ADR 0015). `None` for subscriptions stored before owners were kept: they act
    /// as the anonymous caller.
    #[serde(default)]
    pub owner: Option<String>,
}

/// A live subscription.
#[derive(Debug)]
pub struct Subscription {
    /// Its ARN.
    pub arn: String,
    /// Its topic's ARN.
    pub topic_arn: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Endpoint.
    pub endpoint: String,
    pub(crate) def: Mutex<SubscriptionDef>,
    pub(crate) filter: RwLock<Option<Arc<Pattern>>>,
    pub(crate) policy: RwLock<DeliveryPolicy>,
    /// Bounds the deliveries in flight to this endpoint.
    pub(crate) inflight: Arc<tokio::sync::Semaphore>,
    /// The earliest time the next attempt may start (`maxReceivesPerSecond`).
    pub(crate) next_slot: Mutex<Instant>,
    pub(crate) deleted: AtomicBool,
    /// Deliveries owed to this endpoint now, and their bytes: bounded, so an endpoint that
    /// accepts and never answers cannot pile up memory and disk (ADR 0015).
    pub(crate) backlog: std::sync::atomic::AtomicUsize,
    pub(crate) backlog_bytes: std::sync::atomic::AtomicU64,
}

/// Deliveries in flight to one HTTP endpoint at a time.
pub const MAX_INFLIGHT_PER_ENDPOINT: usize = 32;

const SETTABLE: &[&str] = &[
    "DeliveryPolicy",
    "FilterPolicy",
    "FilterPolicyScope",
    "RawMessageDelivery",
    "RedrivePolicy",
    "SubscriptionRoleArn",
];

fn dialect(scope: Option<&str>) -> Dialect {
    match scope {
        Some("MessageBody") => Dialect::SnsBody,
        _ => Dialect::SnsAttributes,
    }
}

/// Parses a filter policy in its scope, with AWS's messages.
pub fn parse_filter(policy: &str, scope: Option<&str>) -> Result<Option<Pattern>> {
    if policy.trim().is_empty() || policy.trim() == "{}" {
        return Ok(None);
    }
    let d = dialect(scope);
    Pattern::parse(policy, d)
        .map(Some)
        .map_err(|e| TopicError::InvalidParameter(e.aws_message(d)))
}

/// The queue ARN a `RedrivePolicy` names.
pub fn dead_letter_arn(policy: &str) -> Result<String> {
    let bad = |why: &str| TopicError::invalid(format!("RedrivePolicy: {why}"));
    let v: serde_json::Value = serde_json::from_str(policy).map_err(|_| bad("not valid JSON"))?;
    let arn = v
        .get("deadLetterTargetArn")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad("deadLetterTargetArn is missing"))?;
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sqs" || parts[5].is_empty() {
        return Err(bad("deadLetterTargetArn is not a valid SQS queue ARN"));
    }
    Ok(arn.to_string())
}

/// Checks attribute `name` = `value` for a subscription of `protocol`, given the other
/// attributes it has (the filter policy depends on the scope and the scope on the policy).
pub fn validate_attribute(
    protocol: Protocol,
    name: &str,
    value: &str,
    others: &BTreeMap<String, String>,
) -> Result<()> {
    if !SETTABLE.contains(&name) {
        return Err(TopicError::invalid(format!(
            "AttributeName: Unknown attribute {}",
            name.chars().take(64).collect::<String>()
        )));
    }
    match name {
        "RawMessageDelivery" if !matches!(value, "true" | "false") => {
            return Err(TopicError::invalid(
                "Attributes Reason: RawMessageDelivery: Invalid value [must be true or false]",
            ));
        }
        "FilterPolicyScope" => {
            if !matches!(value, "MessageAttributes" | "MessageBody") {
                return Err(TopicError::invalid(
                    "Attributes Reason: FilterPolicyScope: Invalid value [must be MessageAttributes or MessageBody]",
                ));
            }
            if let Some(p) = others.get("FilterPolicy") {
                parse_filter(p, Some(value))?;
            }
        }
        "FilterPolicy" => {
            parse_filter(value, others.get("FilterPolicyScope").map(String::as_str))?;
        }
        "RedrivePolicy" if !value.is_empty() => {
            dead_letter_arn(value)?;
        }
        "DeliveryPolicy" => {
            if !(protocol.is_http() || protocol == Protocol::Mqtt) {
                return Err(TopicError::invalid(
                    "DeliveryPolicy: a delivery policy applies to http, https and mqtt subscriptions only",
                ));
            }
            if !value.is_empty() {
                validate_subscription_policy(value)?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl Subscription {
    pub(crate) fn new(def: SubscriptionDef, policy: DeliveryPolicy) -> Subscription {
        let filter = parse_filter(
            def.attributes
                .get("FilterPolicy")
                .map_or("", String::as_str),
            def.attributes.get("FilterPolicyScope").map(String::as_str),
        )
        .ok()
        .flatten()
        .map(Arc::new);
        Subscription {
            arn: def.arn.clone(),
            topic_arn: def.topic_arn.clone(),
            protocol: def.protocol,
            endpoint: def.endpoint.clone(),
            def: Mutex::new(def),
            filter: RwLock::new(filter),
            policy: RwLock::new(policy),
            inflight: Arc::new(tokio::sync::Semaphore::new(MAX_INFLIGHT_PER_ENDPOINT)),
            next_slot: Mutex::new(Instant::now()),
            deleted: AtomicBool::new(false),
            backlog: Default::default(),
            backlog_bytes: Default::default(),
        }
    }

    /// True when confirmed.
    pub fn confirmed(&self) -> bool {
        self.def.lock().confirmed
    }

    /// True when messages go without the envelope.
    pub fn raw(&self) -> bool {
        self.def
            .lock()
            .attributes
            .get("RawMessageDelivery")
            .is_some_and(|v| v == "true")
    }

    /// True once unsubscribed (or its topic deleted).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// The dead-letter queue's ARN, if any.
    pub fn dead_letter_arn(&self) -> Option<String> {
        let def = self.def.lock();
        def.attributes
            .get("RedrivePolicy")
            .and_then(|p| dead_letter_arn(p).ok())
    }

    /// True when the filter policy (if any) accepts a message with these attributes and body.
    /// The body is parsed at most once per message, by the first body-scoped policy that needs it.
    pub(crate) fn accepts(
        &self,
        attributes: &serde_json::Value,
        body: &std::cell::OnceCell<Option<serde_json::Value>>,
        text: &str,
    ) -> bool {
        let filter = self.filter.read().clone();
        let Some(filter) = filter else {
            return true;
        };
        match filter.dialect() {
            Dialect::SnsBody => body
                .get_or_init(|| serde_json::from_str::<serde_json::Value>(text).ok())
                .as_ref()
                .is_some_and(|v| filter.matches(v)),
            _ => filter.matches(attributes),
        }
    }
}
