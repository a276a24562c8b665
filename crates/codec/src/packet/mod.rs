//! The fifteen control packets (§3). One file per packet; this module dispatches on the packet type
//! and owns the fixed header on the way out.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;

pub use ack::Ack;
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use disconnect::Disconnect;
pub use publish::Publish;
pub use suback::SubAck;
pub use subscribe::{RetainHandling, Subscribe, SubscribeFilter, SubscribeOptions};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

use crate::frame::{FixedHeader, PacketType, MAX_REMAINING_LENGTH};
use crate::wire::{varint_len, Reader, Sink, SliceSink};
use crate::{DecodeError, EncodeError, Version};

/// Any MQTT control packet, borrowing its strings and payload from a buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet<'a> {
    /// Client asks to connect.
    Connect(Connect<'a>),
    /// Server answers CONNECT.
    ConnAck(ConnAck<'a>),
    /// An application message.
    Publish(Publish<'a>),
    /// QoS 1 acknowledgement.
    PubAck(Ack<'a>),
    /// QoS 2, part 1: received.
    PubRec(Ack<'a>),
    /// QoS 2, part 2: release.
    PubRel(Ack<'a>),
    /// QoS 2, part 3: complete.
    PubComp(Ack<'a>),
    /// Subscribe to topic filters.
    Subscribe(Subscribe<'a>),
    /// Answer to SUBSCRIBE.
    SubAck(SubAck<'a>),
    /// Remove subscriptions.
    Unsubscribe(Unsubscribe<'a>),
    /// Answer to UNSUBSCRIBE.
    UnsubAck(UnsubAck<'a>),
    /// Keep-alive ping.
    PingReq,
    /// Keep-alive answer.
    PingResp,
    /// Orderly end of the connection.
    Disconnect(Disconnect<'a>),
    /// Extended authentication exchange (MQTT 5 only).
    Auth(Auth<'a>),
}

/// Encoding of one packet's variable header and payload.
pub(crate) trait Body {
    /// The remaining length, validating every field on the way.
    fn body_len(&self, version: Version) -> Result<usize, EncodeError>;
    /// Writes the body; only called after `body_len` succeeded.
    fn write_body<S: Sink>(&self, version: Version, s: &mut S);
}

/// Checks the remaining length and returns the total size (fixed header + body).
pub(crate) fn total_len(body: usize) -> Result<usize, EncodeError> {
    if body > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge);
    }
    Ok(1 + varint_len(body as u32) + body)
}

/// Rejects trailing bytes after the last field.
pub(crate) fn expect_end(r: &Reader<'_>) -> Result<(), DecodeError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes)
    }
}

/// Reads a non-zero packet identifier.
pub(crate) fn packet_id(r: &mut Reader<'_>) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::ZeroPacketId),
        id => Ok(id),
    }
}

impl<'a> Packet<'a> {
    #[inline]
    pub(crate) fn decode_body(
        header: FixedHeader,
        body: &'a [u8],
        version: Version,
    ) -> Result<Packet<'a>, DecodeError> {
        let r = Reader::new(body);
        let v5 = version.is_v5();
        Ok(match header.packet_type {
            PacketType::Connect => Packet::Connect(Connect::decode(r)?),
            PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(r, version)?),
            PacketType::Publish => Packet::Publish(Publish::decode(header.flags, r, version)?),
            PacketType::PubAck => Packet::PubAck(Ack::decode(r, version, false)?),
            PacketType::PubRec => Packet::PubRec(Ack::decode(r, version, false)?),
            PacketType::PubRel => Packet::PubRel(Ack::decode(r, version, true)?),
            PacketType::PubComp => Packet::PubComp(Ack::decode(r, version, true)?),
            PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(r, version)?),
            PacketType::SubAck => Packet::SubAck(SubAck::decode(r, version)?),
            PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(r, version)?),
            PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(r, version)?),
            PacketType::PingReq => {
                expect_end(&r)?;
                Packet::PingReq
            }
            PacketType::PingResp => {
                expect_end(&r)?;
                Packet::PingResp
            }
            PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(r, version)?),
            PacketType::Auth if v5 => Packet::Auth(Auth::decode(r)?),
            PacketType::Auth => return Err(DecodeError::InvalidPacketType(15)),
        })
    }

    /// [`Packet::decode_body`] for a client: only the packets a server sends (AUTH excepted, see
    /// [`crate::decode_from_server`]). The decoders of CONNECT, SUBSCRIBE, UNSUBSCRIBE and AUTH
    /// are not reachable from here, so firmware that uses it does not link them.
    #[inline]
    pub(crate) fn decode_body_from_server(
        header: FixedHeader,
        body: &'a [u8],
        version: Version,
    ) -> Result<Packet<'a>, DecodeError> {
        let r = Reader::new(body);
        Ok(match header.packet_type {
            PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(r, version)?),
            PacketType::Publish => Packet::Publish(Publish::decode(header.flags, r, version)?),
            PacketType::PubAck => Packet::PubAck(Ack::decode(r, version, false)?),
            PacketType::PubRec => Packet::PubRec(Ack::decode(r, version, false)?),
            PacketType::PubRel => Packet::PubRel(Ack::decode(r, version, true)?),
            PacketType::PubComp => Packet::PubComp(Ack::decode(r, version, true)?),
            PacketType::SubAck => Packet::SubAck(SubAck::decode(r, version)?),
            PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(r, version)?),
            PacketType::PingResp => {
                expect_end(&r)?;
                Packet::PingResp
            }
            PacketType::Disconnect if version.is_v5() => {
                Packet::Disconnect(Disconnect::decode(r, version)?)
            }
            other => return Err(DecodeError::InvalidPacketType(other as u8)),
        })
    }

    /// The packet type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// The first byte of the fixed header.
    fn first_byte(&self) -> u8 {
        let flags = match self {
            Packet::Publish(p) => p.flags(),
            Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => 0b0010,
            _ => 0,
        };
        (self.packet_type() as u8) << 4 | flags
    }

    fn body_len(&self, version: Version) -> Result<usize, EncodeError> {
        match self {
            Packet::Connect(p) => p.body_len(version),
            Packet::ConnAck(p) => p.body_len(version),
            Packet::Publish(p) => p.body_len(version),
            Packet::PubAck(p) | Packet::PubRec(p) => p.checked(false)?.body_len(version),
            Packet::PubRel(p) | Packet::PubComp(p) => p.checked(true)?.body_len(version),
            Packet::Subscribe(p) => p.body_len(version),
            Packet::SubAck(p) => p.body_len(version),
            Packet::Unsubscribe(p) => p.body_len(version),
            Packet::UnsubAck(p) => p.body_len(version),
            Packet::PingReq | Packet::PingResp => Ok(0),
            Packet::Disconnect(p) => p.body_len(version),
            Packet::Auth(_) if version == Version::V311 => Err(EncodeError::NotInVersion),
            Packet::Auth(p) => p.body_len(version),
        }
    }

    fn write_body<S: Sink>(&self, version: Version, s: &mut S) {
        match self {
            Packet::Connect(p) => p.write_body(version, s),
            Packet::ConnAck(p) => p.write_body(version, s),
            Packet::Publish(p) => p.write_body(version, s),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                p.write_body(version, s)
            }
            Packet::Subscribe(p) => p.write_body(version, s),
            Packet::SubAck(p) => p.write_body(version, s),
            Packet::Unsubscribe(p) => p.write_body(version, s),
            Packet::UnsubAck(p) => p.write_body(version, s),
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(p) => p.write_body(version, s),
            Packet::Auth(p) => p.write_body(version, s),
        }
    }

    /// The protocol version the packet is written in: CONNECT names its own.
    fn effective_version(&self, version: Version) -> Version {
        match self {
            Packet::Connect(c) => c.protocol,
            _ => version,
        }
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self, version: Version) -> Result<usize, EncodeError> {
        total_len(self.body_len(self.effective_version(version))?)
    }

    /// Encodes the packet into `buf` and returns the number of bytes written.
    ///
    /// Properties are left out for MQTT 3.1.1, which has none.
    #[inline]
    pub fn encode(&self, version: Version, buf: &mut [u8]) -> Result<usize, EncodeError> {
        if let Packet::Publish(p) = self {
            let mut s = SliceSink::new(buf);
            let n = p.encode_into(version, s.capacity(), &mut s)?;
            return s.finish().ok_or(EncodeError::BufferTooSmall { needed: n });
        }
        let version = self.effective_version(version);
        let body = self.body_len(version)?;
        let total = total_len(body)?;
        if buf.len() < total {
            return Err(EncodeError::BufferTooSmall { needed: total });
        }
        let mut s = SliceSink::new(buf);
        self.write_all(version, body, &mut s);
        s.finish()
            .ok_or(EncodeError::BufferTooSmall { needed: total })
    }

    /// Encodes the packet at the end of any `BufMut` (growing it if it can) and returns its size.
    #[cfg(feature = "bytes")]
    #[inline]
    pub fn encode_to<B: bytes::BufMut>(
        &self,
        version: Version,
        buf: &mut B,
    ) -> Result<usize, EncodeError> {
        if let Packet::Publish(p) = self {
            return p.encode_buf(version, buf);
        }
        let version = self.effective_version(version);
        let body = self.body_len(version)?;
        let total = total_len(body)?;
        if buf.remaining_mut() < total {
            return Err(EncodeError::BufferTooSmall { needed: total });
        }
        self.write_all(version, body, &mut crate::wire::BufSink(buf));
        Ok(total)
    }

    fn write_all<S: Sink>(&self, version: Version, body: usize, s: &mut S) {
        s.put_u8(self.first_byte());
        s.put_varint(body as u32);
        self.write_body(version, s);
    }
}

