//! Queue attributes: which ones exist, their ranges and defaults.
//!
//! A queue keeps the attributes a user set, as strings, exactly as SQS does: that map is what is
//! persisted, what `CreateQueue` compares for idempotence, and what `GetQueueAttributes` reports on
//! top of the defaults. [`Settings`] is the typed view the engine reads on the hot path.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{QueueError, Result};

/// Attributes a user may set, and which of them only FIFO queues have.
const SETTABLE: &[&str] = &[
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "Policy",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];
const FIFO_ONLY: &[&str] = &[
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];
/// Attributes computed by the engine (read-only).
pub const COMPUTED: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

/// The largest message SQS accepts (the 2025 limit; the default stays at the classic 256 KiB).
pub const MAX_MESSAGE_SIZE: u32 = 1_048_576;
/// The default `MaximumMessageSize`.
pub const DEFAULT_MESSAGE_SIZE: u32 = 262_144;

/// Whether `name` is an attribute `GetQueueAttributes` knows.
pub fn is_known(name: &str) -> bool {
    SETTABLE.contains(&name) || COMPUTED.contains(&name)
}

/// A queue's dead-letter settings (`RedrivePolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedrivePolicy {
    /// Name of the dead-letter queue (from `deadLetterTargetArn`).
    pub target_arn: String,
    /// Receives after which a message moves there.
    pub max_receive_count: u32,
}

/// Who may use a queue as its dead-letter queue (`RedriveAllowPolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveAllow {
    /// Any queue of this account (the default).
    AllowAll,
    /// No queue.
    DenyAll,
    /// Only the listed source queue ARNs.
    ByQueue(Vec<String>),
}

/// Where FIFO deduplication ids are unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupScope {
    /// Across the queue (the default).
    Queue,
    /// Within each message group.
    MessageGroup,
}

/// The typed view of a queue's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Seconds every new message stays invisible.
    pub delay_seconds: u32,
    /// Largest body plus attributes, in bytes.
    pub maximum_message_size: u32,
    /// Seconds a message lives.
    pub retention_seconds: u32,
    /// Default long-poll wait.
    pub receive_wait_seconds: u32,
    /// Default visibility timeout.
    pub visibility_timeout: u32,
    /// Dead-letter queue, if any.
    pub redrive: Option<RedrivePolicy>,
    /// Who may use this queue as a dead-letter queue.
    pub redrive_allow: RedriveAllow,
    /// FIFO queue.
    pub fifo: bool,
    /// Deduplicate by SHA-256 of the body when no id is given.
    pub content_based_dedup: bool,
    /// Where deduplication ids are unique.
    pub dedup_scope: DedupScope,
}

fn int(name: &str, value: &str, min: u32, max: u32) -> Result<u32> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| {
            QueueError::InvalidAttributeValue(format!("Invalid value for the parameter {name}."))
        })
}

