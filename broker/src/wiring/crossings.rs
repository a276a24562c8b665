//! Where one door's message enters another engine: an SNS `mqtt` subscription or a rule's MQTT
//! target publishes through the MQTT engine as its owner, and every client PUBLISH is offered to
//! the event rules. Each crossing is checked as the principal it acts for (ADR 0015).

/// The MQTT engine as a door for topic subscriptions with the `mqtt` protocol: QoS 1, answered
/// once every persistent session that got the message holds it durably.
#[cfg(feature = "sns")]
pub(crate) struct MqttDoor(pub std::sync::Arc<outpost_mqtt::Broker>);

#[cfg(feature = "sns")]
impl outpost_topics::MqttPublisher for MqttDoor {
    fn publish(
        &self,
        m: outpost_topics::MqttMessage,
    ) -> outpost_topics::BoxFuture<'_, Result<(), outpost_topics::MqttRefusal>> {
        let message = outpost_mqtt::Message {
            topic: m.topic.as_str().into(),
            payload: m.payload,
            qos: outpost_codec::QoS::AtLeastOnce,
            retain: false,
            properties: outpost_mqtt::MessageProperties {
                content_type: m.content_type.map(str::to_string),
                user_properties: m.user_properties,
                ..Default::default()
            },
            received: None,
        };
        // Checked as its owner where it enters the engine (ADR 0015); not offered to the rules,
        // or a rule could feed itself.
        let durable = match self.0.publish_as(&m.who, message, false) {
            Ok((_, durable)) => durable,
            Err(code) => {
                let why = format!(
                    "MQTT publish to {} refused: {code:?}",
                    m.topic.chars().take(128).collect::<String>()
                );
                // A full queue (or retained quota) may drain: retried like a failed write.
                let refusal = if code == outpost_codec::ReasonCode::QuotaExceeded {
                    outpost_topics::MqttRefusal::Failed(why)
                } else {
                    outpost_topics::MqttRefusal::Refused(why)
                };
                return Box::pin(async move { Err(refusal) });
            }
        };
        Box::pin(async move {
            durable
                .wait()
                .await
                .map_err(|e| outpost_topics::MqttRefusal::Failed(e.to_string()))
        })
    }
}

/// Offers every client PUBLISH to the event rules (MQTT publishes are events, ADR 0011).
#[cfg(feature = "events")]
pub(crate) struct RulesTap(pub std::sync::Arc<outpost_rules::Events>);

#[cfg(feature = "events")]
impl outpost_mqtt::PublishTap for RulesTap {
    fn offer(&self, client_id: &str, m: &outpost_mqtt::Message) -> Option<outpost_mqtt::TapWait> {
        let p = &m.properties;
        self.0.offer_mqtt(&outpost_rules::MqttEventSource {
            client_id,
            topic: &m.topic,
            payload: &m.payload,
            qos: m.qos as u8,
            retain: m.retain,
            content_type: p.content_type.as_deref(),
            response_topic: p.response_topic.as_deref(),
            correlation_data: p.correlation_data.as_deref(),
            payload_format_indicator: p.payload_format_indicator,
            user_properties: &p.user_properties,
        })
    }
}
