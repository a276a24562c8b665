//! The outgoing side of one session: packet identifiers, the in-flight window, the queue behind it and
//! what happens when a subscriber is too slow.
//!
//! - QoS 1/2 deliveries get a packet identifier and stay *in flight* until acknowledged (PUBACK, or
//!   PUBREC then PUBCOMP). At most `receive_maximum` are in flight (MQTT 5 §4.9; for 3.1.1 a configured
//!   default plays the same role); the rest wait in the queue, in order.
//! - Backpressure policy, so a slow or offline subscriber cannot grow memory without bound: the queue
//!   holds at most `max_queued` messages and `max_queued_bytes` bytes. When full, a new QoS 0 message is
//!   dropped; a new QoS 1/2 message first evicts the oldest queued QoS 0 message, and if there is none,
//!   it is refused ([`Offer::Overflow`]) — the engine then counts the loss for that session and,
//!   unless another session or a rule took the message, refuses it to its publisher (ADR 0008).
//! - On reconnect, in-flight messages are sent again: PUBLISH with DUP set if not yet acknowledged,
//!   PUBREL if PUBREC already came ([`Outbox::resend`]).

use std::collections::{BTreeMap, VecDeque};

use outpost_codec::QoS;

/// What the outbox needs to know about a message.
pub trait Outgoing {
    /// Delivery QoS (already downgraded to the subscription's maximum).
    fn qos(&self) -> QoS;
    /// Bytes it occupies while queued.
    fn size(&self) -> usize;
}

/// Limits of one outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// QoS 1/2 messages in flight at once.
    pub receive_maximum: u16,
    /// Messages waiting behind the window.
    pub max_queued: usize,
    /// Bytes waiting behind the window.
    pub max_queued_bytes: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            receive_maximum: 32,
            max_queued: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
        }
    }
}

/// State of an in-flight QoS 1/2 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InFlight<M> {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published(M),
    /// QoS 2: PUBREC received, PUBREL sent, waiting for PUBCOMP (the message is kept for its owner's
    /// bookkeeping, not for resending).
    Released(M),
}

/// What to send to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send<M> {
    /// A PUBLISH; `pkid` is 0 for QoS 0.
    Publish { pkid: u16, dup: bool, message: M },
    /// A PUBREL for an outgoing QoS 2 message.
    PubRel { pkid: u16 },
}

/// The result of [`Outbox::offer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer<M> {
    /// Queued (and possibly sendable now: call [`Outbox::next_sendable`]).
    Queued,
    /// Queued after evicting this older QoS 0 message.
    QueuedEvicting(M),
    /// A QoS 0 message dropped because the queue is full.
    DroppedQoS0,
    /// A QoS 1/2 message refused because the queue is full of QoS 1/2 messages.
    Overflow(M),
}

/// Why an acknowledgement does not fit the outbox (a protocol error by the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// No message in flight with this packet identifier.
    UnknownPacketId(u16),
    /// The acknowledgement does not fit the message's state (e.g. PUBACK for QoS 2).
    WrongState(u16),
}

/// The outgoing side of one session.
#[derive(Debug)]
pub struct Outbox<M> {
    in_flight: BTreeMap<u16, (QoS, InFlight<M>)>,
    queue: VecDeque<M>,
    queued_bytes: usize,
    /// Bytes of the messages in flight: they count against `max_queued_bytes` too, so a client
    /// that never acknowledges cannot pin more than the session's byte limit.
    in_flight_bytes: usize,
    dropped: u64,
    /// The limits, kept in 32 bits (a session's queue past 4 Gi messages or 4 GiB is capped
    /// there): every session holds them, and 16 bytes less per session count (issue 29).
    max_queued: u32,
    max_queued_bytes: u32,
    receive_maximum: u16,
    next_id: u16,
}

impl<M: Outgoing + Clone> Outbox<M> {
    /// An empty outbox.
    pub fn new(limits: OutboxLimits) -> Self {
        Outbox {
            in_flight: BTreeMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight_bytes: 0,
            dropped: 0,
            max_queued: u32::try_from(limits.max_queued).unwrap_or(u32::MAX),
            max_queued_bytes: u32::try_from(limits.max_queued_bytes).unwrap_or(u32::MAX),
            receive_maximum: limits.receive_maximum,
            next_id: 1,
        }
    }

    /// Changes the window (a reconnecting MQTT 5 client may announce another Receive Maximum).
    pub fn set_receive_maximum(&mut self, max: u16) {
        self.receive_maximum = max.max(1);
    }

    /// The window: most messages in flight at once.
    pub fn receive_maximum(&self) -> u16 {
        self.receive_maximum
    }

