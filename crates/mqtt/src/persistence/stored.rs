//! Reference counting of stored deliveries: which record holds each delivery and how many sessions
//! still need each message, so a record dies with its last delivery and a message with its last
//! reference.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

// Keys here are the broker's own (delivery ids, message keys, record ids), never a client's, so
// a fast non-keyed hash is safe; with SipHash the map inserts were the largest cost of a durable
// fan-out (issue 29: 100 offline sessions 14.8k -> 18.4k msg/s).
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use outpost_store::{RecordId, StreamId};

use super::jobs::RefSpec;

/// What the persistence task knows of stored deliveries: which record holds each delivery's
/// reference, and how many live references each stored message has. Built by the engine at
/// restore; kept by the task alone afterwards (the engine never waits for record ids).
#[derive(Debug, Default)]
pub(crate) struct Stored {
    /// Delivery id -> its record (a reference, a record of references, or a whole message of the
    /// first layout), and the key of the message it references: deliveries found at restore,
    /// whose ids were given one by one. A delivery routed since is found through its message
    /// instead ([`StoredMessage::held`]).
    deliveries: HashMap<u64, (RecordId, Option<u64>)>,
    /// Record -> how many of its deliveries are still live (it dies with the last), and every
    /// delivery it was written with (completed ones are no longer in `deliveries`): completing a
    /// delivery is a count, not a search of the record's list.
    records: HashMap<RecordId, (u32, Vec<u64>)>,
    /// Message key -> its record in the messages stream, live references, and where its routed
    /// deliveries' references are. Ordered: a delivery's message is the one with the greatest
    /// key below the delivery's id.
    messages: BTreeMap<u64, StoredMessage>,
    /// Deliveries completed before their reference was stored. Routing queues a delivery in a
    /// session before it sends the store job, so a fast subscriber's acknowledgement can reach
    /// this task first: the reference is then not written at all. Bounded; the oldest go first
    /// (a completed delivery that was never to be stored would otherwise stay forever).
    early_done: BTreeSet<u64>,
    /// Streams of recently ended sessions: a reference to one, routed just before its session
    /// ended, is not written (the stream is gone). Bounded; the jobs that could still name a
    /// stream are right behind its drop in the queue. A set beside the order: every stored
    /// reference asks, and a list of 1,024 would be searched each time.
    dropped: VecDeque<StreamId>,
    dropped_set: HashSet<StreamId>,
    /// Per session stream: its deliveries held in delivery sets, and its cursor (ADR 0023).
    sets: HashMap<StreamId, SetCursor>,
    /// Streams whose cursor moved since it was last written.
    moved: Vec<StreamId>,
}

/// A session's deliveries held in its messages' delivery sets, and the cursor that records, in
/// its stream, which of them are complete: every one with a smaller key.
#[derive(Debug, Default)]
struct SetCursor {
    /// (key, delivery id) of each set delivery not complete, or complete behind one that is
    /// not (its id marked [`DONE`]), ascending: the cursor is the first key here.
    pending: VecDeque<(u64, u64)>,
    /// The cursor decided last (written, or read at restore). A delivery routed to this session
    /// with a smaller key (two publishers' keys interleave) is not put in a set: the cursor
    /// already says it is complete, so it gets a reference record of its own.
    floor: u64,
    /// The largest key held in a set: the cursor once nothing is pending.
    last: u64,
    /// The cursor's record in the session's stream.
    record: Option<RecordId>,
    /// In [`Stored::moved`].
    moved: bool,
}

/// Marks a complete delivery in [`SetCursor::pending`].
const DONE: u64 = 1 << 63;

/// The `seq` of the place a delivery held in its message's delivery set has in
/// [`StoredMessage::held`] and [`Stored::deliveries`]: the "record" of such a delivery is its
/// session's stream with this number (no record of the log has it).
const IN_SET: u64 = u64::MAX - 1;

