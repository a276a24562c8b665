//! PUBACK, PUBREC, PUBREL and PUBCOMP (§3.4–3.7): the QoS 1 and QoS 2 handshakes. All four share one
//! layout (packet identifier, then in MQTT 5 an optional reason code and properties), so they share one
//! struct; [`crate::Packet`] says which of the four it is.

use super::{expect_end, packet_id, Body};
use crate::reason::CodeSet;
use crate::wire::{varint_len, Reader, Sink};
use crate::{AckProperties, DecodeError, EncodeError, ReasonCode, Version};

/// The body of PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Ack<'a> {
    /// Identifier of the PUBLISH being acknowledged.
    pub pkid: u16,
    /// Outcome (MQTT 5; always Success in 3.1.1).
    pub code: ReasonCode,
    /// MQTT 5 properties.
    pub properties: AckProperties<'a>,
}

impl<'a> Ack<'a> {
    /// A successful acknowledgement without properties.
    pub fn new(pkid: u16) -> Self {
        Ack {
            pkid,
            ..Ack::default()
        }
    }

    /// `rel` selects the PUBREL/PUBCOMP reason codes instead of the PUBACK/PUBREC ones.
    pub(crate) fn decode(
        mut r: Reader<'a>,
        version: Version,
        rel: bool,
    ) -> Result<Self, DecodeError> {
        let pkid = packet_id(&mut r)?;
        let mut ack = Ack::new(pkid);
        if version.is_v5() && !r.is_empty() {
            ack.code = code_set(rel).decode(r.u8()?)?;
            if !r.is_empty() {
                ack.properties = AckProperties::read(&mut r)?;
            }
        }
        expect_end(&r)?;
        Ok(ack)
    }

    /// Validates the packet id and the reason code for the packet kind.
    pub(crate) fn checked(&self, rel: bool) -> Result<&Self, EncodeError> {
        if self.pkid == 0 {
            return Err(EncodeError::ZeroPacketId);
        }
        if !code_set(rel).contains(self.code) {
            return Err(EncodeError::InvalidReasonCode(self.code as u8));
        }
        Ok(self)
    }
}

fn code_set(rel: bool) -> CodeSet {
    if rel {
        CodeSet::PubRelComp
    } else {
        CodeSet::PubAckRec
    }
}

impl Body for Ack<'_> {
    fn body_len(&self, version: Version) -> Result<usize, EncodeError> {
        if version == Version::V311 {
            return Ok(2);
        }
        let p = self.properties.len()?;
        Ok(match (self.code, p) {
            // §3.4.2.1: reason code and properties may be omitted when Success and empty.
            (ReasonCode::Success, 0) => 2,
            (_, 0) => 3,
            _ => 3 + varint_len(p as u32) + p,
        })
    }

    fn write_body<S: Sink>(&self, version: Version, s: &mut S) {
        s.put_u16(self.pkid);
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
