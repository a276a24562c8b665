//! AWS IoT Core's lifecycle events, published by the broker itself: a client connected
//! (`$aws/events/presence/connected/{clientId}`), disconnected and why (`…/disconnected/…`),
//! failed to connect (`…/connect_failed/…`), subscribed or unsubscribed
//! (`$aws/events/subscriptions/{subscribed,unsubscribed}/{clientId}`), with AWS's JSON fields.
//! Fleets built on IoT Core learn "is it online" this way, and a gateway that loses its uplink
//! must keep telling them, so the events go through the same routing as any message: to MQTT
//! subscribers the ACL lets read them, to the rules (a rule can put "a device went offline" in a
//! queue) and to bridges. Clients may not publish under `$aws/events/` (nobody can fake one), and
//! client identifiers holding `#` or `+` get none, as in AWS.
//!
//! Differences from AWS, by necessity: `principalIdentifier` is the identity the client logged
//! in as (user name, certificate name or access key; empty when anonymous), `sessionIdentifier`
//! is unique per session and broker start, `versionNumber` is the connection's number (the same
//! in a connection's connect and disconnect events, increasing for a client id), and
//! `thingName` is never sent (there is no exclusive-thing feature).

use serde_json::{json, Value};

use super::*;

/// Topics under this prefix are the broker's own.
pub const EVENTS_PREFIX: &str = "$aws/events/";

/// Topics only the broker publishes to: lifecycle events, and the Device Shadow service's
/// answers (`$aws/things/{thing}/shadow/…/{accepted,rejected}`, `…/update/{delta,documents}`),
/// and the answers of `$CONTROL/…` commands (`…/response`).
pub(super) fn broker_only(topic: &str) -> bool {
    if topic.starts_with(EVENTS_PREFIX)
        || (topic.starts_with(super::CONTROL_PREFIX) && topic.ends_with("/response"))
    {
        return true;
    }
    topic.starts_with("$aws/things/")
        && topic.contains("/shadow/")
        && (topic.ends_with("/accepted")
            || topic.ends_with("/rejected")
            || topic.ends_with("/update/delta")
            || topic.ends_with("/update/documents"))
}

/// Why a connection ended, in AWS's words (`disconnectReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client's credentials or permissions stopped it (e.g. refused after the ACL changed).
    AuthError,
    /// The client sent DISCONNECT (or a WebSocket close).
    ClientInitiatedDisconnect,
    /// The client broke the protocol: a malformed packet, a second CONNECT, a packet too large.
    ClientError,
    /// The connection broke without a DISCONNECT.
    ConnectionLost,
    /// Another connection took the session over with the same client id.
    DuplicateClientId,
    /// Nothing arrived for 1.5 keep-alive periods.
    MqttKeepAliveTimeout,
    /// The broker could not go on (its store failed).
    ServerError,
    /// The broker closed it: shutting down.
    ServerInitiatedDisconnect,
    /// An operator closed it (`iot-data` DeleteConnection).
    ApiInitiatedDisconnect,
    /// A limit closed it: a rate, a quota, a subscriber that stalled its publishers.
    Throttled,
}