/// A message stored once for persistent sessions.
#[derive(Debug)]
struct StoredMessage {
    record: RecordId,
    /// Live references to it.
    refs: u32,
    /// The record holding each stored delivery of it that routing gave an id and that has a
    /// reference record (QoS 2, or below its session's cursor), by the id's distance from the
    /// message's key (routing gives a message's deliveries the ids right after its key), sorted;
    /// [`RELEASED`] once complete. A push per delivery instead of a hash map entry per delivery:
    /// the map's inserts were the largest cost of a durable fan-out to many sessions (issue 29).
    held: Vec<(u32, RecordId)>,
    /// Its deliveries held in its delivery set, the same way: 12 bytes each where an entry of
    /// `held` is 24 (a fan-out to 100 sessions keeps 100 per message; 4 M queued deliveries
    /// kept 96 MB here).
    set: Vec<SetPlace>,
}

/// A delivery held in its message's delivery set: its place (the id's distance from the key)
/// and its session's stream ([`RELEASED_STREAM`] once complete). Packed: 12 bytes, not 16.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
struct SetPlace {
    at: u32,
    stream: u64,
}

/// The stream of a [`SetPlace`] whose delivery is complete (no stream has it: the store counts
/// them up from 1).
const RELEASED_STREAM: u64 = u64::MAX;

impl StoredMessage {
    /// Takes the reference of its delivery `at` (the id's distance from its key): the record
    /// holding it (for a member of its set, [`Stored::in_set`] of its stream), `None` when there
    /// is none or it is complete already.
    fn take(&mut self, at: u32) -> Option<RecordId> {
        if let Ok(i) = self.set.binary_search_by_key(&at, |p| p.at) {
            let stream = self.set[i].stream;
            self.set[i].stream = RELEASED_STREAM;
            return (stream != RELEASED_STREAM).then(|| Stored::in_set(StreamId(stream)));
        }
        let i = self.held.binary_search_by_key(&at, |(at, _)| *at).ok()?;
        let record = std::mem::replace(&mut self.held[i].1, RELEASED);
        (record != RELEASED).then_some(record)
    }

    /// One reference to it is gone; true when it was the last.
    fn unref(&mut self) -> bool {
        self.refs = self.refs.saturating_sub(1);
        self.refs == 0
    }
}

/// A completed delivery's place in [`StoredMessage::held`].
const RELEASED: RecordId = RecordId {
    stream: StreamId(u64::MAX),
    seq: u64::MAX,
};

/// Most deliveries remembered as completed before their reference was stored.
const EARLY_DONE_MAX: usize = 65_536;
/// Most recently dropped streams remembered.
const DROPPED_MAX: usize = 1_024;

impl Stored {
    /// Where a delivery held in its message's delivery set is said to be (see [`IN_SET`]).
    pub(crate) fn in_set(stream: StreamId) -> RecordId {
        RecordId {
            stream,
            seq: IN_SET,
        }
    }

    /// The cursor of a session's stream: its set deliveries with a smaller key are complete.
    pub(crate) fn cursor(&self, stream: StreamId) -> u64 {
        self.sets.get(&stream).map_or(0, |c| c.floor)
    }

    /// A cursor record found in a session's stream at restore. Returns a record it supersedes
    /// (a crash can leave the one a newer cursor replaced), to remove.
    pub(crate) fn add_cursor(
        &mut self,
        stream: StreamId,
        key: u64,
        record: RecordId,
    ) -> Option<RecordId> {
        let c = self.sets.entry(stream).or_default();
        if c.record.is_some() && key <= c.floor {
            return Some(record);
        }
        c.floor = key;
        c.record.replace(record)
    }

    /// A delivery of `key` to `stream` is now held in the message's delivery set.
    fn add_set(&mut self, stream: StreamId, key: u64, delivery: u64) {
        let c = self.sets.entry(stream).or_default();
        c.last = c.last.max(key);
        let item = (key, delivery);
        match c.pending.back() {
            Some(&(k, d)) if (k, d & !DONE) > item => {
                let at = c.pending.partition_point(|&(k, d)| (k, d & !DONE) < item);
                c.pending.insert(at, item);
            }
            _ => c.pending.push_back(item),
        }
    }

