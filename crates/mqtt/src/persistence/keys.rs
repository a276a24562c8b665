//! Where persistent sessions live in the metadata store: table names, keys and values of session
//! records and subscriptions, the sessions' stream names, and the first layout (one value per
//! session) still read at startup.

use outpost_codec::{QoS, SubscribeOptions};

/// Sessions as first stored: expiry and every subscription in one value, rewritten on each change
/// (read at startup and moved to the tables below).
pub(crate) const LEGACY_SESSIONS: &str = "mqtt_sessions";
/// Persistent sessions: client id -> expiry and the session's stream.
pub(crate) const SESSIONS: &str = "mqtt_sessions_v2";
/// Subscriptions of persistent sessions, one entry each: [`subscription_key`] -> options and
/// identifier. A SUBSCRIBE writes only what it changes.
pub(crate) const SUBSCRIPTIONS: &str = "mqtt_subscriptions";
pub(super) const RETAINED_STREAM: &str = "mqtt/retained";

/// The stream of a session stored before streams were per session lifetime.
pub(crate) fn legacy_session_stream(client: &str) -> String {
    format!("mqtt/session/{client}")
}

/// A new stream name for a new persistent session of `client`: a session that ends and starts
/// again gets a new stream, so removing the old one can never touch the new one's messages.
pub(crate) fn new_session_stream(client: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "mqtt/session/{client}#{now:x}.{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The key prefix of a client's subscriptions (length-prefixed, so no client id is a prefix of
/// another's).
pub(crate) fn subscriptions_prefix(client: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + client.len());
    k.extend_from_slice(&(client.len() as u32).to_be_bytes());
    k.extend_from_slice(client.as_bytes());
    k
}

pub(super) fn subscription_key(client: &str, filter: &str) -> Vec<u8> {
    let mut k = subscriptions_prefix(client);
    k.extend_from_slice(filter.as_bytes());
    k
}

/// Splits a [`SUBSCRIPTIONS`] key into (client, filter).
pub(crate) fn split_subscription_key(k: &[u8]) -> Option<(&str, &str)> {
    let len = u32::from_be_bytes(k.get(..4)?.try_into().ok()?) as usize;
    let client = std::str::from_utf8(k.get(4..4 + len)?).ok()?;
    let filter = std::str::from_utf8(k.get(4 + len..)?).ok()?;
    Some((client, filter))
}

/// Options byte and identifier of one stored subscription.
pub(crate) fn encode_subscription(o: &SubscribeOptions, id: Option<u32>) -> [u8; 5] {
    let byte = o.qos as u8
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4;
    let id = id.unwrap_or(0).to_be_bytes();
    [byte, id[0], id[1], id[2], id[3]]
}

pub(crate) fn decode_subscription(v: &[u8]) -> Option<(SubscribeOptions, Option<u32>)> {
    let byte = *v.first()?;
    let id = u32::from_be_bytes(v.get(1..5)?.try_into().ok()?);
    Some((options_from_byte(byte)?, (id != 0).then_some(id)))
}

fn options_from_byte(byte: u8) -> Option<SubscribeOptions> {
    Some(SubscribeOptions {
        qos: QoS::from_u8(byte & 3)?,
        no_local: byte & 4 != 0,
        retain_as_published: byte & 8 != 0,
        retain_handling: match (byte >> 4) & 3 {
            0 => outpost_codec::RetainHandling::SendAtSubscribe,
            1 => outpost_codec::RetainHandling::SendIfNew,
            _ => outpost_codec::RetainHandling::DoNotSend,
        },
    })
}

/// A [`SESSIONS`] value: expiry and stream name.
pub(crate) fn encode_session_record(expiry: u32, stream: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + stream.len());
    v.extend_from_slice(&expiry.to_be_bytes());
    v.extend_from_slice(stream.as_bytes());
    v
}

pub(crate) fn decode_session_record(v: &[u8]) -> Option<(u32, &str)> {
    let expiry = u32::from_be_bytes(v.get(..4)?.try_into().ok()?);
    Some((expiry, std::str::from_utf8(v.get(4..)?).ok()?))
}

/// A persistent session as first stored ([`LEGACY_SESSIONS`]): expiry and subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedSession {
    pub expiry: u32,
    pub subscriptions: Vec<(String, SubscribeOptions, Option<u32>)>,
}

#[cfg(test)]
pub(crate) fn encode_session(s: &SavedSession) -> Vec<u8> {
    // A SUBSCRIBE-like layout: expiry, then (filter, options byte, identifier) entries.
    let mut out = Vec::new();
    out.extend_from_slice(&s.expiry.to_be_bytes());
    for (filter, o, id) in &s.subscriptions {
        out.extend_from_slice(&(filter.len() as u16).to_be_bytes());
        out.extend_from_slice(filter.as_bytes());
        out.extend_from_slice(&encode_subscription(o, *id));
    }
    out
}

pub(crate) fn decode_session(b: &[u8]) -> Option<SavedSession> {
    let expiry = u32::from_be_bytes(b.get(..4)?.try_into().ok()?);
    let mut rest = &b[4..];
    let mut subscriptions = Vec::new();
    while !rest.is_empty() {
        let len = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let filter = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_string();
        let byte = *rest.get(2 + len)?;
        let id = u32::from_be_bytes(rest.get(3 + len..7 + len)?.try_into().ok()?);
        rest = &rest[7 + len..];
        let options = options_from_byte(byte)?;
        subscriptions.push((filter, options, (id != 0).then_some(id)));
    }
    Some(SavedSession {
        expiry,
        subscriptions,
    })
}
