//! Events: the JSON envelope every rule sees, built from a `PutEvents` entry or from an MQTT
//! message.
//!
//! An MQTT message becomes an event with `source` `outpost.mqtt`, `detail-type` its topic,
//! `resources` the publishing client id, and `detail` its payload when that is a JSON object
//! (another JSON value is wrapped as `{"value": …}`, anything else as
//! `{"payload-base64": "…"}`). The MQTT fields ride in a top-level `mqtt` object (`topic`,
//! `qos`, `retain`, and when present `content-type`, `response-topic`, `correlation-data`
//! (base64), `payload-format-indicator`, `user-properties` as an object whose repeated names
//! hold arrays), so patterns can match them too.

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// Most bytes of all entries of one `PutEvents` call (EventBridge: 256 KiB).
pub const MAX_PUT_BYTES: usize = 256 * 1024;

/// The `source` of events made from MQTT messages.
pub const MQTT_SOURCE: &str = "outpost.mqtt";

/// An event on its way through the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `id`.
    pub id: String,
    /// The bus it was put on.
    pub bus: String,
    /// The whole event, as targets receive it.
    pub json: Value,
    /// When it was accepted, ms since the epoch.
    pub time_ms: u64,
}

impl Event {
    /// Builds the envelope.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: String,
        bus: &str,
        source: &str,
        detail_type: &str,
        resources: Vec<Value>,
        detail: Value,
        time_ms: u64,
        region: &str,
        account: &str,
    ) -> Event {
        let json = json!({
            "version": "0",
            "id": id,
            "detail-type": detail_type,
            "source": source,
            "account": account,
            "time": event_time(time_ms),
            "region": region,
            "resources": resources,
            "detail": detail,
        });
        Event {
            id,
            bus: bus.to_string(),
            json,
            time_ms,
        }
    }

    /// The event as a JSON text.
    pub fn text(&self) -> String {
        self.json.to_string()
    }
}

/// `2017-12-22T18:43:48Z`, EventBridge's `time` format.
pub fn event_time(ms: u64) -> String {
    let t = outpost_topics::message::timestamp(ms - ms % 1000);
    // The SNS format carries milliseconds; EventBridge's does not.
    match t.strip_suffix(".000Z") {
        Some(s) => format!("{s}Z"),
        None => t,
    }
}

/// An MQTT message offered to the rules (the routing crate does not depend on the MQTT engine;
/// the binary fills this from its message).
#[derive(Debug, Clone, Copy)]
pub struct MqttEventSource<'a> {
    /// The publishing client's id (empty for the broker's own HTTP publishes).
    pub client_id: &'a str,
    /// Topic name.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS 0, 1 or 2.
    pub qos: u8,
    /// RETAIN flag.
    pub retain: bool,
    /// MQTT 5 content type.
    pub content_type: Option<&'a str>,
    /// MQTT 5 response topic.
    pub response_topic: Option<&'a str>,
    /// MQTT 5 correlation data.
    pub correlation_data: Option<&'a [u8]>,
    /// MQTT 5 payload format indicator.
    pub payload_format_indicator: Option<bool>,
    /// MQTT 5 user properties, in order.
    pub user_properties: &'a [(String, String)],
}

/// The `detail` of an MQTT payload.
pub fn mqtt_detail(payload: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(payload) {
        Ok(v @ Value::Object(_)) => v,
        Ok(v) => json!({ "value": v }),
        Err(_) => json!({
            "payload-base64": base64::engine::general_purpose::STANDARD.encode(payload)
        }),
    }
}

/// The event of an MQTT message (on the default bus).
pub fn mqtt_event(
    m: &MqttEventSource<'_>,
    id: String,
    time_ms: u64,
    region: &str,
    account: &str,
) -> Event {
    let resources = if m.client_id.is_empty() {
        Vec::new()
    } else {
        vec![Value::String(m.client_id.to_string())]
    };
    let mut event = Event::new(
        id,
        crate::engine::DEFAULT_BUS,
        MQTT_SOURCE,
        m.topic,
        resources,
        mqtt_detail(m.payload),
        time_ms,
        region,
        account,
    );
    let mut mqtt = Map::new();
    mqtt.insert("topic".into(), json!(m.topic));
    mqtt.insert("qos".into(), json!(m.qos));
    mqtt.insert("retain".into(), json!(m.retain));
    if let Some(ct) = m.content_type {
        mqtt.insert("content-type".into(), json!(ct));
    }
    if let Some(rt) = m.response_topic {
        mqtt.insert("response-topic".into(), json!(rt));
    }
    if let Some(cd) = m.correlation_data {
        mqtt.insert(
            "correlation-data".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(cd)),
        );
    }
    if let Some(pfi) = m.payload_format_indicator {
        mqtt.insert("payload-format-indicator".into(), json!(u8::from(pfi)));
    }
    if !m.user_properties.is_empty() {
        let mut props: Map<String, Value> = Map::new();
        for (k, v) in m.user_properties {
            match props.get_mut(k) {
                None => {
                    props.insert(k.clone(), json!(v));
                }
                Some(Value::Array(list)) => list.push(json!(v)),
                Some(first) => *first = json!([first.clone(), v]),
            }
        }
        mqtt.insert("user-properties".into(), Value::Object(props));
    }
    if let Value::Object(o) = &mut event.json {
        o.insert("mqtt".into(), Value::Object(mqtt));
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_have_seconds_only() {
        assert_eq!(event_time(1_513_968_228_123), "2017-12-22T18:43:48Z");
    }

    #[test]
    fn mqtt_payloads() {
        assert_eq!(mqtt_detail(br#"{"temp": 61}"#), json!({"temp": 61}));
        assert_eq!(mqtt_detail(b"61"), json!({"value": 61}));
        assert_eq!(mqtt_detail(b"\xff"), json!({"payload-base64": "/w=="}));
        // Deeper than serde_json's recursion limit: base64, no stack overflow.
        let deep = "[".repeat(100_000);
        assert!(mqtt_detail(deep.as_bytes()).get("payload-base64").is_some());
    }

    #[test]
    fn mqtt_events() {
        let props = vec![
            ("site".to_string(), "a".to_string()),
            ("k".to_string(), "1".to_string()),
            ("k".to_string(), "2".to_string()),
        ];
        let e = mqtt_event(
            &MqttEventSource {
                client_id: "dev-1",
                topic: "sensors/a/telemetry",
                payload: br#"{"temp": 61}"#,
                qos: 1,
                retain: false,
                content_type: Some("application/json"),
                response_topic: None,
                correlation_data: Some(b"\x01"),
                payload_format_indicator: Some(true),
                user_properties: &props,
            },
            "id-1".into(),
            0,
            "us-east-1",
            "000000000000",
        );
        assert_eq!(e.json["source"], "outpost.mqtt");
        assert_eq!(e.json["detail-type"], "sensors/a/telemetry");
        assert_eq!(e.json["resources"], json!(["dev-1"]));
        assert_eq!(e.json["detail"]["temp"], 61);
        assert_eq!(e.json["mqtt"]["user-properties"]["k"], json!(["1", "2"]));
        assert_eq!(e.json["mqtt"]["correlation-data"], "AQ==");
        assert_eq!(e.json["mqtt"]["content-type"], "application/json");
    }
}
