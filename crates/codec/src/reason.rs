//! Reason codes (MQTT 5 §2.4) and the subsets each packet type may carry.
//!
//! MQTT 3.1.1 has fewer codes: CONNACK return codes 0–5 and SUBACK 0x00/0x01/0x02/0x80. The codec
//! speaks MQTT 5 codes everywhere and maps CONNACK return codes to and from 3.1.1 at the wire, so the
//! broker has one vocabulary for both versions.

/// An MQTT 5 reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum ReasonCode {
    /// Success, Normal disconnection, Granted QoS 0.
    #[default]
    Success = 0x00,
    GrantedQoS1 = 0x01,
    GrantedQoS2 = 0x02,
    DisconnectWithWillMessage = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    ContinueAuthentication = 0x18,
    ReAuthenticate = 0x19,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    ImplementationSpecificError = 0x83,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUserNameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    Banned = 0x8A,
    ServerShuttingDown = 0x8B,
    BadAuthenticationMethod = 0x8C,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    PacketIdentifierInUse = 0x91,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    MessageRateTooHigh = 0x96,
    QuotaExceeded = 0x97,
    AdministrativeAction = 0x98,
    PayloadFormatInvalid = 0x99,
    RetainNotSupported = 0x9A,
    QoSNotSupported = 0x9B,
    UseAnotherServer = 0x9C,
    ServerMoved = 0x9D,
    SharedSubscriptionsNotSupported = 0x9E,
    ConnectionRateExceeded = 0x9F,
    MaximumConnectTime = 0xA0,
    SubscriptionIdentifiersNotSupported = 0xA1,
    WildcardSubscriptionsNotSupported = 0xA2,
}

const ALL: [ReasonCode; 43] = {
    use ReasonCode::*;
    [
        Success,
        GrantedQoS1,
        GrantedQoS2,
        DisconnectWithWillMessage,
        NoMatchingSubscribers,
        NoSubscriptionExisted,
        ContinueAuthentication,
        ReAuthenticate,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        BadUserNameOrPassword,
        NotAuthorized,
        ServerUnavailable,
        ServerBusy,
        Banned,
        ServerShuttingDown,
        BadAuthenticationMethod,
        KeepAliveTimeout,
        SessionTakenOver,
        TopicFilterInvalid,
        TopicNameInvalid,
        PacketIdentifierInUse,
        PacketIdentifierNotFound,
        ReceiveMaximumExceeded,
        TopicAliasInvalid,
        PacketTooLarge,
        MessageRateTooHigh,
        QuotaExceeded,
        AdministrativeAction,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        SharedSubscriptionsNotSupported,
        ConnectionRateExceeded,
        MaximumConnectTime,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ]
};

impl ReasonCode {
    /// Normal disconnection (0x00) under its DISCONNECT name.
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode::Success;
    /// Granted QoS 0 (0x00) under its SUBACK name.
    pub const GRANTED_QOS0: ReasonCode = ReasonCode::Success;

    /// The code for a byte, if MQTT 5 defines one.
    pub fn from_u8(v: u8) -> Option<ReasonCode> {
        ALL.iter().copied().find(|c| *c as u8 == v)
    }

    /// Every reason code, in numeric order.
    pub fn all() -> &'static [ReasonCode] {
        &ALL
    }

    /// True for 0x80 and above: the operation failed.
    pub const fn is_error(self) -> bool {
        self as u8 >= 0x80
    }
}

/// Which reason codes a packet type may carry (MQTT 5 §3.x.2.1 tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeSet {
    ConnAck,
    PubAckRec,
    PubRelComp,
    SubAck,
    UnsubAck,
    Disconnect,
    Auth,
}

impl CodeSet {
    const fn codes(self) -> &'static [u8] {
        match self {
            CodeSet::ConnAck => &[
                0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
                0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
            ],
            CodeSet::PubAckRec => &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
            CodeSet::PubRelComp => &[0x00, 0x92],
            CodeSet::SubAck => &[
                0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
            ],
            CodeSet::UnsubAck => &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91],
            CodeSet::Disconnect => &[
                0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
                0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1,
                0xA2,
            ],
            CodeSet::Auth => &[0x00, 0x18, 0x19],
        }
    }

    pub(crate) fn contains(self, code: ReasonCode) -> bool {
        self.codes().contains(&(code as u8))
    }

    /// Decodes a byte as a member of this set.
    pub(crate) fn decode(self, b: u8) -> Result<ReasonCode, crate::DecodeError> {
        ReasonCode::from_u8(b)
            .filter(|c| self.contains(*c))
            .ok_or(crate::DecodeError::InvalidReasonCode(b))
    }
}

/// MQTT 3.1.1 CONNACK return code (§3.2.2.3) for an MQTT 5 reason code, where one exists.
pub(crate) fn connack_v311_code(code: ReasonCode) -> Option<u8> {
    Some(match code {
        ReasonCode::Success => 0,
        ReasonCode::UnsupportedProtocolVersion => 1,
        ReasonCode::ClientIdentifierNotValid => 2,
        ReasonCode::ServerUnavailable => 3,
        ReasonCode::BadUserNameOrPassword => 4,
        ReasonCode::NotAuthorized => 5,
        _ => return None,
    })
}

/// MQTT 5 reason code for an MQTT 3.1.1 CONNACK return code.
pub(crate) fn connack_from_v311(b: u8) -> Option<ReasonCode> {
    Some(match b {
        0 => ReasonCode::Success,
        1 => ReasonCode::UnsupportedProtocolVersion,
        2 => ReasonCode::ClientIdentifierNotValid,
        3 => ReasonCode::ServerUnavailable,
        4 => ReasonCode::BadUserNameOrPassword,
        5 => ReasonCode::NotAuthorized,
        _ => return None,
    })
}

/// SUBACK codes MQTT 3.1.1 knows (§3.9.3).
pub(crate) fn suback_v311_allowed(code: ReasonCode) -> bool {
    matches!(
        code,
        ReasonCode::Success
            | ReasonCode::GrantedQoS1
            | ReasonCode::GrantedQoS2
            | ReasonCode::UnspecifiedError
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_u8_is_inverse() {
        for c in ReasonCode::all() {
            assert_eq!(ReasonCode::from_u8(*c as u8), Some(*c));
        }
        assert_eq!(ReasonCode::from_u8(0x03), None);
        assert_eq!(ReasonCode::from_u8(0xff), None);
    }

    #[test]
    fn v311_connack_codes_round_trip() {
        for b in 0..=5 {
            let c = connack_from_v311(b).unwrap();
            assert_eq!(connack_v311_code(c), Some(b));
        }
        assert_eq!(connack_from_v311(6), None);
    }
}
