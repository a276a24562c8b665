//! MQTT 5 properties (§2.2.2): one struct per packet type, holding exactly the properties that packet
//! may carry.
//!
//! Per-packet structs (rather than one bag of every property) make a property that a packet may not
//! carry unrepresentable when encoding, and a protocol error when decoding. The structs are generated
//! by one macro so that the rules (no duplicates, known identifiers, value ranges) live in one place.
//! Properties that may repeat (user properties; subscription identifiers in PUBLISH) are [`List`]s
//! over the property block.

use crate::list::{List, WireItem};
use crate::wire::{field_len, varint_len, Reader, Sink, MAX_VARINT};
use crate::{DecodeError, EncodeError, QoS};

/// Property identifiers (§2.2.2.2).
pub mod property_id {
    #![allow(missing_docs)]
    pub const PAYLOAD_FORMAT_INDICATOR: u32 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u32 = 0x02;
    pub const CONTENT_TYPE: u32 = 0x03;
    pub const RESPONSE_TOPIC: u32 = 0x08;
    pub const CORRELATION_DATA: u32 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u32 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u32 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u32 = 0x12;
    pub const SERVER_KEEP_ALIVE: u32 = 0x13;
    pub const AUTHENTICATION_METHOD: u32 = 0x15;
    pub const AUTHENTICATION_DATA: u32 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u32 = 0x17;
    pub const WILL_DELAY_INTERVAL: u32 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u32 = 0x19;
    pub const RESPONSE_INFORMATION: u32 = 0x1A;
    pub const SERVER_REFERENCE: u32 = 0x1C;
    pub const REASON_STRING: u32 = 0x1F;
    pub const RECEIVE_MAXIMUM: u32 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u32 = 0x22;
    pub const TOPIC_ALIAS: u32 = 0x23;
    pub const MAXIMUM_QOS: u32 = 0x24;
    pub const RETAIN_AVAILABLE: u32 = 0x25;
    pub const USER_PROPERTY: u32 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u32 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u32 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u32 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u32 = 0x2A;
}
use property_id as id;

/// Skips one property value of the given identifier; `None` for an unknown identifier or short input.
fn skip_value(pid: u32, r: &mut Reader<'_>) -> Option<()> {
    match pid {
        0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => r.take(1).ok().map(drop),
        0x13 | 0x21 | 0x22 | 0x23 => r.take(2).ok().map(drop),
        0x02 | 0x11 | 0x18 | 0x27 => r.take(4).ok().map(drop),
        0x0B => r.varint().ok().map(drop),
        0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F | 0x09 | 0x16 => r.binary().ok().map(drop),
        0x26 => {
            r.binary().ok()?;
            r.binary().ok().map(drop)
        }
        _ => None,
    }
}

/// A property that may appear more than once; its [`List`] iterates over the whole property block and
/// picks out the entries with its identifier.
pub(crate) trait RepeatedProperty<'a>: Copy {
    const ID: u32;
    fn read_value(r: &mut Reader<'a>) -> Result<Self, DecodeError>;
    fn value_len(&self) -> Result<usize, EncodeError>;
    fn write_value<S: Sink>(&self, s: &mut S);
}

fn next_repeated<'a, T: RepeatedProperty<'a>>(buf: &mut &'a [u8]) -> Option<T> {
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let pid = r.varint().ok()?;
        if pid == T::ID {
            let v = T::read_value(&mut r).ok()?;
            *buf = r.rest();
            return Some(v);
        }
        skip_value(pid, &mut r)?;
    }
    *buf = r.rest();
    None
}

/// A user property: a name/value pair of UTF-8 strings (§3.1.2.11.8). Order and duplicates are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserProperty<'a> {
    /// The name.
    pub name: &'a str,
    /// The value.
    pub value: &'a str,
}

impl<'a> UserProperty<'a> {
    /// A user property from a name and a value.
    pub const fn new(name: &'a str, value: &'a str) -> Self {
        Self { name, value }
    }
}

impl<'a> RepeatedProperty<'a> for UserProperty<'a> {
    const ID: u32 = id::USER_PROPERTY;
    fn read_value(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            name: r.string()?,
            value: r.string()?,
        })
    }
    fn value_len(&self) -> Result<usize, EncodeError> {
        Ok(field_len(self.name.as_bytes())? + field_len(self.value.as_bytes())?)
    }
    fn write_value<S: Sink>(&self, s: &mut S) {
        s.put_field(self.name.as_bytes());
        s.put_field(self.value.as_bytes());
    }
}

