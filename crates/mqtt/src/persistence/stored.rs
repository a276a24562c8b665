//! Reference counting of stored deliveries: which record holds each delivery and how many sessions
//! still need each message, so a record dies with its last delivery and a message with its last
//! reference.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, VecDeque};

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
    /// first layout), and the key of the message it references.
    deliveries: HashMap<u64, (RecordId, Option<u64>)>,
    /// Record -> how many of its deliveries are still live (it dies with the last), and every
    /// delivery it was written with (completed ones are no longer in `deliveries`): completing a
    /// delivery is a count, not a search of the record's list.
    records: HashMap<RecordId, (u32, Vec<u64>)>,
    /// Message key -> (its record in the messages stream, live references).
    messages: HashMap<u64, (RecordId, u32)>,
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
}

/// Most deliveries remembered as completed before their reference was stored.
const EARLY_DONE_MAX: usize = 65_536;
/// Most recently dropped streams remembered.
const DROPPED_MAX: usize = 1_024;

impl Stored {
    /// A message found in the messages stream at restore.
    pub(crate) fn add_message(&mut self, key: u64, record: RecordId) {
        self.messages.insert(key, (record, 0));
    }

    /// A delivery found in a session's stream at restore (or just stored).
    pub(crate) fn add_delivery(&mut self, delivery: u64, record: RecordId, key: Option<u64>) {
        self.deliveries.insert(delivery, (record, key));
        let (live, held) = self.records.entry(record).or_default();
        *live += 1;
        held.push(delivery);
        if let Some(key) = key {
            if let Some((_, refs)) = self.messages.get_mut(&key) {
                *refs += 1;
            }
        }
    }

    /// A message just stored, with the references to it that were stored with it.
    pub(super) fn add_message_refs(&mut self, key: u64, record: RecordId, refs: u32) {
        self.messages.insert(key, (record, refs));
    }

    /// A record just stored holding these (delivery, message key) references; the messages'
    /// counts are the caller's ([`Stored::add_message_refs`]).
    pub(super) fn add_record(
        &mut self,
        record: RecordId,
        held: impl ExactSizeIterator<Item = (u64, u64)>,
    ) {
        let mut deliveries = Vec::with_capacity(held.len());
        for (delivery, key) in held {
            self.deliveries.insert(delivery, (record, Some(key)));
            deliveries.push(delivery);
        }
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

    /// Messages nothing references (after a crash between a reference's and a message's
    /// tombstones): their records, to remove.
    pub(crate) fn take_orphans(&mut self) -> Vec<RecordId> {
        let orphans: Vec<u64> = self
            .messages
            .iter()
            .filter(|(_, (_, refs))| *refs == 0)
            .map(|(k, _)| *k)
            .collect();
        orphans
            .into_iter()
            .filter_map(|k| self.messages.remove(&k).map(|(r, _)| r))
            .collect()
    }

    /// One reference to the message `key` is gone: the message goes with its last.
    fn release_message(&mut self, key: Option<u64>, dead: &mut Vec<RecordId>) {
        let Some(key) = key else { return };
        if let Some((msg, refs)) = self.messages.get_mut(&key) {
            *refs = refs.saturating_sub(1);
            if *refs == 0 {
                dead.push(*msg);
                self.messages.remove(&key);
            }
        }
    }

    /// A session's record goes (its session ended): every delivery it holds with it.
    pub(super) fn release_record(&mut self, record: RecordId, dead: &mut Vec<RecordId>) {
        for delivery in self.records.remove(&record).unwrap_or_default().1 {
            if let Some((_, key)) = self.deliveries.remove(&delivery) {
                self.release_message(key, dead);
            }
        }
        dead.push(record);
    }

    /// A delivery is complete: its message loses a reference, and its record dies with its last
    /// delivery. (A record of several QoS 1 references lives until all are complete: after a crash
    /// the completed ones are delivered again, which QoS 1 allows; QoS 2 references have a record
    /// each.)
    pub(super) fn release_delivery(&mut self, delivery: u64, dead: &mut Vec<RecordId>) {
        let Some((record, key)) = self.deliveries.remove(&delivery) else {
            self.early_done.insert(delivery);
            if self.early_done.len() > EARLY_DONE_MAX {
                self.early_done.pop_first();
            }
            return;
        };
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
