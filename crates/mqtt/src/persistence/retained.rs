//! Retained messages on disk: a task of their own (a flood of retained publishes never queues in
//! front of a session's acknowledgements), and the read at startup.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use outpost_codec::QoS;
use outpost_store::{RecordId, Store};
use tokio::sync::mpsc;

use crate::{Broker, Message};

use super::batch::MAX_BATCH;
use super::jobs::Job;
use super::keys::RETAINED_STREAM;
use super::records::decode_message;
use super::PersistError;

/// The retained-message task: writes retained messages in batches (a later message for a topic
/// replaces an earlier one in the same batch; one group commit for all).
pub(crate) async fn run_retained(
    broker: Arc<Broker>,
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let Some(persister) = broker.persister().cloned() else {
        return;
    };
    let retained_stream = match store.stream(RETAINED_STREAM) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "no retained stream; retained messages will not persist");
            return;
        }
    };
    let mut retained: HashMap<Arc<str>, RecordId> = store
        .scan(retained_stream, 0, usize::MAX)
        .into_iter()
        .filter_map(|r| {
            let (m, ..) = decode_message(&r.payload, Duration::ZERO)?;
            Some((m.topic, r.id))
        })
        .collect();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let n = batch.len();
        // The newest value per topic, in first-seen order.
        let mut latest: Vec<(Arc<str>, Option<Bytes>)> = Vec::new();
        let mut index: HashMap<Arc<str>, usize> = HashMap::new();
        let mut dones = Vec::new();
        for job in batch {
            match job {
                Job::Retain { topic, bytes, done } => {
                    dones.extend(done);
                    match index.get(&topic) {
                        Some(&i) => latest[i].1 = bytes,
                        None => {
                            index.insert(topic.clone(), latest.len());
                            latest.push((topic, bytes));
                        }
                    }
                }
                Job::Flush(done) => dones.push(done),
                _ => {}
            }
        }
        let touched: Vec<Arc<str>> = latest.iter().map(|(t, _)| t.clone()).collect();
        let (topics, payloads): (Vec<Arc<str>>, Vec<Bytes>) = latest
            .into_iter()
            .filter_map(|(t, b)| b.map(|b| (t, b)))
            .unzip();
        let mut answer = Ok(());
        let mut appended = Vec::new();
        if !payloads.is_empty() {
            match store.append_batch(retained_stream, payloads).await {
                Ok(ids) => appended = ids,
                Err(e) => {
                    broker.persistence_failed(topics.len(), &e);
                    answer = Err(PersistError::from_store(&e));
                }
            }
        }
        if answer.is_ok() {
            // The new values are durable: the ones they replace (or clear) can go.
            let dead: Vec<RecordId> = touched.iter().filter_map(|t| retained.remove(t)).collect();
            retained.extend(topics.into_iter().zip(appended));
            if !dead.is_empty() {
                if let Err(e) = store.mark_dead(&dead).await {
                    // The old records stay live on disk: after a restart an older value of a
                    // topic could come back, so this is a failure of the batch too.
                    broker.persistence_failed(dead.len(), &e);
                    answer = Err(PersistError::from_store(&e));
                }
            }
        }
        for done in dones {
            let _ = done.send(answer);
        }
        persister.done(n);
    }
}

/// Retained messages stored before the restart.
pub(crate) fn stored_retained(store: &Store) -> Vec<(Message, QoS)> {
    let Ok(stream) = store.stream(RETAINED_STREAM) else {
        return Vec::new();
    };
    let now = outpost_store::now_ms();
    store
        .scan(stream, 0, usize::MAX)
        .into_iter()
        .filter_map(|r| {
            let age = Duration::from_millis(now.saturating_sub(r.timestamp));
            let (m, qos, ..) = decode_message(&r.payload, age)?;
            Some((m, qos))
        })
        .collect()
}
