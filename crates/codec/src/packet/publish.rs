//! PUBLISH (§3.3): the application message, and the packet the broker handles most. Decoding borrows
//! topic and payload from the input; encoding can stop before the payload
//! ([`Publish::encode_header`]) so a shared payload buffer goes to the socket with vectored I/O.

use super::{packet_id, total_len, Body};
use crate::topic::is_valid_topic_name;
use crate::wire::{field_len, varint_len, Reader, Sink, SliceSink};
use crate::{DecodeError, EncodeError, PublishProperties, QoS, Version};

/// A PUBLISH packet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Publish<'a> {
    /// Redelivery of an earlier attempt.
    pub dup: bool,
    /// Delivery guarantee.
    pub qos: QoS,
    /// Retain (as a request from a client, or "this is a retained message" from the server).
    pub retain: bool,
    /// Topic name; empty only in MQTT 5 with a topic alias.
    pub topic: &'a str,
    /// Packet identifier, non-zero for QoS 1 and 2 and ignored for QoS 0.
    pub pkid: u16,
    /// MQTT 5 properties.
    pub properties: PublishProperties<'a>,
    /// Application payload.
    pub payload: &'a [u8],
}

impl<'a> Publish<'a> {
    /// A QoS 0 message without properties.
    pub fn new(topic: &'a str, payload: &'a [u8]) -> Self {
        Publish {
            topic,
            payload,
            ..Publish::default()
        }
    }

    pub(crate) fn decode(
        flags: u8,
        mut r: Reader<'a>,
        version: Version,
    ) -> Result<Self, DecodeError> {
        // QoS 3 and DUP on QoS 0 were refused by the framing check.
        let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS(3))?;
        let topic = r.string()?;
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            packet_id(&mut r)?
        };
        let properties = match version {
            Version::V5 => PublishProperties::read(&mut r)?,
            Version::V311 => PublishProperties::default(),
        };
        if !topic_ok(topic, &properties, version) {
            return Err(DecodeError::InvalidTopicName);
        }
        Ok(Publish {
            dup: flags & 0b1000 != 0,
            qos,
            retain: flags & 1 != 0,
            topic,
            pkid,
            properties,
            payload: r.rest(),
        })
    }

    /// The four flag bits of the fixed header.
    pub(crate) fn flags(&self) -> u8 {
        let dup = self.dup && self.qos != QoS::AtMostOnce;
        u8::from(dup) << 3 | (self.qos as u8) << 1 | u8::from(self.retain)
    }

    /// Length of everything between the fixed header and the payload.
    fn variable_header_len(&self, version: Version) -> Result<usize, EncodeError> {
        if !topic_ok(self.topic, &self.properties, version) {
            return Err(EncodeError::InvalidTopicName);
        }
        let mut n = field_len(self.topic.as_bytes())?;
        if self.qos != QoS::AtMostOnce {
            if self.pkid == 0 {
                return Err(EncodeError::ZeroPacketId);
            }
            n += 2;
        }
        if version == Version::V5 {
            let p = self.properties.len()?;
            n += varint_len(p as u32) + p;
        }
        Ok(n)
    }

    fn write_variable_header<S: Sink>(&self, version: Version, s: &mut S) {
        s.put_field(self.topic.as_bytes());
        if self.qos != QoS::AtMostOnce {
            s.put_u16(self.pkid);
        }
        if version == Version::V5 {
            self.properties.write(self.properties.len().unwrap_or(0), s);
        }
    }

    /// Encodes the fixed and variable headers only, so the payload can follow from its own buffer
    /// (e.g. with vectored I/O). Returns the header length; the whole packet is that plus
    /// `self.payload.len()`.
    pub fn encode_header(&self, version: Version, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let header = self.variable_header_len(version)?;
        let body = header + self.payload.len();
        let needed = total_len(body)? - self.payload.len();
        if buf.len() < needed {
            return Err(EncodeError::BufferTooSmall { needed });
        }
        let mut s = SliceSink::new(buf);
        s.put_u8((super::PacketType::Publish as u8) << 4 | self.flags());
        s.put_varint(body as u32);
        self.write_variable_header(version, &mut s);
        s.finish().ok_or(EncodeError::BufferTooSmall { needed })
    }
}

/// A topic name must be valid; MQTT 5 allows an empty one when a topic alias stands in for it.
fn topic_ok(topic: &str, props: &PublishProperties<'_>, version: Version) -> bool {
    is_valid_topic_name(topic)
        || (topic.is_empty() && version == Version::V5 && props.topic_alias.is_some())
}

impl Body for Publish<'_> {
    fn body_len(&self, version: Version) -> Result<usize, EncodeError> {
        Ok(self.variable_header_len(version)? + self.payload.len())
    }

    fn write_body<S: Sink>(&self, version: Version, s: &mut S) {
        self.write_variable_header(version, s);
        s.put_slice(self.payload);
    }
}