impl DisconnectReason {
    /// AWS's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::AuthError => "AUTH_ERROR",
            DisconnectReason::ClientInitiatedDisconnect => "CLIENT_INITIATED_DISCONNECT",
            DisconnectReason::ClientError => "CLIENT_ERROR",
            DisconnectReason::ConnectionLost => "CONNECTION_LOST",
            DisconnectReason::DuplicateClientId => "DUPLICATE_CLIENTID",
            DisconnectReason::MqttKeepAliveTimeout => "MQTT_KEEP_ALIVE_TIMEOUT",
            DisconnectReason::ServerError => "SERVER_ERROR",
            DisconnectReason::ServerInitiatedDisconnect => "SERVER_INITIATED_DISCONNECT",
            DisconnectReason::ApiInitiatedDisconnect => "API_INITIATED_DISCONNECT",
            DisconnectReason::Throttled => "THROTTLED",
        }
    }

    /// The reason for a connection the broker closed with reason code `code` (sent in an MQTT 5
    /// DISCONNECT, or what it would have sent to an MQTT 3.1.1 client).
    pub fn closed_by_server(code: ReasonCode) -> DisconnectReason {
        match code {
            ReasonCode::SessionTakenOver => DisconnectReason::DuplicateClientId,
            ReasonCode::KeepAliveTimeout => DisconnectReason::MqttKeepAliveTimeout,
            ReasonCode::ServerShuttingDown => DisconnectReason::ServerInitiatedDisconnect,
            ReasonCode::AdministrativeAction => DisconnectReason::ApiInitiatedDisconnect,
            ReasonCode::QuotaExceeded
            | ReasonCode::MessageRateTooHigh
            | ReasonCode::ConnectionRateExceeded => DisconnectReason::Throttled,
            ReasonCode::NotAuthorized | ReasonCode::BadUserNameOrPassword => {
                DisconnectReason::AuthError
            }
            ReasonCode::UnspecifiedError
            | ReasonCode::ImplementationSpecificError
            | ReasonCode::ServerBusy
            | ReasonCode::ServerUnavailable => DisconnectReason::ServerError,
            _ => DisconnectReason::ClientError,
        }
    }
}

impl Broker {
    fn announces(&self, client: &str) -> bool {
        self.config.lifecycle_events && !client.is_empty() && !client.contains(['#', '+'])
    }

    fn announce(&self, topic: &str, body: Value) {
        // Nothing waits for an event to be stored (it is not stored for the broker's sake).
        let _ = self.publish_own(topic, body.to_string().into_bytes());
    }

    /// Publishes a message of the broker's own services (lifecycle events, the shadow
    /// service's answers): routed to subscribers and offered to the rules and bridges. QoS 1,
    /// so a subscriber's own QoS decides. The returned wait resolves once every stored copy
    /// (persistent sessions, rule targets, bridge backlogs) is durable; a caller that promises
    /// more than the message itself (the shadow service's acknowledgements) waits for it.
    #[must_use = "the copies' durability; drop it when nothing is promised"]
    pub fn publish_own(&self, topic: &str, payload: Vec<u8>) -> Durable {
        let message = Message::new(topic, payload, QoS::AtLeastOnce, false);
        let mut durable = Durable::default();
        self.tap.offer(
            &outpost_access::Identity::operator(),
            Self::BROKER,
            &message,
            &mut durable,
        );
        let mut wakes = Wakes::new();
        self.route(Self::BROKER, message, &mut durable, &mut wakes);
        wakes.wake_all();
        durable
    }

    /// The fields every event of a connected client carries.
    fn client_fields(&self, h: &ConnectionHandle, event: &str) -> serde_json::Map<String, Value> {
        let serial = h.session.state.lock().serial;
        let mut m = serde_json::Map::new();
        m.insert("clientId".into(), json!(&*h.client_id));
        m.insert("timestamp".into(), json!(now_ms()));
        m.insert("eventType".into(), json!(event));
        m.insert(
            "sessionIdentifier".into(),
            json!(uuid_of(self.seed, serial)),
        );
        m.insert("principalIdentifier".into(), json!(&*h.identity.name));
        m
    }

    /// `$aws/events/presence/connected/{clientId}`, once CONNACK accepted the connection.
    pub fn announce_connected(&self, h: &ConnectionHandle, ip: std::net::IpAddr) {
        if !self.announces(&h.client_id) {
            return;
        }
        let mut m = self.client_fields(h, "connected");
        m.insert("ipAddress".into(), json!(ip.to_string()));
        m.insert("versionNumber".into(), json!(h.conn_id));
        self.announce(
            &format!("{EVENTS_PREFIX}presence/connected/{}", h.client_id),
            Value::Object(m),
        );
    }

