//! The records of the messages stream and of the sessions' streams: a message is stored once, as an
//! MQTT 5 PUBLISH packet (our own codec, so nothing new to parse), and each session holds small
//! references to it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_codec::{decode, Decoded, Packet, Publish, QoS, UserProperty, Version};
use outpost_store::StreamId;

use crate::Message;

use super::jobs::RefSpec;

/// The stream holding each message stored for persistent sessions, once.
pub(crate) const MESSAGES_STREAM: &str = "mqtt/messages";

/// First byte of a record in [`MESSAGES_STREAM`]: a message, then its key and its MQTT 5 PUBLISH
/// encoding.
const MESSAGE_RECORD: u8 = 0x01;
/// First byte of a reference record in a session's stream: then the message's key, the delivery's
/// QoS and RETAIN flag, and its subscription identifiers. (A record starting with a PUBLISH fixed
/// header, 0x30 to 0x3F, is a whole message, as sessions stored them before.)
const REFERENCE_RECORD: u8 = 0x00;
/// First byte of a record holding several QoS 1 references of one session (those of one group
/// commit): a count (u16), then each reference's key, QoS, RETAIN flag and subscription
/// identifiers as in [`REFERENCE_RECORD`]. One record per session per commit instead of one per
/// message: a fan-out to many offline sessions costs a record per session per batch.
const REFERENCES_RECORD: u8 = 0x02;

/// First byte of a record holding several references of one session (those of one group commit),
/// compactly: a count, then per reference the difference of its key from the previous one (the
/// first from 0; zigzag, since two publishers' keys can interleave), a flags byte (QoS in bits 0–1,
/// RETAIN in bit 2, bit 3 when subscription identifiers follow) and, when flagged, their count and
/// values; every number a LEB128 varint. About 2 bytes a reference instead of
/// [`REFERENCES_RECORD`]'s 12: what a durable fan-out writes per session and message (issue 29).
const COMPACT_REFERENCES_RECORD: u8 = 0x03;

/// First byte of a message record that carries its **delivery set** (ADR 0023): the key, then the
/// number of members and, per member, its session's stream id, a flags byte (RETAIN in bit 2, bit
/// 3 when subscription identifiers follow) and, when flagged, their count and values (LEB128
/// varints throughout), then the MQTT 5 PUBLISH encoding. Every member is a QoS 1 delivery to a
/// persistent session; it is pending while the session's cursor ([`CURSOR_RECORD`]) is at or
/// below the key. What a durable fan-out writes per session and message is one member here
/// instead of a reference in a record of the session's stream (issue 29).
const MESSAGE_SET_RECORD: u8 = 0x04;
/// First byte of a cursor record in a session's stream: then a key (u64, big-endian). Every
/// delivery of a message's set to this session with a smaller key is complete. The largest
/// cursor found wins (a crash can leave the one it replaced).
const CURSOR_RECORD: u8 = 0x05;

/// Most references in one record: the count a reader accepts (a batch holds far fewer).
pub(super) const MAX_REFERENCES: usize = u16::MAX as usize;

/// A QoS 1 delivery held in a message's delivery set: the session's stream, RETAIN, and the
/// subscription identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetMember {
    pub stream: StreamId,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
}

/// A message record: marker, key, its delivery set when it has one (see
/// [`MESSAGE_SET_RECORD`]), the message as a PUBLISH packet.
pub(crate) fn encode_message_record(key: u64, m: &Message, set: &[RefSpec]) -> Bytes {
    let body = encode_message(m, m.qos, m.retain, &[]);
    let set = &set[..set.len().min(MAX_REFERENCES)];
    let mut out = bytes::BytesMut::with_capacity(12 + 3 * set.len() + body.len());
    let marker = if set.is_empty() {
        MESSAGE_RECORD
    } else {
        MESSAGE_SET_RECORD
    };
    out.extend_from_slice(&[marker]);
    out.extend_from_slice(&key.to_be_bytes());
    if !set.is_empty() {
        put_varint(&mut out, set.len() as u64);
        for r in set {
            put_varint(&mut out, r.stream.0);
            put_flagged_ids(&mut out, u8::from(r.retain) << 2, &r.subscription_ids);
        }
    }
    out.extend_from_slice(&body);
    out.freeze()
}

