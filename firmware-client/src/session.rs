//! The protocol state machine, with no I/O: packet ids, the outgoing buffer, inbound QoS 2 state,
//! keep-alive timing. The blocking and async clients only move bytes between it and a transport, so
//! both behave identically and the rules are tested once.

use outpost_codec::{
    ConnAck, Connect, ConnectProperties, List, Packet, PacketType, Publish, QoS, ReasonCode,
    Subscribe, SubscribeFilter, Unsubscribe, Version, Will,
};

use crate::config::Config;
use crate::outgoing::{Outgoing, Stage};
use crate::Error;

/// An application message received from the broker. Borrows the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS it arrived with.
    pub qos: QoS,
    /// Retained message (sent because of a new subscription).
    pub retain: bool,
    /// The broker may have sent it before (QoS 1 redelivery).
    pub dup: bool,
}

/// Something that happened on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A message arrived.
    Message(Message<'a>),
    /// A QoS 1 or 2 publish was acknowledged (PUBACK or PUBCOMP); its packet id.
    Published(u16),
    /// A SUBSCRIBE was answered; `granted` is false if any filter was refused.
    Subscribed {
        /// Packet id of the SUBSCRIBE.
        pkid: u16,
        /// Every filter was granted.
        granted: bool,
    },
    /// An UNSUBSCRIBE was answered.
    Unsubscribed(u16),
}

/// The client's session.
pub struct Session<'b, const N: usize> {
    config: Config<'b>,
    out: Outgoing<'b, N>,
    qos2_in: heapless::Vec<u16, N>,
    pending_rel: heapless::Vec<u16, N>,
    next_pkid: u16,
    connected: bool,
    last_sent_ms: u64,
    ping_sent_ms: Option<u64>,
    window: usize,
    rx_capacity: usize,
}

/// Encodes a successful PUBACK, PUBREC, PUBREL or PUBCOMP. Four bytes in both versions: MQTT 5
/// lets the reason code and properties be omitted when the reason is Success and there are no
/// properties (§3.4.2.1), which is all a client ever sends. Written directly, because the codec's
/// general encoder would link the property writers into every firmware for nothing.
fn ack(kind: PacketType, pkid: u16, _version: Version, tx: &mut [u8]) -> Result<usize, Error<()>> {
    let flags = if kind == PacketType::PubRel {
        0b0010
    } else {
        0
    };
    let [hi, lo] = pkid.to_be_bytes();
    let out = tx.get_mut(..4).ok_or(Error::TooLarge)?;
    out.copy_from_slice(&[(kind as u8) << 4 | flags, 2, hi, lo]);
    Ok(4)
}

impl<'b, const N: usize> Session<'b, N> {
    /// A session with its outgoing buffer; `rx_capacity` is the largest packet the client can
    /// receive (advertised to MQTT 5 brokers).
    pub fn new(config: Config<'b>, out_buf: &'b mut [u8], rx_capacity: usize) -> Self {
        Session {
            config,
            out: Outgoing::new(out_buf),
            qos2_in: heapless::Vec::new(),
            pending_rel: heapless::Vec::new(),
            next_pkid: 0,
            connected: false,
            last_sent_ms: 0,
            ping_sent_ms: None,
            window: N,
            rx_capacity,
        }
    }

