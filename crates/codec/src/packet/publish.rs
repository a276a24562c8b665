//! PUBLISH (§3.3): the application message, and the packet the broker handles most. Decoding borrows
//! topic and payload from the input; encoding can stop before the payload
//! ([`Publish::encode_header`]) so a shared payload buffer goes to the socket with vectored I/O.

use super::{packet_id, total_len, Body};
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
        let topic = crate::wire::topic(&mut r)?;
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            packet_id(&mut r)?
        };
        let properties = match version.effective() {
            Version::V5 => PublishProperties::read(&mut r)?,
            Version::V311 => PublishProperties::default(),
        };
        // Wildcards were refused while reading; an empty topic needs a topic alias (MQTT 5).
        if topic.is_empty() && !(version.is_v5() && properties.topic_alias.is_some()) {
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

    /// Sizes of the parts, computed (and validated) once per encode.
    #[inline(always)]
    fn layout(&self, version: Version) -> Result<Layout, EncodeError> {
        // Topic syntax is not re-checked here: the broker forwards topics the decoder validated, to
        // many subscribers, and scanning each copy again would cost on the hottest path. Callers with
        // topics from elsewhere check them with `topic::is_valid_topic_name`. Only the O(1) rule stays.
        if self.topic.is_empty() && !(version.is_v5() && self.properties.topic_alias.is_some()) {
            return Err(EncodeError::InvalidTopicName);
        }
        let mut variable = field_len(self.topic.as_bytes())?;
        if self.qos != QoS::AtMostOnce {
            if self.pkid == 0 {
                return Err(EncodeError::ZeroPacketId);
            }
            variable += 2;
        }
        let mut props = 0;
        if version.is_v5() {
            props = self.properties.len()?;
            variable += varint_len(props as u32) + props;
        }
        let body = variable + self.payload.len();
        let total = total_len(body)?;
        Ok(Layout {
            props,
            body,
            header: total - self.payload.len(),
        })
    }

    /// Writes the fixed and variable headers.
    #[inline(always)]
    fn write_header<S: Sink>(&self, version: Version, layout: &Layout, s: &mut S) {
        s.put_u8((super::PacketType::Publish as u8) << 4 | self.flags());
        s.put_varint(layout.body as u32);
        s.put_field(self.topic.as_bytes());
        if self.qos != QoS::AtMostOnce {
            s.put_u16(self.pkid);
        }
        if version.is_v5() {
            self.properties.write(layout.props, s);
        }
    }

    /// Encodes the whole packet into a sink with room for `capacity` bytes (the fast path behind
    /// [`crate::Packet::encode`]): sizes are computed once.
    #[inline]
    pub(crate) fn encode_into<S: Sink>(
        &self,
        version: Version,
        capacity: usize,
        s: &mut S,
    ) -> Result<usize, EncodeError> {
        let layout = self.layout(version)?;
        let total = layout.header + self.payload.len();
        if capacity < total {
            return Err(EncodeError::BufferTooSmall { needed: total });
        }
        self.write_header(version, &layout, s);
        s.put_slice(self.payload);
        Ok(total)
    }

    /// Encodes into a `BufMut`.
    #[cfg(feature = "bytes")]
    #[inline]
    pub(crate) fn encode_buf<B: bytes::BufMut>(
        &self,
        version: Version,
        buf: &mut B,
    ) -> Result<usize, EncodeError> {
        let layout = self.layout(version)?;
        let total = layout.header + self.payload.len();
        if buf.remaining_mut() < total {
            return Err(EncodeError::BufferTooSmall { needed: total });
        }
        self.write_header(version, &layout, &mut crate::wire::BufSink(buf));
        buf.put_slice(self.payload);
        Ok(total)
    }

    /// Encodes the fixed and variable headers only, so the payload can follow from its own buffer
    /// (e.g. with vectored I/O). Returns the header length; the whole packet is that plus
    /// `self.payload.len()`.
    pub fn encode_header(&self, version: Version, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let layout = self.layout(version)?;
        if buf.len() < layout.header {
            return Err(EncodeError::BufferTooSmall {
                needed: layout.header,
            });
        }
        let mut s = SliceSink::new(buf);
        self.write_header(version, &layout, &mut s);
        s.finish().ok_or(EncodeError::BufferTooSmall {
            needed: layout.header,
        })
    }
}

/// Sizes of an encoded PUBLISH.
struct Layout {
    /// Property block, without its length prefix.
    props: usize,
    /// Remaining length.
    body: usize,
    /// Fixed plus variable header.
    header: usize,
}

impl Body for Publish<'_> {
    fn body_len(&self, version: Version) -> Result<usize, EncodeError> {
        Ok(self.layout(version)?.body)
    }

    fn write_body<S: Sink>(&self, version: Version, s: &mut S) {
        // Only reached through `Packet`, which encodes PUBLISH with `encode_into`/`encode_slice`.
        if let Ok(layout) = self.layout(version) {
            s.put_field(self.topic.as_bytes());
            if self.qos != QoS::AtMostOnce {
                s.put_u16(self.pkid);
            }
            if version.is_v5() {
                self.properties.write(layout.props, s);
            }
            s.put_slice(self.payload);
        }
    }
}