/// Decodes a message record: (key, message, its delivery set). `age`: how long ago it was
/// stored.
pub(crate) fn decode_message_record(
    b: &Bytes,
    age: Duration,
) -> Option<(u64, Message, Vec<SetMember>)> {
    let (key, set, at) = take_message_head(b)?;
    let (m, ..) = decode_message(&b.slice(at..), age)?;
    Some((key, m, set))
}

/// The delivery set of a message record (empty for a record without one); `None` when the
/// record does not decode that far.
pub(crate) fn decode_delivery_set(b: &[u8]) -> Option<Vec<SetMember>> {
    take_message_head(b).map(|(_, set, _)| set)
}

/// A message record's key and delivery set, and where its PUBLISH packet begins.
fn take_message_head(b: &[u8]) -> Option<(u64, Vec<SetMember>, usize)> {
    let marker = *b.first()?;
    if marker != MESSAGE_RECORD && marker != MESSAGE_SET_RECORD {
        return None;
    }
    let key = u64::from_be_bytes(b.get(1..9)?.try_into().ok()?);
    let mut at = 9;
    let mut set = Vec::new();
    if marker == MESSAGE_SET_RECORD {
        let n = usize::try_from(take_varint(b, &mut at)?).ok()?;
        if n == 0 || n > MAX_REFERENCES {
            return None;
        }
        // Each member takes at least 2 bytes: a short record cannot claim a large count.
        set.reserve(n.min(b.len() / 2));
        for _ in 0..n {
            let stream = StreamId(take_varint(b, &mut at)?);
            let flags = *b.get(at)?;
            at += 1;
            if flags & !0x0C != 0 {
                return None;
            }
            let subscription_ids = take_subscription_ids(b, &mut at, flags)?;
            set.push(SetMember {
                stream,
                retain: flags & 0x04 != 0,
                subscription_ids,
            });
        }
    }
    Some((key, set, at))
}

/// A cursor record (see [`CURSOR_RECORD`]).
pub(crate) fn encode_cursor(key: u64) -> Bytes {
    let mut out = bytes::BytesMut::with_capacity(9);
    out.extend_from_slice(&[CURSOR_RECORD]);
    out.extend_from_slice(&key.to_be_bytes());
    out.freeze()
}

/// The key of a cursor record; `None` for any other record.
pub(crate) fn decode_cursor(b: &[u8]) -> Option<u64> {
    if *b.first()? != CURSOR_RECORD || b.len() != 9 {
        return None;
    }
    Some(u64::from_be_bytes(b.get(1..9)?.try_into().ok()?))
}

/// A reference record.
pub(crate) fn encode_reference(key: u64, r: &RefSpec) -> Bytes {
    let mut out = bytes::BytesMut::with_capacity(13 + 4 * r.subscription_ids.len());
    out.extend_from_slice(&[REFERENCE_RECORD]);
    put_reference(&mut out, key, r);
    out.freeze()
}

/// A record of several references (at most `u16::MAX`) in the layout sessions stored before
/// [`COMPACT_REFERENCES_RECORD`]: the broker still reads it; tests write it.
#[cfg(test)]
pub(crate) fn encode_references(refs: &[(u64, &RefSpec)]) -> Bytes {
    let mut out = bytes::BytesMut::with_capacity(3 + 12 * refs.len());
    out.extend_from_slice(&[REFERENCES_RECORD]);
    out.extend_from_slice(&(refs.len().min(u16::MAX as usize) as u16).to_be_bytes());
    for (key, r) in refs.iter().take(u16::MAX as usize) {
        put_reference(&mut out, *key, r);
    }
    out.freeze()
}

