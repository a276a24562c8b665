//! A published message and the forms it is delivered in: SNS's JSON envelope (as SNS writes it
//! into a queue or POSTs it to an endpoint), the raw message, and the canonical string the
//! signature covers.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TopicError};

/// Largest message: body plus attributes (names, types and values), 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 262_144;

/// One message attribute, as SNS takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    /// `String`, `String.Array`, `Number` or `Binary` (optionally with a custom suffix).
    pub data_type: String,
    /// The value; a `Binary` value is kept base64-encoded, as the envelope carries it.
    pub value: String,
}

impl Attribute {
    /// True for `Binary` and its custom forms.
    pub fn is_binary(&self) -> bool {
        self.data_type.split('.').next() == Some("Binary")
    }
}

/// Message attributes by name.
pub type Attributes = BTreeMap<String, Attribute>;

/// A message as published, shared by every delivery of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The message id (a UUID).
    pub id: String,
    /// The topic it was published to.
    pub topic_arn: String,
    /// `Subject`, if any.
    pub subject: Option<String>,
    /// The message (with `MessageStructure=json`, its `default`).
    pub message: String,
    /// Per-protocol messages (`MessageStructure=json`): protocol → message.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_protocol: BTreeMap<String, String>,
    /// Message attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: Attributes,
    /// When it was published, ms since the epoch.
    pub timestamp_ms: u64,
    /// FIFO topics: the sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    /// FIFO topics: the message group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// FIFO topics: the deduplication id (explicit or content-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<String>,
    /// The topic's `SignatureVersion` when it was published.
    pub signature_version: String,
}

impl Notification {
    /// The message a subscription of `protocol` receives.
    pub fn message_for(&self, protocol: &str) -> &str {
        self.per_protocol
            .get(protocol)
            .map_or(self.message.as_str(), String::as_str)
    }

    /// The topic's `SignatureVersion` when the message was published (SHA1withRSA unless 2).
    pub fn signature_version(&self) -> crate::signing::SignatureVersion {
        crate::signing::SignatureVersion::parse(&self.signature_version)
            .unwrap_or(crate::signing::SignatureVersion::V1)
    }

    /// Which text [`Notification::message_for`] gives `protocol`: its own (`MessageStructure`
    /// json) or the default one. Protocols with the same key sign the same text.
    pub fn text_key(&self, protocol: &'static str) -> &'static str {
        if self.per_protocol.contains_key(protocol) {
            protocol
        } else {
            "default"
        }
    }

    /// The string SNS signs for a notification (keys in order; `Subject` only when present).
    pub fn string_to_sign(&self, message: &str) -> String {
        let mut s = String::with_capacity(message.len() + 256);
        s.push_str("Message\n");
        s.push_str(message);
        s.push_str("\nMessageId\n");
        s.push_str(&self.id);
        s.push('\n');
        if let Some(subject) = &self.subject {
            s.push_str("Subject\n");
            s.push_str(subject);
            s.push('\n');
        }
        s.push_str("Timestamp\n");
        s.push_str(&timestamp(self.timestamp_ms));
        s.push_str("\nTopicArn\n");
        s.push_str(&self.topic_arn);
        s.push_str("\nType\nNotification\n");
        s
    }

    /// The JSON envelope, laid out as SNS lays it out.
    pub fn envelope(
        &self,
        message: &str,
        signature: &str,
        cert_url: &str,
        unsubscribe_url: &str,
    ) -> String {
        let mut fields: Vec<(&str, String)> = vec![
            ("Type", json_string("Notification")),
            ("MessageId", json_string(&self.id)),
        ];
        if let Some(seq) = &self.sequence {
            fields.push(("SequenceNumber", json_string(seq)));
        }
        fields.push(("TopicArn", json_string(&self.topic_arn)));
        if let Some(subject) = &self.subject {
            fields.push(("Subject", json_string(subject)));
        }
        fields.push(("Message", json_string(message)));
        fields.push(("Timestamp", json_string(&timestamp(self.timestamp_ms))));
        fields.push(("SignatureVersion", json_string(&self.signature_version)));
        fields.push(("Signature", json_string(signature)));
        fields.push(("SigningCertURL", json_string(cert_url)));
        fields.push(("UnsubscribeURL", json_string(unsubscribe_url)));
        if !self.attributes.is_empty() {
            let attrs: serde_json::Map<String, serde_json::Value> = self
                .attributes
                .iter()
                .map(|(k, a)| {
                    (
                        k.clone(),
                        serde_json::json!({"Type": a.data_type, "Value": a.value}),
                    )
                })
                .collect();
            fields.push((
                "MessageAttributes",
                serde_json::Value::Object(attrs).to_string(),
            ));
        }
        layout(&fields)
    }

    /// Bytes of body and attributes, as SNS counts them against the 256 KiB limit.
    pub fn size(&self) -> usize {
        self.message.len()
            + self
                .per_protocol
                .values()
                .map(String::len)
                .max()
                .unwrap_or(0)
                .saturating_sub(self.message.len())
            + attributes_size(&self.attributes)
    }
}

/// Bytes of attributes: names, types and values.
pub fn attributes_size(attrs: &Attributes) -> usize {
    attrs
        .iter()
        .map(|(k, a)| k.len() + a.data_type.len() + a.value.len())
        .sum()
}

/// A JSON object laid out as SNS writes its envelopes (`"Key" : value`, two-space indent).
pub fn layout(fields: &[(&str, String)]) -> String {
    let mut out = String::from("{\n");
    for (i, (k, v)) in fields.iter().enumerate() {
        out.push_str("  \"");
        out.push_str(k);
        out.push_str("\" : ");
        out.push_str(v);
        if i + 1 < fields.len() {
            out.push(',');
        }
        out.push('\n');
    }
    out.push('}');
    out
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `2012-05-02T00:54:06.655Z`, the timestamp format of SNS envelopes.
pub fn timestamp(ms: u64) -> String {
    let secs = (ms / 1000).min(253_402_300_799) as i64;
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return "1970-01-01T00:00:00.000Z".into();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        ms % 1000
    )
}

fn valid_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.to_ascii_lowercase().starts_with("aws.")
        && !name.to_ascii_lowercase().starts_with("amazon.")
}

