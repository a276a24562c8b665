//! One group commit of routed messages: each message once in the messages stream, each session's
//! reference in its own stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use outpost_codec::QoS;
use outpost_store::{RecordId, Result as StoreResult, Store, StreamId};
use rustc_hash::FxHashMap;

use crate::Broker;

use super::jobs::{Job, RefSpec};
use super::records::{
    encode_compact_references, encode_message_record, encode_reference, MAX_REFERENCES,
};
use super::stored::Stored;
use super::PersistError;

/// Most jobs of one kind written in one batch.
pub(super) const MAX_BATCH: usize = 512;

/// What one stream gets in a batch: its records, and for each record the (job, reference) pairs
/// it holds.
type StreamAppend = (StreamId, Vec<Vec<(usize, usize)>>, Vec<Bytes>);
/// A stream's references in a batch, as (job, reference) pairs: QoS 1 ones (one record
/// together), then the others (a record each).
type StreamRefs = (StreamId, Vec<(usize, usize)>, Vec<(usize, usize)>);

/// The store's answer for a batch: per request (the messages stream's, then each session
/// stream's), the ids of its records or why they were not stored.
pub(super) type Written = Vec<StoreResult<Vec<RecordId>>>;

/// The records of a batch of routed messages, handed to the store and not yet durable.
pub(super) struct SentBatch {
    /// The store jobs, answered once their records are durable.
    batch: Vec<Job>,
    /// Per job: how many of its references (the first ones) are members of its message's
    /// delivery set, written in the message's record.
    sets: Vec<usize>,
    /// Per session stream written (in the order of the requests after the messages stream's):
    /// for each of its records, the (job, reference) pairs it holds.
    positions: Vec<Vec<Vec<(usize, usize)>>>,
    /// The store's answer: the messages stream's records, then each session stream's.
    results: Pin<Box<dyn Future<Output = Written> + Send>>,
}

impl SentBatch {
    /// Waits until the store has answered for every record of the batch.
    pub(super) async fn written(&mut self) -> Written {
        (&mut self.results).await
    }
}

/// Hands a batch of routed messages to the store: each message once in the messages stream, each
/// session's reference in its own stream, all appended together (they share the log, so one group
/// commit makes the whole batch durable). Jobs with nothing left to write are answered here; the
/// rest are answered by [`finish_batch`] once the store has answered. Returns at once: the
/// persistence task prepares the next batch while this one is written and synced.
pub(super) fn send_batch(
    store: &Store,
    messages_stream: StreamId,
    stored: &mut Stored,
    batch: Vec<Job>,
) -> Option<SentBatch> {
    // References not worth writing go first; a message left with none is not written either
    // (and its publisher is answered: nothing it needs is missing).
    let mut kept = Vec::with_capacity(batch.len());
    for mut job in batch {
        if let Job::Store { refs, .. } = &mut job {
            refs.retain(|r| !stored.skip(r));
            if refs.is_empty() {
                if let Job::Store { done, .. } = job {
                    let _ = done.send(Ok(()));
                }
                continue;
            }
        }
        kept.push(job);
    }
    let mut batch = kept;
    if batch.is_empty() {
        return None;
    }
    // Encoding happens here, off the engine's locks. A QoS 1 delivery joins its message's
    // delivery set (ADR 0023: no record of its own) unless its session's cursor is already past
    // the key; the others get references in their sessions' streams.
    let mut sets = Vec::with_capacity(batch.len());
    let mut message_records = Vec::with_capacity(batch.len());
    for job in &mut batch {
        let Job::Store {
            message, key, refs, ..
        } = job
        else {
            sets.push(0);
            continue;
        };
        let mut in_set = 0;
        for r in 0..refs.len() {
            let spec = &refs[r];
            if in_set < MAX_REFERENCES
                && spec.qos == QoS::AtLeastOnce
                && *key >= stored.cursor(spec.stream)
            {
                refs.swap(in_set, r);
                in_set += 1;
            }
        }
        sets.push(in_set);
        message_records.push(encode_message_record(*key, message, &refs[..in_set]));
    }
    // Per stream: its other QoS 1 references of the whole batch (one record), then one record
    // per QoS 2 reference (a QoS 2 delivery must never come back after it completed).
    let mut streams: FxHashMap<StreamId, usize> = FxHashMap::default();
    let mut grouped: Vec<StreamRefs> = Vec::new();
    for (j, job) in batch.iter().enumerate() {
        let Job::Store { refs, .. } = job else {
            continue;
        };
        for (r, spec) in refs.iter().enumerate().skip(sets[j]) {
            let at = *streams.entry(spec.stream).or_insert_with(|| {
                grouped.push((spec.stream, Vec::new(), Vec::new()));
                grouped.len() - 1
            });
            let (_, qos1, single) = &mut grouped[at];
            if spec.qos == QoS::AtLeastOnce && qos1.len() < MAX_REFERENCES {
                qos1.push((j, r));
            } else {
                single.push((j, r));
            }
        }
    }
    let spec = |(j, r): (usize, usize)| spec_of(&batch, (j, r));
    let mut by_stream: Vec<StreamAppend> = Vec::with_capacity(grouped.len());
    for (stream, qos1, single) in grouped {
        let mut at = Vec::new();
        let mut payloads = Vec::new();
        match qos1.len() {
            0 => {}
            1 => {
                let (key, s) = spec(qos1[0]);
                payloads.push(encode_reference(key, s));
                at.push(qos1);
            }
            _ => {
                let refs: Vec<(u64, &RefSpec)> = qos1.iter().map(|p| spec(*p)).collect();
                payloads.push(encode_compact_references(&refs));
                at.push(qos1);
            }
        }
        for p in single {
            let (key, s) = spec(p);
            payloads.push(encode_reference(key, s));
            at.push(vec![p]);
        }
        by_stream.push((stream, at, payloads));
    }
    // One request per stream, all sent before any answer is awaited: one group commit.
    let mut requests = vec![(messages_stream, message_records)];
    let mut positions = Vec::with_capacity(by_stream.len());
    for (stream, at, payloads) in by_stream {
        requests.push((stream, payloads));
        positions.push(at);
    }
    let results = Box::pin(store.append_batches(requests));
    Some(SentBatch {
        batch,
        sets,
        positions,
        results,
    })
}

