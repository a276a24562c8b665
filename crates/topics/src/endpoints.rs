//! The doors a notification leaves by that the engine does not own: HTTP/S endpoints and this
//! broker's MQTT topics. The binary plugs in the real ones (an HTTP client, the MQTT engine); the
//! engine itself opens no sockets.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A future the engine awaits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One HTTP POST.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The endpoint URL.
    pub url: String,
    /// Headers (SNS's `x-amz-sns-*` among them).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: String,
    /// How long to wait for an answer (SNS: 15 s).
    pub timeout: Duration,
}

/// Sends POSTs to HTTP/S endpoints.
pub trait HttpSender: Send + Sync {
    /// Whether the endpoint may be POSTed to at all (checked at Subscribe: an address the
    /// broker refuses to reach is refused there with a clear error). Every POST is checked again.
    fn check_endpoint(&self, _url: &str) -> Result<(), String> {
        Ok(())
    }
    /// POSTs `request`; the HTTP status, or why there was none (connection refused, timeout).
    fn post(&self, request: HttpRequest) -> BoxFuture<'_, Result<u16, String>>;
}

/// One message for an MQTT topic of this broker.
#[derive(Debug, Clone)]
pub struct MqttMessage {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: bytes::Bytes,
    /// MQTT 5 content type.
    pub content_type: Option<&'static str>,
    /// MQTT 5 user properties (raw delivery carries the message attributes here).
    pub user_properties: Vec<(String, String)>,
    /// Who publishes it: the subscription's or the rule target's owner (ADR 0015). The MQTT
    /// engine checks the topic and the properties, and that this principal may publish there.
    pub who: outpost_access::Identity,
}

/// Why a publish into the MQTT engine did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttRefusal {
    /// Refused for good (the principal may not publish there, the topic or a property cannot
    /// be carried): not retried.
    Refused(String),
    /// Failed this time (the store): retried.
    Failed(String),
}

impl std::fmt::Display for MqttRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MqttRefusal::Refused(why) | MqttRefusal::Failed(why) => f.write_str(why),
        }
    }
}

/// Publishes into this broker's MQTT engine with QoS 1.
pub trait MqttPublisher: Send + Sync {
    /// Publishes as `message.who`; resolves once every persistent session that gets it holds
    /// it durably.
    fn publish(&self, message: MqttMessage) -> BoxFuture<'_, Result<(), MqttRefusal>>;
}