    /// Messages waiting behind the window.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Bytes waiting behind the window.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The messages it holds, at most `max`: those in flight first (by packet identifier), then
    /// the queue in order; each with whether it is in flight.
    pub fn peek(&self, max: usize) -> Vec<(&M, bool)> {
        self.in_flight
            .values()
            .map(|(_, s)| match s {
                InFlight::Published(m) | InFlight::Released(m) => (m, true),
            })
            .chain(self.queue.iter().map(|m| (m, false)))
            .take(max)
            .collect()
    }

    /// The queue's limits: messages, and bytes (queued and in flight).
    pub fn limits(&self) -> (usize, usize) {
        (self.max_queued as usize, self.max_queued_bytes as usize)
    }

    /// True when a QoS 0 message waits in the queue (one a QoS 1/2 message may evict).
    pub fn holds_qos0(&self) -> bool {
        self.queue.iter().any(|m| m.qos() == QoS::AtMostOnce)
    }

    /// Messages dropped or refused by the backpressure policy since creation.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Offers a message for delivery.
    pub fn offer(&mut self, message: M) -> Offer<M> {
        let size = message.size();
        let fits = |q: &Self| {
            q.queue.len() < q.max_queued as usize
                && q.queued_bytes + q.in_flight_bytes + size <= q.max_queued_bytes as usize
        };
        if fits(self) {
            self.push(message);
            return Offer::Queued;
        }
        if message.qos() == QoS::AtMostOnce {
            self.dropped += 1;
            return Offer::DroppedQoS0;
        }
        // Make room by evicting the oldest QoS 0 message, if that is enough.
        if let Some(pos) = self.queue.iter().position(|m| m.qos() == QoS::AtMostOnce) {
            let victim_size = self.queue[pos].size();
            let enough = self.queued_bytes + self.in_flight_bytes - victim_size + size
                <= self.max_queued_bytes as usize;
            if enough {
                if let Some(victim) = self.queue.remove(pos) {
                    self.queued_bytes -= victim_size;
                    self.dropped += 1;
                    self.push(message);
                    return Offer::QueuedEvicting(victim);
                }
            }
        }
        self.dropped += 1;
        Offer::Overflow(message)
    }

    /// Queues a message that was already counted against the limits elsewhere (what an offline
    /// session took in the offline log, acknowledged to its publisher): never refused, even when
    /// a race left the queue a little past its limits.
    pub fn admit(&mut self, message: M) {
        self.push(message);
    }

    fn push(&mut self, message: M) {
        self.queued_bytes += message.size();
        self.queue.push_back(message);
    }

    /// Takes back a queued (not yet sent) message that `is` picks, the newest first: a message
    /// whose store write failed must not keep a place its publisher was told it did not get.
    pub fn unqueue(&mut self, is: impl Fn(&M) -> bool) -> Option<M> {
        let pos = self.queue.iter().rposition(is)?;
        let message = self.queue.remove(pos)?;
        self.queued_bytes -= message.size();
        Some(message)
    }

    /// The next message that may be sent now, if any: QoS 0 messages always, QoS 1/2 messages while
    /// the window has room (they are then in flight under the returned packet identifier).
    pub fn next_sendable(&mut self) -> Option<Send<M>> {
        let qos = self.queue.front()?.qos();
        if qos != QoS::AtMostOnce && self.in_flight.len() >= usize::from(self.receive_maximum) {
            return None;
        }
        let message = self.queue.pop_front()?;
        self.queued_bytes -= message.size();
        if qos == QoS::AtMostOnce {
            return Some(Send::Publish {
                pkid: 0,
                dup: false,
                message,
            });
        }
        let pkid = self.allocate_id();
        self.in_flight_bytes += message.size();
        self.in_flight
            .insert(pkid, (qos, InFlight::Published(message.clone())));
        Some(Send::Publish {
            pkid,
            dup: false,
            message,
        })
    }

    fn allocate_id(&mut self) -> u16 {
        // The window is at most 65,535, so a free identifier always exists.
        loop {
            let id = self.next_id;
            self.next_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.in_flight.contains_key(&id) {
                return id;
            }
        }
    }

    /// A message left the window: its bytes no longer count.
    fn landed(&mut self, m: M) -> M {
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(m.size());
        m
    }