impl<'a> WireItem<'a> for UserProperty<'a> {
    fn read_next(buf: &mut &'a [u8]) -> Option<Self> {
        next_repeated(buf)
    }
}

/// Subscription identifiers in a PUBLISH sent to a client: one per matching subscription that had one.
impl<'a> RepeatedProperty<'a> for u32 {
    const ID: u32 = id::SUBSCRIPTION_IDENTIFIER;
    fn read_value(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        match r.varint()? {
            0 => Err(DecodeError::InvalidPropertyValue(
                id::SUBSCRIPTION_IDENTIFIER,
            )),
            v => Ok(v),
        }
    }
    fn value_len(&self) -> Result<usize, EncodeError> {
        if *self == 0 || *self > MAX_VARINT {
            return Err(EncodeError::InvalidValue);
        }
        Ok(varint_len(*self))
    }
    fn write_value<S: Sink>(&self, s: &mut S) {
        s.put_varint(*self);
    }
}

impl<'a> WireItem<'a> for u32 {
    fn read_next(buf: &mut &'a [u8]) -> Option<Self> {
        next_repeated(buf)
    }
}

/// How a single-valued property is laid out and which values are legal.
pub(crate) trait PropertyCodec<'a> {
    type Value: Copy;
    fn read(r: &mut Reader<'a>, pid: u32) -> Result<Self::Value, DecodeError>;
    fn len(v: &Self::Value) -> Result<usize, EncodeError>;
    fn write<S: Sink>(v: &Self::Value, s: &mut S);
}

macro_rules! fixed_codec {
    ($codec:ident, $ty:ty, $n:expr, $read:ident, $put:ident, |$v:ident| $valid:expr) => {
        pub(crate) struct $codec;
        impl<'a> PropertyCodec<'a> for $codec {
            type Value = $ty;
            fn read(r: &mut Reader<'a>, pid: u32) -> Result<$ty, DecodeError> {
                let $v = r.$read()?;
                if $valid {
                    Ok($v)
                } else {
                    Err(DecodeError::InvalidPropertyValue(pid))
                }
            }
            fn len(v: &$ty) -> Result<usize, EncodeError> {
                let $v = *v;
                if $valid {
                    Ok($n)
                } else {
                    Err(EncodeError::InvalidValue)
                }
            }
            fn write<S: Sink>(v: &$ty, s: &mut S) {
                s.$put(*v);
            }
        }
    };
}

fixed_codec!(Two, u16, 2, u16, put_u16, |_v| true);
fixed_codec!(TwoNonZero, u16, 2, u16, put_u16, |v| v != 0);
fixed_codec!(Four, u32, 4, u32, put_u32, |_v| true);
fixed_codec!(FourNonZero, u32, 4, u32, put_u32, |v| v != 0);

/// A byte that must be 0 or 1, exposed as `bool`.
pub(crate) struct Flag;
impl<'a> PropertyCodec<'a> for Flag {
    type Value = bool;
    fn read(r: &mut Reader<'a>, pid: u32) -> Result<bool, DecodeError> {
        match r.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidPropertyValue(pid)),
        }
    }
    fn len(_: &bool) -> Result<usize, EncodeError> {
        Ok(1)
    }
    fn write<S: Sink>(v: &bool, s: &mut S) {
        s.put_u8(u8::from(*v));
    }
}

/// Maximum QoS: 0 or 1 (a server that supports QoS 2 omits the property).
pub(crate) struct MaxQoS;
impl<'a> PropertyCodec<'a> for MaxQoS {
    type Value = QoS;
    fn read(r: &mut Reader<'a>, pid: u32) -> Result<QoS, DecodeError> {
        match r.u8()? {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            _ => Err(DecodeError::InvalidPropertyValue(pid)),
        }
    }
    fn len(v: &QoS) -> Result<usize, EncodeError> {
        match v {
            QoS::ExactlyOnce => Err(EncodeError::InvalidValue),
            _ => Ok(1),
        }
    }
    fn write<S: Sink>(v: &QoS, s: &mut S) {
        s.put_u8(*v as u8);
    }
}

