//! Messages waiting for offline persistent sessions, kept once per message (ADR 0023, its
//! in-memory half).
//!
//! A fan-out to sessions that are offline used to lock each session and push a 56-byte delivery
//! onto its own queue: one scattered write (a cache miss) per session and message, queues that
//! grow by copying, and the session's lock, all on the publisher's path. Here a message routed to
//! offline sessions is one entry holding the list of its members (a short record per session,
//! written side by side); a session takes its members when it connects again, in order, onto its
//! queue. Ended sessions and failed store writes take theirs out the same way.
//!
//! What the store keeps is unchanged (a message once, a reference per session): this is only how
//! memory holds what an offline session is owed.

use std::collections::BTreeMap;
use std::sync::Arc;

use outpost_codec::QoS;
use outpost_store::StreamId;
use rustc_hash::FxHashMap;

use crate::{Delivery, Message};

/// Messages routed to offline sessions that some of them have not taken yet.
#[derive(Debug, Default)]
pub(crate) struct OfflineLog {
    /// By message key (routing gives a message's deliveries the ids right after its key).
    entries: BTreeMap<u64, Entry>,
    /// The sessions taking their messages from here, by their number in it (never 0).
    sessions: FxHashMap<u32, Waiting>,
    next_slot: u32,
}

/// A message and the offline sessions it is owed to.
#[derive(Debug)]
struct Entry {
    message: Arc<Message>,
    /// Sorted by slot: a session finds its own by a binary search. A member taken stays in
    /// place, marked (removing it would move every member after it, for every session that
    /// leaves); the entry goes with its last member.
    members: Vec<Member>,
    /// Members not yet taken.
    left: u32,
}

/// One offline session's delivery of a message: 24 bytes, one per session and message (a
/// delivery in a session's queue is 56).
#[derive(Debug)]
struct Member {
    slot: u32,
    /// The delivery id's distance from the message's key.
    at: u32,
    qos: QoS,
    retain: bool,
    taken: bool,
    /// Boxed: most subscriptions have no identifier, and a boxed vector is one word where a
    /// vector is three and a boxed slice two.
    #[allow(clippy::box_collection)]
    subscription_ids: Option<Box<Vec<u32>>>,
}

impl Member {
    fn new(slot: u32, at: u32, qos: QoS, retain: bool, subscription_ids: Vec<u32>) -> Self {
        Member {
            slot,
            at,
            qos,
            retain,
            taken: false,
            subscription_ids: (!subscription_ids.is_empty()).then(|| Box::new(subscription_ids)),
        }
    }
}

/// What the log knows of one offline session.
#[derive(Debug)]
struct Waiting {
    /// No entry below this key names it.
    since: u64,
    /// Messages and bytes it holds (what its queue held when it went offline, then what it took
    /// here), against its queue's limits.
    count: usize,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
    /// Messages it holds here.
    here: usize,
    /// Its stream in the store (its deliveries' references are written there).
    stream: Option<StreamId>,
}

/// The queue a session had when it went offline, and its limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    pub count: usize,
    pub bytes: usize,
    pub max_count: usize,
    pub max_bytes: usize,
}

/// Where [`OfflineLog::add`] put a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    /// Held for the session; the reference goes to this stream.
    Held(Option<StreamId>),
    /// The session's queue is full: it does not take the message.
    Full,
}

/// A message being added to the log: its members gather here, sorted and stored at the end.
pub(crate) struct Adding<'a> {
    log: &'a mut OfflineLog,
    key: u64,
    message: Arc<Message>,
    members: Vec<Member>,
}

impl OfflineLog {
    /// A session goes offline and takes its messages from here from now on: its number (never 0).
    pub(crate) fn register(&mut self, held: Held, stream: Option<StreamId>) -> u32 {
        loop {
            self.next_slot = self.next_slot.wrapping_add(1);
            let slot = self.next_slot;
            if slot != 0 && !self.sessions.contains_key(&slot) {
                self.sessions.insert(
                    slot,
                    Waiting {
                        since: u64::MAX,
                        count: held.count,
                        bytes: held.bytes,
                        max_count: held.max_count,
                        max_bytes: held.max_bytes,
                        here: 0,
                        stream,
                    },
                );
                return slot;
            }
        }
    }