    /// Bytes of the messages in flight.
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// PUBACK for a QoS 1 message: it is delivered.
    pub fn puback(&mut self, pkid: u16) -> Result<M, AckError> {
        match self.in_flight.get(&pkid) {
            Some((QoS::AtLeastOnce, InFlight::Published(_))) => {
                match self.in_flight.remove(&pkid) {
                    Some((_, InFlight::Published(m))) => Ok(self.landed(m)),
                    _ => Err(AckError::WrongState(pkid)),
                }
            }
            Some(_) => Err(AckError::WrongState(pkid)),
            None => Err(AckError::UnknownPacketId(pkid)),
        }
    }

    /// PUBREC for a QoS 2 message: answer with the returned PUBREL. A repeated PUBREC (after a
    /// reconnect) is answered again.
    pub fn pubrec(&mut self, pkid: u16) -> Result<Send<M>, AckError> {
        match self.in_flight.get_mut(&pkid) {
            Some((QoS::ExactlyOnce, state)) => {
                if let InFlight::Published(m) = state {
                    *state = InFlight::Released(m.clone());
                }
                Ok(Send::PubRel { pkid })
            }
            Some(_) => Err(AckError::WrongState(pkid)),
            None => Err(AckError::UnknownPacketId(pkid)),
        }
    }

    /// PUBCOMP for a QoS 2 message: the exchange is complete.
    pub fn pubcomp(&mut self, pkid: u16) -> Result<M, AckError> {
        match self.in_flight.get(&pkid) {
            Some((QoS::ExactlyOnce, InFlight::Released(_))) => match self.in_flight.remove(&pkid) {
                Some((_, InFlight::Released(m))) => Ok(self.landed(m)),
                _ => Err(AckError::WrongState(pkid)),
            },
            Some(_) => Err(AckError::WrongState(pkid)),
            None => Err(AckError::UnknownPacketId(pkid)),
        }
    }

    /// Forgets an in-flight message that will not be delivered (expired, or too large for the client).
    pub fn discard(&mut self, pkid: u16) -> Result<M, AckError> {
        match self.in_flight.remove(&pkid) {
            Some((_, InFlight::Published(m) | InFlight::Released(m))) => Ok(self.landed(m)),
            None => Err(AckError::UnknownPacketId(pkid)),
        }
    }