/// The message key and the reference of the `r`th reference of the `j`th job.
fn spec_of(batch: &[Job], (j, r): (usize, usize)) -> (u64, &RefSpec) {
    match &batch[j] {
        Job::Store { key, refs, .. } => (*key, &refs[r]),
        _ => unreachable!("only store jobs have references"),
    }
}

/// Takes the store's answer for a sent batch: registers what was stored (so completed deliveries
/// can release it), answers each job, and takes back what could not be stored.
pub(super) async fn finish_batch(
    broker: &Arc<Broker>,
    store: &Store,
    stored: &mut Stored,
    sent: SentBatch,
    results: Written,
) {
    let SentBatch {
        batch,
        sets,
        positions,
        ..
    } = sent;
    let spec = |(j, r): (usize, usize)| spec_of(&batch, (j, r));
    let mut results = results.into_iter();
    let mut failure: Option<PersistError> = None;
    let message_ids = match results.next() {
        Some(Ok(ids)) => Some(ids),
        Some(Err(e)) => {
            broker.persistence_failed(batch.len(), &e);
            failure = Some(PersistError::from_store(&e));
            None
        }
        None => {
            failure = Some(PersistError::Failed);
            None
        }
    };
    // Per job: its references stored in records of their own, (delivery, record) (few: QoS 2
    // ones and those below their session's cursor; the members of its set are added below).
    let mut held_of: Vec<Vec<(u64, RecordId)>> = vec![Vec::new(); batch.len()];
    // Per job: its references' failure, if any stream of them failed.
    let mut failed: Vec<Option<PersistError>> = vec![None; batch.len()];
    let mut dead = Vec::new();
    for (at, result) in positions.into_iter().zip(results) {
        match result {
            Ok(ids) => {
                for (held, id) in at.into_iter().zip(ids) {
                    if message_ids.is_none() {
                        // The messages are not stored: nothing references them.
                        dead.push(id);
                        continue;
                    }
                    // One map entry per record and one per message, not per reference (a
                    // fan-out to many sessions registers thousands of references per batch).
                    let deliveries = held
                        .iter()
                        .map(|&(j, r)| {
                            let delivery = spec((j, r)).1.delivery;
                            held_of[j].push((delivery, id));
                            delivery
                        })
                        .collect();
                    stored.add_routed_record(id, deliveries);
                }
            }
            Err(e) => {
                broker.persistence_failed(at.iter().map(Vec::len).sum(), &e);
                let failure = PersistError::from_store(&e);
                for (j, _) in at.into_iter().flatten() {
                    failed[j] = Some(failure);
                }
            }
        }
    }
    let mut unqueue = Vec::new();
    let mut message_ids = message_ids.map(|ids| ids.into_iter());
    for (((job, failure_of_refs), held), in_set) in
        batch.into_iter().zip(failed).zip(held_of).zip(sets)
    {
        let Job::Store {
            key,
            refs: specs,
            done,
            ..
        } = job
        else {
            continue;
        };
        let message_id = message_ids.as_mut().and_then(|ids| ids.next());
        // With the records of their own, the members of the set, stored with the message itself
        // (one list built once: a fan-out to a hundred sessions has a hundred of them).
        let held = held.into_iter().chain(
            specs[..in_set]
                .iter()
                .map(|s| (s.delivery, Stored::in_set(s.stream))),
        );
        let answer = match (message_id, failure_of_refs) {
            (Some(msg), None) => {
                stored.add_routed_message(key, msg, held);
                Ok(())
            }
            (Some(msg), Some(e)) => {
                // Partly stored: what was stored goes again, the publisher is told.
                stored.add_routed_message(key, msg, held);
                for spec in &specs {
                    stored.release_delivery(spec.delivery, &mut dead);
                }
                dead.extend(stored.take_orphans());
                Err(e)
            }
            (None, _) => Err(failure.unwrap_or(PersistError::Failed)),
        };
        if answer.is_err() {
            // The publisher hears the failure: no session keeps a place for the message.
            unqueue.extend(specs.iter().map(|s| (s.stream, s.delivery)));
        }
        let _ = done.send(answer);
    }
    if !unqueue.is_empty() {
        broker.unqueue_unstored(&unqueue);
    }
    if !dead.is_empty() {
        // A record of several references can be named more than once.
        dead.sort_unstable();
        dead.dedup();
        if let Err(e) = store.mark_dead(&dead).await {
            broker.persistence_failed(dead.len(), &e);
        }
    }
}