fn boolean(name: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(QueueError::InvalidAttributeValue(format!(
            "Invalid value for the parameter {name}."
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RedriveJson {
    dead_letter_target_arn: Option<String>,
    max_receive_count: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RedriveAllowJson {
    redrive_permission: Option<String>,
    source_queue_arns: Option<Vec<String>>,
}

fn invalid_redrive(reason: &str) -> QueueError {
    QueueError::InvalidParameterValue(format!(
        "Value for parameter RedrivePolicy is invalid. Reason: {reason}"
    ))
}

/// Parses `RedrivePolicy` (empty: none).
pub fn parse_redrive(value: &str) -> Result<Option<RedrivePolicy>> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    let j: RedriveJson = serde_json::from_str(value)
        .map_err(|_| invalid_redrive("Redrive policy is not a valid JSON map."))?;
    let target_arn = j
        .dead_letter_target_arn
        .ok_or_else(|| invalid_redrive("Redrive policy does not contain deadLetterTargetArn."))?;
    let count = match j.max_receive_count {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        None => Some(10),
        _ => None,
    };
    let max_receive_count = count
        .filter(|c| (1..=1000).contains(c))
        .ok_or_else(|| invalid_redrive("Invalid value for maxReceiveCount: must be 1 to 1000."))?
        as u32;
    Ok(Some(RedrivePolicy {
        target_arn,
        max_receive_count,
    }))
}

fn parse_redrive_allow(value: &str) -> Result<RedriveAllow> {
    let bad = |reason: &str| {
        QueueError::InvalidParameterValue(format!(
            "Value for parameter RedriveAllowPolicy is invalid. Reason: {reason}"
        ))
    };
    if value.trim().is_empty() {
        return Ok(RedriveAllow::AllowAll);
    }
    let j: RedriveAllowJson =
        serde_json::from_str(value).map_err(|_| bad("Not a valid JSON map."))?;
    let arns = j.source_queue_arns.unwrap_or_default();
    match j.redrive_permission.as_deref() {
        Some("allowAll") | None if arns.is_empty() => Ok(RedriveAllow::AllowAll),
        Some("denyAll") if arns.is_empty() => Ok(RedriveAllow::DenyAll),
        Some("byQueue") if !arns.is_empty() && arns.len() <= 10 => Ok(RedriveAllow::ByQueue(arns)),
        Some("byQueue") => Err(bad("byQueue needs 1 to 10 sourceQueueArns.")),
        Some("allowAll" | "denyAll") | None => {
            Err(bad("sourceQueueArns is only allowed with byQueue."))
        }
        Some(_) => Err(bad(
            "redrivePermission must be allowAll, denyAll or byQueue.",
        )),
    }
}

/// Checks one attribute a user wants to set and returns its normalized value.
/// `creating` allows `FifoQueue`, which cannot change later.
pub fn validate(name: &str, value: &str, fifo: bool, creating: bool) -> Result<String> {
    if !SETTABLE.contains(&name) {
        return Err(QueueError::InvalidAttributeName(format!(
            "Unknown Attribute {name}."
        )));
    }
    if FIFO_ONLY.contains(&name) && !fifo {
        return Err(QueueError::InvalidAttributeName(format!(
            "Unknown Attribute {name}."
        )));
    }
    let normalized = match name {
        "DelaySeconds" => int(name, value, 0, 900)?.to_string(),
        "MaximumMessageSize" => int(name, value, 1024, MAX_MESSAGE_SIZE)?.to_string(),
        "MessageRetentionPeriod" => int(name, value, 60, 1_209_600)?.to_string(),
        "ReceiveMessageWaitTimeSeconds" => int(name, value, 0, 20)?.to_string(),
        "VisibilityTimeout" => int(name, value, 0, 43_200)?.to_string(),
        "KmsDataKeyReusePeriodSeconds" => int(name, value, 60, 86_400)?.to_string(),
        "SqsManagedSseEnabled" | "ContentBasedDeduplication" => boolean(name, value)?.to_string(),
        "FifoQueue" => {
            if !creating {
                return Err(QueueError::InvalidAttributeName(
                    "You can specify the FifoQueue attribute only when you create a queue.".into(),
                ));
            }
            let v = boolean(name, value)?;
            if v != fifo {
                return Err(QueueError::InvalidParameterValue(
                    "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.".into(),
                ));
            }
            v.to_string()
        }
        "DeduplicationScope" => match value {
            "queue" | "messageGroup" => value.to_string(),
            _ => {
                return Err(QueueError::InvalidAttributeValue(
                    "Invalid value for the parameter DeduplicationScope.".into(),
                ))
            }
        },
        "FifoThroughputLimit" => match value {
            "perQueue" | "perMessageGroupId" => value.to_string(),
            _ => {
                return Err(QueueError::InvalidAttributeValue(
                    "Invalid value for the parameter FifoThroughputLimit.".into(),
                ))
            }
        },
        "Policy" => {
            // AWS's policy quota (SQS developer guide, "Amazon SQS policy quotas").
            if value.len() > MAX_POLICY_BYTES {
                return Err(QueueError::InvalidAttributeValue(format!(
                    "Invalid value for the parameter Policy. Reason: the policy is larger than {MAX_POLICY_BYTES} bytes."
                )));
            }
            if !value.is_empty() && serde_json::from_str::<serde_json::Value>(value).is_err() {
                return Err(QueueError::InvalidAttributeValue(
                    "Invalid value for the parameter Policy.".into(),
                ));
            }
            value.to_string()
        }
        "RedrivePolicy" => {
            parse_redrive(value)?;
            value.to_string()
        }
        "RedriveAllowPolicy" => {
            parse_redrive_allow(value)?;
            value.to_string()
        }
        _ => value.to_string(),
    };
    Ok(normalized)
}

impl Settings {
    /// The typed view of validated attributes (absent ones take SQS's defaults).
    pub fn from_map(map: &BTreeMap<String, String>, fifo: bool) -> Settings {
        let num = |name: &str, default: u32| {
            map.get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let flag = |name: &str| map.get(name).is_some_and(|v| v == "true");
        Settings {
            delay_seconds: num("DelaySeconds", 0),
            maximum_message_size: num("MaximumMessageSize", DEFAULT_MESSAGE_SIZE),
            retention_seconds: num("MessageRetentionPeriod", 345_600),
            receive_wait_seconds: num("ReceiveMessageWaitTimeSeconds", 0),
            visibility_timeout: num("VisibilityTimeout", 30),
            redrive: map
                .get("RedrivePolicy")
                .and_then(|v| parse_redrive(v).ok().flatten()),
            redrive_allow: map
                .get("RedriveAllowPolicy")
                .and_then(|v| parse_redrive_allow(v).ok())
                .unwrap_or(RedriveAllow::AllowAll),
            fifo,
            content_based_dedup: flag("ContentBasedDeduplication"),
            dedup_scope: if map.get("DeduplicationScope").map(String::as_str)
                == Some("messageGroup")
            {
                DedupScope::MessageGroup
            } else {
                DedupScope::Queue
            },
        }
    }
}

/// The settable attributes `GetQueueAttributes` reports, with defaults for those never set.
pub fn with_defaults(map: &BTreeMap<String, String>, fifo: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let defaults: &[(&str, &str)] = &[
        ("DelaySeconds", "0"),
        ("MaximumMessageSize", "262144"),
        ("MessageRetentionPeriod", "345600"),
        ("ReceiveMessageWaitTimeSeconds", "0"),
        ("VisibilityTimeout", "30"),
    ];
    for (k, v) in defaults {
        out.insert(k.to_string(), v.to_string());
    }
    if !map.contains_key("KmsMasterKeyId") {
        out.insert("SqsManagedSseEnabled".into(), "true".into());
    }
    if fifo {
        out.insert("FifoQueue".into(), "true".into());
        out.insert("ContentBasedDeduplication".into(), "false".into());
        out.insert("DeduplicationScope".into(), "queue".into());
        out.insert("FifoThroughputLimit".into(), "perQueue".into());
    }
    for (k, v) in map {
        if k == "RedrivePolicy" {
            // Reported in SQS's canonical form (maxReceiveCount as a number).
            if let Ok(Some(p)) = parse_redrive(v) {
                out.insert(
                    k.clone(),
                    serde_json::json!({
                        "deadLetterTargetArn": p.target_arn,
                        "maxReceiveCount": p.max_receive_count,
                    })
                    .to_string(),
                );
            }
            continue;
        }
        if (k == "Policy" || k == "RedriveAllowPolicy") && v.is_empty() {
            continue;
        }
        out.insert(k.clone(), v.clone());
    }
    out
}

/// Largest queue policy AWS accepts.
pub const MAX_POLICY_BYTES: usize = 8_192;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        assert!(validate("DelaySeconds", "900", false, true).is_ok());
        assert!(matches!(
            validate("DelaySeconds", "901", false, true),
            Err(QueueError::InvalidAttributeValue(_))
        ));
        assert!(matches!(
            validate("Nope", "1", false, true),
            Err(QueueError::InvalidAttributeName(_))
        ));
        assert!(matches!(
            validate("ContentBasedDeduplication", "true", false, true),
            Err(QueueError::InvalidAttributeName(_))
        ));
        assert!(validate("FifoQueue", "true", false, true).is_err());
        assert!(validate("FifoQueue", "true", true, false).is_err());
    }

    #[test]
    fn redrive_policy_accepts_string_or_number_counts() {
        let p =
            parse_redrive(r#"{"deadLetterTargetArn":"arn:aws:sqs:r:a:dlq","maxReceiveCount":"3"}"#)
                .unwrap()
                .unwrap();
        assert_eq!(p.max_receive_count, 3);
        assert!(parse_redrive(r#"{"maxReceiveCount":3}"#).is_err());
        assert!(parse_redrive(r#"{"deadLetterTargetArn":"x","maxReceiveCount":0}"#).is_err());
        assert_eq!(parse_redrive("").unwrap(), None);
    }
}
