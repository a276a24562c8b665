//! UNSUBACK (§3.11): in MQTT 5 one reason code per filter; in 3.1.1 just the packet identifier.

use super::{expect_end, packet_id, Body};
use crate::list::List;
use crate::reason::CodeSet;
use crate::wire::{varint_len, Reader, Sink};
use crate::{AckProperties, DecodeError, EncodeError, ReasonCode, Version};

/// An UNSUBACK packet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UnsubAck<'a> {
    /// Identifier of the UNSUBSCRIBE.
    pub pkid: u16,
    /// MQTT 5 properties.
    pub properties: AckProperties<'a>,
    /// MQTT 5: outcome per filter (empty in 3.1.1).
    pub codes: List<'a, ReasonCode>,
}

impl<'a> UnsubAck<'a> {
    pub(crate) fn decode(mut r: Reader<'a>, version: Version) -> Result<Self, DecodeError> {
        let pkid = packet_id(&mut r)?;
        let mut ack = UnsubAck {
            pkid,
            ..UnsubAck::default()
        };
        if version.is_v5() {
            ack.properties = AckProperties::read(&mut r)?;
            let codes = r.rest();
            for &b in codes {
                CodeSet::UnsubAck.decode(b)?;
            }
            ack.codes = List::wire(codes);
        } else {
            expect_end(&r)?;
        }
        Ok(ack)
    }
}

impl Body for UnsubAck<'_> {
    fn body_len(&self, version: Version) -> Result<usize, EncodeError> {
        if self.pkid == 0 {
            return Err(EncodeError::ZeroPacketId);
        }
        if version == Version::V311 {
            return Ok(2);
        }
        let p = self.properties.len()?;
        let mut n = 2 + varint_len(p as u32) + p;
        for c in self.codes.iter() {
            if !CodeSet::UnsubAck.contains(c) {
                return Err(EncodeError::InvalidReasonCode(c as u8));
            }
            n += 1;
        }
        Ok(n)
    }

    fn write_body<S: Sink>(&self, version: Version, s: &mut S) {
        s.put_u16(self.pkid);
        if version.is_v5() {
            self.properties.write(self.properties.len().unwrap_or(0), s);
            for c in self.codes.iter() {
                s.put_u8(c as u8);
            }
        }
    }
}