    /// A set delivery of `key` to `stream` is complete: the cursor moves past every complete one
    /// at its front.
    fn complete_set(&mut self, stream: StreamId, key: u64, delivery: u64) {
        let Some(c) = self.sets.get_mut(&stream) else {
            return;
        };
        let item = (key, delivery);
        let Ok(at) = c
            .pending
            .binary_search_by(|&(k, d)| (k, d & !DONE).cmp(&item))
        else {
            return;
        };
        c.pending[at].1 |= DONE;
        let mut popped = false;
        while c.pending.front().is_some_and(|&(_, d)| d & DONE != 0) {
            c.pending.pop_front();
            popped = true;
        }
        if popped && !c.moved {
            c.moved = true;
            self.moved.push(stream);
        }
    }

    /// The cursors that moved since this was last asked: (stream, new cursor, the record of the
    /// one it replaces). Each becomes the stream's floor at once (see [`SetCursor::floor`]).
    pub(super) fn take_cursor_moves(&mut self) -> Vec<(StreamId, u64, Option<RecordId>)> {
        let mut out = Vec::with_capacity(self.moved.len());
        for stream in std::mem::take(&mut self.moved) {
            let Some(c) = self.sets.get_mut(&stream) else {
                continue;
            };
            c.moved = false;
            let cursor = c
                .pending
                .front()
                .map_or(c.last.saturating_add(1), |&(k, _)| k);
            if cursor > c.floor {
                c.floor = cursor;
                out.push((stream, cursor, c.record.take()));
            }
        }
        out
    }

    /// The cursor of `stream` was written as `record`.
    pub(super) fn cursor_stored(&mut self, stream: StreamId, record: RecordId) -> Option<RecordId> {
        match self.sets.get_mut(&stream) {
            Some(c) => c.record.replace(record),
            // The session ended meanwhile: the record goes too.
            None => Some(record),
        }
    }

    /// A session's stream goes (its session ended): every delivery it holds in delivery sets
    /// goes with it, found by one walk of the messages beside its sorted ids.
    pub(super) fn release_set(&mut self, stream: StreamId, dead: &mut Vec<RecordId>) {
        let Some(c) = self.sets.remove(&stream) else {
            return;
        };
        let mut routed = Vec::with_capacity(c.pending.len());
        for (key, id) in c.pending {
            if id & DONE != 0 {
                continue;
            }
            // One whose id is not right after its key (see `add_routed_message`) is found by it.
            if self.deliveries.remove(&id).is_some() {
                self.release_message(Some(key), dead);
            } else {
                routed.push(id);
            }
        }
        // In key order, and a message's ids follow its key: ascending.
        self.release_routed(&routed, dead);
    }

    /// A delivery of the message `key` to `stream` found in the message's delivery set at
    /// restore, given the id `key + 1 + at` (`at`: its place in the set; a message's ids after
    /// its key are its own). Call in ascending `at` for each message. False (and nothing kept)
    /// when the message is unknown: the delivery must then not be made.
    pub(crate) fn add_restored_set(&mut self, key: u64, stream: StreamId, at: u32) -> bool {
        let Some(m) = self.messages.get_mut(&key) else {
            return false;
        };
        m.refs += 1;
        m.set.push(SetPlace {
            at,
            stream: stream.0,
        });
        self.add_set(stream, key, key + 1 + u64::from(at));
        true
    }

    /// True when the message `key` is stored and referenced from here.
    pub(crate) fn has_message(&self, key: u64) -> bool {
        self.messages.contains_key(&key)
    }

    /// A message found in the messages stream at restore.
    pub(crate) fn add_message(&mut self, key: u64, record: RecordId) {
        self.messages.insert(
            key,
            StoredMessage {
                record,
                refs: 0,
                held: Vec::new(),
                set: Vec::new(),
            },
        );
    }