/// Encodes one packet whose type is known at compile time, so that only its encoder is linked.
fn encode_single<B: Body>(
    first_byte: u8,
    packet: &B,
    version: Version,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    let body = packet.body_len(version)?;
    let total = total_len(body)?;
    if buf.len() < total {
        return Err(EncodeError::BufferTooSmall { needed: total });
    }
    let mut s = SliceSink::new(buf);
    s.put_u8(first_byte);
    s.put_varint(body as u32);
    packet.write_body(version, &mut s);
    s.finish()
        .ok_or(EncodeError::BufferTooSmall { needed: total })
}

// Per-packet encoders. [`Packet::encode`] handles every packet and so links every encoder; these
// link one each, which is what a microcontroller client wants.

impl Connect<'_> {
    /// Encodes this CONNECT (in its own protocol version) into `buf`; returns the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        encode_single((PacketType::Connect as u8) << 4, self, self.protocol, buf)
    }
}

impl Publish<'_> {
    /// Size of this PUBLISH when encoded.
    pub fn encoded_len(&self, version: Version) -> Result<usize, EncodeError> {
        total_len(self.body_len(version)?)
    }

    /// Encodes this PUBLISH into `buf`; returns the bytes written.
    pub fn encode(&self, version: Version, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let mut s = SliceSink::new(buf);
        let n = self.encode_into(version, s.capacity(), &mut s)?;
        s.finish().ok_or(EncodeError::BufferTooSmall { needed: n })
    }
}

