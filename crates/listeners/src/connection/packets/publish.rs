//! PUBLISH from the client.

use bytes::Bytes;
use outpost_codec::{Ack, Packet, Publish, PublishBytes, QoS, ReasonCode, Version};
use outpost_mqtt::{Broker, ConnectionHandle, Disconnect, Published};
use tokio::io::AsyncWrite;

use super::super::conn::{Conn, Reply};
use super::super::End;

/// PUBLISH: the client's rates, the ACL on its topic (asked as the engine routes), the engine's
/// routing, then the acknowledgement, which waits for the store when the message was stored.
pub(super) fn publish<W: AsyncWrite + Unpin>(
    frame: &Bytes,
    p: Publish<'_>,
    conn: &mut Conn<W>,
    broker: &Broker,
    h: &ConnectionHandle,
    wakes: &mut outpost_mqtt::Wakes,
) -> Option<End> {
    if !p.properties.subscription_identifiers.is_empty() {
        // §3.3.4: a client must not send subscription identifiers.
        conn.disconnect(ReasonCode::ProtocolError);
        return Some(End::Close(Disconnect::Abrupt, None));
    }
    let payload = PublishBytes::from_publish(frame, &p).payload;
    if let Err(limit) = conn
        .kept
        .rates
        .charge(&mut conn.kept.client_rates, payload.len())
    {
        conn.kept.rates.refused(limit, &h.client_id);
        if h.version == Version::V5 && p.qos != QoS::AtMostOnce {
            conn.acknowledge(&p, ReasonCode::QuotaExceeded);
            return None;
        }
        conn.disconnect(ReasonCode::MessageRateTooHigh);
        return Some(End::Close(Disconnect::Abrupt, None));
    }
    let checked = !conn.kept.security.mqtt_open();
    let denied_topic = std::cell::RefCell::new(None);
    let may_publish = |topic: &str| {
        let ok = !checked
            || conn
                .kept
                .security
                .mqtt_allows(&h.identity, &h.client_id, "mqtt:publish", topic);
        if !ok {
            *denied_topic.borrow_mut() = Some(topic.chars().take(128).collect::<String>());
        }
        ok
    };
    let published = broker.publish(h, &p, payload, wakes, &may_publish);
    if let Some(topic) = denied_topic.into_inner() {
        conn.kept.denials = conn.kept.denials.saturating_add(1);
        if conn.kept.denials == 1 {
            tracing::info!(peer = %conn.kept.peer, client = &*h.client_id, user = &*h.identity.name, %topic, "PUBLISH denied by the ACL (further denials on this connection are counted, not logged)");
        }
    }
    match published {
        Ok((Published::Denied, _)) => {
            // MQTT 5 hears "not authorized"; MQTT 3.1.1 gets its acknowledgement and the
            // message goes nowhere (mosquitto's behavior).
            let code = match h.version {
                Version::V5 => ReasonCode::NotAuthorized,
                Version::V311 => ReasonCode::Success,
            };
            conn.acknowledge(&p, code);
        }
        Ok((Published::Refused(code), _)) => {
            // MQTT 5 QoS 1/2: the refusal travels in the acknowledgement; otherwise the
            // only way to say no is to close the connection.
            if h.version == Version::V5 && p.qos != QoS::AtMostOnce {
                conn.acknowledge(&p, code);
            } else {
                conn.disconnect(code);
                return Some(End::Close(Disconnect::Abrupt, None));
            }
        }
        Ok((outcome, mut durable)) => {
            conn.kept.pressure |= durable.under_pressure();
            for client in durable.take_held_by() {
                let held = conn.held.get_or_insert_with(Default::default);
                if !held.by.contains(&client) {
                    held.by.push(client);
                }
            }
            let code = match (outcome, h.version) {
                (Published::Routed(0), Version::V5) => ReasonCode::NoMatchingSubscribers,
                _ => ReasonCode::Success,
            };
            let ack = Ack {
                pkid: p.pkid,
                code,
                ..Ack::default()
            };
            match p.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => conn.ack(durable, Reply::Packet(Box::new(Packet::PubAck(ack)))),
                QoS::ExactlyOnce => conn.ack(durable, Reply::Packet(Box::new(Packet::PubRec(ack)))),
            }
        }
        Err(code) => {
            tracing::info!(peer = %conn.kept.peer, client = &*h.client_id, ?code, "PUBLISH refused; connection closed");
            conn.disconnect(code);
            return Some(End::Close(Disconnect::Abrupt, None));
        }
    }
    None
}