    /// A delivery found in a session's stream at restore.
    pub(crate) fn add_delivery(&mut self, delivery: u64, record: RecordId, key: Option<u64>) {
        self.deliveries.insert(delivery, (record, key));
        let (live, held) = self.records.entry(record).or_default();
        *live += 1;
        held.push(delivery);
        if let Some(key) = key {
            if let Some(m) = self.messages.get_mut(&key) {
                m.refs += 1;
            }
        }
    }

    /// A message just stored, with its stored deliveries' references: (delivery, record), in
    /// any order.
    pub(super) fn add_routed_message(
        &mut self,
        key: u64,
        record: RecordId,
        deliveries: impl IntoIterator<Item = (u64, RecordId)>,
    ) {
        let deliveries = deliveries.into_iter();
        // Most are members of the set.
        let mut set = Vec::with_capacity(deliveries.size_hint().0);
        let mut held = Vec::new();
        let mut refs = 0u32;
        for (delivery, at_record) in deliveries {
            refs = refs.saturating_add(1);
            // Routing gives a message's deliveries the ids right after its key; one that is not
            // (never the case today) is found by its id instead.
            match delivery
                .checked_sub(key + 1)
                .and_then(|at| u32::try_from(at).ok())
            {
                Some(at) if at_record.seq == IN_SET => set.push(SetPlace {
                    at,
                    stream: at_record.stream.0,
                }),
                Some(at) => held.push((at, at_record)),
                None => {
                    self.deliveries.insert(delivery, (at_record, Some(key)));
                    if at_record.seq == IN_SET {
                        self.add_set(at_record.stream, key, delivery);
                    }
                }
            }
        }
        // In routing order already when every delivery is in the set.
        if !held.is_sorted_by_key(|(at, _)| *at) {
            held.sort_unstable_by_key(|(at, _)| *at);
        }
        if !set.is_sorted_by_key(|p| p.at) {
            set.sort_unstable_by_key(|p| p.at);
        }
        for p in &set {
            self.add_set(StreamId(p.stream), key, key + 1 + u64::from(p.at));
        }
        self.messages.insert(
            key,
            StoredMessage {
                record,
                refs,
                held,
                set,
            },
        );
    }

    /// A record just stored holding references of these routed deliveries (whose messages are
    /// added by [`Stored::add_routed_message`]).
    pub(super) fn add_routed_record(&mut self, record: RecordId, deliveries: Vec<u64>) {
        let n = deliveries.len() as u32;
        match self.records.entry(record) {
            Entry::Vacant(v) => {
                v.insert((n, deliveries));
            }
            Entry::Occupied(mut o) => {
                let (live, held) = o.get_mut();
                *live += n;
                held.extend(deliveries);
            }
        }
    }

    /// Takes a routed delivery's reference out of its message: (its record, the message's key);
    /// `None` when the delivery is unknown or already complete.
    fn take_routed(&mut self, delivery: u64) -> Option<(RecordId, u64)> {
        let (&key, m) = self.messages.range_mut(..delivery).next_back()?;
        let at = u32::try_from(delivery - key - 1).ok()?;
        Some((m.take(at)?, key))
    }

    /// Messages nothing references (after a crash between a reference's and a message's
    /// tombstones): their records, to remove.
    pub(crate) fn take_orphans(&mut self) -> Vec<RecordId> {
        let orphans: Vec<u64> = self
            .messages
            .iter()
            .filter(|(_, m)| m.refs == 0)
            .map(|(k, _)| *k)
            .collect();
        orphans
            .into_iter()
            .filter_map(|k| self.messages.remove(&k).map(|m| m.record))
            .collect()
    }

    /// One reference to the message `key` is gone: the message goes with its last.
    fn release_message(&mut self, key: Option<u64>, dead: &mut Vec<RecordId>) {
        let Some(key) = key else { return };
        if let Some(m) = self.messages.get_mut(&key) {
            if m.unref() {
                dead.push(m.record);
                self.messages.remove(&key);
            }
        }
    }