    /// Starts adding the message `key`, for at most `members` sessions; [`Adding::finish`]
    /// stores it.
    pub(crate) fn adding(&mut self, key: u64, message: Arc<Message>, members: usize) -> Adding<'_> {
        Adding {
            log: self,
            key,
            message,
            members: Vec::with_capacity(members),
        }
    }

    /// The session `slot` leaves the log (it connected, or ended): its deliveries, in order
    /// (empty when it ended: pass `take = false` to drop them).
    pub(crate) fn leave(&mut self, slot: u32, take: bool) -> Vec<Delivery> {
        let Some(w) = self.sessions.remove(&slot) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut emptied = Vec::new();
        for (&key, e) in self.entries.range_mut(w.since..) {
            // Usually one; a session with a shared and a plain subscription to a topic has two.
            for i in e.of(slot) {
                if e.members[i].taken {
                    continue;
                }
                if e.take(i) {
                    emptied.push(key);
                }
                let m = &mut e.members[i];
                if take {
                    out.push(Delivery {
                        id: key + 1 + u64::from(m.at),
                        message: e.message.clone(),
                        qos: m.qos,
                        retain: m.retain,
                        subscription_ids: m.subscription_ids.take().map(|b| *b).unwrap_or_default(),
                        queue: None,
                    });
                }
            }
        }
        for key in emptied {
            self.entries.remove(&key);
        }
        out
    }

    /// Takes back the delivery `id` of the session whose stream is `stream` (its store write
    /// failed); true when it was here.
    pub(crate) fn unqueue(&mut self, stream: StreamId, id: u64) -> bool {
        let Some((&key, e)) = self.entries.range_mut(..id).next_back() else {
            return false;
        };
        let Ok(at) = u32::try_from(id - key - 1) else {
            return false;
        };
        let sessions = &self.sessions;
        let Some(i) = e.members.iter().position(|m| {
            m.at == at
                && !m.taken
                && sessions
                    .get(&m.slot)
                    .is_some_and(|w| w.stream == Some(stream))
        }) else {
            return false;
        };
        let slot = e.members[i].slot;
        let size = e.message.size();
        if e.take(i) {
            self.entries.remove(&key);
        }
        if let Some(w) = self.sessions.get_mut(&slot) {
            w.here = w.here.saturating_sub(1);
            w.count = w.count.saturating_sub(1);
            w.bytes = w.bytes.saturating_sub(size);
        }
        true
    }

    /// Messages the session `slot` holds here.
    pub(crate) fn count(&self, slot: u32) -> usize {
        self.sessions.get(&slot).map_or(0, |w| w.here)
    }

    /// The first `max` messages the session `slot` holds here, with the QoS it gets them with.
    pub(crate) fn peek(&self, slot: u32, max: usize) -> Vec<(Arc<Message>, QoS)> {
        let Some(w) = self.sessions.get(&slot) else {
            return Vec::new();
        };
        self.entries
            .range(w.since..)
            .flat_map(|(_, e)| {
                e.members[e.of(slot)]
                    .iter()
                    .filter(|m| !m.taken)
                    .map(|m| (e.message.clone(), m.qos))
            })
            .take(max)
            .collect()
    }

    /// Messages held for offline sessions (entries, not deliveries).
    #[cfg(test)]
    pub(crate) fn messages(&self) -> usize {
        self.entries.len()
    }
}

impl Entry {
    /// Where the session `slot`'s members are (usually one; taken ones too), in delivery id
    /// order.
    fn of(&self, slot: u32) -> std::ops::Range<usize> {
        let first = self.members.partition_point(|m| m.slot < slot);
        let n = self.members[first..]
            .iter()
            .take_while(|m| m.slot == slot)
            .count();
        first..first + n
    }

    /// Marks member `i` taken; true when it was the last one left (the entry goes).
    fn take(&mut self, i: usize) -> bool {
        self.members[i].taken = true;
        self.left -= 1;
        self.left == 0
    }
}

