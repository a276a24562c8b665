//! Owned packets for the broker (`bytes` feature).
//!
//! A listener reads into a `BytesMut`, cuts complete frames off with [`split_frame`] (no copy: the
//! frame shares the read buffer's allocation) and decodes each frame with [`crate::decode`]. A PUBLISH
//! that must outlive the read buffer — queued for a subscriber, stored, retained — becomes a
//! [`PublishBytes`], whose topic, properties and payload are reference-counted slices of that frame.
//! Fan-out to N subscribers clones the `Bytes` handles, never the payload.

use bytes::{Bytes, BytesMut};

use crate::frame::{check, Frame};
use crate::{DecodeError, List, Publish, PublishProperties, QoS, Version};

/// Cuts the first complete packet off the front of `buf`.
///
/// `Ok(None)` means more bytes are needed; an error means the stream is broken (the connection must
/// be closed, after a DISCONNECT/CONNACK carrying [`DecodeError::reason_code`]).
pub fn split_frame(
    buf: &mut BytesMut,
    max_packet_size: usize,
) -> Result<Option<Bytes>, DecodeError> {
    match check(buf, max_packet_size)? {
        Frame::Incomplete { .. } => Ok(None),
        Frame::Complete(header) => Ok(Some(buf.split_to(header.packet_len()).freeze())),
    }
}

/// An owned PUBLISH sharing the memory of the frame it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishBytes {
    /// Redelivery flag.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Packet identifier (0 for QoS 0).
    pub pkid: u16,
    topic: Bytes,
    /// The raw MQTT 5 property block (without its length); empty for 3.1.1 or no properties.
    properties: Bytes,
    /// Application payload.
    pub payload: Bytes,
}

impl PublishBytes {
    /// Makes an owned copy of `publish`, sharing `frame`'s memory where `publish` borrows from it
    /// (the normal case: it was decoded from `frame`). Parts that do not lie in `frame` are copied.
    pub fn from_publish(frame: &Bytes, publish: &Publish<'_>) -> Self {
        let properties = match publish.properties.user_properties {
            // The decoder keeps the whole property block behind the user-property list.
            List::Wire(block, _) => share(frame, block),
            List::Items(_) if publish.properties.is_empty() => Bytes::new(),
            List::Items(_) => encode_properties(&publish.properties),
        };
        PublishBytes {
            dup: publish.dup,
            qos: publish.qos,
            retain: publish.retain,
            pkid: publish.pkid,
            topic: share(frame, publish.topic.as_bytes()),
            properties,
            payload: share(frame, publish.payload),
        }
    }

    /// Builds an owned PUBLISH from owned parts; properties are encoded once here.
    pub fn new(
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        properties: &PublishProperties<'_>,
    ) -> Self {
        PublishBytes {
            dup: false,
            qos,
            retain,
            pkid: 0,
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            properties: if properties.is_empty() {
                Bytes::new()
            } else {
                encode_properties(properties)
            },
            payload,
        }
    }

    /// Decodes a frame that holds a PUBLISH.
    pub fn decode(frame: &Bytes, version: Version) -> Result<Option<Self>, DecodeError> {
        match crate::decode(frame, version, usize::MAX)? {
            crate::Decoded::Packet(crate::Packet::Publish(p), _) => {
                Ok(Some(Self::from_publish(frame, &p)))
            }
            _ => Ok(None),
        }
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        // Validated when the value was made; a failure here would be a bug, not input.
        core::str::from_utf8(&self.topic).unwrap_or_default()
    }

    /// The topic as shared bytes.
    pub fn topic_bytes(&self) -> &Bytes {
        &self.topic
    }

    /// The MQTT 5 properties, parsed from the stored block.
    pub fn properties(&self) -> PublishProperties<'_> {
        if self.properties.is_empty() {
            return PublishProperties::default();
        }
        // Validated when the value was made; a failure here would be a bug, not input.
        PublishProperties::from_block(&self.properties).unwrap_or_default()
    }

    /// A borrowed view for encoding (e.g. with a new packet id or for a 3.1.1 receiver).
    pub fn as_publish(&self) -> Publish<'_> {
        Publish {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic(),
            pkid: self.pkid,
            properties: self.properties(),
            payload: &self.payload,
        }
    }
}

fn encode_properties(props: &PublishProperties<'_>) -> Bytes {
    let len = props.len().unwrap_or(0);
    let mut out = BytesMut::with_capacity(len + 4);
    props.write(len, &mut crate::wire::BufSink(&mut out));
    // Drop the length prefix: the block is stored without it.
    let prefix = crate::wire::varint_len(len as u32);
    out.split_off(prefix).freeze()
}

/// A `Bytes` for `part`: a shared slice if it lies inside `frame`, else a copy.
fn share(frame: &Bytes, part: &[u8]) -> Bytes {
    let start = frame.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if part.is_empty() {
        return Bytes::new();
    }
    if p >= start && p + part.len() <= start + frame.len() {
        let off = p - start;
        frame.slice(off..off + part.len())
    } else {
        Bytes::copy_from_slice(part)
    }
}
