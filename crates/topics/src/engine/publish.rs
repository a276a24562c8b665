//! Publish and PublishBatch: validation, FIFO deduplication and sequence numbers, filter
//! policies, and the durable fan-out (copies into queues and one pending record per message for
//! HTTP/S and MQTT, all sharing the store's group commit).

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::future::join_all;
use outpost_queues::message::{AttributeValue, MessageAttribute};
use outpost_queues::{QueueError, SendRequest};
use serde_json::Value;
use sha2::Digest as _;

use super::deliver::Pending;
use super::*;
use crate::message::{validate_attributes, Attributes, Notification, MAX_MESSAGE_BYTES};
use crate::subscription::Protocol;
use crate::topic::{Dedup, DEDUP_WINDOW_MS};

/// A `Publish` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishRequest {
    /// `TopicArn`.
    pub topic_arn: Option<String>,
    /// `TargetArn` (a topic ARN here; mobile endpoints are not supported).
    pub target_arn: Option<String>,
    /// `PhoneNumber` (SMS is not supported).
    pub phone_number: Option<String>,
    /// The message fields.
    pub entry: PublishEntry,
}

/// One message to publish (a `Publish` call or a `PublishBatch` entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishEntry {
    /// The batch entry's `Id` (empty for `Publish`).
    pub id: String,
    /// `Message`.
    pub message: Option<String>,
    /// `Subject`.
    pub subject: Option<String>,
    /// `MessageStructure` (`json` or absent).
    pub structure: Option<String>,
    /// `MessageAttributes`.
    pub attributes: Attributes,
    /// `MessageDeduplicationId`.
    pub dedup_id: Option<String>,
    /// `MessageGroupId`.
    pub group_id: Option<String>,
}

/// What a successful publish returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishResult {
    /// The batch entry's `Id` (empty for `Publish`).
    pub id: String,
    /// The message id.
    pub message_id: String,
    /// FIFO topics: the sequence number.
    pub sequence_number: Option<String>,
}

/// A failed batch entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFailure {
    /// The entry's `Id`.
    pub id: String,
    /// The error code.
    pub code: String,
    /// The error message.
    pub message: String,
    /// True when the caller is at fault.
    pub sender_fault: bool,
}

/// Entries per PublishBatch (SNS: 10).
pub const MAX_BATCH: usize = 10;

fn valid_fifo_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic())
}

fn valid_batch_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 80
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A message ready to fan out, or a FIFO duplicate answered from the deduplication window.
enum Prepared {
    New(Box<Notification>),
    Duplicate(PublishResult),
}

/// Splits `MessageStructure=json` into the default message and the per-protocol ones.
fn split_structure(message: String) -> Result<(String, BTreeMap<String, String>)> {
    let v: Value = serde_json::from_str(&message).map_err(|_| {
        TopicError::invalid("Message Structure - JSON message body failed to parse")
    })?;
    let Value::Object(map) = v else {
        return Err(TopicError::invalid(
            "Message Structure - JSON message body failed to parse",
        ));
    };
    let mut default = None;
    let mut per = BTreeMap::new();
    for (k, v) in map {
        let Value::String(s) = v else {
            return Err(TopicError::invalid(format!(
                "Message Structure - the value of {} must be a string",
                k.chars().take(64).collect::<String>()
            )));
        };
        if k == "default" {
            default = Some(s);
        } else {
            per.insert(k, s);
        }
    }
    let default = default.ok_or_else(|| {
        TopicError::invalid("Message Structure - No default entry in JSON message body")
    })?;
    Ok((default, per))
}