impl Adding<'_> {
    /// Adds the session `slot`'s delivery whatever its queue holds: one restored from the store
    /// (it was acknowledged to its publisher, and counted against the limits when it was routed).
    pub(crate) fn admit(&mut self, slot: u32, at: u32, retain: bool, subscription_ids: Vec<u32>) {
        let member = Member::new(slot, at, QoS::AtLeastOnce, retain, subscription_ids);
        self.put(member, false);
    }

    /// Adds the session `slot`'s delivery (the `at`th after the message's key) when its queue
    /// has room.
    pub(crate) fn add(
        &mut self,
        slot: u32,
        at: u32,
        qos: QoS,
        retain: bool,
        subscription_ids: Vec<u32>,
    ) -> Added {
        self.put(Member::new(slot, at, qos, retain, subscription_ids), true)
    }

    /// Adds a member, counted in its session's share; with `limited`, only when the share has
    /// room.
    fn put(&mut self, member: Member, limited: bool) -> Added {
        let size = self.message.size();
        let Some(w) = self.log.sessions.get_mut(&member.slot) else {
            return Added::Full;
        };
        if limited && (w.count >= w.max_count || w.bytes + size > w.max_bytes) {
            return Added::Full;
        }
        w.count += 1;
        w.here += 1;
        w.bytes += size;
        w.since = w.since.min(self.key);
        self.members.push(member);
        Added::Held(w.stream)
    }

    /// Stores the message with its members (nothing when it has none).
    pub(crate) fn finish(mut self) {
        if self.members.is_empty() {
            return;
        }
        // Routing meets a topic's subscribers in the same order every time: often sorted
        // already.
        if !self.members.is_sorted_by_key(|m| (m.slot, m.at)) {
            self.members.sort_unstable_by_key(|m| (m.slot, m.at));
        }
        let left = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
        self.log.entries.insert(
            self.key,
            Entry {
                message: self.message,
                members: self.members,
                left,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_stays_small() {
        let size = std::mem::size_of::<Member>();
        assert!(size <= 24, "a member is {size} B");
    }

    fn message(topic: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            received: None,
        })
    }

    fn held(max: usize) -> Held {
        Held {
            count: 0,
            bytes: 0,
            max_count: max,
            max_bytes: usize::MAX,
        }
    }

    #[test]
    fn a_session_takes_its_own_deliveries_in_key_order() {
        let mut log = OfflineLog::default();
        let a = log.register(held(10), None);
        let b = log.register(held(10), Some(StreamId(7)));
        // Keys out of order (two publishers routing at once), members in any order.
        for (key, topic) in [(20, "t/2"), (10, "t/1")] {
            let mut adding = log.adding(key, message(topic), 2);
            assert_eq!(
                adding.add(b, 1, QoS::AtLeastOnce, false, vec![]),
                Added::Held(Some(StreamId(7)))
            );
            assert_eq!(
                adding.add(a, 0, QoS::ExactlyOnce, true, vec![3]),
                Added::Held(None)
            );
            adding.finish();
        }
        assert_eq!((log.count(a), log.count(b)), (2, 2));
        let got = log.leave(a, true);
        let ids: Vec<u64> = got.iter().map(|d| d.id).collect();
        assert_eq!(ids, [11, 21]);
        assert_eq!(&*got[0].message.topic, "t/1");
        assert!(got[0].retain && got[0].qos == QoS::ExactlyOnce);
        assert_eq!(got[0].subscription_ids, [3]);
        assert_eq!(log.messages(), 2, "b still needs both");
        assert!(log.unqueue(StreamId(7), 22));
        assert!(!log.unqueue(StreamId(7), 22), "taken back once");
        assert_eq!(log.count(b), 1);
        assert!(
            log.leave(b, false).is_empty(),
            "an ended session takes nothing"
        );
        assert_eq!(log.messages(), 0, "no member left, no entry left");
    }

    /// A shared and a plain subscription of one session match a message: two members of one
    /// entry, both taken (a lookup that found one of them left the other behind for good).
    #[test]
    fn a_session_with_two_deliveries_of_a_message_takes_both() {
        let mut log = OfflineLog::default();
        let a = log.register(held(10), None);
        let b = log.register(held(10), None);
        let mut adding = log.adding(10, message("t"), 3);
        for (slot, at) in [(a, 2), (b, 1), (a, 0)] {
            assert_eq!(
                adding.add(slot, at, QoS::AtLeastOnce, false, vec![]),
                Added::Held(None)
            );
        }
        adding.finish();
        assert_eq!(log.count(a), 2);
        assert_eq!(log.peek(a, 10).len(), 2);
        let ids: Vec<u64> = log.leave(a, true).iter().map(|d| d.id).collect();
        assert_eq!(ids, [11, 13], "both, in id order");
        assert_eq!(log.leave(b, true).len(), 1);
        assert_eq!(log.messages(), 0, "nothing left behind");
    }

    #[test]
    fn a_full_session_takes_nothing_more() {
        let mut log = OfflineLog::default();
        let s = log.register(
            Held {
                count: 1,
                bytes: 0,
                max_count: 2,
                max_bytes: usize::MAX,
            },
            None,
        );
        let mut adding = log.adding(1, message("t"), 1);
        assert_eq!(
            adding.add(s, 0, QoS::AtLeastOnce, false, vec![]),
            Added::Held(None)
        );
        adding.finish();
        let mut adding = log.adding(5, message("t"), 1);
        assert_eq!(
            adding.add(s, 0, QoS::AtLeastOnce, false, vec![]),
            Added::Full
        );
        adding.finish();
        assert_eq!(log.messages(), 1);
        assert_eq!(log.peek(s, 10).len(), 1);
    }
}
