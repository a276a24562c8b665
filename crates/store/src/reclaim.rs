//! Background reclamation: enforce retention, delete dead segments, compact mostly-dead ones.
//!
//! Compaction asks the writer to copy a segment's live records to the head (so it shares the log's
//! ordering and never blocks appends for longer than one batch), then deletes the segment. With
//! `compact_below = 0.5`, every sealed segment is at least half live or about to be compacted, which
//! bounds disk use at about twice the live data plus the active segment.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use crate::store::Shared;
use crate::writer::{now_ms, Request};
use crate::{segment, RecordId, StreamId};

/// Compactions per pass, so one pass never monopolizes the writer.
const MAX_COMPACTIONS_PER_PASS: usize = 4;

pub(crate) fn run(shared: Arc<Shared>, tx: Sender<Request>, stop: Arc<(Mutex<bool>, Condvar)>) {
    let (flag, cv) = &*stop;
    loop {
        {
            let mut stopped = flag.lock();
            if *stopped {
                return;
            }
            cv.wait_for(&mut stopped, shared.config.reclaim_interval);
            if *stopped {
                return;
            }
        }
        pass(&shared, &tx);
    }
}

/// One pass: retention, then deletion of dead segments, then compaction.
pub(crate) fn pass(shared: &Shared, tx: &Sender<Request>) {
    enforce_retention(shared, tx);
    delete_dead(shared);
    for _ in 0..MAX_COMPACTIONS_PER_PASS {
        let Some(seg) = compaction_candidate(shared) else {
            break;
        };
        let (reply, rx) = oneshot::channel();
        if tx.send(Request::Relocate { seg, reply }).is_err() {
            return;
        }
        match rx.blocking_recv() {
            Ok(Ok(())) => {
                shared.stats.compactions.fetch_add(1, Ordering::Relaxed);
                delete_dead(shared);
            }
            Ok(Err(e)) => {
                tracing::warn!(segment = seg, error = %e, "compaction postponed");
                return;
            }
            Err(_) => return,
        }
    }
}

fn enforce_retention(shared: &Shared, tx: &Sender<Request>) {
    let rules: Vec<(u64, crate::Retention)> = shared
        .retention
        .read()
        .iter()
        .map(|(k, v)| (*k, *v))
        .collect();
    let now = now_ms();
    for (stream, rule) in rules {
        let doomed: Vec<RecordId> = {
            let index = shared.index.read();
            let Some(s) = index.streams.get(&stream) else {
                continue;
            };
            let cutoff = rule
                .max_age
                .map(|d| now.saturating_sub(d.as_millis() as u64));
            let mut excess = rule
                .max_bytes
                .map_or(0, |max| s.live_bytes.saturating_sub(max));
            let mut out = Vec::new();
            for (&seq, loc) in &s.records {
                let expired = cutoff.is_some_and(|c| loc.timestamp < c);
                if !expired && excess == 0 {
                    break;
                }
                excess = excess.saturating_sub(
                    u64::from(loc.len).saturating_sub(crate::record::HEADER_LEN as u64),
                );
                out.push(RecordId {
                    stream: StreamId(stream),
                    seq,
                });
            }
            out
        };
        if doomed.is_empty() {
            continue;
        }
        // Dropped through tombstones like any delete, so a restart cannot bring them back.
        let (reply, rx) = oneshot::channel();
        if tx
            .send(Request::Kill {
                ids: doomed,
                reply,
                lazy: false,
            })
            .is_err()
        {
            return;
        }
        if let Ok(Err(e)) = rx.blocking_recv() {
            tracing::warn!(stream, error = %e, "retention postponed");
        }
    }
}

/// Deletes sealed segments with nothing live in them. The active segment, and any newer one the writer
/// is creating, are never candidates.
fn delete_dead(shared: &Shared) {
    loop {
        let seg = {
            let mut index = shared.index.write();
            let active = shared.active_seg.load(Ordering::SeqCst);
            let victim = index
                .segments
                .keys()
                .copied()
                .take_while(|&s| s < active)
                .find(|&s| index.live_bytes(s) == 0);
            let Some(seg) = victim else { return };
            index.segments.remove(&seg);
            seg
        };
        shared.segments.write().remove(&seg);
        match segment::remove(&shared.dir, seg) {
            Ok(()) => {
                shared
                    .stats
                    .deleted_segments
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(segment = seg, "dead segment deleted");
            }
            Err(e) => {
                // Its tombstones may still be needed: keep it known so nothing newer relies on it
                // being gone, and try again next pass.
                tracing::warn!(segment = seg, error = %e, "could not delete a dead segment");
                shared.index.write().segments.entry(seg).or_default();
                return;
            }
        }
    }
}

/// The oldest sealed segment whose live share fell below the threshold.
fn compaction_candidate(shared: &Shared) -> Option<u64> {
    let index = shared.index.read();
    let active = shared.active_seg.load(Ordering::SeqCst);
    index
        .segments
        .iter()
        .take_while(|(&seg, _)| seg < active)
        .find_map(|(&seg, st)| {
            if st.used == 0 {
                return None;
            }
            let live = index.live_bytes(seg);
            let ratio = live as f64 / shared.config.segment_size as f64;
            (live > 0 && ratio < shared.config.compact_below).then_some(seg)
        })
}
