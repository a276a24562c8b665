//! SUBSCRIBE (§3.8): topic filters with their subscription options. Filter *syntax* is not judged
//! here: MQTT 5 answers a bad filter per entry in SUBACK (0x8F), so the engine checks each filter
//! with [`crate::topic::TopicFilter::parse`].

use super::{expect_end, packet_id, Body};
use crate::list::{List, WireItem};
use crate::topic::SHARE_PREFIX;
use crate::wire::{field_len, varint_len, Reader, Sink};
use crate::{DecodeError, EncodeError, QoS, SubscribeProperties, Version};

/// When retained messages are sent for a new subscription (MQTT 5 §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not exist before.
    SendIfNew = 1,
    /// Do not send retained messages.
    DoNotSend = 2,
}

/// Options of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscribeOptions {
    /// Maximum QoS the server may send on this subscription.
    pub qos: QoS,
    /// MQTT 5: do not send the client its own publications.
    pub no_local: bool,
    /// MQTT 5: keep the RETAIN flag of forwarded messages as published.
    pub retain_as_published: bool,
    /// MQTT 5: when to send retained messages.
    pub retain_handling: RetainHandling,
}

impl SubscribeOptions {
    /// Options with a maximum QoS and MQTT 5 defaults.
    pub fn qos(qos: QoS) -> Self {
        SubscribeOptions {
            qos,
            ..SubscribeOptions::default()
        }
    }

    fn parse(b: u8, version: Version) -> Result<Self, DecodeError> {
        let reserved = match version.effective() {
            Version::V311 => 0b1111_1100,
            Version::V5 => 0b1100_0000,
        };
        let qos = QoS::from_u8(b & 0b11);
        let retain_handling = match (b >> 4) & 0b11 {
            0 => Some(RetainHandling::SendAtSubscribe),
            1 => Some(RetainHandling::SendIfNew),
            2 => Some(RetainHandling::DoNotSend),
            _ => None,
        };
        match (qos, retain_handling) {
            (Some(qos), Some(retain_handling)) if b & reserved == 0 => Ok(SubscribeOptions {
                qos,
                no_local: b & 0b0100 != 0,
                retain_as_published: b & 0b1000 != 0,
                retain_handling,
            }),
            _ => Err(DecodeError::InvalidSubscriptionOptions(b)),
        }
    }

    fn to_byte(self, version: Version) -> u8 {
        match version.effective() {
            Version::V311 => self.qos as u8,
            Version::V5 => {
                self.qos as u8
                    | u8::from(self.no_local) << 2
                    | u8::from(self.retain_as_published) << 3
                    | (self.retain_handling as u8) << 4
            }
        }
    }
}

/// One entry of a SUBSCRIBE: a topic filter and its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscribeFilter<'a> {
    /// The topic filter, possibly `$share/<group>/<filter>`.
    pub filter: &'a str,
    /// Its options.
    pub options: SubscribeOptions,
}

impl<'a> SubscribeFilter<'a> {
    /// A filter with a maximum QoS and default options.
    pub fn new(filter: &'a str, qos: QoS) -> Self {
        SubscribeFilter {
            filter,
            options: SubscribeOptions::qos(qos),
        }
    }
}

impl<'a> WireItem<'a> for SubscribeFilter<'a> {
    fn read_next(buf: &mut &'a [u8]) -> Option<Self> {
        let mut r = Reader::new(buf);
        let filter = r.string().ok()?;
        // Options were validated for the connection's version; MQTT 5 parsing reads both.
        let options = SubscribeOptions::parse(r.u8().ok()?, Version::V5).ok()?;
        *buf = r.rest();
        Some(SubscribeFilter { filter, options })
    }
}

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Subscribe<'a> {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// MQTT 5 properties.
    pub properties: SubscribeProperties<'a>,
    /// At least one filter.
    pub filters: List<'a, SubscribeFilter<'a>>,
}

impl<'a> Subscribe<'a> {
    pub(crate) fn decode(mut r: Reader<'a>, version: Version) -> Result<Self, DecodeError> {
        let pkid = packet_id(&mut r)?;
        let properties = match version.effective() {
            Version::V5 => SubscribeProperties::read(&mut r)?,
            Version::V311 => SubscribeProperties::default(),
        };
        let payload = r.rest();
        if r.is_empty() {
            return Err(DecodeError::NoTopicFilter);
        }
        while !r.is_empty() {
            let filter = r.string()?;
            let b = r.u8()?;
            let options = SubscribeOptions::parse(b, version)?;
            // §3.8.3.1: No Local on a shared subscription is a protocol error.
            if options.no_local && filter.starts_with(SHARE_PREFIX) {
                return Err(DecodeError::InvalidSubscriptionOptions(b));
            }
        }
        expect_end(&r)?;
        Ok(Subscribe {
            pkid,
            properties,
            filters: List::wire(payload),
        })
    }
}

impl Body for Subscribe<'_> {
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
            n += field_len(f.filter.as_bytes())? + 1;
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
            s.put_field(f.filter.as_bytes());
            s.put_u8(f.options.to_byte(version));
        }
    }
}
