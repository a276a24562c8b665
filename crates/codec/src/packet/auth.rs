//! AUTH (MQTT 5 §3.15): challenge/response steps of extended authentication (e.g. SCRAM), and
//! re-authentication on a live connection. MQTT 3.1.1 has no AUTH; type 15 is refused there.

use super::{expect_end, Body};
use crate::reason::CodeSet;
use crate::wire::{varint_len, Reader, Sink};
use crate::{AuthProperties, DecodeError, EncodeError, ReasonCode, Version};

/// An AUTH packet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Auth<'a> {
    /// Success, Continue authentication or Re-authenticate.
    pub code: ReasonCode,
    /// Method, data and diagnostics.
    pub properties: AuthProperties<'a>,
}

impl<'a> Auth<'a> {
    pub(crate) fn decode(mut r: Reader<'a>) -> Result<Self, DecodeError> {
        let mut a = Auth::default();
        if !r.is_empty() {
            a.code = CodeSet::Auth.decode(r.u8()?)?;
            // Like DISCONNECT, a missing property length means no properties.
            if !r.is_empty() {
                a.properties = AuthProperties::read(&mut r)?;
            }
        }
        expect_end(&r)?;
        Ok(a)
    }
}

impl Body for Auth<'_> {
    fn body_len(&self, _: Version) -> Result<usize, EncodeError> {
        if !CodeSet::Auth.contains(self.code) {
            return Err(EncodeError::InvalidReasonCode(self.code as u8));
        }
        let p = self.properties.len()?;
        // §3.15.2.1: both may be omitted only together, for Success without properties.
        Ok(match (self.code, p) {
            (ReasonCode::Success, 0) => 0,
            _ => 1 + varint_len(p as u32) + p,
        })
    }

    fn write_body<S: Sink>(&self, _: Version, s: &mut S) {
        let p = self.properties.len().unwrap_or(0);
        if self.code != ReasonCode::Success || p != 0 {
            s.put_u8(self.code as u8);
            self.properties.write(p, s);
        }
    }
}