    /// `$aws/events/presence/disconnected/{clientId}`, once the connection ended (after its
    /// will, if any, was published or scheduled).
    pub fn announce_disconnected(&self, h: &ConnectionHandle, reason: DisconnectReason) {
        if !self.announces(&h.client_id) {
            return;
        }
        let mut m = self.client_fields(h, "disconnected");
        m.insert(
            "clientInitiatedDisconnect".into(),
            json!(reason == DisconnectReason::ClientInitiatedDisconnect),
        );
        m.insert("disconnectReason".into(), json!(reason.as_str()));
        m.insert("versionNumber".into(), json!(h.conn_id));
        self.announce(
            &format!("{EVENTS_PREFIX}presence/disconnected/{}", h.client_id),
            Value::Object(m),
        );
    }

    /// `$aws/events/presence/connect_failed/{clientId}`: a client that was not let in (bad
    /// credentials, not authorized to connect, a will it may not publish).
    pub fn announce_connect_failed(&self, client_id: &str, principal: &str, ip: std::net::IpAddr) {
        if !self.announces(client_id) {
            return;
        }
        let serial = self.next_conn.fetch_add(1, Ordering::Relaxed);
        self.announce(
            &format!("{EVENTS_PREFIX}presence/connect_failed/{client_id}"),
            json!({
                "clientId": client_id,
                "timestamp": now_ms(),
                "eventType": "connect_failed",
                "connectFailureReason": "AUTHORIZATION_FAILED",
                "principalIdentifier": principal,
                "sessionIdentifier": uuid_of(self.seed, serial),
                "ipAddress": ip.to_string(),
            }),
        );
    }

    /// `$aws/events/subscriptions/{subscribed,unsubscribed}/{clientId}` with the filters the
    /// request changed (those answered with a success code).
    pub(super) fn announce_subscriptions<'a>(
        &self,
        h: &ConnectionHandle,
        event: &str,
        filters: impl Iterator<Item = &'a str>,
    ) {
        if !self.announces(&h.client_id) {
            return;
        }
        let topics: Vec<&str> = filters.collect();
        if topics.is_empty() {
            return;
        }
        let mut m = self.client_fields(h, event);
        m.insert("topics".into(), json!(topics));
        self.announce(
            &format!("{EVENTS_PREFIX}subscriptions/{event}/{}", h.client_id),
            Value::Object(m),
        );
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A version 4 UUID's text from the broker's per-start seed and a serial number: unique for
/// the life of this broker and, with a new seed at every start, across restarts.
fn uuid_of(seed: u64, serial: u64) -> String {
    let a = seed;
    let b = serial;
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        a & 0x0fff,
        (((b >> 48) as u16) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_identifiers_look_like_uuids_and_differ() {
        let a = uuid_of(0x0123_4567_89ab_cdef, 1);
        let b = uuid_of(0x0123_4567_89ab_cdef, 2);
        assert_eq!(a, "01234567-89ab-4def-8000-000000000001");
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn server_codes_name_aws_reasons() {
        use DisconnectReason as R;
        for (code, reason) in [
            (ReasonCode::SessionTakenOver, R::DuplicateClientId),
            (ReasonCode::KeepAliveTimeout, R::MqttKeepAliveTimeout),
            (ReasonCode::ServerShuttingDown, R::ServerInitiatedDisconnect),
            (ReasonCode::AdministrativeAction, R::ApiInitiatedDisconnect),
            (ReasonCode::QuotaExceeded, R::Throttled),
            (ReasonCode::NotAuthorized, R::AuthError),
            (ReasonCode::MalformedPacket, R::ClientError),
            (ReasonCode::ProtocolError, R::ClientError),
            (ReasonCode::UnspecifiedError, R::ServerError),
        ] {
            assert_eq!(DisconnectReason::closed_by_server(code), reason, "{code:?}");
        }
    }
}
