//! CONNACK (§3.2): the server's answer to CONNECT. MQTT 3.1.1 return codes are mapped to the MQTT 5
//! reason codes with the same meaning, so the broker uses one vocabulary for both versions.

use super::{expect_end, Body};
use crate::reason::{connack_from_v311, connack_v311_code, CodeSet};
use crate::wire::{varint_len, Reader, Sink};
use crate::{ConnAckProperties, DecodeError, EncodeError, ReasonCode, Version};

/// A CONNACK packet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ConnAck<'a> {
    /// The server resumed a stored session.
    pub session_present: bool,
    /// Outcome; MQTT 3.1.1 can carry only Success, UnsupportedProtocolVersion,
    /// ClientIdentifierNotValid, ServerUnavailable, BadUserNameOrPassword and NotAuthorized.
    pub code: ReasonCode,
    /// MQTT 5 properties.
    pub properties: ConnAckProperties<'a>,
}

impl<'a> ConnAck<'a> {
    pub(crate) fn decode(mut r: Reader<'a>, version: Version) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        if flags & !1 != 0 {
            return Err(DecodeError::InvalidConnAckFlags(flags));
        }
        let b = r.u8()?;
        let (code, properties) = match version.effective() {
            Version::V311 => (
                connack_from_v311(b).ok_or(DecodeError::InvalidReasonCode(b))?,
                ConnAckProperties::default(),
            ),
            Version::V5 => {
                let code = CodeSet::ConnAck.decode(b)?;
                let props = if r.is_empty() {
                    ConnAckProperties::default()
                } else {
                    ConnAckProperties::read(&mut r)?
                };
                (code, props)
            }
        };
        expect_end(&r)?;
        Ok(ConnAck {
            session_present: flags & 1 != 0,
            code,
            properties,
        })
    }

    fn code_byte(&self, version: Version) -> Result<u8, EncodeError> {
        let ok = match version.effective() {
            Version::V311 => connack_v311_code(self.code),
            Version::V5 => CodeSet::ConnAck
                .contains(self.code)
                .then_some(self.code as u8),
        };
        ok.ok_or(EncodeError::InvalidReasonCode(self.code as u8))
    }
}

impl Body for ConnAck<'_> {
    fn body_len(&self, version: Version) -> Result<usize, EncodeError> {
        self.code_byte(version)?;
        Ok(match version.effective() {
            Version::V311 => 2,
            Version::V5 => {
                let p = self.properties.len()?;
                2 + varint_len(p as u32) + p
            }
        })
    }

    fn write_body<S: Sink>(&self, version: Version, s: &mut S) {
        s.put_u8(u8::from(self.session_present));
        s.put_u8(self.code_byte(version).unwrap_or(0x80));
        if version.is_v5() {
            self.properties.write(self.properties.len().unwrap_or(0), s);
        }
    }
}
