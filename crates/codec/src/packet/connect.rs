//! CONNECT (§3.1): the first packet of every connection. It fixes the protocol version for the rest of
//! the connection, so it is the one packet decoded without knowing the version in advance.

use super::{expect_end, Body};
use crate::topic::is_valid_topic_name;
use crate::wire::{field_len, varint_len, Reader, Sink};
use crate::{ConnectProperties, DecodeError, EncodeError, QoS, Version, WillProperties};

const PROTOCOL_NAME: &[u8] = b"MQTT";

const USERNAME: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL_RETAIN: u8 = 0x20;
const WILL_QOS_SHIFT: u8 = 3;
const WILL: u8 = 0x04;
const CLEAN_START: u8 = 0x02;
const RESERVED: u8 = 0x01;

/// A CONNECT packet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Connect<'a> {
    /// Protocol version the client speaks.
    pub protocol: Version,
    /// Clean Start (5.0) / Clean Session (3.1.1).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// MQTT 5 properties.
    pub properties: ConnectProperties<'a>,
    /// Client identifier; may be empty (the server then assigns one).
    pub client_id: &'a str,
    /// The last will.
    pub will: Option<Will<'a>>,
    /// User name.
    pub username: Option<&'a str>,
    /// Password (binary data).
    pub password: Option<&'a [u8]>,
}

/// The will message of a CONNECT, published by the server when the connection ends abnormally.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Will<'a> {
    /// Topic name of the will.
    pub topic: &'a str,
    /// Payload of the will.
    pub payload: &'a [u8],
    /// QoS of the will.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
    /// MQTT 5 will properties.
    pub properties: WillProperties<'a>,
}

impl<'a> Connect<'a> {
    pub(crate) fn decode(mut r: Reader<'a>) -> Result<Self, DecodeError> {
        if r.binary()? != PROTOCOL_NAME {
            return Err(DecodeError::InvalidProtocolName);
        }
        let level = r.u8()?;
        let protocol =
            Version::from_level(level).ok_or(DecodeError::UnsupportedProtocolLevel(level))?;
        let flags = r.u8()?;
        let will_flag = flags & WILL != 0;
        let will_qos = QoS::from_u8((flags >> WILL_QOS_SHIFT) & 0b11);
        let bad_flags = flags & RESERVED != 0
            || will_qos.is_none()
            || (!will_flag && (flags & (WILL_RETAIN | 0b11 << WILL_QOS_SHIFT)) != 0)
            || (protocol == Version::V311 && flags & PASSWORD != 0 && flags & USERNAME == 0);
        if bad_flags {
            return Err(DecodeError::InvalidConnectFlags(flags));
        }
        let keep_alive = r.u16()?;
        let properties = match protocol {
            Version::V5 => ConnectProperties::read(&mut r)?,
            Version::V311 => ConnectProperties::default(),
        };
        let client_id = r.string()?;
        let will = if will_flag {
            let properties = match protocol {
                Version::V5 => WillProperties::read(&mut r)?,
                Version::V311 => WillProperties::default(),
            };
            let topic = r.string()?;
            if !is_valid_topic_name(topic) {
                return Err(DecodeError::InvalidTopicName);
            }
            Some(Will {
                topic,
                payload: r.binary()?,
                qos: will_qos.unwrap_or_default(),
                retain: flags & WILL_RETAIN != 0,
                properties,
            })
        } else {
            None
        };
        let username = if flags & USERNAME != 0 {
            Some(r.string()?)
        } else {
            None
        };
        let password = if flags & PASSWORD != 0 {
            Some(r.binary()?)
        } else {
            None
        };
        expect_end(&r)?;
        Ok(Connect {
            protocol,
            clean_start: flags & CLEAN_START != 0,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    fn flags(&self) -> u8 {
        let mut f = 0;
        if self.clean_start {
            f |= CLEAN_START;
        }
        if let Some(w) = &self.will {
            f |= WILL | (w.qos as u8) << WILL_QOS_SHIFT;
            if w.retain {
                f |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            f |= USERNAME;
        }
        if self.password.is_some() {
            f |= PASSWORD;
        }
        f
    }
}

impl Body for Connect<'_> {
    fn body_len(&self, _: Version) -> Result<usize, EncodeError> {
        let v5 = self.protocol.is_v5();
        if !v5 && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::InvalidValue);
        }
        // protocol name, level, flags, keep alive
        let mut n = 2 + PROTOCOL_NAME.len() + 1 + 1 + 2;
        if v5 {
            let p = self.properties.len()?;
            n += varint_len(p as u32) + p;
        }
        n += field_len(self.client_id.as_bytes())?;
        if let Some(w) = &self.will {
            // Like PUBLISH, the encoder checks structure, not topic syntax.
            if w.topic.is_empty() {
                return Err(EncodeError::InvalidTopicName);
            }
            if v5 {
                let p = w.properties.len()?;
                n += varint_len(p as u32) + p;
            }
            n += field_len(w.topic.as_bytes())? + field_len(w.payload)?;
        }
        if let Some(u) = self.username {
            n += field_len(u.as_bytes())?;
        }
        if let Some(p) = self.password {
            n += field_len(p)?;
        }
        Ok(n)
    }

    fn write_body<S: Sink>(&self, _: Version, s: &mut S) {
        let v5 = self.protocol.is_v5();
        s.put_field(PROTOCOL_NAME);
        s.put_u8(self.protocol.level());
        s.put_u8(self.flags());
        s.put_u16(self.keep_alive);
        if v5 {
            self.properties.write(self.properties.len().unwrap_or(0), s);
        }
        s.put_field(self.client_id.as_bytes());
        if let Some(w) = &self.will {
            if v5 {
                w.properties.write(w.properties.len().unwrap_or(0), s);
            }
            s.put_field(w.topic.as_bytes());
            s.put_field(w.payload);
        }
        if let Some(u) = self.username {
            s.put_field(u.as_bytes());
        }
        if let Some(p) = self.password {
            s.put_field(p);
        }
    }
}