/// A compact record of several references (at most [`MAX_REFERENCES`]; see
/// [`COMPACT_REFERENCES_RECORD`]).
pub(crate) fn encode_compact_references(refs: &[(u64, &RefSpec)]) -> Bytes {
    let refs = &refs[..refs.len().min(MAX_REFERENCES)];
    let mut out = bytes::BytesMut::with_capacity(4 + 3 * refs.len());
    out.extend_from_slice(&[COMPACT_REFERENCES_RECORD]);
    put_varint(&mut out, refs.len() as u64);
    let mut previous = 0u64;
    for (key, r) in refs {
        let delta = key.wrapping_sub(previous) as i64;
        previous = *key;
        put_varint(&mut out, ((delta << 1) ^ (delta >> 63)) as u64);
        put_flagged_ids(
            &mut out,
            r.qos as u8 | u8::from(r.retain) << 2,
            &r.subscription_ids,
        );
    }
    out.freeze()
}

/// Reads [`COMPACT_REFERENCES_RECORD`]'s body (after the marker).
fn take_compact_references(b: &[u8]) -> Option<Vec<StoredDelivery>> {
    let mut at = 0;
    let n = usize::try_from(take_varint(b, &mut at)?).ok()?;
    if n > MAX_REFERENCES {
        return None;
    }
    // Each reference takes at least 2 bytes: a short record cannot claim a large count.
    let mut out = Vec::with_capacity(n.min(b.len() / 2));
    let mut key = 0u64;
    for _ in 0..n {
        let z = take_varint(b, &mut at)?;
        let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
        key = key.wrapping_add(delta as u64);
        let flags = *b.get(at)?;
        at += 1;
        if flags & !0x0F != 0 {
            return None;
        }
        let qos = QoS::from_u8(flags & 0x03)?;
        let subscription_ids = take_subscription_ids(b, &mut at, flags)?;
        out.push(StoredDelivery::Reference {
            key,
            qos,
            retain: flags & 0x04 != 0,
            subscription_ids,
        });
    }
    (at == b.len()).then_some(out)
}

/// A flags byte (`flags`, with bit 3 set when identifiers follow), then the subscription
/// identifiers (at most `u16::MAX`) when there are any: their count and values as varints.
fn put_flagged_ids(out: &mut bytes::BytesMut, flags: u8, ids: &[u32]) {
    let ids = &ids[..ids.len().min(u16::MAX as usize)];
    out.extend_from_slice(&[flags | u8::from(!ids.is_empty()) << 3]);
    if !ids.is_empty() {
        put_varint(out, ids.len() as u64);
        for id in ids {
            put_varint(out, u64::from(*id));
        }
    }
}

/// The subscription identifiers [`put_flagged_ids`] wrote after `flags` (none unless bit 3 is
/// set), moving `*at` past them.
fn take_subscription_ids(b: &[u8], at: &mut usize, flags: u8) -> Option<Vec<u32>> {
    let mut ids = Vec::new();
    if flags & 0x08 != 0 {
        let count = take_varint(b, at)?;
        if count == 0 || count > u64::from(u16::MAX) {
            return None;
        }
        for _ in 0..count {
            ids.push(u32::try_from(take_varint(b, at)?).ok()?);
        }
    }
    Some(ids)
}

/// LEB128: seven bits a byte, low bits first.
fn put_varint(out: &mut bytes::BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.extend_from_slice(&[(v as u8) | 0x80]);
        v >>= 7;
    }
    out.extend_from_slice(&[v as u8]);
}

/// A LEB128 varint of `b` at `*at` (at most 10 bytes, no bits past 64), moving `*at` past it.
fn take_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(*at)?;
        *at += 1;
        let bits = u64::from(byte & 0x7F);
        if i == 9 && bits > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_reference(out: &mut bytes::BytesMut, key: u64, r: &RefSpec) {
    let ids = &r.subscription_ids[..r.subscription_ids.len().min(u16::MAX as usize)];
    out.extend_from_slice(&key.to_be_bytes());
    out.extend_from_slice(&[r.qos as u8, u8::from(r.retain)]);
    out.extend_from_slice(&(ids.len() as u16).to_be_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_be_bytes());
    }
}