fn attribute_error(reason: String) -> TopicError {
    TopicError::InvalidParameterValue(format!(
        "Invalid parameter: MessageAttributes Reason: {reason}"
    ))
}

/// Checks attribute names, data types and values as SNS does.
pub fn validate_attributes(attrs: &Attributes) -> Result<()> {
    for (name, a) in attrs {
        if !valid_attribute_name(name) {
            return Err(attribute_error(format!(
                "Message attribute name '{}' has an invalid character or form.",
                name.chars().take(256).collect::<String>()
            )));
        }
        let base = a.data_type.split('.').next().unwrap_or("");
        let custom_ok = a.data_type.len() <= 256
            && a.data_type
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !matches!(base, "String" | "Number" | "Binary") || !custom_ok {
            return Err(attribute_error(format!(
                "The message attribute '{name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."
            )));
        }
        if a.value.is_empty() {
            return Err(attribute_error(format!(
                "The message attribute '{name}' must contain non-empty message attribute value for message attribute type '{}'.",
                a.data_type
            )));
        }
        match base {
            "Number" => {
                let ok = a.value.trim().parse::<f64>().is_ok_and(f64::is_finite);
                if !ok {
                    return Err(attribute_error(format!(
                        "An invalid or out of range value '{}' was supplied for the message attribute '{name}' of type 'Number'.",
                        a.value.chars().take(64).collect::<String>()
                    )));
                }
            }
            "Binary" if STANDARD.decode(&a.value).is_err() => {
                return Err(attribute_error(format!(
                    "The message attribute '{name}' of type 'Binary' is not valid base64."
                )));
            }
            _ if a.data_type == "String.Array" => {
                let ok = matches!(
                    serde_json::from_str::<serde_json::Value>(&a.value),
                    Ok(serde_json::Value::Array(items)) if items.iter().all(|v| !v.is_array() && !v.is_object())
                );
                if !ok {
                    return Err(attribute_error(format!(
                        "Invalid attribute value for message attribute '{name}' of type 'String.Array': the value must be a JSON array of strings, numbers, true, false or null."
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_sns_format() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_335_920_046_655), "2012-05-02T00:54:06.655Z");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn the_envelope_parses_and_carries_what_was_signed() {
        let n = Notification {
            id: "id-1".into(),
            topic_arn: "arn:aws:sns:us-east-1:000000000000:t".into(),
            subject: Some("s".into()),
            message: "hello \"world\"\n".into(),
            per_protocol: BTreeMap::new(),
            attributes: [(
                "k".to_string(),
                Attribute {
                    data_type: "String".into(),
                    value: "v".into(),
                },
            )]
            .into(),
            timestamp_ms: 1_335_920_046_655,
            sequence: None,
            group: None,
            dedup: None,
            signature_version: "1".into(),
        };
        let e = n.envelope(n.message_for("sqs"), "SIG", "http://c", "http://u");
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["Message"], "hello \"world\"\n");
        assert_eq!(v["MessageAttributes"]["k"]["Value"], "v");
        assert!(e.starts_with("{\n  \"Type\" : \"Notification\",\n"));
        assert!(n
            .string_to_sign(&n.message)
            .starts_with("Message\nhello \"world\"\n\nMessageId\nid-1\nSubject\ns\nTimestamp\n"));
    }

    #[test]
    fn attribute_rules() {
        let one = |t: &str, v: &str| -> Attributes {
            [(
                "a".to_string(),
                Attribute {
                    data_type: t.into(),
                    value: v.into(),
                },
            )]
            .into()
        };
        assert!(validate_attributes(&one("String", "x")).is_ok());
        assert!(validate_attributes(&one("Number", "12.5")).is_ok());
        assert!(validate_attributes(&one("Number", "x")).is_err());
        assert!(validate_attributes(&one("String.Array", "[\"a\",1]")).is_ok());
        assert!(validate_attributes(&one("String.Array", "[[1]]")).is_err());
        assert!(validate_attributes(&one("Binary", "aGk=")).is_ok());
        assert!(validate_attributes(&one("Blob", "x")).is_err());
        assert!(validate_attributes(&one("String", "")).is_err());
    }
}
