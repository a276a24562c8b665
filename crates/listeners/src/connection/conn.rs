//! The connection's state, and what it sends back: acknowledgements (which wait for the store
//! when their message had to be stored), control packets, and the parking of a held-back
//! publisher's packets.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use outpost_auth::Security;
use outpost_codec::{
    Ack, Disconnect as DisconnectPacket, List, Packet, Publish, QoS, ReasonCode, SubAck, UnsubAck,
    Version,
};
use outpost_mqtt::{Durable, PersistError};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::buffers::release_if_empty;

pub(super) struct Conn<W> {
    pub(super) wr: W,
    /// Acknowledgements and control packets, written first.
    pub(super) out: BytesMut,
    /// PUBLISH/PUBREL packets to the client, written after the acknowledgements of the same round (so a
    /// SUBACK precedes the retained messages of its subscription).
    pub(super) deliveries: BytesMut,
    /// What lasts for the connection's life, parked or not.
    pub(super) kept: Kept,
    /// Acknowledgements waiting for their message to be durable, in the order the PUBLISH packets
    /// arrived (§4.6: acknowledgements go out in that order).
    pub(super) pending_acks: Vec<(Durable, Reply)>,
    /// Incoming QoS 2 exchanges ended by a failed PUBREC: the engine forgets their identifiers.
    pub(super) released: Vec<u16>,
    /// Flow control: connected subscribers of this client's messages whose queues are full. While
    /// any holds it back, the client's packets are parked in order (acknowledgements and pings
    /// excepted, so two clients feeding each other never wait on each other), and reading stops
    /// once [`PARK_LIMIT`] bytes wait: its TCP window fills, its messages wait in its own buffers.
    /// Boxed when first held back: most connections never are (64 bytes in every idle
    /// connection otherwise).
    pub(super) held: Option<Box<Held>>,
}

/// Bytes of a held-back client's packets kept before its socket is no longer read.
pub(super) const PARK_LIMIT: usize = 64 * 1024;

/// Packets that never wait behind parked ones: they only complete exchanges already begun.
pub(super) fn bypasses_parking(frame: &[u8]) -> bool {
    // PUBACK, PUBREC, PUBREL, PUBCOMP, PINGREQ.
    matches!(frame.first().map(|b| b >> 4), Some(4..=7 | 12))
}

/// A held-back publisher's state.
#[derive(Debug, Default)]
pub(super) struct Held {
    /// The subscribers holding it back.
    pub(super) by: Vec<std::sync::Arc<str>>,
    /// Its packets waiting, in order, and their bytes.
    pub(super) parked: std::collections::VecDeque<bytes::Bytes>,
    pub(super) parked_bytes: usize,
}

impl<W> Conn<W> {
    /// The connection as it waits parked: its writer, and what it keeps (the buffers and
    /// queues, empty when it is idle, are left behind: 120 bytes less per parked connection).
    pub(super) fn into_idle(self) -> (W, Kept) {
        (self.wr, self.kept)
    }

    /// Nothing waits to be written, acknowledged or handled: the connection may be parked.
    pub(super) fn is_idle(&self) -> bool {
        self.out.is_empty()
            && self.deliveries.is_empty()
            && self.pending_acks.is_empty()
            && self.released.is_empty()
            && self.held.is_none()
            && !self.kept.pressure
    }

    /// Some subscriber holds this client back.
    pub(super) fn held_back(&self) -> bool {
        self.held.as_ref().is_some_and(|h| !h.by.is_empty())
    }

