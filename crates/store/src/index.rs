//! In-memory state rebuilt from the log at open: where every live record is, and how much of each
//! segment is still live. Nothing here is persisted; the log is the truth.
//!
//! Reclamation rules that keep deletes from being undone:
//! - A tombstone must outlive every copy of its target. Compaction can leave an older copy behind
//!   until its segment is deleted, so each location remembers the oldest segment that may hold a copy
//!   (`first_seg`), and a tombstone *pins* that segment: it stays live while any segment in
//!   `pin..holder` exists.
//! - A segment can be deleted when it holds no live data and no live tombstone.

use std::collections::{BTreeMap, HashMap};

/// Where a record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub seg: u64,
    pub offset: u32,
    pub len: u32,
    /// Oldest segment that may still hold a copy of this record.
    pub first_seg: u64,
    pub timestamp: u64,
}

/// A tombstone record and what it protects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tomb {
    pub stream: u64,
    pub seq: u64,
    pub pin: u64,
    pub len: u32,
    /// Copied forward by compaction; this copy no longer counts.
    pub relocated: bool,
}

#[derive(Debug, Default)]
pub(crate) struct SegStats {
    /// Bytes written (the tail).
    pub used: u64,
    /// Bytes of live data records.
    pub live_data: u64,
    pub data_records: u64,
    pub tombs: Vec<Tomb>,
}

#[derive(Debug, Default)]
pub(crate) struct StreamIndex {
    pub records: BTreeMap<u64, Loc>,
    /// Payload bytes of live records.
    pub live_bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    pub streams: HashMap<u64, StreamIndex>,
    pub segments: BTreeMap<u64, SegStats>,
}

impl Index {
    pub(crate) fn get(&self, stream: u64, seq: u64) -> Option<Loc> {
        self.streams.get(&stream)?.records.get(&seq).copied()
    }

    /// Records a data record; an existing copy elsewhere becomes dead.
    pub(crate) fn insert(&mut self, stream: u64, seq: u64, mut loc: Loc) {
        let s = self.streams.entry(stream).or_default();
        if let Some(old) = s.records.get(&seq).copied() {
            loc.first_seg = loc.first_seg.min(old.first_seg);
            s.live_bytes -= payload(old.len);
            if let Some(st) = self.segments.get_mut(&old.seg) {
                st.live_data -= u64::from(old.len);
            }
        }
        s.live_bytes += payload(loc.len);
        s.records.insert(seq, loc);
        let st = self.segments.entry(loc.seg).or_default();
        st.live_data += u64::from(loc.len);
        st.data_records += 1;
    }

    /// Marks a record dead; returns where it was.
    pub(crate) fn kill(&mut self, stream: u64, seq: u64) -> Option<Loc> {
        let s = self.streams.get_mut(&stream)?;
        let loc = s.records.remove(&seq)?;
        s.live_bytes -= payload(loc.len);
        if let Some(st) = self.segments.get_mut(&loc.seg) {
            st.live_data -= u64::from(loc.len);
        }
        Some(loc)
    }

    /// Whether a tombstone held in `holder` still protects against a copy of its target.
    pub(crate) fn tomb_is_live(&self, t: &Tomb, holder: u64) -> bool {
        !t.relocated && self.segments.range(t.pin..holder).next().is_some()
    }

    /// Live bytes of a segment: data plus tombstones that still pin something.
    pub(crate) fn live_bytes(&self, seg: u64) -> u64 {
        let Some(st) = self.segments.get(&seg) else {
            return 0;
        };
        let tombs: u64 = st
            .tombs
            .iter()
            .filter(|t| self.tomb_is_live(t, seg))
            .map(|t| u64::from(t.len))
            .sum();
        st.live_data + tombs
    }
}

fn payload(len: u32) -> u64 {
    u64::from(len).saturating_sub(crate::record::HEADER_LEN as u64)
}
