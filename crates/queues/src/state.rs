//! The in-memory state of one queue: which messages are visible, delayed or in flight, FIFO group
//! locks, and the deduplication window. Pure and synchronous (time is passed in), so every rule of
//! visibility and ordering is unit-tested without a store or a clock.
//!
//! Visible messages of a standard queue sit in `ready`, ordered by record sequence (oldest first).
//! Delayed and in-flight messages sit in `timers` ordered by the time they become visible; timers
//! are applied lazily ([`QueueState::promote`]) before every read. A FIFO queue instead keeps each
//! group's messages in order and lists in `ready_groups` only the groups that have no message in
//! flight and a visible head, so a group's next message is never handed out while one is in flight.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use crate::delivery::Delivery;

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for its delay to pass.
    Delayed,
    /// Can be received.
    Visible,
    /// Received; hidden until its visibility deadline.
    InFlight,
}

/// One message's state.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Phase.
    pub phase: Phase,
    /// When a delayed or in-flight message becomes visible.
    pub at: u64,
    /// When it was sent (for retention).
    pub sent_ms: u64,
    /// Times received.
    pub receive_count: u32,
    /// First receive (0: never).
    pub first_receive_ms: u64,
    /// Nonce of the current receipt (0: never received).
    pub nonce: u64,
    /// Sequence number of its latest delivery record.
    pub delivery_record: Option<u64>,
    /// FIFO group.
    pub group: Option<Arc<str>>,
    /// Record size, for metrics.
    pub bytes: u64,
}

impl Msg {
    /// Its current delivery state, as a delivery record stores it.
    pub fn delivery(&self, seq: u64) -> Delivery {
        Delivery {
            seq,
            receive_count: self.receive_count,
            first_receive_ms: self.first_receive_ms,
            visible_at_ms: self.at,
            nonce: self.nonce,
        }
    }
}

#[derive(Debug, Default)]
struct Group {
    msgs: BTreeSet<u64>,
    inflight: u32,
    ready_key: Option<u64>,
}

/// A message chosen by [`QueueState::receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Its delivery (count, deadline, nonce) after this receive.
    pub delivery: Delivery,
}

/// Why a receipt does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptProblem {
    /// The message is gone or was received again since.
    Stale,
    /// The receipt is current but the message is no longer in flight.
    NotInFlight,
}

/// A remembered deduplication id.
#[derive(Debug, Clone)]
pub struct DedupEntry {
    /// When the id may be reused (ms).
    pub expires_ms: u64,
    /// The message id first sent with it.
    pub message_id: String,
    /// Its FIFO sequence number.
    pub sequence: u64,
}

/// The deduplication window of FIFO queues.
pub const DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// One queue's message state.
#[derive(Debug, Default)]
pub struct QueueState {
    fifo: bool,
    msgs: HashMap<u64, Msg>,
    ready: BTreeSet<u64>,
    timers: BTreeSet<(u64, u64)>,
    by_sent: BTreeSet<(u64, u64)>,
    groups: HashMap<Arc<str>, Group>,
    ready_groups: BTreeSet<(u64, Arc<str>)>,
    dedup: HashMap<String, DedupEntry>,
    dedup_order: VecDeque<(u64, String)>,
    visible: u64,
    inflight: u64,
    delayed: u64,
    bytes: u64,
}

impl QueueState {
    /// An empty state for a standard or FIFO queue.
    pub fn new(fifo: bool) -> QueueState {
        QueueState {
            fifo,
            ..QueueState::default()
        }
    }

    fn count(&mut self, phase: Phase, delta: i64) {
        let c = match phase {
            Phase::Visible => &mut self.visible,
            Phase::InFlight => &mut self.inflight,
            Phase::Delayed => &mut self.delayed,
        };
        *c = c.saturating_add_signed(delta);
    }

