//! Opening the store after a clean stop or a crash: replay every segment in order, verifying each
//! record's CRC, and rebuild the index.
//!
//! Damage is expected at the tail of the last segment (a write torn by the crash) and possible
//! anywhere (a bit flip). Both are handled the same way: log one line, skip to the next valid record
//! (records carry a magic number for this), and, in the active segment, zero everything after the
//! last valid record so a later append cannot end up next to stale bytes. Nothing panics, nothing
//! damaged is ever returned.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;

use crate::index::{Index, Loc, Tomb};
use crate::record::{self, Kind, Parsed, HEADER_LEN};
use crate::writer::now_ms;
use crate::{segment, Result, StoreConfig, StoreError};

pub(crate) struct Recovered {
    pub index: Index,
    pub maps: BTreeMap<u64, Bytes>,
    pub active: u64,
    pub file: File,
    pub tail: u64,
    pub next_seq: u64,
    pub report: RecoveryReport,
}

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments read.
    pub segments: usize,
    /// Valid records replayed (data, tombstones, segment starts).
    pub records: u64,
    /// Places where damaged bytes were skipped or cut off.
    pub damaged: usize,
    /// Bytes skipped or cut off because they were damaged.
    pub damaged_bytes: u64,
    /// Time the replay took.
    pub millis: u64,
}

pub(crate) fn recover(dir: &Path, config: &StoreConfig) -> Result<Recovered> {
    let started = Instant::now();
    let ids =
        segment::list(dir).map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
    let mut index = Index::default();
    let mut maps = BTreeMap::new();
    let mut report = RecoveryReport::default();
    let mut next_seq = 1u64;
    let mut last = None;

    for (i, &id) in ids.iter().enumerate() {
        let is_last = i + 1 == ids.len();
        let file = segment::open_rw(dir, id)
            .map_err(|e| StoreError::io(format!("opening segment {id}"), e))?;
        if is_last {
            // The writer appends here and readers read through the map: it must span a whole segment,
            // even if a crash cut the file short (e.g. between its creation and its sizing).
            let len = file
                .metadata()
                .map_err(|e| StoreError::io(format!("sizing segment {id}"), e))?
                .len();
            if len < config.segment_size {
                segment::allocate(&file, config.segment_size)
                    .map_err(|e| StoreError::io(format!("extending segment {id}"), e))?;
            }
        }
        let map =
            segment::map(&file).map_err(|e| StoreError::io(format!("mapping segment {id}"), e))?;
        let (tail, damaged) = replay(id, &map, &mut index, &mut next_seq, &mut report);
        index.segments.entry(id).or_default().used = tail as u64;
        if damaged && is_last {
            segment::zero_from(&file, tail as u64, map.len() as u64).map_err(|e| {
                StoreError::io(format!("clearing the damaged tail of segment {id}"), e)
            })?;
        }
        report.segments += 1;
        maps.insert(id, map);
        if is_last {
            last = Some((id, file, tail as u64));
        }
    }

    let (active, file, tail) = match last {
        // A full last segment is rolled by the writer at the next append.
        Some(l) => l,
        None => {
            let file = segment::create(dir, 0, config.segment_size)
                .map_err(|e| StoreError::io("creating the first segment", e))?;
            let mut start = Vec::new();
            record::encode(
                &mut start,
                &record::Header {
                    kind: Kind::SegmentStart,
                    stream: 0,
                    seq: next_seq,
                    timestamp: now_ms(),
                },
                &[],
            );
            std::os::unix::fs::FileExt::write_all_at(&file, &start, 0)
                .and_then(|()| file.sync_data())
                .map_err(|e| StoreError::io("writing the first segment", e))?;
            let map =
                segment::map(&file).map_err(|e| StoreError::io("mapping the first segment", e))?;
            maps.insert(0, map);
            index.segments.entry(0).or_default().used = start.len() as u64;
            (0, file, start.len() as u64)
        }
    };
    report.millis = started.elapsed().as_millis() as u64;
    Ok(Recovered {
        index,
        maps,
        active,
        file,
        tail,
        next_seq,
        report,
    })
}

/// Replays one segment; returns the end of its last valid record and whether damage was seen.
fn replay(
    seg: u64,
    map: &[u8],
    index: &mut Index,
    next_seq: &mut u64,
    report: &mut RecoveryReport,
) -> (usize, bool) {
    let mut off = 0usize;
    let mut tail = 0usize;
    let mut damaged = false;
    while off < map.len() {
        match record::parse(&map[off..]) {
            Parsed::Record { header: h, len } => {
                report.records += 1;
                match h.kind {
                    Kind::Data => {
                        *next_seq = (*next_seq).max(h.seq + 1);
                        index.insert(
                            h.stream,
                            h.seq,
                            Loc {
                                seg,
                                offset: off as u32,
                                len: len as u32,
                                first_seg: seg,
                                timestamp: h.timestamp,
                            },
                        );
                    }
                    Kind::Tombstone => {
                        *next_seq = (*next_seq).max(h.seq + 1);
                        if let Some(target) = index.kill(h.stream, h.seq) {
                            index.segments.entry(seg).or_default().tombs.push(Tomb {
                                stream: h.stream,
                                seq: h.seq,
                                pin: target.first_seg,
                                len: len as u32,
                                relocated: false,
                            });
                        }
                    }
                    Kind::SegmentStart => *next_seq = (*next_seq).max(h.seq),
                }
                off += len;
                tail = off;
            }
            damage => {
                // Zeros mean the end, unless something follows them; anything else is damage.
                if damage == Parsed::End && first_nonzero(map, off).is_none() {
                    break;
                }
                damaged = true;
                match record::resync(map, off) {
                    Some(next) => {
                        skip(seg, off, next, report);
                        off = next;
                    }
                    None => {
                        skip(seg, off, last_nonzero(map).max(off + 1), report);
                        break;
                    }
                }
            }
        }
    }
    (tail, damaged)
}

/// First non-zero byte at or after `from`, reading eight bytes at a time (the tail of the active
/// segment is mostly zeros and is scanned at every open).
fn first_nonzero(map: &[u8], from: usize) -> Option<usize> {
    let rest = map.get(from..)?;
    let mut chunks = rest.chunks_exact(64);
    let mut base = from;
    for chunk in &mut chunks {
        if chunk.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return chunk.iter().position(|&b| b != 0).map(|p| base + p);
        }
        base += 64;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b != 0)
        .map(|p| base + p)
}

/// One past the last non-zero byte.
fn last_nonzero(map: &[u8]) -> usize {
    let mut end = map.len();
    while end >= 64 && map[end - 64..end].iter().fold(0u8, |acc, &b| acc | b) == 0 {
        end -= 64;
    }
    map[..end]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |p| p + 1)
}

fn skip(seg: u64, from: usize, to: usize, report: &mut RecoveryReport) {
    report.damaged += 1;
    report.damaged_bytes += (to - from) as u64;
    tracing::warn!(
        segment = seg,
        offset = from,
        bytes = to - from,
        "damaged bytes in the log skipped (torn write or corruption); records around them are intact"
    );
}

/// Smallest segment able to hold a record of `payload` bytes plus the segment start record.
pub(crate) fn max_payload(segment_size: u64) -> usize {
    (segment_size as usize).saturating_sub(2 * HEADER_LEN)
}
