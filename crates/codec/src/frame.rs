//! Framing (§2.1): the fixed header tells the packet type and how many bytes follow, which is all a
//! listener needs to cut a byte stream into packets. Size limits are enforced here, from the header
//! alone, so an oversized packet is refused before its body is buffered.

use crate::packet::Packet;
use crate::wire::{read_varint, VarInt};
use crate::{DecodeError, Version};

/// Largest remaining length MQTT can express: 268,435,455 bytes (256 MiB).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// The control packet types (§2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    fn from_u8(v: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match v {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }
}

/// The fixed header of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Packet type.
    pub packet_type: PacketType,
    /// The four flag bits (DUP/QoS/RETAIN for PUBLISH, fixed values otherwise).
    pub flags: u8,
    /// Bytes after the fixed header.
    pub remaining_length: usize,
    /// Bytes of the fixed header itself (2 to 5).
    pub header_len: usize,
}

impl FixedHeader {
    /// Total bytes of the packet.
    pub fn packet_len(&self) -> usize {
        self.header_len + self.remaining_length
    }
}

/// What [`check`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole packet is in the buffer.
    Complete(FixedHeader),
    /// At least `needed` more bytes are required before anything can be decided.
    Incomplete {
        /// Bytes missing (a lower bound while the remaining length itself is incomplete).
        needed: usize,
    },
}

/// Looks at the start of `buf` and says whether a whole packet is there, without decoding it.
///
/// `max_packet_size` is the largest total packet size accepted; a larger one is refused as soon as its
/// fixed header is readable. Reserved flag bits are checked here too.
#[inline]
pub fn check(buf: &[u8], max_packet_size: usize) -> Result<Frame, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(Frame::Incomplete { needed: 2 });
    };
    let type_bits = first >> 4;
    let flags = first & 0x0f;
    let packet_type =
        PacketType::from_u8(type_bits).ok_or(DecodeError::InvalidPacketType(type_bits))?;
    check_flags(packet_type, flags)?;
    let (remaining_length, len_bytes) = match read_varint(&buf[1..])? {
        VarInt::Value { value, len } => (value as usize, len),
        VarInt::Incomplete => return Ok(Frame::Incomplete { needed: 1 }),
    };
    let header = FixedHeader {
        packet_type,
        flags,
        remaining_length,
        header_len: 1 + len_bytes,
    };
    let size = header.packet_len();
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(Frame::Incomplete {
            needed: size - buf.len(),
        });
    }
    Ok(Frame::Complete(header))
}

#[inline]
fn check_flags(t: PacketType, flags: u8) -> Result<(), DecodeError> {
    let ok = match t {
        PacketType::Publish => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::InvalidQoS(qos));
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(DecodeError::DupOnQoS0);
            }
            true
        }
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => flags == 0b0010,
        _ => flags == 0,
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::InvalidHeaderFlags {
            packet_type: t as u8,
            flags,
        })
    }
}

/// The result of [`decode`].
// Boxing needs `alloc`; a decoded packet lives briefly on the stack, so the size is accepted.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<'a> {
    /// A packet, and how many bytes of the buffer it used.
    Packet(Packet<'a>, usize),
    /// The buffer holds only part of a packet.
    Incomplete {
        /// Bytes missing (a lower bound while the remaining length itself is incomplete).
        needed: usize,
    },
}

/// Decodes the packet at the start of `buf`.
///
/// `version` is the connection's protocol version (CONNECT carries its own and ignores it). The
/// returned packet borrows from `buf`. Bytes after the packet are left alone: call again with the rest.
#[inline]
pub fn decode(
    buf: &[u8],
    version: Version,
    max_packet_size: usize,
) -> Result<Decoded<'_>, DecodeError> {
    decode_with(buf, version, max_packet_size, Packet::decode_body)
}

/// [`decode`] for a client: accepts only the packets a server sends (CONNACK, PUBLISH, the
/// acknowledgements, SUBACK, UNSUBACK, PINGRESP, and in MQTT 5 DISCONNECT) and answers any other
/// type with [`DecodeError::InvalidPacketType`]. AUTH is refused too: a server sends it only to a
/// client that asked for enhanced authentication, which a client using this decoder does not.
/// Firmware using it does not link the decoders of client packets.
#[inline]
pub fn decode_from_server(
    buf: &[u8],
    version: Version,
    max_packet_size: usize,
) -> Result<Decoded<'_>, DecodeError> {
    decode_with(
        buf,
        version,
        max_packet_size,
        Packet::decode_body_from_server,
    )
}

/// Framing shared by [`decode`] and [`decode_from_server`]; `body` decodes the packet itself.
#[inline(always)]
fn decode_with<'a>(
    buf: &'a [u8],
    version: Version,
    max_packet_size: usize,
    body: fn(FixedHeader, &'a [u8], Version) -> Result<Packet<'a>, DecodeError>,
) -> Result<Decoded<'a>, DecodeError> {
    match check(buf, max_packet_size)? {
        Frame::Incomplete { needed } => Ok(Decoded::Incomplete { needed }),
        Frame::Complete(header) => {
            let packet = body(
                header,
                &buf[header.header_len..header.packet_len()],
                version,
            )?;
            Ok(Decoded::Packet(packet, header.packet_len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_headers_ask_for_more() {
        assert_eq!(check(&[], 100), Ok(Frame::Incomplete { needed: 2 }));
        assert_eq!(check(&[0x30], 100), Ok(Frame::Incomplete { needed: 1 }));
        assert_eq!(
            check(&[0x30, 0x80], 1000),
            Ok(Frame::Incomplete { needed: 1 })
        );
        assert_eq!(
            check(&[0x30, 0x05, 1, 2], 100),
            Ok(Frame::Incomplete { needed: 3 })
        );
    }

    #[test]
    fn oversized_is_refused_from_the_header() {
        // remaining length 16,384 in two bytes
        assert_eq!(
            check(&[0x30, 0x80, 0x80, 0x01], 1000),
            Err(DecodeError::PacketTooLarge {
                size: 16_388,
                max: 1000
            })
        );
    }

    #[test]
    fn reserved_flags_are_checked() {
        assert!(check(&[0x82, 0x00], 10).is_ok());
        assert!(matches!(
            check(&[0x80, 0x00], 10),
            Err(DecodeError::InvalidHeaderFlags { .. })
        ));
        assert_eq!(check(&[0x36, 0x00], 10), Err(DecodeError::InvalidQoS(3)));
        assert_eq!(check(&[0x38, 0x00], 10), Err(DecodeError::DupOnQoS0));
        assert_eq!(
            check(&[0x00, 0x00], 10),
            Err(DecodeError::InvalidPacketType(0))
        );
    }
}