    /// What to send again after a reconnect, oldest first: unacknowledged PUBLISH packets with DUP
    /// set, and PUBREL for QoS 2 messages whose PUBREC already came (MQTT §4.4).
    pub fn resend(&self) -> Vec<Send<M>> {
        self.in_flight
            .iter()
            .map(|(&pkid, (_, state))| match state {
                InFlight::Published(m) => Send::Publish {
                    pkid,
                    dup: true,
                    message: m.clone(),
                },
                InFlight::Released(_) => Send::PubRel { pkid },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Msg(QoS, usize, u32);

    impl Outgoing for Msg {
        fn qos(&self) -> QoS {
            self.0
        }
        fn size(&self) -> usize {
            self.1
        }
    }

    #[test]
    fn in_flight_bytes_count_against_the_byte_limit() {
        let mut o = Outbox::new(limits(100, 100, 250));
        for i in 0..2 {
            assert_eq!(o.offer(Msg(QoS::AtLeastOnce, 100, i)), Offer::Queued);
        }
        // Both go in flight and are never acknowledged.
        while o.next_sendable().is_some() {}
        assert_eq!(
            (o.in_flight(), o.in_flight_bytes(), o.queued()),
            (2, 200, 0)
        );
        assert!(matches!(
            o.offer(Msg(QoS::AtLeastOnce, 100, 9)),
            Offer::Overflow(_)
        ));
        let Ok(_) = o.puback(1) else {
            panic!("pkid 1 is in flight")
        };
        assert_eq!(o.in_flight_bytes(), 100);
        assert_eq!(o.offer(Msg(QoS::AtLeastOnce, 100, 9)), Offer::Queued);
    }

    fn limits(window: u16, queued: usize, bytes: usize) -> OutboxLimits {
        OutboxLimits {
            receive_maximum: window,
            max_queued: queued,
            max_queued_bytes: bytes,
        }
    }

    fn drain(o: &mut Outbox<Msg>) -> Vec<Send<Msg>> {
        std::iter::from_fn(|| o.next_sendable()).collect()
    }

    #[test]
    fn window_limits_qos1_but_not_qos0() {
        let mut o = Outbox::new(limits(2, 100, 10_000));
        for i in 0..4 {
            o.offer(Msg(QoS::AtLeastOnce, 10, i));
        }
        let sent = drain(&mut o);
        assert_eq!(sent.len(), 2, "two in flight");
        assert_eq!(o.queued(), 2);
        let Send::Publish { pkid, .. } = sent[0].clone() else {
            panic!()
        };
        assert_eq!(o.puback(pkid).unwrap(), Msg(QoS::AtLeastOnce, 10, 0));
        assert_eq!(drain(&mut o).len(), 1, "an ack opens one slot");
        // QoS 0 waits only for order, never for the window.
        let mut o = Outbox::new(limits(1, 100, 10_000));
        o.offer(Msg(QoS::AtMostOnce, 1, 0));
        o.offer(Msg(QoS::AtMostOnce, 1, 1));
        assert_eq!(drain(&mut o).len(), 2);
    }

    #[test]
    fn packet_ids_are_unique_and_skip_those_in_use() {
        let mut o = Outbox::new(limits(3, 100, 10_000));
        o.next_id = u16::MAX;
        for i in 0..3 {
            o.offer(Msg(QoS::AtLeastOnce, 1, i));
        }
        let ids: Vec<u16> = drain(&mut o)
            .into_iter()
            .map(|s| match s {
                Send::Publish { pkid, .. } => pkid,
                Send::PubRel { pkid } => pkid,
            })
            .collect();
        assert_eq!(ids, [u16::MAX, 1, 2], "wraps to 1, never 0");
        o.puback(1).unwrap();
        o.next_id = u16::MAX;
        o.offer(Msg(QoS::AtLeastOnce, 1, 9));
        assert!(
            matches!(o.next_sendable(), Some(Send::Publish { pkid: 1, .. })),
            "65535 is in use"
        );
    }

    #[test]
    fn qos2_handshake_and_resend_after_reconnect() {
        let mut o = Outbox::new(limits(10, 100, 10_000));
        o.offer(Msg(QoS::ExactlyOnce, 5, 1));
        o.offer(Msg(QoS::ExactlyOnce, 5, 2));
        drain(&mut o);
        assert_eq!(
            o.puback(1),
            Err(AckError::WrongState(1)),
            "PUBACK is not for QoS 2"
        );
        assert_eq!(
            o.pubcomp(1),
            Err(AckError::WrongState(1)),
            "PUBCOMP before PUBREC"
        );
        assert_eq!(o.pubrec(1).unwrap(), Send::PubRel { pkid: 1 });
        // Connection lost: message 1 needs its PUBREL again, message 2 its PUBLISH with DUP.
        assert_eq!(
            o.resend(),
            [
                Send::PubRel { pkid: 1 },
                Send::Publish {
                    pkid: 2,
                    dup: true,
                    message: Msg(QoS::ExactlyOnce, 5, 2)
                }
            ]
        );
        assert_eq!(
            o.pubrec(1).unwrap(),
            Send::PubRel { pkid: 1 },
            "a repeated PUBREC is answered again"
        );
        assert_eq!(o.pubcomp(1).unwrap(), Msg(QoS::ExactlyOnce, 5, 1));
        assert_eq!(o.pubcomp(1), Err(AckError::UnknownPacketId(1)));
        assert_eq!(o.in_flight(), 1);
    }

    #[test]
    fn backpressure_drops_qos0_first_then_refuses() {
        let mut o = Outbox::new(limits(1, 3, 1000));
        assert_eq!(o.offer(Msg(QoS::AtMostOnce, 10, 0)), Offer::Queued);
        assert_eq!(o.offer(Msg(QoS::AtLeastOnce, 10, 1)), Offer::Queued);
        assert_eq!(o.offer(Msg(QoS::AtLeastOnce, 10, 2)), Offer::Queued);
        // Full: a new QoS 0 message is dropped.
        assert_eq!(o.offer(Msg(QoS::AtMostOnce, 10, 3)), Offer::DroppedQoS0);
        // A QoS 1 message evicts the queued QoS 0 one.
        assert_eq!(
            o.offer(Msg(QoS::AtLeastOnce, 10, 4)),
            Offer::QueuedEvicting(Msg(QoS::AtMostOnce, 10, 0))
        );
        // Nothing left to evict: refused.
        assert_eq!(
            o.offer(Msg(QoS::ExactlyOnce, 10, 5)),
            Offer::Overflow(Msg(QoS::ExactlyOnce, 10, 5))
        );
        assert_eq!(o.dropped(), 3);
        assert_eq!(o.queued(), 3);
        assert_eq!(o.queued_bytes(), 30);
        // Byte limit too.
        let mut o = Outbox::new(limits(1, 100, 25));
        assert_eq!(o.offer(Msg(QoS::AtLeastOnce, 20, 0)), Offer::Queued);
        assert!(matches!(
            o.offer(Msg(QoS::AtLeastOnce, 10, 1)),
            Offer::Overflow(_)
        ));
    }
}
