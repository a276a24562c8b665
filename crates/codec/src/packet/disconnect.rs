//! DISCONNECT (§3.14): the orderly end of a connection. In MQTT 5 either side may send it, with a
//! reason code; "disconnect with will message" (0x04) asks the server to still publish the will.

use super::{expect_end, Body};
use crate::reason::CodeSet;
use crate::wire::{varint_len, Reader, Sink};
use crate::{DecodeError, DisconnectProperties, EncodeError, ReasonCode, Version};

/// A DISCONNECT packet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Disconnect<'a> {
    /// Why (MQTT 5; Normal disconnection in 3.1.1).
    pub code: ReasonCode,
    /// MQTT 5 properties.
    pub properties: DisconnectProperties<'a>,
}

impl<'a> Disconnect<'a> {
    /// A disconnect with a reason code and no properties.
    pub fn new(code: ReasonCode) -> Self {
        Disconnect {
            code,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader<'a>, version: Version) -> Result<Self, DecodeError> {
        let mut d = Disconnect::default();
        if version.is_v5() {
            if !r.is_empty() {
                d.code = CodeSet::Disconnect.decode(r.u8()?)?;
            }
            if !r.is_empty() {
                d.properties = DisconnectProperties::read(&mut r)?;
            }
        }
        expect_end(&r)?;
        Ok(d)
    }
}

impl Body for Disconnect<'_> {
    fn body_len(&self, version: Version) -> Result<usize, EncodeError> {
        if version == Version::V311 {
            return Ok(0);
        }
        if !CodeSet::Disconnect.contains(self.code) {
            return Err(EncodeError::InvalidReasonCode(self.code as u8));
        }
        let p = self.properties.len()?;
        Ok(match (self.code, p) {
            (ReasonCode::Success, 0) => 0,
            (_, 0) => 1,
            _ => 1 + varint_len(p as u32) + p,
        })
    }

    fn write_body<S: Sink>(&self, version: Version, s: &mut S) {
        if version == Version::V311 {
            return;
        }
        let p = self.properties.len().unwrap_or(0);
        if self.code != ReasonCode::Success || p != 0 {
            s.put_u8(self.code as u8);
        }
        if p != 0 {
            self.properties.write(p, s);
        }
    }
}
