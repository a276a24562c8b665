//! An application message inside the broker: owned, shared by every subscriber it goes to
//! (`Arc`), payload in a reference-counted buffer (no copy per subscriber).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use outpost_codec::{List, Publish, PublishProperties, QoS, UserProperty};

/// MQTT 5 properties that travel with a message (the others belong to one hop).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    /// Payload is UTF-8.
    pub payload_format_indicator: Option<bool>,
    /// Lifetime in seconds from publication.
    pub message_expiry_interval: Option<u32>,
    /// MIME type.
    pub content_type: Option<String>,
    /// Response topic (request/response).
    pub response_topic: Option<String>,
    /// Correlation data (request/response).
    pub correlation_data: Option<Bytes>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
}

impl MessageProperties {
    /// True when MQTT can carry every property: strings and binary data are at most 65,535
    /// bytes each (§1.5.4, §1.5.6). A message from another door (an SNS attribute, an HTTP
    /// header) is checked with this where it enters, so no session is ever handed a message it
    /// cannot encode.
    pub fn fit_mqtt(&self) -> bool {
        const MAX: usize = 65_535;
        let short = |s: &Option<String>| s.as_ref().is_none_or(|s| s.len() <= MAX);
        short(&self.content_type)
            && short(&self.response_topic)
            && self
                .correlation_data
                .as_ref()
                .is_none_or(|c| c.len() <= MAX)
            && self
                .user_properties
                .iter()
                .all(|(k, v)| k.len() <= MAX && v.len() <= MAX)
    }
}

/// An application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name.
    pub topic: Arc<str>,
    /// Payload.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: QoS,
    /// RETAIN flag it was published with.
    pub retain: bool,
    /// Properties that travel with it.
    pub properties: MessageProperties,
    /// When the broker received it, kept only for messages with an expiry (reading the clock for
    /// every message showed up in profiles).
    pub received: Option<Instant>,
}

impl Message {
    /// Bytes it counts for against the limits it is held under (a session's queue, the offline
    /// log, the retained quota): its topic and payload.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }

    /// Builds a message from a decoded PUBLISH whose topic was resolved to `topic`.
    pub fn from_publish(topic: &str, p: &Publish<'_>, payload: Bytes) -> Message {
        let pr = &p.properties;
        Message {
            topic: topic.into(),
            payload,
            qos: p.qos,
            retain: p.retain,
            properties: MessageProperties {
                payload_format_indicator: pr.payload_format_indicator,
                message_expiry_interval: pr.message_expiry_interval,
                content_type: pr.content_type.map(str::to_string),
                response_topic: pr.response_topic.map(str::to_string),
                correlation_data: pr.correlation_data.map(Bytes::copy_from_slice),
                user_properties: pr
                    .user_properties
                    .iter()
                    .map(|u| (u.name.to_string(), u.value.to_string()))
                    .collect(),
            },
            received: pr.message_expiry_interval.map(|_| Instant::now()),
        }
    }

    /// A message without properties (wills of 3.1.1 clients, `$SYS` topics, tests).
    pub fn new(topic: &str, payload: impl Into<Bytes>, qos: QoS, retain: bool) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            properties: MessageProperties::default(),
            received: None,
        }
    }

    /// Seconds left before expiry: `None` without an expiry, `Some(0)` when expired.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        let total = self.properties.message_expiry_interval?;
        let elapsed = self
            .received
            .map_or(0, |r| now.saturating_duration_since(r).as_secs());
        Some(u64::from(total).saturating_sub(elapsed) as u32)
    }

    /// True when the message expired and must not be delivered any more.
    pub fn expired(&self, now: Instant) -> bool {
        self.remaining_expiry(now) == Some(0)
    }

    /// PUBLISH properties for sending this message, with the remaining expiry and the subscription
    /// identifiers of the receiving subscriptions. `users` must outlive the result.
    pub fn publish_properties<'a>(
        &'a self,
        now: Instant,
        subscription_ids: &'a [u32],
        users: &'a [UserProperty<'a>],
    ) -> PublishProperties<'a> {
        PublishProperties {
            payload_format_indicator: self.properties.payload_format_indicator,
            message_expiry_interval: self.remaining_expiry(now),
            topic_alias: None,
            response_topic: self.properties.response_topic.as_deref(),
            correlation_data: self.properties.correlation_data.as_deref(),
            content_type: self.properties.content_type.as_deref(),
            user_properties: List::new(users),
            subscription_identifiers: List::new(subscription_ids),
        }
    }

    /// The user properties as codec values (borrowing this message).
    pub fn user_properties(&self) -> Vec<UserProperty<'_>> {
        self.properties
            .user_properties
            .iter()
            .map(|(k, v)| UserProperty::new(k, v))
            .collect()
    }
}