/// One reference from `b` at `at`: (key, QoS, RETAIN, identifiers) and where the next begins.
fn take_reference(b: &[u8], at: usize) -> Option<(StoredDelivery, usize)> {
    let key = u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?);
    let qos = QoS::from_u8(*b.get(at + 8)?)?;
    let retain = *b.get(at + 9)? != 0;
    let n = u16::from_be_bytes(b.get(at + 10..at + 12)?.try_into().ok()?) as usize;
    let ids_at = at + 12;
    let subscription_ids = (0..n)
        .map(|i| {
            let at = ids_at + 4 * i;
            Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
        })
        .collect::<Option<Vec<u32>>>()?;
    Some((
        StoredDelivery::Reference {
            key,
            qos,
            retain,
            subscription_ids,
        },
        ids_at + 4 * n,
    ))
}

/// A session's stored delivery: a reference (key, QoS, RETAIN, subscription identifiers) or, in
/// the first layout, the whole message.
pub(crate) enum StoredDelivery {
    Reference {
        key: u64,
        qos: QoS,
        retain: bool,
        subscription_ids: Vec<u32>,
    },
    Whole(Message, QoS, bool, Vec<u32>),
}

/// The deliveries a session's record holds: one (a reference, or a whole message of the first
/// layout) or several (a references record). `None` when the record does not decode.
pub(crate) fn decode_deliveries(b: &Bytes, age: Duration) -> Option<Vec<StoredDelivery>> {
    match *b.first()? {
        REFERENCE_RECORD => Some(vec![take_reference(b, 1)?.0]),
        REFERENCES_RECORD => {
            let n = u16::from_be_bytes(b.get(1..3)?.try_into().ok()?) as usize;
            let mut at = 3;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let (d, next) = take_reference(b, at)?;
                out.push(d);
                at = next;
            }
            Some(out)
        }
        COMPACT_REFERENCES_RECORD => take_compact_references(b.get(1..)?),
        _ => {
            let (m, qos, retain, ids) = decode_message(b, age)?;
            Some(vec![StoredDelivery::Whole(m, qos, retain, ids)])
        }
    }
}

/// Encodes a message (with the QoS, RETAIN flag and subscription identifiers of one delivery).
pub(crate) fn encode_message(
    m: &Message,
    qos: QoS,
    retain: bool,
    subscription_ids: &[u32],
) -> Bytes {
    let users: Vec<UserProperty<'_>> = m.user_properties();
    let props = m.publish_properties(Instant::now(), subscription_ids, &users);
    let p = Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: &m.topic,
        pkid: if qos == QoS::AtMostOnce { 0 } else { 1 },
        properties: props,
        payload: &m.payload,
    });
    let mut out = bytes::BytesMut::new();
    if p.encode_to(Version::V5, &mut out).is_err() {
        tracing::error!(
            topic = &*m.topic,
            "message could not be encoded for the store"
        );
    }
    out.freeze()
}

/// Decodes a stored message: (message, QoS, RETAIN, subscription identifiers). `age` is how long ago
/// it was stored, so expiry keeps counting across restarts.
pub(crate) fn decode_message(
    bytes: &Bytes,
    age: Duration,
) -> Option<(Message, QoS, bool, Vec<u32>)> {
    let Ok(Decoded::Packet(Packet::Publish(p), _)) = decode(bytes, Version::V5, usize::MAX) else {
        return None;
    };
    let payload = outpost_codec::PublishBytes::from_publish(bytes, &p).payload;
    let mut m = Message::from_publish(p.topic, &p, payload);
    m.received = Some(Instant::now().checked_sub(age).unwrap_or_else(Instant::now));
    let ids = p.properties.subscription_identifiers.iter().collect();
    Some((m, p.qos, p.retain, ids))
}
