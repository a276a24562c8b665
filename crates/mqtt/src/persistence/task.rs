//! The session persistence task: runs the engine's jobs (deliveries, acknowledgements, session
//! changes) in order, batching jobs of one kind into one write.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use outpost_store::{MetaOp, RecordId, Store, StreamId};
use tokio::sync::mpsc;

use crate::Broker;

use super::batch::{finish_batch, send_batch, SentBatch, MAX_BATCH};
use super::jobs::{Job, Persister, SubChange};
use super::keys::{
    encode_session_record, encode_subscription, subscription_key, subscriptions_prefix, SESSIONS,
    SUBSCRIPTIONS,
};
use super::records::{encode_cursor, MESSAGES_STREAM};
use super::stored::Stored;
use super::PersistError;

/// Most batches of routed messages handed to the store and not yet durable. While one is
/// written and synced, the task encodes the next and hands it over, so the writer's next group
/// commit takes it: encoding and syncing overlap instead of taking turns (a durable fan-out to
/// 100 offline sessions spent half its time in each). A few suffice; more would only hold more
/// publishers' messages in memory.
const IN_FLIGHT: usize = 4;

/// Takes more jobs that `fits` accepts from the queue, up to [`MAX_BATCH`]; a job that does not
/// fit is left in `next` for the following round.
fn gather(
    first: Job,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    next: &mut Option<Job>,
    fits: impl Fn(&Job) -> bool,
) -> Vec<Job> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(j) if fits(&j) => batch.push(j),
            Ok(other) => {
                *next = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

/// Saves a batch of session changes in one metadata transaction (one fsync for all of them).
async fn save_sessions(broker: &Broker, store: &Store, batch: Vec<Job>) {
    let store2 = store.clone();
    let (dones, result) = tokio::task::spawn_blocking(move || {
        let meta = store2.meta();
        // The final state of every key the batch touches, later changes winning.
        let mut last: HashMap<(&'static str, Vec<u8>), Option<Vec<u8>>> = HashMap::new();
        let mut dones = Vec::new();
        for job in batch {
            let Job::SaveSession {
                client,
                record,
                replace,
                changes,
                done,
            } = job
            else {
                continue;
            };
            if replace {
                match meta.scan(SUBSCRIPTIONS, &subscriptions_prefix(&client)) {
                    Ok(old) => {
                        for (k, _) in old {
                            last.insert((SUBSCRIPTIONS, k), None);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "stored subscriptions not read"),
                }
            }
            if let Some((expiry, stream)) = record {
                last.insert(
                    (SESSIONS, client.as_bytes().to_vec()),
                    Some(encode_session_record(expiry, &stream)),
                );
            }
            for c in changes {
                match c {
                    SubChange::Put(filter, options, id) => last.insert(
                        (SUBSCRIPTIONS, subscription_key(&client, &filter)),
                        Some(encode_subscription(&options, id).to_vec()),
                    ),
                    SubChange::Delete(filter) => {
                        last.insert((SUBSCRIPTIONS, subscription_key(&client, &filter)), None)
                    }
                };
            }
            dones.extend(done);
        }
        let ops: Vec<MetaOp<'_>> = last
            .iter()
            .map(|((table, key), value)| match value {
                Some(value) => MetaOp::Put { table, key, value },
                None => MetaOp::Delete { table, key },
            })
            .collect();
        (dones, meta.apply(&ops))
    })
    .await
    .unwrap_or_else(|e| {
        (
            Vec::new(),
            Err(outpost_store::StoreError::Meta(e.to_string())),
        )
    });
    let answer = match &result {
        Ok(()) => Ok(()),
        Err(e) => {
            broker.persistence_failed(dones.len().max(1), e);
            Err(PersistError::from_store(e))
        }
    };
    for done in dones {
        let _ = done.send(answer);
    }
}

/// Forgets an ended session: record, subscriptions, queued messages and stream.
async fn drop_session(
    store: &Store,
    stored: &mut Stored,
    client: Arc<str>,
    stream: Option<(StreamId, Arc<str>)>,
) {
    let store2 = store.clone();
    let client2 = client.clone();
    let meta_result = tokio::task::spawn_blocking(move || {
        let meta = store2.meta();
        let subs = meta.scan(SUBSCRIPTIONS, &subscriptions_prefix(&client2))?;
        let mut ops: Vec<MetaOp<'_>> = subs
            .iter()
            .map(|(k, _)| MetaOp::Delete {
                table: SUBSCRIPTIONS,
                key: k,
            })
            .collect();
        ops.push(MetaOp::Delete {
            table: SESSIONS,
            key: client2.as_bytes(),
        });
        meta.apply(&ops)
    })
    .await;
    if !matches!(meta_result, Ok(Ok(()))) {
        tracing::error!(
            client = &*client,
            "ended session not removed from the store"
        );
    }
    if let Some((stream, name)) = stream {
        drop_stream(store, stored, stream, name).await;
    }
}

/// Kills `dead` and writes the cursors that moved (one record in each session's stream, killing
/// the one each replaces), together: the new cursors are handed to the store first and share the
/// tombstones' group commit. A crash that keeps a tombstone of an old cursor and loses the new
/// one leaves the session an older cursor (or none): it gets again what it completed since,
/// which QoS 1 allows; nothing is lost.
async fn kill_and_write_cursors(
    broker: &Broker,
    store: &Store,
    stored: &mut Stored,
    mut dead: Vec<RecordId>,
) {
    let moves = stored.take_cursor_moves();
    let appended = (!moves.is_empty()).then(|| {
        store.append_batches(
            moves
                .iter()
                .map(|&(stream, key, _)| (stream, vec![encode_cursor(key)]))
                .collect(),
        )
    });
    dead.extend(moves.iter().filter_map(|&(_, _, old)| old));
    let killed = async {
        if !dead.is_empty() {
            if let Err(e) = store.mark_dead(&dead).await {
                broker.persistence_failed(dead.len(), &e);
            }
        }
    };
    let results = match appended {
        Some(appended) => tokio::join!(appended, killed).0,
        None => {
            killed.await;
            return;
        }
    };
    let mut superseded = Vec::new();
    for ((stream, ..), result) in moves.into_iter().zip(results) {
        match result {
            Ok(ids) => {
                for id in ids {
                    superseded.extend(stored.cursor_stored(stream, id));
                }
            }
            Err(e) => broker.persistence_failed(1, &e),
        }
    }
    // Only a cursor written for a session that ended meanwhile.
    store.mark_dead_later(&superseded);
}

/// Kills what is left in a session's stream (and messages no other session references), then
/// removes the stream's name.
async fn drop_stream(store: &Store, stored: &mut Stored, stream: StreamId, name: Arc<str>) {
    stored.stream_dropped(stream);
    let mut ids: Vec<RecordId> = Vec::new();
    stored.release_set(stream, &mut ids);
    let reader = store.clone();
    // Reading a long queue is disk work: off the async workers.
    let records = tokio::task::spawn_blocking(move || reader.scan(stream, 0, usize::MAX))
        .await
        .unwrap_or_default();
    for r in records {
        stored.release_record(r.id, &mut ids);
    }
    if let Err(e) = store.mark_dead(&ids).await {
        tracing::error!(stream = &*name, error = %e, "queued messages of an ended session not removed");
        return;
    }
    let store = store.clone();
    let removed = tokio::task::spawn_blocking(move || store.remove_stream(&name)).await;
    if let Ok(Err(e)) = removed {
        tracing::warn!(error = %e, "stream of an ended session not removed");
    }
}

/// Runs the persistence task on a thread of its own (with a single-threaded runtime) for as long
/// as the caller's runtime lives: when that runtime shuts down, the task is dropped as a task of
/// it would be (the engine, its store and the folder's lock go with it) and the thread is joined
/// before the shutdown goes on, so the folder can be opened again at once.
pub(crate) fn spawn_thread(
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), outpost_store::StoreError> {
    let io = |source| outpost_store::StoreError::Io {
        context: "starting the persistence task".into(),
        source,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("outpost-persist".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    () = task => {}
                    _ = stopped => {}
                }
            });
        })
        .map_err(io)?;
    /// Dropped with the caller's runtime: stops the thread and waits for it.
    struct Guard(
        Option<(
            tokio::sync::oneshot::Sender<()>,
            std::thread::JoinHandle<()>,
        )>,
    );
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some((stop, thread)) = self.0.take() {
                drop(stop);
                let _ = thread.join();
            }
        }
    }
    let guard = Guard(Some((stop, thread)));
    tokio::spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    });
    Ok(())
}