    /// The protocol version in use: MQTT 3.1.1 unless the `mqtt5` feature is on (without it the
    /// codec links no MQTT 5 code, so asking for MQTT 5 falls back to 3.1.1).
    #[inline(always)]
    pub fn version(&self) -> Version {
        if cfg!(feature = "mqtt5") {
            self.config.version
        } else {
            Version::V311
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config<'b> {
        &self.config
    }

    /// Whether CONNACK was received and the link has not failed since.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Messages waiting for the broker (queued offline or in flight).
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Messages dropped from the offline buffer to make room.
    pub fn dropped(&self) -> u32 {
        self.out.dropped()
    }

    fn pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid != 0 && !self.out.uses(self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    /// Notes that bytes went out (for keep-alive).
    pub fn sent(&mut self, now: u64) {
        self.last_sent_ms = now;
    }

    /// The link failed or was closed.
    pub fn link_down(&mut self) {
        self.connected = false;
        self.ping_sent_ms = None;
    }

    /// Encodes CONNECT.
    pub fn encode_connect(&self, tx: &mut [u8]) -> Result<usize, Error<()>> {
        let c = &self.config;
        let v5 = self.version().is_v5();
        let will = c.will.map(|w| Will {
            topic: w.topic,
            payload: w.payload,
            qos: w.qos,
            retain: w.retain,
            properties: Default::default(),
        });
        let properties = if v5 {
            ConnectProperties {
                session_expiry_interval: (!c.clean_session).then_some(c.session_expiry),
                receive_maximum: u16::try_from(N).ok().filter(|n| *n > 0),
                maximum_packet_size: u32::try_from(self.rx_capacity).ok(),
                ..Default::default()
            }
        } else {
            ConnectProperties::default()
        };
        Ok(Connect {
            protocol: self.version(),
            clean_start: c.clean_session,
            keep_alive: c.keep_alive,
            properties,
            client_id: c.client_id,
            will,
            username: c.username,
            password: c.password,
        }
        .encode(tx)?)
    }

    /// Applies CONNACK: on success the session is connected and everything unacknowledged is
    /// queued again (with DUP). Returns whether the broker had a session.
    pub fn on_connack(&mut self, ack: &ConnAck<'_>, now: u64) -> Result<bool, ReasonCode> {
        if ack.code.is_error() {
            return Err(ack.code);
        }
        self.connected = true;
        self.last_sent_ms = now;
        self.ping_sent_ms = None;
        self.window = ack
            .properties
            .receive_maximum
            .map_or(N, |m| usize::from(m).min(N));
        if !ack.session_present {
            // The broker forgot our QoS 2 exchanges; messages still go out again (at least once).
            self.qos2_in.clear();
        }
        self.pending_rel = self.out.requeue();
        if !ack.session_present {
            // No PUBREL without the broker's state: treat those messages as delivered.
            for pkid in core::mem::take(&mut self.pending_rel) {
                self.out.complete(pkid);
            }
        }
        Ok(ack.session_present)
    }

    /// Stores a QoS 1/2 message for sending (now, or after the next connect). Returns its packet id.
    pub fn enqueue(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<u16, Error<()>> {
        let pkid = self.pkid();
        let p = Publish {
            dup: false,
            qos,
            retain,
            topic,
            pkid,
            properties: Default::default(),
            payload,
        };
        let version = self.version();
        let len = p.encoded_len(version)?;
        let mut result = Ok(0);
        let stored = self
            .out
            .push(pkid, qos as u8, len, |slot| match p.encode(version, slot) {
                Ok(n) => n,
                Err(e) => {
                    result = Err(e);
                    0
                }
            });
        result?;
        if !stored {
            return Err(if len > self.rx_capacity.max(len) {
                Error::TooLarge
            } else {
                Error::QueueFull
            });
        }
        Ok(pkid)
    }

    /// Encodes a QoS 0 PUBLISH.
    pub fn encode_qos0(
        &self,
        topic: &str,
        payload: &[u8],
        retain: bool,
        tx: &mut [u8],
    ) -> Result<usize, Error<()>> {
        let mut p = Publish::new(topic, payload);
        p.retain = retain;
        Ok(p.encode(self.version(), tx)?)
    }

    /// Encodes SUBSCRIBE; returns (packet id, length).
    pub fn encode_subscribe(
        &mut self,
        filters: &[SubscribeFilter<'_>],
        tx: &mut [u8],
    ) -> Result<(u16, usize), Error<()>> {
        let pkid = self.pkid();
        let n = Subscribe {
            pkid,
            properties: Default::default(),
            filters: List::new(filters),
        }
        .encode(self.version(), tx)?;
        Ok((pkid, n))
    }

    /// Encodes UNSUBSCRIBE; returns (packet id, length).
    pub fn encode_unsubscribe(
        &mut self,
        filters: &[&str],
        tx: &mut [u8],
    ) -> Result<(u16, usize), Error<()>> {
        let pkid = self.pkid();
        let n = Unsubscribe {
            pkid,
            properties: Default::default(),
            filters: List::new(filters),
        }
        .encode(self.version(), tx)?;
        Ok((pkid, n))
    }

    /// The next stored PUBLISH to write, marking it sent; the caller writes [`Session::stored`].
    pub fn next_publish(&mut self) -> Option<crate::outgoing::Entry> {
        if !self.connected {
            return None;
        }
        let e = self.out.next_queued(self.window)?;
        self.out.set_stage(e.pkid, Stage::Sent);
        Some(e)
    }

    /// The bytes of a stored PUBLISH.
    pub fn stored(&self, e: &crate::outgoing::Entry) -> &[u8] {
        self.out.bytes(e)
    }

    /// A PUBREL to resend after a reconnect, encoded into `tx`.
    pub fn next_pubrel(&mut self, tx: &mut [u8]) -> Option<usize> {
        let pkid = self.pending_rel.pop()?;
        ack(PacketType::PubRel, pkid, self.version(), tx).ok()
    }

    /// PINGREQ into `tx` if nothing was sent for a keep-alive period.
    pub fn ping(&mut self, now: u64, tx: &mut [u8]) -> Option<usize> {
        let ka = u64::from(self.config.keep_alive) * 1000;
        if !self.connected || ka == 0 || self.ping_sent_ms.is_some() {
            return None;
        }
        if now.saturating_sub(self.last_sent_ms) < ka {
            return None;
        }
        let ping = tx.get_mut(..2)?;
        ping.copy_from_slice(&[(PacketType::PingReq as u8) << 4, 0]);
        self.ping_sent_ms = Some(now);
        Some(2)
    }

    /// False once a PINGREQ went unanswered for a keep-alive period: the link is dead.
    pub fn alive(&self, now: u64) -> bool {
        let ka = u64::from(self.config.keep_alive) * 1000;
        self.ping_sent_ms
            .is_none_or(|t| now.saturating_sub(t) < ka.max(1000))
    }

    /// Handles one packet from the broker; a reply (acknowledgement) is encoded into `tx` and its
    /// length returned (0: nothing to send).
    pub fn handle(
        &mut self,
        packet: Packet<'_>,
        tx: &mut [u8],
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<usize, Error<()>> {
        let version = self.version();
        match packet {
            Packet::Publish(p) => {
                let msg = Message {
                    topic: p.topic,
                    payload: p.payload,
                    qos: p.qos,
                    retain: p.retain,
                    dup: p.dup,
                };
                match p.qos {
                    QoS::AtMostOnce => {
                        on_event(Event::Message(msg));
                        Ok(0)
                    }
                    QoS::AtLeastOnce => {
                        on_event(Event::Message(msg));
                        ack(PacketType::PubAck, p.pkid, version, tx)
                    }
                    QoS::ExactlyOnce => {
                        if !self.qos2_in.contains(&p.pkid) {
                            if self.qos2_in.is_full() {
                                // More than Receive Maximum unreleased: the broker broke the limit.
                                return Err(Error::Unexpected);
                            }
                            let _ = self.qos2_in.push(p.pkid);
                            on_event(Event::Message(msg));
                        }
                        ack(PacketType::PubRec, p.pkid, version, tx)
                    }
                }
            }
            Packet::PubRel(a) => {
                // Order does not matter here; swap_remove avoids linking a memmove.
                if let Some(i) = self.qos2_in.iter().position(|&id| id == a.pkid) {
                    self.qos2_in.swap_remove(i);
                }
                ack(PacketType::PubComp, a.pkid, version, tx)
            }
            Packet::PubAck(a) => {
                if self.out.complete(a.pkid).is_some() {
                    on_event(Event::Published(a.pkid));
                }
                Ok(0)
            }
            Packet::PubRec(a) => {
                if a.code.is_error() {
                    if self.out.complete(a.pkid).is_some() {
                        on_event(Event::Published(a.pkid));
                    }
                    return Ok(0);
                }
                self.out.set_stage(a.pkid, Stage::Released);
                ack(PacketType::PubRel, a.pkid, version, tx)
            }
            Packet::PubComp(a) => {
                if self.out.complete(a.pkid).is_some() {
                    on_event(Event::Published(a.pkid));
                }
                Ok(0)
            }
            Packet::SubAck(s) => {
                let granted = s.codes.iter().all(|c| !c.is_error());
                on_event(Event::Subscribed {
                    pkid: s.pkid,
                    granted,
                });
                Ok(0)
            }
            Packet::UnsubAck(u) => {
                on_event(Event::Unsubscribed(u.pkid));
                Ok(0)
            }
            Packet::PingResp => {
                self.ping_sent_ms = None;
                Ok(0)
            }
            Packet::Disconnect(_) => Err(Error::Closed),
            _ => Err(Error::Unexpected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_acks_match_the_codec() {
        for version in [Version::V311, Version::V5] {
            for kind in [
                PacketType::PubAck,
                PacketType::PubRec,
                PacketType::PubRel,
                PacketType::PubComp,
            ] {
                let mut a = [0u8; 8];
                let mut b = [0u8; 8];
                let n = ack(kind, 0x1234, version, &mut a).unwrap();
                let m = outpost_codec::Ack::new(0x1234)
                    .encode(kind, version, &mut b)
                    .unwrap();
                assert_eq!(&a[..n], &b[..m], "{kind:?} {version:?}");
            }
        }
    }
}