    /// Held back, or packets still parked from when it was.
    pub(super) fn holding(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|h| !h.by.is_empty() || !h.parked.is_empty())
    }

    /// Bytes of parked packets.
    pub(super) fn parked_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.parked_bytes)
    }

    /// The next parked packet, once nothing holds the client back any more.
    pub(super) fn unpark(&mut self) -> Option<bytes::Bytes> {
        let held = self.held.as_mut()?;
        if !held.by.is_empty() {
            return None;
        }
        let frame = held.parked.pop_front();
        match &frame {
            Some(f) => held.parked_bytes -= f.len(),
            // Nothing held, nothing parked: the box goes.
            None => self.held = None,
        }
        frame
    }

    /// Parks a packet of a held-back client.
    pub(super) fn park(&mut self, frame: bytes::Bytes) {
        let held = self.held.get_or_insert_with(Default::default);
        held.parked_bytes += frame.len();
        held.parked.push_back(frame);
    }
}

/// What a connection keeps for its life: all a parked connection holds of it (the buffers and
/// queues of [`Conn`] are empty while it is idle).
pub(super) struct Kept {
    pub(super) version: Version,
    /// Maximum Packet Size the client announced (MQTT 5).
    /// (Never 0: the codec refuses a CONNECT that says 0.)
    pub(super) client_max: Option<std::num::NonZeroU32>,
    pub(super) peer: SocketAddr,
    /// Topic Alias Maximum the client announced (MQTT 5), and the aliases given out so far: the first
    /// topics sent get an alias, and from the second message on only the alias travels.
    pub(super) alias_max: u16,
    /// Boxed when the first is given: most clients allow none, and an empty map is 48 bytes in
    /// every connection where the box is 8.
    #[allow(clippy::box_collection)]
    pub(super) aliases: Option<Box<std::collections::HashMap<std::sync::Arc<str>, u16>>>,
    /// The rules that apply to the client (who it is: the handle's `identity`).
    pub(super) security: Arc<Security>,
    /// ACL refusals so far (the first is logged, the rest counted; 32 bits, saturating).
    pub(super) denials: u32,
    /// The rate limits, and this client's buckets.
    pub(super) rates: Arc<crate::MqttRates>,
    pub(super) client_rates: crate::ClientRates,
    /// The reason the broker closed the connection with, if it did (the lifecycle event's
    /// `disconnectReason`).
    pub(super) closing: Option<ReasonCode>,
    /// A subscriber of what this connection published is falling behind: let other tasks run
    /// before reading more (a gentle brake on publishers that outrun their subscribers). Here
    /// rather than beside the buffers, where it would cost the connection's task 8 bytes of
    /// padding; false whenever the connection is idle.
    pub(super) pressure: bool,
}

impl Kept {
    /// The connection again, writing to `wr`.
    pub(super) fn resume<W>(self, wr: W) -> Conn<W> {
        Conn {
            wr,
            out: BytesMut::new(),
            deliveries: BytesMut::new(),
            kept: self,
            pending_acks: Vec::new(),
            released: Vec::new(),
            held: None,
        }
    }
}

/// An acknowledgement that may have to wait for durability.
pub(super) enum Reply {
    Packet(Box<Packet<'static>>),
    SubAck { pkid: u16, codes: Vec<ReasonCode> },
    UnsubAck { pkid: u16, codes: Vec<ReasonCode> },
}

impl<W: AsyncWrite + Unpin> Conn<W> {
    pub(super) fn push(&mut self, p: &Packet<'_>) {
        if let Err(e) = p.encode_to(self.kept.version, &mut self.out) {
            tracing::error!(peer = %self.kept.peer, error = %e, "cannot encode an outgoing packet");
        }
    }

    /// Queues an acknowledgement; it waits behind earlier ones still waiting for durability.
    pub(super) fn ack(&mut self, durable: Durable, reply: Reply) {
        if durable.is_empty() && self.pending_acks.is_empty() {
            self.push_reply(reply);
        } else {
            self.pending_acks.push((durable, reply));
        }
    }

