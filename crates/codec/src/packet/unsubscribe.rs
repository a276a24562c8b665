//! UNSUBSCRIBE (§3.10): the filters to remove, exactly as they were subscribed.

use super::{expect_end, packet_id, Body};
use crate::list::List;
use crate::wire::{field_len, varint_len, Reader, Sink};
use crate::{DecodeError, EncodeError, UnsubscribeProperties, Version};

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Unsubscribe<'a> {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// MQTT 5 properties.
    pub properties: UnsubscribeProperties<'a>,
    /// At least one topic filter.
    pub filters: List<'a, &'a str>,
}

impl<'a> Unsubscribe<'a> {
    pub(crate) fn decode(mut r: Reader<'a>, version: Version) -> Result<Self, DecodeError> {
        let pkid = packet_id(&mut r)?;
        let properties = match version.effective() {
            Version::V5 => UnsubscribeProperties::read(&mut r)?,
            Version::V311 => UnsubscribeProperties::default(),
        };
        let payload = r.rest();
        if r.is_empty() {
            return Err(DecodeError::NoTopicFilter);
        }
        while !r.is_empty() {
            r.string()?;
        }
        expect_end(&r)?;
        Ok(Unsubscribe {
            pkid,
            properties,
            filters: List::wire(payload),
        })
    }
}

impl Body for Unsubscribe<'_> {
    fn body_len(&self, version: Version) -> Result<usize, EncodeError> {
        if self.pkid == 0 {
            return Err(EncodeError::ZeroPacketId);
        }
        let mut n = 2;
        if version.is_v5() {
            let p = self.properties.len()?;
            n += varint_len(p as u32) + p;
        }
        let mut any = false;
        for f in self.filters.iter() {
            n += field_len(f.as_bytes())?;
            any = true;
        }
        if !any {
            return Err(EncodeError::NoTopicFilter);
        }
        Ok(n)
    }

    fn write_body<S: Sink>(&self, version: Version, s: &mut S) {
        s.put_u16(self.pkid);
        if version.is_v5() {
            self.properties.write(self.properties.len().unwrap_or(0), s);
        }
        for f in self.filters.iter() {
            s.put_field(f.as_bytes());
        }
    }
}