/// The persistence task: runs the engine's jobs (deliveries, acknowledgements, sessions) in order.
pub(crate) async fn run(
    broker: Arc<Broker>,
    store: Store,
    mut stored: Stored,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let Some(persister) = broker.persister().cloned() else {
        return;
    };
    let messages_stream = match store.stream(MESSAGES_STREAM) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "no messages stream; messages for offline sessions will not persist");
            return;
        }
    };
    let orphans = stored.take_orphans();
    if !orphans.is_empty() {
        if let Err(e) = store.mark_dead(&orphans).await {
            broker.persistence_failed(orphans.len(), &e);
        }
    }
    // A job taken from the queue while batching that belongs to the next round.
    let mut next: Option<Job> = None;
    // Batches handed to the store and not yet durable, oldest first (see `IN_FLIGHT`).
    let mut in_flight: VecDeque<(SentBatch, usize)> = VecDeque::new();
    loop {
        let job = match next.take() {
            Some(j) => j,
            None if in_flight.is_empty() => match rx.recv().await {
                Some(j) => j,
                None => break,
            },
            None => {
                // Whichever comes first: the oldest batch's answer, or another job.
                let arrived = match in_flight.front_mut() {
                    Some((oldest, _)) => tokio::select! {
                        biased;
                        results = oldest.written() => Err(results),
                        job = rx.recv() => Ok(job),
                    },
                    None => Ok(rx.recv().await),
                };
                match arrived {
                    Ok(Some(j)) => j,
                    Ok(None) => break,
                    Err(results) => {
                        if let Some((sent, n)) = in_flight.pop_front() {
                            finish_batch(&broker, &store, &mut stored, sent, results).await;
                            persister.done(n);
                        }
                        continue;
                    }
                }
            }
        };
        // Any other job sees every earlier batch registered (a completed delivery must find its
        // reference), and no more than `IN_FLIGHT` batches wait on the store.
        let keep = if matches!(job, Job::Store { .. }) {
            IN_FLIGHT - 1
        } else {
            0
        };
        finish_sent(
            &broker,
            &store,
            &mut stored,
            &persister,
            &mut in_flight,
            keep,
        )
        .await;
        let n = match job {
            store_job @ Job::Store { .. } => {
                // Everything already queued goes to the disk together: one group commit for
                // the batch instead of one fsync per message.
                let batch = gather(store_job, &mut rx, &mut next, |j| {
                    matches!(j, Job::Store { .. })
                });
                let n = batch.len();
                match send_batch(&store, messages_stream, &mut stored, batch) {
                    Some(sent) => {
                        in_flight.push_back((sent, n));
                        // Done when the store answers.
                        continue;
                    }
                    None => n,
                }
            }
            Job::Done(delivery) => {
                let batch = gather(Job::Done(delivery), &mut rx, &mut next, |j| {
                    matches!(j, Job::Done(_))
                });
                let n = batch.len();
                let mut ids: Vec<RecordId> = Vec::new();
                for job in batch {
                    if let Job::Done(d) = job {
                        stored.release_delivery(d, &mut ids);
                    }
                }
                kill_and_write_cursors(&broker, &store, &mut stored, ids).await;
                n
            }
            save @ Job::SaveSession { .. } => {
                let batch = gather(save, &mut rx, &mut next, |j| {
                    matches!(j, Job::SaveSession { .. })
                });
                let n = batch.len();
                save_sessions(&broker, &store, batch).await;
                n
            }
            Job::DropSession { client, stream } => {
                drop_session(&store, &mut stored, client, stream).await;
                1
            }
            Job::DropStream { stream, name } => {
                drop_stream(&store, &mut stored, stream, name).await;
                1
            }
            Job::Flush(done) => {
                let _ = done.send(Ok(()));
                1
            }
            Job::Retain { .. } => {
                tracing::error!("a retained message reached the session task; not stored");
                1
            }
        };
        persister.done(n);
    }
    // The engine is gone: what was handed to the store is still answered.
    finish_sent(&broker, &store, &mut stored, &persister, &mut in_flight, 0).await;
}

/// Waits for the store's answer to the oldest sent batches until at most `keep` wait, and
/// registers and answers each.
async fn finish_sent(
    broker: &Arc<Broker>,
    store: &Store,
    stored: &mut Stored,
    persister: &Persister,
    in_flight: &mut VecDeque<(SentBatch, usize)>,
    keep: usize,
) {
    while in_flight.len() > keep {
        let Some((mut sent, n)) = in_flight.pop_front() else {
            break;
        };
        let results = sent.written().await;
        finish_batch(broker, store, stored, sent, results).await;
        persister.done(n);
    }
}
