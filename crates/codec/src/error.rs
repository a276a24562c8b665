//! Typed errors. Each decode error maps to the MQTT 5 reason code a server sends back
//! (in CONNACK or DISCONNECT) so the broker never has to guess how to answer bad input.

use crate::ReasonCode;

/// Why bytes from the network are not a valid MQTT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The remaining length uses more than four bytes, or is not minimally encoded.
    #[error("malformed remaining length")]
    MalformedRemainingLength,
    /// The packet is larger than the maximum the receiver accepts.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge {
        /// Total size of the packet, fixed header included.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Packet type 0, or 15 (AUTH) on an MQTT 3.1.1 connection.
    #[error("invalid packet type {0}")]
    InvalidPacketType(u8),
    /// Reserved flags of the fixed header are not the values the spec requires.
    #[error("invalid fixed header flags {flags:#06b} for packet type {packet_type}")]
    InvalidHeaderFlags {
        /// The packet type.
        packet_type: u8,
        /// The low nibble of the first byte.
        flags: u8,
    },
    /// A QoS value of 3.
    #[error("invalid QoS {0}")]
    InvalidQoS(u8),
    /// DUP set on a QoS 0 PUBLISH.
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupOnQoS0,
    /// The CONNECT protocol name is not `MQTT`.
    #[error("invalid protocol name")]
    InvalidProtocolName,
    /// The CONNECT protocol level is neither 4 (3.1.1) nor 5 (5.0).
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// CONNECT flags break a rule (reserved bit, will QoS/retain without will, password without user name in 3.1.1).
    #[error("invalid CONNECT flags {0:#010b}")]
    InvalidConnectFlags(u8),
    /// CONNACK acknowledge flags with reserved bits set.
    #[error("invalid CONNACK flags {0:#010b}")]
    InvalidConnAckFlags(u8),
    /// A string is not well-formed UTF-8 or contains U+0000.
    #[error("invalid UTF-8 string")]
    InvalidUtf8,
    /// A PUBLISH or will topic is empty where it must not be, or contains `+` or `#`.
    #[error("invalid topic name")]
    InvalidTopicName,
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter.
    #[error("no topic filter in SUBSCRIBE or UNSUBSCRIBE")]
    NoTopicFilter,
    /// Subscription options with reserved bits set, or retain handling 3.
    #[error("invalid subscription options {0:#010b}")]
    InvalidSubscriptionOptions(u8),
    /// A packet identifier of zero where a non-zero one is required.
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// A property identifier the spec does not define.
    #[error("unknown property {0:#04x}")]
    UnknownProperty(u32),
    /// A property that may appear once appears twice.
    #[error("duplicate property {0:#04x}")]
    DuplicateProperty(u32),
    /// A property that this packet type may not carry.
    #[error("property {0:#04x} not allowed in this packet")]
    PropertyNotAllowed(u32),
    /// A property value out of its allowed range (e.g. Receive Maximum 0).
    #[error("invalid value for property {0:#04x}")]
    InvalidPropertyValue(u32),
    /// A reason code this packet type may not carry.
    #[error("invalid reason code {0:#04x}")]
    InvalidReasonCode(u8),
    /// The packet's fields need more bytes than its remaining length holds.
    #[error("packet shorter than its fields")]
    Truncated,
    /// Bytes left over after the last field of a packet that has no payload.
    #[error("unexpected bytes after the last field")]
    TrailingBytes,
}

impl DecodeError {
    /// The MQTT 5 reason code a server uses to refuse this packet (CONNACK or DISCONNECT).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::UnsupportedProtocolLevel(_) | DecodeError::InvalidProtocolName => {
                ReasonCode::UnsupportedProtocolVersion
            }
            DecodeError::InvalidTopicName => ReasonCode::TopicNameInvalid,
            DecodeError::InvalidPacketType(_)
            | DecodeError::DuplicateProperty(_)
            | DecodeError::PropertyNotAllowed(_)
            | DecodeError::InvalidPropertyValue(_)
            | DecodeError::ZeroPacketId
            | DecodeError::InvalidSubscriptionOptions(_)
            | DecodeError::NoTopicFilter
            | DecodeError::InvalidConnectFlags(_) => ReasonCode::ProtocolError,
            _ => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The output buffer is smaller than the packet.
    #[error("buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Total bytes the packet needs.
        needed: usize,
    },
    /// The packet would exceed the largest remaining length MQTT can express (268,435,455 bytes).
    #[error("packet too large for MQTT")]
    PacketTooLarge,
    /// A string or binary field is longer than 65,535 bytes.
    #[error("string or binary field longer than 65535 bytes")]
    FieldTooLong,
    /// A value outside what the field may hold (e.g. a subscription identifier of 0).
    #[error("invalid field value")]
    InvalidValue,
    /// A QoS 1 or 2 PUBLISH, a SUBSCRIBE or UNSUBSCRIBE, or an acknowledgement with packet identifier 0.
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// An empty topic name where the protocol needs one. (Topic syntax — wildcards — is not checked
    /// when encoding; see `topic::is_valid_topic_name`.)
    #[error("invalid topic name")]
    InvalidTopicName,
    /// A reason code that this packet type (in this protocol version) cannot carry.
    #[error("reason code {0:#04x} cannot be sent in this packet")]
    InvalidReasonCode(u8),
    /// AUTH does not exist in MQTT 3.1.1.
    #[error("packet type not available in MQTT 3.1.1")]
    NotInVersion,
    /// A SUBSCRIBE or UNSUBSCRIBE without topic filters.
    #[error("no topic filter")]
    NoTopicFilter,
}