    /// A session's record goes (its session ended): every delivery it holds with it.
    ///
    /// A session that ends with a backlog releases thousands of deliveries here, while every
    /// publisher's store job waits behind it: the routed ones are found by one walk of the
    /// messages in key order beside the sorted ids, not a lookup each (100 sessions ending with
    /// 40,000 messages each held the task for seconds).
    pub(super) fn release_record(&mut self, record: RecordId, dead: &mut Vec<RecordId>) {
        let mut ids = self.records.remove(&record).unwrap_or_default().1;
        // Restored deliveries first, by their ids.
        ids.retain(|delivery| match self.deliveries.remove(delivery) {
            Some((_, key)) => {
                self.release_message(key, dead);
                false
            }
            None => true,
        });
        ids.sort_unstable();
        dead.push(record);
        self.release_routed(&ids, dead);
    }

    /// Releases routed deliveries, by ids in ascending order: one walk of the messages in key
    /// order beside them (a delivery's message is the one with the greatest key below its id).
    fn release_routed(&mut self, ids: &[u64], dead: &mut Vec<RecordId>) {
        let Some(&first) = ids.first() else {
            return;
        };
        // From the message with the greatest key below the first id (its message).
        let start = self.messages.range(..first).next_back().map(|(k, _)| *k);
        let mut walk = match start {
            Some(start) => self.messages.range_mut(start..),
            None => self.messages.range_mut(..),
        }
        .peekable();
        let mut current = None;
        let mut emptied = Vec::new();
        for &id in ids {
            while walk.peek().is_some_and(|(key, _)| **key < id) {
                current = walk.next();
            }
            let Some((&key, m)) = current.as_mut() else {
                continue;
            };
            let Ok(at) = u32::try_from(id - key - 1) else {
                continue;
            };
            if m.take(at).is_some() && m.unref() {
                dead.push(m.record);
                emptied.push(key);
            }
        }
        for key in emptied {
            self.messages.remove(&key);
        }
    }

    /// A delivery is complete: its message loses a reference, and its record dies with its last
    /// delivery. (A record of several QoS 1 references lives until all are complete: after a crash
    /// the completed ones are delivered again, which QoS 1 allows; QoS 2 references have a record
    /// each.)
    pub(super) fn release_delivery(&mut self, delivery: u64, dead: &mut Vec<RecordId>) {
        let found = match self.deliveries.remove(&delivery) {
            Some(found) => Some(found),
            None => self.take_routed(delivery).map(|(r, key)| (r, Some(key))),
        };
        let Some((record, key)) = found else {
            self.early_done.insert(delivery);
            if self.early_done.len() > EARLY_DONE_MAX {
                self.early_done.pop_first();
            }
            return;
        };
        if record.seq == IN_SET {
            if let Some(key) = key {
                self.complete_set(record.stream, key, delivery);
            }
            self.release_message(key, dead);
            return;
        }
        if let Some((live, _)) = self.records.get_mut(&record) {
            *live = live.saturating_sub(1);
            if *live == 0 {
                self.records.remove(&record);
                dead.push(record);
            }
        }
        self.release_message(key, dead);
    }

    /// True when a reference need not be written: its delivery is already complete, or its
    /// session's stream is gone.
    pub(super) fn skip(&mut self, r: &RefSpec) -> bool {
        (!self.early_done.is_empty() && self.early_done.remove(&r.delivery))
            || (!self.dropped_set.is_empty() && self.dropped_set.contains(&r.stream))
    }

    pub(super) fn stream_dropped(&mut self, stream: StreamId) {
        if self.dropped_set.insert(stream) {
            self.dropped.push_back(stream);
        }
        if self.dropped.len() > DROPPED_MAX {
            if let Some(old) = self.dropped.pop_front() {
                self.dropped_set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod size {
    use super::*;

    /// A delivery in a stored message's set is 12 bytes (4 M queued deliveries: 48 MB, where
    /// an entry with a record id took 96). A change that widens it fails here.
    #[test]
    fn a_set_place_stays_small() {
        assert_eq!(std::mem::size_of::<SetPlace>(), 12);
    }
}