    /// Adds a message (at send, at recovery or when dead-lettered in). `delivery` is its latest
    /// delivery record, if it was ever received.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        seq: u64,
        sent_ms: u64,
        available_ms: u64,
        group: Option<Arc<str>>,
        bytes: u64,
        delivery: Option<(u64, Delivery)>,
        now: u64,
    ) {
        let (phase, at, receive_count, first, nonce, record) = match delivery {
            Some((rec, d)) if d.visible_at_ms > now => (
                Phase::InFlight,
                d.visible_at_ms,
                d.receive_count,
                d.first_receive_ms,
                d.nonce,
                Some(rec),
            ),
            Some((rec, d)) => (
                Phase::Visible,
                0,
                d.receive_count,
                d.first_receive_ms,
                d.nonce,
                Some(rec),
            ),
            None if available_ms > now => (Phase::Delayed, available_ms, 0, 0, 0, None),
            None => (Phase::Visible, 0, 0, 0, 0, None),
        };
        let msg = Msg {
            phase,
            at,
            sent_ms,
            receive_count,
            first_receive_ms: first,
            nonce,
            delivery_record: record,
            group: group.clone(),
            bytes,
        };
        self.count(phase, 1);
        self.bytes += bytes;
        self.by_sent.insert((sent_ms, seq));
        match phase {
            Phase::Visible if !self.fifo => {
                self.ready.insert(seq);
            }
            Phase::Visible => {}
            Phase::Delayed | Phase::InFlight => {
                self.timers.insert((at, seq));
            }
        }
        self.msgs.insert(seq, msg);
        if let Some(g) = group {
            let entry = self.groups.entry(g.clone()).or_default();
            entry.msgs.insert(seq);
            if phase == Phase::InFlight {
                entry.inflight += 1;
            }
            self.refresh_group(&g);
        }
    }

    fn refresh_group(&mut self, g: &Arc<str>) {
        let Some(group) = self.groups.get_mut(g) else {
            return;
        };
        if let Some(old) = group.ready_key.take() {
            self.ready_groups.remove(&(old, g.clone()));
        }
        if group.msgs.is_empty() {
            self.groups.remove(g);
            return;
        }
        if group.inflight > 0 {
            return;
        }
        let Some(&head) = group.msgs.first() else {
            return;
        };
        if self.msgs.get(&head).map(|m| m.phase) == Some(Phase::Visible) {
            group.ready_key = Some(head);
            self.ready_groups.insert((head, g.clone()));
        }
    }

    /// Applies every timer due at `now`: delays end, visibility timeouts expire.
    pub fn promote(&mut self, now: u64) {
        while let Some(&(at, seq)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(m) = self.msgs.get_mut(&seq) else {
                continue;
            };
            let was = m.phase;
            m.phase = Phase::Visible;
            m.at = 0;
            let group = m.group.clone();
            self.count(was, -1);
            self.count(Phase::Visible, 1);
            match group {
                None => {
                    self.ready.insert(seq);
                }
                Some(g) => {
                    if was == Phase::InFlight {
                        if let Some(gr) = self.groups.get_mut(&g) {
                            gr.inflight = gr.inflight.saturating_sub(1);
                        }
                    }
                    self.refresh_group(&g);
                }
            }
        }
    }

    /// When the next timer is due, if any.
    pub fn next_timer(&self) -> Option<u64> {
        self.timers.first().map(|&(at, _)| at)
    }

    fn take_for_receive(
        &mut self,
        seq: u64,
        now: u64,
        visibility_ms: u64,
        out: &mut Vec<Received>,
    ) {
        let Some(m) = self.msgs.get_mut(&seq) else {
            return;
        };
        m.receive_count += 1;
        if m.first_receive_ms == 0 {
            m.first_receive_ms = now;
        }
        m.nonce = rand::random::<u64>() | 1;
        m.phase = Phase::InFlight;
        m.at = now + visibility_ms;
        let d = m.delivery(seq);
        self.timers.insert((d.visible_at_ms, seq));
        self.count(Phase::Visible, -1);
        self.count(Phase::InFlight, 1);
        out.push(Received { delivery: d });
    }

    /// Receives up to `max` visible messages, oldest first, hiding them for `visibility_ms`.
    /// Messages already received `max_receive` times are not delivered: they are removed and
    /// returned in the second list, for the caller to move to the dead-letter queue.
    pub fn receive(
        &mut self,
        now: u64,
        max: usize,
        visibility_ms: u64,
        max_receive: Option<u32>,
    ) -> (Vec<Received>, Vec<(u64, Msg)>) {
        self.promote(now);
        let mut out = Vec::new();
        let mut dead = Vec::new();
        let over = |m: &Msg| max_receive.is_some_and(|limit| m.receive_count >= limit);
        if !self.fifo {
            while out.len() < max {
                let Some(seq) = self.ready.pop_first() else {
                    break;
                };
                if self.msgs.get(&seq).is_some_and(over) {
                    if let Some(m) = self.remove(seq) {
                        dead.push((seq, m));
                    }
                    continue;
                }
                self.take_for_receive(seq, now, visibility_ms, &mut out);
            }
            return (out, dead);
        }
        while out.len() < max {
            let Some((_, g)) = self.ready_groups.pop_first() else {
                break;
            };
            if let Some(gr) = self.groups.get_mut(&g) {
                gr.ready_key = None;
            }
            let seqs: Vec<u64> = self
                .groups
                .get(&g)
                .map(|gr| gr.msgs.iter().copied().collect())
                .unwrap_or_default();
            let mut took = 0u32;
            for seq in seqs {
                if out.len() >= max {
                    break;
                }
                let Some(m) = self.msgs.get(&seq) else {
                    continue;
                };
                if m.phase != Phase::Visible {
                    break;
                }
                if over(m) {
                    if let Some(m) = self.remove(seq) {
                        dead.push((seq, m));
                    }
                    continue;
                }
                self.take_for_receive(seq, now, visibility_ms, &mut out);
                took += 1;
            }
            if let Some(gr) = self.groups.get_mut(&g) {
                gr.inflight += took;
            }
            self.refresh_group(&g);
        }
        (out, dead)
    }

    /// The message a receipt names, if the receipt is its current one.
    pub fn check_receipt(&self, seq: u64, nonce: u64) -> Result<&Msg, ReceiptProblem> {
        match self.msgs.get(&seq) {
            Some(m) if m.nonce == nonce && m.phase == Phase::InFlight => Ok(m),
            Some(m) if m.nonce == nonce => Err(ReceiptProblem::NotInFlight),
            _ => Err(ReceiptProblem::Stale),
        }
    }

    /// Sets an in-flight message's visibility deadline to `now + timeout_ms` (0 releases it).
    /// Returns the delivery to persist.
    pub fn change_visibility(
        &mut self,
        seq: u64,
        nonce: u64,
        now: u64,
        timeout_ms: u64,
    ) -> Result<Delivery, ReceiptProblem> {
        self.promote(now);
        self.check_receipt(seq, nonce)?;
        let Some(m) = self.msgs.get_mut(&seq) else {
            return Err(ReceiptProblem::Stale);
        };
        self.timers.remove(&(m.at, seq));
        m.at = now + timeout_ms;
        let d = m.delivery(seq);
        self.timers.insert((m.at, seq));
        if timeout_ms == 0 {
            self.promote(now);
        }
        Ok(d)
    }

    /// Notes which record holds a message's latest delivery; returns the one it replaces. If the
    /// message is gone, returns `record` itself (it is already obsolete).
    pub fn set_delivery_record(&mut self, seq: u64, nonce: u64, record: u64) -> Option<u64> {
        match self.msgs.get_mut(&seq) {
            Some(m) if m.nonce == nonce => match m.delivery_record {
                Some(old) if old > record => Some(record),
                old => {
                    m.delivery_record = Some(record);
                    old
                }
            },
            _ => Some(record),
        }
    }

    /// Removes a message (deleted, expired, purged or dead-lettered).
    pub fn remove(&mut self, seq: u64) -> Option<Msg> {
        let m = self.msgs.remove(&seq)?;
        self.count(m.phase, -1);
        self.bytes = self.bytes.saturating_sub(m.bytes);
        self.by_sent.remove(&(m.sent_ms, seq));
        match m.phase {
            Phase::Visible => {
                self.ready.remove(&seq);
            }
            Phase::Delayed | Phase::InFlight => {
                self.timers.remove(&(m.at, seq));
            }
        }
        if let Some(g) = &m.group {
            if let Some(gr) = self.groups.get_mut(g) {
                gr.msgs.remove(&seq);
                if m.phase == Phase::InFlight {
                    gr.inflight = gr.inflight.saturating_sub(1);
                }
            }
            self.refresh_group(g);
        }
        Some(m)
    }

    /// Removes every message sent before `cutoff_ms`.
    pub fn expire(&mut self, cutoff_ms: u64) -> Vec<(u64, Msg)> {
        let mut out = Vec::new();
        while let Some(&(sent, seq)) = self.by_sent.first() {
            if sent >= cutoff_ms {
                break;
            }
            match self.remove(seq) {
                Some(m) => out.push((seq, m)),
                None => {
                    self.by_sent.pop_first();
                }
            }
        }
        out
    }

    /// Removes every message.
    pub fn drain(&mut self) -> Vec<(u64, Msg)> {
        let seqs: Vec<u64> = self.msgs.keys().copied().collect();
        seqs.into_iter()
            .filter_map(|s| self.remove(s).map(|m| (s, m)))
            .collect()
    }

    /// Sequence numbers of visible messages, oldest first, at most `limit` (for move tasks).
    pub fn visible_seqs(&mut self, now: u64, limit: usize) -> Vec<u64> {
        self.promote(now);
        let mut seqs: Vec<u64> = self
            .msgs
            .iter()
            .filter(|(_, m)| m.phase == Phase::Visible)
            .map(|(&s, _)| s)
            .collect();
        seqs.sort_unstable();
        seqs.truncate(limit);
        seqs
    }

    /// How many times message `seq` was received (0 when unknown).
    pub fn receive_count(&self, seq: u64) -> u32 {
        self.msgs.get(&seq).map_or(0, |m| m.receive_count)
    }

    /// (visible, in flight, delayed) after applying due timers.
    pub fn counts(&mut self, now: u64) -> (u64, u64, u64) {
        self.promote(now);
        (self.visible, self.inflight, self.delayed)
    }

    /// Messages held and their record bytes.
    pub fn size(&self) -> (u64, u64) {
        (self.msgs.len() as u64, self.bytes)
    }

    /// Age of the oldest message in ms.
    pub fn oldest_sent(&self) -> Option<u64> {
        self.by_sent.first().map(|&(s, _)| s)
    }

    /// A live deduplication entry for `key`.
    pub fn dedup_lookup(&mut self, key: &str, now: u64) -> Option<DedupEntry> {
        self.expire_dedup(now);
        self.dedup.get(key).cloned()
    }

    /// Remembers a deduplication id (sent at `sent_ms`).
    pub fn dedup_insert(&mut self, key: String, entry: DedupEntry) {
        self.dedup_order.push_back((entry.expires_ms, key.clone()));
        self.dedup.insert(key, entry);
    }

    /// Forgets a deduplication id (its send failed).
    pub fn dedup_forget(&mut self, key: &str) {
        self.dedup.remove(key);
    }

    fn expire_dedup(&mut self, now: u64) {
        while let Some((at, _)) = self.dedup_order.front() {
            if *at > now {
                break;
            }
            if let Some((at, key)) = self.dedup_order.pop_front() {
                if self.dedup.get(&key).is_some_and(|e| e.expires_ms <= at) {
                    self.dedup.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(s: &mut QueueState, seq: u64, group: Option<&str>, available: u64) {
        s.insert(seq, 0, available, group.map(Arc::from), 10, None, 0);
    }

    #[test]
    fn standard_queue_visibility_cycle() {
        let mut s = QueueState::new(false);
        add(&mut s, 1, None, 0);
        add(&mut s, 2, None, 0);
        add(&mut s, 3, None, 500);
        assert_eq!(s.counts(0), (2, 0, 1));
        let (got, _) = s.receive(0, 10, 1000, None);
        assert_eq!(got.len(), 2);
        assert_eq!(s.counts(0), (0, 2, 1));
        assert!(s.receive(100, 10, 1000, None).0.is_empty());
        let (got, _) = s.receive(500, 10, 1000, None);
        assert_eq!(got[0].delivery.seq, 3);
        // Visibility expires: the first two come back with a new receipt, the old one is stale.
        let old = s.msgs[&1].nonce;
        let (got, _) = s.receive(1000, 10, 1000, None);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].delivery.receive_count, 2);
        assert_eq!(s.check_receipt(1, old).err(), Some(ReceiptProblem::Stale));
        assert!(s.check_receipt(1, got[0].delivery.nonce).is_ok());
        assert!(s.remove(1).is_some());
        assert_eq!(s.counts(1000), (0, 2, 0));
    }

    #[test]
    fn change_visibility_extends_and_releases() {
        let mut s = QueueState::new(false);
        add(&mut s, 1, None, 0);
        let (got, _) = s.receive(0, 1, 1000, None);
        let nonce = got[0].delivery.nonce;
        s.change_visibility(1, nonce, 500, 5000).unwrap();
        assert!(s.receive(2000, 1, 1000, None).0.is_empty());
        s.change_visibility(1, nonce, 2000, 0).unwrap();
        assert_eq!(s.counts(2000), (1, 0, 0));
        assert_eq!(
            s.change_visibility(1, nonce, 2000, 10).err(),
            Some(ReceiptProblem::NotInFlight)
        );
    }

    #[test]
    fn fifo_group_is_locked_while_in_flight() {
        let mut s = QueueState::new(true);
        add(&mut s, 1, Some("a"), 0);
        add(&mut s, 2, Some("a"), 0);
        add(&mut s, 3, Some("b"), 0);
        add(&mut s, 4, Some("a"), 0);
        let (got, _) = s.receive(0, 1, 1000, None);
        assert_eq!(got[0].delivery.seq, 1);
        // Group a is locked; b is next.
        let (got, _) = s.receive(0, 10, 1000, None);
        assert_eq!(
            got.iter().map(|r| r.delivery.seq).collect::<Vec<_>>(),
            vec![3]
        );
        // Deleting 1 unlocks a; 2 and 4 come together, in order.
        s.remove(1);
        let (got, _) = s.receive(0, 10, 1000, None);
        assert_eq!(
            got.iter().map(|r| r.delivery.seq).collect::<Vec<_>>(),
            vec![2, 4]
        );
        // 2 times out while 4 is deleted: 2 comes back first.
        s.remove(4);
        let (got, _) = s.receive(1000, 10, 1000, None);
        assert_eq!(
            got.iter().map(|r| r.delivery.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn receive_count_limit_hands_messages_to_the_dead_letter_queue() {
        let mut s = QueueState::new(false);
        add(&mut s, 1, None, 0);
        assert_eq!(s.receive(0, 1, 0, Some(2)).0.len(), 1);
        assert_eq!(s.receive(0, 1, 0, Some(2)).0.len(), 1);
        let (got, dead) = s.receive(0, 1, 0, Some(2));
        assert!(got.is_empty());
        assert_eq!(dead.len(), 1);
        assert_eq!(s.size().0, 0);
    }

    #[test]
    fn retention_and_dedup_expire() {
        let mut s = QueueState::new(true);
        s.insert(1, 100, 100, Some(Arc::from("g")), 1, None, 100);
        s.insert(2, 200, 200, Some(Arc::from("g")), 1, None, 200);
        assert_eq!(s.expire(150).len(), 1);
        assert_eq!(s.size().0, 1);
        s.dedup_insert(
            "k".into(),
            DedupEntry {
                expires_ms: 1000,
                message_id: "m".into(),
                sequence: 1,
            },
        );
        assert!(s.dedup_lookup("k", 999).is_some());
        assert!(s.dedup_lookup("k", 1000).is_none());
    }
}
