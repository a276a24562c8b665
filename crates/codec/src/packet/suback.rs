//! SUBACK (§3.9): one reason code per filter of the SUBSCRIBE, in order.

use super::{packet_id, Body};
use crate::list::List;
use crate::reason::{suback_v311_allowed, CodeSet};
use crate::wire::{varint_len, Reader, Sink};
use crate::{AckProperties, DecodeError, EncodeError, ReasonCode, Version};

/// A SUBACK packet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SubAck<'a> {
    /// Identifier of the SUBSCRIBE.
    pub pkid: u16,
    /// MQTT 5 properties.
    pub properties: AckProperties<'a>,
    /// Granted QoS or failure, per filter. MQTT 3.1.1 knows only granted QoS 0–2 and 0x80.
    pub codes: List<'a, ReasonCode>,
}

impl<'a> SubAck<'a> {
    pub(crate) fn decode(mut r: Reader<'a>, version: Version) -> Result<Self, DecodeError> {
        let pkid = packet_id(&mut r)?;
        let properties = match version.effective() {
            Version::V5 => AckProperties::read(&mut r)?,
            Version::V311 => AckProperties::default(),
        };
        let codes = r.rest();
        for &b in codes {
            match version.effective() {
                Version::V5 => {
                    CodeSet::SubAck.decode(b)?;
                }
                Version::V311 => {
                    ReasonCode::from_u8(b)
                        .filter(|c| suback_v311_allowed(*c))
                        .ok_or(DecodeError::InvalidReasonCode(b))?;
                }
            }
        }
        Ok(SubAck {
            pkid,
            properties,
            codes: List::wire(codes),
        })
    }
}

impl Body for SubAck<'_> {
    fn body_len(&self, version: Version) -> Result<usize, EncodeError> {
        if self.pkid == 0 {
            return Err(EncodeError::ZeroPacketId);
        }
        let mut n = 2;
        for c in self.codes.iter() {
            let ok = match version.effective() {
                Version::V311 => suback_v311_allowed(c),
                Version::V5 => CodeSet::SubAck.contains(c),
            };
            if !ok {
                return Err(EncodeError::InvalidReasonCode(c as u8));
            }
            n += 1;
        }
        if version.is_v5() {
            let p = self.properties.len()?;
            n += varint_len(p as u32) + p;
        }
        Ok(n)
    }

    fn write_body<S: Sink>(&self, version: Version, s: &mut S) {
        s.put_u16(self.pkid);
        if version.is_v5() {
            self.properties.write(self.properties.len().unwrap_or(0), s);
        }
        for c in self.codes.iter() {
            s.put_u8(c as u8);
        }
    }
}