impl Subscribe<'_> {
    /// Encodes this SUBSCRIBE into `buf`; returns the bytes written.
    pub fn encode(&self, version: Version, buf: &mut [u8]) -> Result<usize, EncodeError> {
        encode_single(
            (PacketType::Subscribe as u8) << 4 | 0b0010,
            self,
            version,
            buf,
        )
    }
}

impl Unsubscribe<'_> {
    /// Encodes this UNSUBSCRIBE into `buf`; returns the bytes written.
    pub fn encode(&self, version: Version, buf: &mut [u8]) -> Result<usize, EncodeError> {
        encode_single(
            (PacketType::Unsubscribe as u8) << 4 | 0b0010,
            self,
            version,
            buf,
        )
    }
}

impl Disconnect<'_> {
    /// Encodes this DISCONNECT into `buf`; returns the bytes written.
    pub fn encode(&self, version: Version, buf: &mut [u8]) -> Result<usize, EncodeError> {
        encode_single((PacketType::Disconnect as u8) << 4, self, version, buf)
    }
}

impl Ack<'_> {
    /// Encodes this acknowledgement as a PUBACK, PUBREC, PUBREL or PUBCOMP (`kind`) into `buf`.
    pub fn encode(
        &self,
        kind: PacketType,
        version: Version,
        buf: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let (rel, flags) = match kind {
            PacketType::PubAck | PacketType::PubRec => (false, 0),
            PacketType::PubRel => (true, 0b0010),
            PacketType::PubComp => (true, 0),
            _ => return Err(EncodeError::InvalidValue),
        };
        encode_single((kind as u8) << 4 | flags, self.checked(rel)?, version, buf)
    }
}