impl Topics {
    fn prepare(&self, topic: &Topic, entry: PublishEntry, now: u64) -> Result<Prepared> {
        let message = entry
            .message
            .ok_or_else(|| TopicError::invalid("Empty message"))?;
        if message.is_empty() {
            return Err(TopicError::invalid("Empty message"));
        }
        if let Some(s) = &entry.subject {
            if s.is_empty()
                || s.chars().count() > 100
                || s.chars().any(|c| c.is_control() || !c.is_ascii())
            {
                return Err(TopicError::invalid("Subject"));
            }
        }
        validate_attributes(&entry.attributes)?;
        let (message, per_protocol) = match entry.structure.as_deref() {
            None | Some("") => (message, BTreeMap::new()),
            Some("json") => split_structure(message)?,
            Some(_) => return Err(TopicError::invalid("MessageStructure")),
        };
        let mut n = Notification {
            id: uuid(),
            topic_arn: topic.arn.clone(),
            subject: entry.subject,
            message,
            per_protocol,
            attributes: entry.attributes,
            timestamp_ms: now,
            sequence: None,
            group: None,
            dedup: None,
            signature_version: topic.signature_version().as_str().to_string(),
        };
        if n.size() > MAX_MESSAGE_BYTES {
            return Err(TopicError::invalid("Message too long"));
        }
        if !topic.fifo {
            if entry.group_id.is_some() {
                return Err(TopicError::invalid(
                    "The request includes MessageGroupId parameter that is not valid for this topic type",
                ));
            }
            if entry.dedup_id.is_some() {
                return Err(TopicError::invalid(
                    "The request includes MessageDeduplicationId parameter that is not valid for this topic type",
                ));
            }
            return Ok(Prepared::New(Box::new(n)));
        }
        let group = entry.group_id.ok_or_else(|| {
            TopicError::invalid("The MessageGroupId parameter is required for FIFO topics")
        })?;
        if !valid_fifo_id(&group) {
            return Err(TopicError::invalid("MessageGroupId"));
        }
        let dedup = match entry.dedup_id {
            Some(d) if valid_fifo_id(&d) => d,
            Some(_) => return Err(TopicError::invalid("MessageDeduplicationId")),
            None if topic.content_based_dedup() => {
                hex::encode(sha2::Sha256::digest(n.message.as_bytes()))
            }
            None => {
                return Err(TopicError::invalid(
                    "The topic should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                ))
            }
        };
        {
            let mut window = topic.dedup.lock();
            if window.len() > 10_000 {
                window.retain(|_, d| d.expires_ms > now);
            }
            if let Some(d) = window.get(&dedup).filter(|d| d.expires_ms > now) {
                return Ok(Prepared::Duplicate(PublishResult {
                    id: entry.id,
                    message_id: d.message_id.clone(),
                    sequence_number: Some(d.sequence.clone()),
                }));
            }
            let seq = format!(
                "{:020}",
                topic.next_sequence.fetch_add(1, Ordering::Relaxed)
            );
            window.insert(
                dedup.clone(),
                Dedup {
                    expires_ms: now + DEDUP_WINDOW_MS,
                    message_id: n.id.clone(),
                    sequence: seq.clone(),
                },
            );
            n.sequence = Some(seq);
        }
        n.group = Some(group);
        n.dedup = Some(dedup);
        Ok(Prepared::New(Box::new(n)))
    }

    /// `Publish`.
    pub async fn publish(self: &Arc<Self>, req: PublishRequest) -> Result<PublishResult> {
        if req.phone_number.is_some() {
            return Err(TopicError::invalid(
                "PhoneNumber Reason: SMS is not supported by Outpost",
            ));
        }
        let arn = match (&req.topic_arn, &req.target_arn) {
            (Some(t), None) | (None, Some(t)) => t.clone(),
            (Some(_), Some(_)) => {
                return Err(TopicError::invalid(
                    "Only one of TopicArn or TargetArn may be given",
                ))
            }
            (None, None) => {
                return Err(TopicError::invalid(
                    "TopicArn or TargetArn Reason: no value for required parameter",
                ))
            }
        };
        let param = if req.topic_arn.is_some() {
            "TopicArn"
        } else {
            "TargetArn"
        };
        let topic = match self.topic_by_arn(&arn) {
            Err(TopicError::InvalidParameter(_)) => return Err(TopicError::invalid(param)),
            other => other?,
        };
        let (mut ok, mut failed) = self.publish_entries(&topic, vec![req.entry]).await?;
        if let Some(f) = failed.pop() {
            return Err(f.1);
        }
        ok.pop()
            .ok_or_else(|| TopicError::Internal("empty publish".into()))
    }

    /// `PublishBatch`: each entry succeeds or fails on its own; all share one group commit.
    pub async fn publish_batch(
        self: &Arc<Self>,
        topic_arn: &str,
        entries: Vec<PublishEntry>,
    ) -> Result<(Vec<PublishResult>, Vec<BatchFailure>)> {
        let topic = self.topic_by_arn(topic_arn)?;
        if entries.is_empty() {
            return Err(TopicError::EmptyBatchRequest);
        }
        if entries.len() > MAX_BATCH {
            return Err(TopicError::TooManyEntriesInBatchRequest);
        }
        let mut ids = HashSet::new();
        for e in &entries {
            if !valid_batch_id(&e.id) {
                return Err(TopicError::InvalidBatchEntryId);
            }
            if !ids.insert(e.id.as_str()) {
                return Err(TopicError::BatchEntryIdsNotDistinct);
            }
        }
        let total: usize = entries
            .iter()
            .map(|e| {
                e.message.as_ref().map_or(0, String::len)
                    + crate::message::attributes_size(&e.attributes)
            })
            .sum();
        if total > MAX_MESSAGE_BYTES {
            return Err(TopicError::BatchRequestTooLong);
        }
        let (ok, failed) = self.publish_entries(&topic, entries).await?;
        Ok((
            ok,
            failed
                .into_iter()
                .map(|(id, e)| BatchFailure {
                    id,
                    code: e.code().to_string(),
                    message: e.to_string(),
                    sender_fault: e.sender_fault(),
                })
                .collect(),
        ))
    }

    /// The request that puts `n` into the queue of subscription `s`: the envelope, or the raw
    /// message with its attributes as queue message attributes.
    pub(super) fn queue_copy(
        &self,
        n: &Notification,
        s: &Subscription,
        signature: &str,
    ) -> SendRequest {
        let text = n.message_for(s.protocol.as_str());
        let (body, attributes) = if s.raw() {
            (text.to_string(), queue_attributes(&n.attributes))
        } else {
            (
                n.envelope(
                    text,
                    signature,
                    &self.cert_url(),
                    &self.unsubscribe_url(&s.arn),
                ),
                Default::default(),
            )
        };
        SendRequest {
            body,
            attributes,
            group_id: n.group.clone(),
            dedup_id: n.dedup.clone(),
            ..SendRequest::default()
        }
    }

    /// Fans `entries` out: every copy a queue subscription gets and one pending record per
    /// message with HTTP/S or MQTT subscriptions, all written in one group commit. An entry fails
    /// alone on bad input; a store failure fails the entries it touched (`InternalError`).
    async fn publish_entries(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        entries: Vec<PublishEntry>,
    ) -> Result<(Vec<PublishResult>, Vec<(String, TopicError)>)> {
        let _order = match topic.fifo {
            true => Some(topic.publish_order.lock().await),
            false => None,
        };
        let now = now_ms();
        let mut results: Vec<(usize, PublishResult)> = Vec::new();
        let mut failures = Vec::new();
        let mut notes: Vec<(usize, String, Notification)> = Vec::new();
        for (at, e) in entries.into_iter().enumerate() {
            let id = e.id.clone();
            match self.prepare(topic, e, now) {
                Ok(Prepared::New(n)) => notes.push((at, id, *n)),
                Ok(Prepared::Duplicate(r)) => results.push((at, r)),
                Err(err) => failures.push((id, err)),
            }
        }
        let subs: Vec<Arc<Subscription>> = topic
            .subscriptions
            .read()
            .iter()
            .filter(|s| s.confirmed())
            .cloned()
            .collect();
        type Copy = (SendRequest, Arc<Subscription>, usize);
        // Which subscriptions each message goes to.
        let mut to_queues: Vec<Vec<Arc<Subscription>>> = Vec::with_capacity(notes.len());
        let mut pending: Vec<(usize, Vec<Arc<Subscription>>)> = Vec::new();
        let mut overflowed: Vec<(usize, Arc<Subscription>)> = Vec::new();
        let mut taken = HashMap::new();
        for (i, (_, _, n)) in notes.iter().enumerate() {
            let attrs = outpost_patterns::attributes_to_json(
                n.attributes
                    .iter()
                    .map(|(k, a)| (k.as_str(), a.data_type.as_str(), a.value.as_str())),
            );
            let body = OnceCell::new();
            let (queues, others): (Vec<_>, Vec<_>) = subs
                .iter()
                .filter(|s| s.accepts(&attrs, &body, &n.message))
                .cloned()
                .partition(|s| s.protocol == Protocol::Sqs);
            to_queues.push(queues);
            // An endpoint that owes too much gets no more (ADR 0015).
            let size = n.message.len() as u64;
            let (others, full): (Vec<_>, Vec<_>) = others
                .into_iter()
                .partition(|s| self.has_room(s, size, &mut taken));
            overflowed.extend(full.into_iter().map(|s| (i, s)));
            if !others.is_empty() {
                pending.push((i, others));
            }
        }
        // One signature per message that goes to a queue in an envelope, made off the workers.
        let wanted: Vec<usize> = (0..notes.len())
            .filter(|i| to_queues[*i].iter().any(|s| !s.raw()))
            .collect();
        let signatures = self
            .sign_all(
                wanted
                    .iter()
                    .map(|i| (&notes[*i].2, notes[*i].2.message_for("sqs")))
                    .collect(),
            )
            .await;
        let signatures: HashMap<usize, String> = wanted.into_iter().zip(signatures).collect();
        let mut sends: BTreeMap<String, Vec<Copy>> = BTreeMap::new();
        for (i, queue_subs) in to_queues.into_iter().enumerate() {
            let n = &notes[i].2;
            for s in queue_subs {
                let Some(queue) = self.queues.name_from_arn(&s.endpoint) else {
                    continue;
                };
                // Written as the subscription's owner, asked now (ADR 0015).
                if let Err(why) = self.owner_may_deliver(&s, s.protocol, &s.endpoint) {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(subscription = %s.arn, error = %why, "copy to a queue not written: denied");
                    continue;
                }
                let signature = signatures.get(&i).map_or("", String::as_str);
                let copy = self.queue_copy(n, &s, signature);
                sends.entry(queue).or_default().push((copy, s, i));
            }
        }
        let records: Vec<Bytes> = pending
            .iter()
            .map(|(i, subs)| super::deliver::encode_pending(&notes[*i].2, subs))
            .collect();
        let pending_write = async {
            if records.is_empty() {
                Ok(Vec::new())
            } else {
                self.store.append_batch(self.pending, records).await
            }
        };
        let queue_writes = join_all(sends.into_iter().map(|(queue, copies)| async move {
            let reqs: Vec<SendRequest> = copies.iter().map(|c| c.0.clone()).collect();
            let result = self.queues.send_batch(&queue, reqs).await;
            (queue, copies, result)
        }));
        let (pending_ids, sent) = tokio::join!(pending_write, queue_writes);
        let mut broken: HashSet<usize> = HashSet::new();
        let mut undeliverable: Vec<(Copy, QueueError)> = Vec::new();
        for (queue, copies, result) in sent {
            match result {
                Ok(per_copy) => {
                    for (copy, r) in copies.into_iter().zip(per_copy) {
                        match r {
                            Ok(_) => {
                                topic.delivered.fetch_add(1, Ordering::Relaxed);
                                self.stats.delivered.fetch_add(1, Ordering::Relaxed)
                            }
                            Err(QueueError::Internal(e)) => {
                                tracing::error!(queue, error = %e, "a queue copy of a published message failed");
                                broken.insert(copy.2);
                                0
                            }
                            Err(e) => {
                                undeliverable.push((copy, e));
                                0
                            }
                        };
                    }
                }
                Err(QueueError::Internal(e)) => {
                    tracing::error!(queue, error = %e, "queue copies of published messages failed");
                    broken.extend(copies.iter().map(|c| c.2));
                }
                Err(e) => undeliverable.extend(copies.into_iter().map(|c| (c, e.clone()))),
            }
        }
        let pending_ids = match pending_ids {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "pending deliveries of published messages could not be stored");
                broken.extend(pending.iter().map(|(i, _)| *i));
                Vec::new()
            }
        };
        // A copy its queue refused (the queue was deleted, or the message breaks one of the
        // queue's limits) goes to the subscription's dead-letter queue, before the answer.
        for ((copy, sub, i), e) in undeliverable {
            let n = &notes[i].2;
            tracing::warn!(subscription = %sub.arn, error = %e, "a queue refused a published message");
            self.dead_letter(&sub, n, copy.body, copy.attributes).await;
        }
        for (i, (at, id, n)) in notes.iter().enumerate() {
            if broken.contains(&i) {
                if let Some(d) = &n.dedup {
                    topic.dedup.lock().remove(d);
                }
                failures.push((id.clone(), TopicError::Internal("the store failed".into())));
            } else {
                self.published.fetch_add(1, Ordering::Relaxed);
                topic.published.fetch_add(1, Ordering::Relaxed);
                results.push((
                    *at,
                    PublishResult {
                        id: id.clone(),
                        message_id: n.id.clone(),
                        sequence_number: n.sequence.clone(),
                    },
                ));
            }
        }
        for (i, sub) in overflowed {
            if !broken.contains(&i) {
                self.overflow(&sub, &notes[i].2).await;
            }
        }
        let mut notes: Vec<Option<Notification>> =
            notes.into_iter().map(|(_, _, n)| Some(n)).collect();
        for ((i, subs), record) in pending.into_iter().zip(pending_ids) {
            if let Some(n) = notes.get_mut(i).and_then(Option::take) {
                let pending = Pending::new(record, n, subs.len());
                // The queue copies' signature serves the endpoints too: one per message.
                if let Some(signature) = signatures.get(&i) {
                    let version = pending.notification.signature_version();
                    let key = pending.notification.text_key("sqs");
                    pending.signatures.seed(key, version, signature.clone());
                }
                self.spawn_deliveries(Arc::new(pending), subs);
            }
        }
        results.sort_by_key(|(at, _)| *at);
        Ok((results.into_iter().map(|(_, r)| r).collect(), failures))
    }
}

/// SNS message attributes as queue message attributes (raw delivery).
pub(super) fn queue_attributes(attrs: &Attributes) -> outpost_queues::message::Attributes {
    attrs
        .iter()
        .map(|(k, a)| {
            let value = if a.is_binary() {
                use base64::Engine as _;
                AttributeValue::Binary(Bytes::from(
                    base64::engine::general_purpose::STANDARD
                        .decode(&a.value)
                        .unwrap_or_default(),
                ))
            } else {
                AttributeValue::String(a.value.clone())
            };
            (
                k.clone(),
                MessageAttribute {
                    data_type: a.data_type.clone(),
                    value,
                },
            )
        })
        .collect()
}