    pub(super) fn push_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Packet(p) => self.push(&p),
            Reply::SubAck { pkid, codes } => self.push(&Packet::SubAck(SubAck {
                pkid,
                codes: List::new(&codes),
                ..SubAck::default()
            })),
            Reply::UnsubAck { pkid, codes } => self.push(&Packet::UnsubAck(UnsubAck {
                pkid,
                codes: List::new(&codes),
                ..UnsubAck::default()
            })),
        }
    }

    /// Writes what is due, first waiting until every pending acknowledgement may go out.
    pub(super) async fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending_acks.is_empty() {
            // Boxed: waiting for the store takes room an idle connection's future would
            // otherwise hold for nothing (it is as large as its largest wait).
            Box::pin(self.settle_acks()).await?;
        }
        self.write_out().await
    }

    /// Writes what is due without waiting for the store: the acknowledgements already durable go
    /// out, in order, and the connection goes on reading while the rest wait (the loop wakes
    /// when the next is durable, [`Conn::poll_acks`]), so a publisher with a window of messages
    /// in flight gets its first acknowledgements, and sends more, while later ones are still
    /// being written: routing, encoding and syncing overlap instead of taking turns. Waits as
    /// [`Conn::flush`] does when deliveries are due or a SUBACK/UNSUBACK is pending: nothing
    /// sent to the client overtakes an acknowledgement received before it (a subscription's
    /// retained messages follow its SUBACK).
    pub(super) async fn flush_settled(&mut self) -> std::io::Result<()> {
        let must_wait = !self.deliveries.is_empty()
            || self
                .pending_acks
                .iter()
                .any(|(_, r)| !matches!(r, Reply::Packet(_)));
        if must_wait {
            return self.flush().await;
        }
        if !self.pending_acks.is_empty() {
            let polled =
                self.poll_acks(&mut std::task::Context::from_waker(std::task::Waker::noop()));
            if let std::task::Poll::Ready(Err(e)) = polled {
                return Err(self.failed_ack(e).await);
            }
        }
        self.write_out().await
    }

    /// Queues the acknowledgements at the front that are durable, in order. Ready(Ok) once at
    /// least one went out (or none waits), Pending while the first still waits (woken when it
    /// is durable), Ready(Err) when a failure cannot be told to the client (MQTT 3.1.1): the
    /// acknowledgements before it are queued, and the connection must end.
    pub(super) fn poll_acks(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), PersistError>> {
        let mut settled = 0;
        let mut failure = None;
        for (durable, _) in self.pending_acks.iter_mut() {
            match durable.poll_settled(cx) {
                std::task::Poll::Pending => break,
                std::task::Poll::Ready(answer) => {
                    settled += 1;
                    if let Err(e) = answer {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        if settled == 0 {
            return if self.pending_acks.is_empty() {
                std::task::Poll::Ready(Ok(()))
            } else {
                std::task::Poll::Pending
            };
        }
        let rest = self.pending_acks.split_off(settled);
        let done = std::mem::replace(&mut self.pending_acks, rest);
        for (i, (_, reply)) in done.into_iter().enumerate() {
            match failure {
                Some(e) if i + 1 == settled => {
                    if !self.push_failure(reply, e) {
                        // MQTT 3.1.1 after a failed write: nothing later is acknowledged either.
                        self.pending_acks.clear();
                        return std::task::Poll::Ready(Err(e));
                    }
                }
                _ => self.push_reply(reply),
            }
        }
        std::task::Poll::Ready(Ok(()))
    }

    async fn write_out(&mut self) -> std::io::Result<()> {
        if !self.deliveries.is_empty() {
            let d = self.deliveries.split();
            self.out.unsplit(d);
        }
        if !self.out.is_empty() {
            self.wr.write_all(&self.out).await?;
            self.out.clear();
            release_if_empty(&mut self.out);
            release_if_empty(&mut self.deliveries);
        }
        Ok(())
    }

    /// Queues the acknowledgements whose messages are now durable, in order, waiting for the
    /// last; on a store failure an MQTT 3.1.1 connection writes what was acknowledged before and
    /// ends.
    async fn settle_acks(&mut self) -> std::io::Result<()> {
        let failed = std::future::poll_fn(|cx| loop {
            match self.poll_acks(cx) {
                std::task::Poll::Ready(Ok(())) if self.pending_acks.is_empty() => {
                    return std::task::Poll::Ready(None)
                }
                std::task::Poll::Ready(Ok(())) => continue,
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Some(e)),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        })
        .await;
        match failed {
            Some(e) => Err(self.failed_ack(e).await),
            None => Ok(()),
        }
    }

    /// Whatever was acknowledged before a failed acknowledgement goes out; then the connection
    /// closes without the acknowledgement the store could not back.
    pub(super) async fn failed_ack(&mut self, e: PersistError) -> std::io::Error {
        if !self.out.is_empty() {
            let _ = self.wr.write_all(&self.out).await;
            self.out.clear();
        }
        std::io::Error::other(e)
    }

    /// Answers a request whose changes could not be stored. MQTT 5 carries the failure in the
    /// acknowledgement (0x97 when the disk is full, else 0x80); an MQTT 3.1.1 PUBACK/PUBREC has no
    /// way to say it, so `false` asks for the connection to close without it (the client sends
    /// the message again on its next connection).
    pub(super) fn push_failure(&mut self, reply: Reply, e: PersistError) -> bool {
        match reply {
            Reply::Packet(p) => match (*p, self.kept.version) {
                (Packet::PubAck(mut a), Version::V5) => {
                    a.code = e.reason_code();
                    self.push(&Packet::PubAck(a));
                    true
                }
                (Packet::PubRec(mut a), Version::V5) => {
                    // The exchange ends with a failed PUBREC (§4.3.3): no PUBREL follows.
                    self.released.push(a.pkid);
                    a.code = e.reason_code();
                    self.push(&Packet::PubRec(a));
                    true
                }
                (other, _) if !matches!(other, Packet::PubAck(_) | Packet::PubRec(_)) => {
                    self.push(&other);
                    true
                }
                _ => false,
            },
            Reply::SubAck { pkid, codes } => {
                let failure = match self.kept.version {
                    Version::V5 => e.reason_code(),
                    Version::V311 => ReasonCode::UnspecifiedError,
                };
                let codes: Vec<ReasonCode> = codes
                    .into_iter()
                    .map(|c| if (c as u8) < 0x80 { failure } else { c })
                    .collect();
                self.push_reply(Reply::SubAck { pkid, codes });
                true
            }
            Reply::UnsubAck { pkid, codes } => match self.kept.version {
                // UNSUBACK has no Quota exceeded: Unspecified error for each filter removed.
                Version::V5 => {
                    let codes = codes
                        .into_iter()
                        .map(|c| {
                            if c == ReasonCode::Success {
                                ReasonCode::UnspecifiedError
                            } else {
                                c
                            }
                        })
                        .collect();
                    self.push_reply(Reply::UnsubAck { pkid, codes });
                    true
                }
                // MQTT 3.1.1's UNSUBACK cannot fail: the connection closes without it.
                Version::V311 => false,
            },
        }
    }

    /// Acknowledges a PUBLISH that was not routed (refused, denied) with `code`: PUBACK for QoS 1,
    /// PUBREC for QoS 2 (which ends the exchange when `code` is a failure), nothing for QoS 0.
    pub(super) fn acknowledge(&mut self, p: &Publish<'_>, code: ReasonCode) {
        let ack = Ack {
            pkid: p.pkid,
            code,
            ..Ack::default()
        };
        let packet = match p.qos {
            QoS::AtMostOnce => return,
            QoS::AtLeastOnce => Packet::PubAck(ack),
            QoS::ExactlyOnce => Packet::PubRec(ack),
        };
        self.ack(Durable::default(), Reply::Packet(Box::new(packet)));
    }

    pub(super) fn disconnect(&mut self, code: ReasonCode) {
        self.kept.closing.get_or_insert(code);
        if self.kept.version == Version::V5 {
            self.push(&Packet::Disconnect(DisconnectPacket::new(code)));
        }
    }
}
