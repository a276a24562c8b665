//! SUBSCRIBE and UNSUBSCRIBE.

use outpost_codec::{List, ReasonCode, Version};
use outpost_mqtt::{Broker, ConnectionHandle, Durable};
use tokio::io::AsyncWrite;

use super::super::conn::{Conn, Reply};

/// SUBSCRIBE: filters the ACL refuses get 0x87 (MQTT 5) or 0x80 (3.1.1) in their place; the
/// others are subscribed as asked. The SUBACK waits for the store.
pub(super) fn subscribe<W: AsyncWrite + Unpin>(
    s: outpost_codec::Subscribe<'_>,
    conn: &mut Conn<W>,
    broker: &Broker,
    h: &ConnectionHandle,
) {
    // Filters the ACL refuses get 0x87 (MQTT 5) or 0x80 (3.1.1) in their place; the
    // others are subscribed as asked.
    let mut allowed = Vec::new();
    let mut denied = Vec::new();
    let checked = !conn.kept.security.mqtt_open();
    for (i, f) in s.filters.iter().enumerate() {
        if checked && !conn.may(h, "mqtt:subscribe", f.filter) {
            denied.push(i);
        } else {
            allowed.push(f);
        }
    }
    let (codes, durable) = if denied.is_empty() {
        broker.subscribe(h, &s)
    } else {
        let (mut granted, durable) = if allowed.is_empty() {
            (Vec::new(), Durable::default())
        } else {
            broker.subscribe(
                h,
                &outpost_codec::Subscribe {
                    filters: List::new(&allowed),
                    ..s
                },
            )
        };
        let refusal = match h.version {
            Version::V5 => ReasonCode::NotAuthorized,
            Version::V311 => ReasonCode::UnspecifiedError,
        };
        for i in denied {
            granted.insert(i, refusal);
        }
        (granted, durable)
    };
    conn.ack(
        durable,
        Reply::SubAck {
            pkid: s.pkid,
            codes,
        },
    );
}

/// UNSUBSCRIBE: filters a dynamic-security role refuses (`unsubscribeLiteral`,
/// `unsubscribePattern`) stay subscribed and get 0x87 (MQTT 5; 3.1.1 has no code to say it);
/// the others are removed. The UNSUBACK waits for the store.
pub(super) fn unsubscribe<W: AsyncWrite + Unpin>(
    u: outpost_codec::Unsubscribe<'_>,
    conn: &mut Conn<W>,
    broker: &Broker,
    h: &ConnectionHandle,
) {
    let checked = !conn.kept.security.mqtt_open();
    let mut allowed = Vec::new();
    let mut denied = Vec::new();
    for (i, f) in u.filters.iter().enumerate() {
        if checked && !conn.may(h, "mqtt:unsubscribe", f) {
            denied.push(i);
        } else {
            allowed.push(f);
        }
    }
    let (codes, durable) = if denied.is_empty() {
        broker.unsubscribe(h, &u)
    } else {
        let (mut codes, durable) = if allowed.is_empty() {
            (Vec::new(), Durable::default())
        } else {
            broker.unsubscribe(
                h,
                &outpost_codec::Unsubscribe {
                    filters: List::new(&allowed),
                    ..u
                },
            )
        };
        for i in denied {
            codes.insert(i, ReasonCode::NotAuthorized);
        }
        (codes, durable)
    };
    conn.ack(
        durable,
        Reply::UnsubAck {
            pkid: u.pkid,
            codes,
        },
    );
}
