//! A topic: its stored definition (name, attributes, tags) and its live state (subscriptions,
//! FIFO deduplication and sequence numbers).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::delivery_policy::TopicDeliveryPolicy;
use crate::error::{Result, TopicError};
use crate::signing::SignatureVersion;
use crate::subscription::Subscription;

/// FIFO topics remember deduplication ids this long (SNS: 5 minutes).
pub const DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// What the metadata store keeps of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDef {
    /// The name (`.fifo` for FIFO topics).
    pub name: String,
    /// Attributes as set (only the settable ones; computed ones are not stored).
    pub attributes: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
}

/// A deduplication entry of a FIFO topic.
#[derive(Debug, Clone)]
pub(crate) struct Dedup {
    pub expires_ms: u64,
    pub message_id: String,
    pub sequence: String,
}

/// A live topic.
#[derive(Debug)]
pub struct Topic {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// FIFO topic.
    pub fifo: bool,
    pub(crate) def: Mutex<TopicDef>,
    pub(crate) delivery: RwLock<TopicDeliveryPolicy>,
    /// Its subscriptions, confirmed or not.
    pub(crate) subscriptions: RwLock<Vec<Arc<Subscription>>>,
    /// Subscriptions deleted since start (`SubscriptionsDeleted`).
    pub(crate) deleted_subscriptions: AtomicU64,
    /// Messages published to it since start.
    pub published: AtomicU64,
    /// Copies delivered to its subscriptions since start.
    pub delivered: AtomicU64,
    /// FIFO topics publish one at a time, so copies reach every queue in publish order.
    pub(crate) publish_order: tokio::sync::Mutex<()>,
    pub(crate) dedup: Mutex<HashMap<String, Dedup>>,
    pub(crate) next_sequence: AtomicU64,
    pub(crate) deleted: AtomicBool,
}

/// Attributes a caller may set, beyond the delivery-status logging ones (`*SuccessFeedbackRoleArn`,
/// `*FailureFeedbackRoleArn`, `*SuccessFeedbackSampleRate`), which are kept but not acted on.
const SETTABLE: &[&str] = &[
    "DisplayName",
    "Policy",
    "DeliveryPolicy",
    "KmsMasterKeyId",
    "SignatureVersion",
    "TracingConfig",
    "ContentBasedDeduplication",
    "FifoTopic",
    "FifoThroughputScope",
    "ArchivePolicy",
    "DataProtectionPolicy",
];

fn feedback_attribute(name: &str) -> bool {
    const PROTOCOLS: &[&str] = &["Application", "HTTP", "Lambda", "SQS", "Firehose"];
    const SUFFIXES: &[&str] = &[
        "SuccessFeedbackRoleArn",
        "FailureFeedbackRoleArn",
        "SuccessFeedbackSampleRate",
    ];
    PROTOCOLS.iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|rest| SUFFIXES.contains(&rest))
    })
}

fn bool_attr(name: &str, v: &str) -> Result<()> {
    match v {
        "true" | "false" => Ok(()),
        _ => Err(TopicError::invalid(format!(
            "Attributes Reason: {name} must be true or false"
        ))),
    }
}

/// Checks one attribute of a topic (FIFO or not) at create or set time.
pub fn validate_attribute(fifo: bool, name: &str, value: &str, creating: bool) -> Result<()> {
    if !SETTABLE.contains(&name) && !feedback_attribute(name) {
        return Err(TopicError::invalid(format!(
            "AttributeName: Unknown attribute {}",
            name.chars().take(64).collect::<String>()
        )));
    }
    match name {
        "FifoTopic" => {
            bool_attr(name, value)?;
            if !creating {
                return Err(TopicError::invalid(
                    "AttributeName: FifoTopic can only be set when the topic is created",
                ));
            }
            if (value == "true") != fifo {
                return Err(TopicError::invalid(
                    "Topic Name: The topic should either have FifoTopic set to true and end with .fifo, or neither",
                ));
            }
        }
        "ContentBasedDeduplication" => {
            bool_attr(name, value)?;
            if !fifo {
                return Err(TopicError::invalid(
                    "Attributes Reason: ContentBasedDeduplication can only be set for FIFO topics",
                ));
            }
        }
        "FifoThroughputScope" => {
            if !fifo {
                return Err(TopicError::invalid(
                    "Attributes Reason: FifoThroughputScope can only be set for FIFO topics",
                ));
            }
            if !matches!(value, "Topic" | "MessageGroup") {
                return Err(TopicError::invalid(
                    "Attributes Reason: FifoThroughputScope must be Topic or MessageGroup",
                ));
            }
        }
        "SignatureVersion" if SignatureVersion::parse(value).is_none() => {
            return Err(TopicError::invalid(
                "Attributes Reason: SignatureVersion must be 1 or 2",
            ));
        }
        "DisplayName" if value.chars().count() > 100 => {
            return Err(TopicError::invalid(
                "DisplayName: must be at most 100 characters",
            ));
        }
        "TracingConfig" if !matches!(value, "PassThrough" | "Active") => {
            return Err(TopicError::invalid(
                "Attributes Reason: TracingConfig must be PassThrough or Active",
            ));
        }
        "Policy" | "DataProtectionPolicy" | "ArchivePolicy"
            if !value.is_empty()
                && !serde_json::from_str::<serde_json::Value>(value)
                    .is_ok_and(|v| v.is_object()) =>
        {
            return Err(TopicError::invalid(format!(
                "{name}: {name} is not a valid JSON object"
            )));
        }
        "DeliveryPolicy" => {
            TopicDeliveryPolicy::parse(value)?;
        }
        _ => {}
    }
    Ok(())
}

/// True for a valid topic name: 1 to 256 letters, digits, `-` and `_`, plus `.fifo` for FIFO.
pub fn valid_name(name: &str) -> bool {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    !base.is_empty()
        && name.len() <= 256
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Topic {
    pub(crate) fn new(def: TopicDef, arn: String, first_sequence: u64) -> Result<Topic> {
        let delivery = TopicDeliveryPolicy::parse(
            def.attributes
                .get("DeliveryPolicy")
                .map_or("", String::as_str),
        )
        .unwrap_or_default();
        Ok(Topic {
            name: def.name.clone(),
            arn,
            fifo: def.name.ends_with(".fifo"),
            def: Mutex::new(def),
            delivery: RwLock::new(delivery),
            subscriptions: RwLock::new(Vec::new()),
            deleted_subscriptions: AtomicU64::new(0),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            publish_order: tokio::sync::Mutex::new(()),
            dedup: Mutex::new(HashMap::new()),
            next_sequence: AtomicU64::new(first_sequence),
            deleted: AtomicBool::new(false),
        })
    }

    /// True once the topic was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// The value of a stored attribute.
    pub fn attribute(&self, name: &str) -> Option<String> {
        self.def.lock().attributes.get(name).cloned()
    }

    /// The signature version messages are signed with.
    pub fn signature_version(&self) -> SignatureVersion {
        self.attribute("SignatureVersion")
            .as_deref()
            .and_then(SignatureVersion::parse)
            .unwrap_or(SignatureVersion::V1)
    }

    /// True when FIFO messages without a deduplication id use a hash of the body.
    pub fn content_based_dedup(&self) -> bool {
        self.attribute("ContentBasedDeduplication").as_deref() == Some("true")
    }
}