/// A non-zero variable byte integer (the subscription identifier of SUBSCRIBE).
pub(crate) struct VarNonZero;
impl<'a> PropertyCodec<'a> for VarNonZero {
    type Value = u32;
    fn read(r: &mut Reader<'a>, pid: u32) -> Result<u32, DecodeError> {
        match r.varint()? {
            0 => Err(DecodeError::InvalidPropertyValue(pid)),
            v => Ok(v),
        }
    }
    fn len(v: &u32) -> Result<usize, EncodeError> {
        v.value_len()
    }
    fn write<S: Sink>(v: &u32, s: &mut S) {
        s.put_varint(*v);
    }
}

pub(crate) struct Utf8;
impl<'a> PropertyCodec<'a> for Utf8 {
    type Value = &'a str;
    fn read(r: &mut Reader<'a>, _: u32) -> Result<&'a str, DecodeError> {
        r.string()
    }
    fn len(v: &&'a str) -> Result<usize, EncodeError> {
        field_len(v.as_bytes())
    }
    fn write<S: Sink>(v: &&'a str, s: &mut S) {
        s.put_field(v.as_bytes());
    }
}

pub(crate) struct Binary;
impl<'a> PropertyCodec<'a> for Binary {
    type Value = &'a [u8];
    fn read(r: &mut Reader<'a>, _: u32) -> Result<&'a [u8], DecodeError> {
        r.binary()
    }
    fn len(v: &&'a [u8]) -> Result<usize, EncodeError> {
        field_len(v)
    }
    fn write<S: Sink>(v: &&'a [u8], s: &mut S) {
        s.put_field(v);
    }
}

macro_rules! properties {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $pid:ident via $codec:ident, )*
        }
        $( $(#[$mmeta:meta])* repeated $mfield:ident : $mty:ty; )*
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq)]
        pub struct $name<'a> {
            $( $(#[$fmeta])* pub $field: Option<$ty>, )*
            $( $(#[$mmeta])* pub $mfield: List<'a, $mty>, )*
        }

        impl<'a> $name<'a> {
            /// True when no property is set.
            pub fn is_empty(&self) -> bool {
                true $( && self.$field.is_none() )* $( && self.$mfield.is_empty() )*
            }

            /// Reads a property block: its length, then the properties.
            pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
                let len = r.varint()? as usize;
                Self::from_block(r.take(len)?)
            }

            /// Parses the properties of a block (without its length prefix).
            #[allow(dead_code)]
            pub(crate) fn from_block(block: &'a [u8]) -> Result<Self, DecodeError> {
                let mut br = Reader::new(block);
                #[allow(unused_mut)]
                let mut props = Self::default();
                $( props.$mfield = List::wire(block); )*
                while !br.is_empty() {
                    let pid = br.varint()?;
                    match pid {
                        $(
                            id::$pid => {
                                if props.$field.is_some() {
                                    return Err(DecodeError::DuplicateProperty(pid));
                                }
                                props.$field = Some(<$codec as PropertyCodec<'a>>::read(&mut br, pid)?);
                            }
                        )*
                        $(
                            <$mty as RepeatedProperty<'a>>::ID => {
                                <$mty as RepeatedProperty<'a>>::read_value(&mut br)?;
                            }
                        )*
                        other => {
                            return Err(if is_known(other) {
                                DecodeError::PropertyNotAllowed(other)
                            } else {
                                DecodeError::UnknownProperty(other)
                            });
                        }
                    }
                }
                Ok(props)
            }

            /// True when nothing is set, judged without walking lists (the common case on hot paths).
            #[inline(always)]
            fn trivially_empty(&self) -> bool {
                true $( && self.$field.is_none() )* $( && self.$mfield.trivially_empty() )*
            }

            /// Length of the property block without its length prefix.
            #[inline(always)]
            pub(crate) fn len(&self) -> Result<usize, EncodeError> {
                if self.trivially_empty() {
                    return Ok(0);
                }
                self.len_slow()
            }

            #[inline(never)]
            fn len_slow(&self) -> Result<usize, EncodeError> {
                #[allow(unused_mut)]
                let mut n = 0usize;
                $(
                    if let Some(v) = &self.$field {
                        n += varint_len(id::$pid) + <$codec as PropertyCodec<'a>>::len(v)?;
                    }
                )*
                $(
                    for v in self.$mfield.iter() {
                        n += varint_len(<$mty as RepeatedProperty<'a>>::ID) + v.value_len()?;
                    }
                )*
                if n > MAX_VARINT as usize {
                    return Err(EncodeError::PacketTooLarge);
                }
                Ok(n)
            }

            /// Writes the property block, `len` being the value [`Self::len`] returned.
            #[inline(always)]
            pub(crate) fn write<S: Sink>(&self, len: usize, s: &mut S) {
                if len == 0 {
                    s.put_u8(0);
                    return;
                }
                self.write_slow(len, s);
            }

            #[inline(never)]
            fn write_slow<S: Sink>(&self, len: usize, s: &mut S) {
                s.put_varint(len as u32);
                $(
                    if let Some(v) = &self.$field {
                        s.put_varint(id::$pid);
                        <$codec as PropertyCodec<'a>>::write(v, s);
                    }
                )*
                $(
                    for v in self.$mfield.iter() {
                        s.put_varint(<$mty as RepeatedProperty<'a>>::ID);
                        v.write_value(s);
                    }
                )*
            }
        }
    };
}

/// True for identifiers that MQTT 5 defines.
fn is_known(pid: u32) -> bool {
    matches!(
        pid,
        0x01..=0x03 | 0x08 | 0x09 | 0x0B | 0x11..=0x13 | 0x15..=0x1A | 0x1C | 0x1F | 0x21..=0x2A
    )
}

properties! {
    /// Properties of CONNECT (§3.1.2.11).
    ConnectProperties {
        /// Seconds the session outlives the connection; 0xFFFFFFFF never expires.
        session_expiry_interval: u32 = SESSION_EXPIRY_INTERVAL via Four,
        /// QoS 1/2 publications the client processes concurrently (non-zero).
        receive_maximum: u16 = RECEIVE_MAXIMUM via TwoNonZero,
        /// Largest packet the client accepts (non-zero).
        maximum_packet_size: u32 = MAXIMUM_PACKET_SIZE via FourNonZero,
        /// Highest topic alias the client accepts from the server.
        topic_alias_maximum: u16 = TOPIC_ALIAS_MAXIMUM via Two,
        /// Whether the server may send Response Information in CONNACK.
        request_response_information: bool = REQUEST_RESPONSE_INFORMATION via Flag,
        /// Whether the server may send Reason Strings and User Properties on failures.
        request_problem_information: bool = REQUEST_PROBLEM_INFORMATION via Flag,
        /// Extended authentication method.
        authentication_method: &'a str = AUTHENTICATION_METHOD via Utf8,
        /// Extended authentication data.
        authentication_data: &'a [u8] = AUTHENTICATION_DATA via Binary,
    }
    /// User properties.
    repeated user_properties: UserProperty<'a>;
}

properties! {
    /// Properties of the will message in CONNECT (§3.1.3.2).
    WillProperties {
        /// Seconds to wait after the connection drops before publishing the will.
        will_delay_interval: u32 = WILL_DELAY_INTERVAL via Four,
        /// True when the payload is UTF-8 text.
        payload_format_indicator: bool = PAYLOAD_FORMAT_INDICATOR via Flag,
        /// Lifetime of the will message in seconds.
        message_expiry_interval: u32 = MESSAGE_EXPIRY_INTERVAL via Four,
        /// MIME type of the payload.
        content_type: &'a str = CONTENT_TYPE via Utf8,
        /// Topic for a response.
        response_topic: &'a str = RESPONSE_TOPIC via Utf8,
        /// Correlates a response with its request.
        correlation_data: &'a [u8] = CORRELATION_DATA via Binary,
    }
    /// User properties.
    repeated user_properties: UserProperty<'a>;
}

properties! {
    /// Properties of CONNACK (§3.2.2.3).
    ConnAckProperties {
        /// Session expiry the server uses, when it differs from the client's.
        session_expiry_interval: u32 = SESSION_EXPIRY_INTERVAL via Four,
        /// QoS 1/2 publications the server processes concurrently (non-zero).
        receive_maximum: u16 = RECEIVE_MAXIMUM via TwoNonZero,
        /// Highest QoS the server supports, when below 2.
        maximum_qos: QoS = MAXIMUM_QOS via MaxQoS,
        /// Whether the server supports retained messages.
        retain_available: bool = RETAIN_AVAILABLE via Flag,
        /// Largest packet the server accepts (non-zero).
        maximum_packet_size: u32 = MAXIMUM_PACKET_SIZE via FourNonZero,
        /// Client identifier the server assigned (when the client sent an empty one).
        assigned_client_identifier: &'a str = ASSIGNED_CLIENT_IDENTIFIER via Utf8,
        /// Highest topic alias the server accepts from the client.
        topic_alias_maximum: u16 = TOPIC_ALIAS_MAXIMUM via Two,
        /// Human-readable diagnostic.
        reason_string: &'a str = REASON_STRING via Utf8,
        /// Whether the server supports wildcard subscriptions.
        wildcard_subscription_available: bool = WILDCARD_SUBSCRIPTION_AVAILABLE via Flag,
        /// Whether the server supports subscription identifiers.
        subscription_identifiers_available: bool = SUBSCRIPTION_IDENTIFIER_AVAILABLE via Flag,
        /// Whether the server supports shared subscriptions.
        shared_subscription_available: bool = SHARED_SUBSCRIPTION_AVAILABLE via Flag,
        /// Keep alive the server requires instead of the client's.
        server_keep_alive: u16 = SERVER_KEEP_ALIVE via Two,
        /// Basis for a response topic.
        response_information: &'a str = RESPONSE_INFORMATION via Utf8,
        /// Another server to use.
        server_reference: &'a str = SERVER_REFERENCE via Utf8,
        /// Extended authentication method.
        authentication_method: &'a str = AUTHENTICATION_METHOD via Utf8,
        /// Extended authentication data.
        authentication_data: &'a [u8] = AUTHENTICATION_DATA via Binary,
    }
    /// User properties.
    repeated user_properties: UserProperty<'a>;
}

properties! {
    /// Properties of PUBLISH (§3.3.2.3).
    PublishProperties {
        /// True when the payload is UTF-8 text.
        payload_format_indicator: bool = PAYLOAD_FORMAT_INDICATOR via Flag,
        /// Lifetime of the message in seconds.
        message_expiry_interval: u32 = MESSAGE_EXPIRY_INTERVAL via Four,
        /// Topic alias (non-zero).
        topic_alias: u16 = TOPIC_ALIAS via TwoNonZero,
        /// Topic for a response.
        response_topic: &'a str = RESPONSE_TOPIC via Utf8,
        /// Correlates a response with its request.
        correlation_data: &'a [u8] = CORRELATION_DATA via Binary,
        /// MIME type of the payload.
        content_type: &'a str = CONTENT_TYPE via Utf8,
    }
    /// User properties.
    repeated user_properties: UserProperty<'a>;
    /// Identifiers of the subscriptions that matched (server to client only).
    repeated subscription_identifiers: u32;
}

properties! {
    /// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
    AckProperties {
        /// Human-readable diagnostic.
        reason_string: &'a str = REASON_STRING via Utf8,
    }
    /// User properties.
    repeated user_properties: UserProperty<'a>;
}

properties! {
    /// Properties of SUBSCRIBE (§3.8.2.1).
    SubscribeProperties {
        /// Identifier echoed in PUBLISH packets matched by these subscriptions.
        subscription_identifier: u32 = SUBSCRIPTION_IDENTIFIER via VarNonZero,
    }
    /// User properties.
    repeated user_properties: UserProperty<'a>;
}

properties! {
    /// Properties of UNSUBSCRIBE (§3.10.2.1).
    UnsubscribeProperties {}
    /// User properties.
    repeated user_properties: UserProperty<'a>;
}

properties! {
    /// Properties of DISCONNECT (§3.14.2.2).
    DisconnectProperties {
        /// New session expiry, sent by the client.
        session_expiry_interval: u32 = SESSION_EXPIRY_INTERVAL via Four,
        /// Human-readable diagnostic.
        reason_string: &'a str = REASON_STRING via Utf8,
        /// Another server to use.
        server_reference: &'a str = SERVER_REFERENCE via Utf8,
    }
    /// User properties.
    repeated user_properties: UserProperty<'a>;
}

properties! {
    /// Properties of AUTH (§3.15.2.2).
    AuthProperties {
        /// Extended authentication method.
        authentication_method: &'a str = AUTHENTICATION_METHOD via Utf8,
        /// Extended authentication data.
        authentication_data: &'a [u8] = AUTHENTICATION_DATA via Binary,
        /// Human-readable diagnostic.
        reason_string: &'a str = REASON_STRING via Utf8,
    }
    /// User properties.
    repeated user_properties: UserProperty<'a>;
}
