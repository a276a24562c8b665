//! SendMessage and SendMessageBatch: validation, FIFO deduplication and sequence numbers, one group commit per batch.

use super::*;

impl Queues {
    /// `SendMessage`.
    pub async fn send(&self, name: &str, req: SendRequest) -> Result<SendResult> {
        let mut results = self.send_batch(name, vec![req]).await?;
        results
            .pop()
            .unwrap_or_else(|| Err(QueueError::Internal("empty send".into())))
    }

    /// `SendMessageBatch` (and `SendMessage`): one group commit for every entry. Each entry
    /// succeeds or fails on its own.
    pub async fn send_batch(
        &self,
        name: &str,
        reqs: Vec<SendRequest>,
    ) -> Result<Vec<Result<SendResult>>> {
        let queue = self.queue(name)?;
        // Standard queues promise no order; FIFO queues serialize their sends (AWS caps FIFO
        // throughput far below one group commit per batch anyway).
        let _order = match queue.fifo {
            true => Some(queue.send_order.lock().await),
            false => None,
        };
        let now = now_ms();
        enum Slot {
            Done(Result<SendResult>),
            Pending(SendResult, Box<StoredMessage>, Option<String>),
        }
        let mut slots = Vec::with_capacity(reqs.len());
        {
            let mut inner = queue.inner.lock();
            for req in reqs {
                slots.push(match prepare(&queue, &mut inner, req, now) {
                    Ok(Prepared::Duplicate(r)) => Slot::Done(Ok(r)),
                    Ok(Prepared::New(r, m, key)) => Slot::Pending(r, m, key),
                    Err(e) => Slot::Done(Err(e)),
                });
            }
        }
        let records: Vec<Bytes> = slots
            .iter()
            .filter_map(|s| match s {
                Slot::Pending(_, m, _) => Some(m.encode()),
                Slot::Done(_) => None,
            })
            .collect();
        if records.is_empty() {
            return Ok(slots
                .into_iter()
                .map(|s| match s {
                    Slot::Done(r) => r,
                    Slot::Pending(r, ..) => Ok(r),
                })
                .collect());
        }
        let sizes: Vec<u64> = records.iter().map(|r| r.len() as u64).collect();
        let appended = self.store.append_batch(queue.messages, records).await;
        let ids = match appended {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(queue = name, error = %e, "send failed in the store");
                let mut inner = queue.inner.lock();
                for s in &slots {
                    if let Slot::Pending(_, _, Some(key)) = s {
                        inner.state.dedup_forget(key);
                    }
                }
                return Err(e.into());
            }
        };
        if queue.is_deleted() {
            self.store.mark_dead_later(&ids);
            return Err(QueueError::QueueDoesNotExist);
        }
        {
            let mut inner = queue.inner.lock();
            let now = now_ms();
            let mut i = 0;
            for s in &slots {
                if let Slot::Pending(_, m, _) = s {
                    inner.state.insert(
                        ids[i].seq,
                        m.sent_ms,
                        m.available_ms,
                        m.group.as_deref().filter(|_| queue.fifo).map(Arc::from),
                        sizes[i],
                        None,
                        now,
                    );
                    i += 1;
                }
            }
        }
        self.sends.fetch_add(ids.len() as u64, Ordering::Relaxed);
        queue.notify.notify_waiters();
        Ok(slots
            .into_iter()
            .map(|s| match s {
                Slot::Done(r) => r,
                Slot::Pending(r, ..) => Ok(r),
            })
            .collect())
    }
}

pub(super) fn dedup_key(
    settings: &Settings,
    group: &Option<String>,
    dedup: &Option<String>,
) -> Option<String> {
    let dedup = dedup.as_ref()?;
    Some(match settings.dedup_scope {
        attributes::DedupScope::Queue => dedup.clone(),
        attributes::DedupScope::MessageGroup => {
            format!("{}\u{0}{dedup}", group.as_deref().unwrap_or(""))
        }
    })
}

pub(super) enum Prepared {
    Duplicate(SendResult),
    New(SendResult, Box<StoredMessage>, Option<String>),
}

pub(super) fn invalid_for_queue_type(param: &str) -> QueueError {
    QueueError::InvalidParameterValue(format!(
        "Value for parameter {param} is invalid. Reason: The request include parameter that is not valid for this queue type."
    ))
}

/// Validates a send and, for FIFO queues, resolves deduplication and assigns the sequence number.
pub(super) fn prepare(
    queue: &Queue,
    inner: &mut Inner,
    req: SendRequest,
    now: u64,
) -> Result<Prepared> {
    let settings = &inner.settings;
    if req.body.is_empty() {
        return Err(QueueError::MissingParameter("MessageBody".into()));
    }
    message::validate_text(&req.body)?;
    message::validate_attributes(&req.attributes, false)?;
    let size = message::message_size(&req.body, &req.attributes);
    if size > settings.maximum_message_size as usize {
        return Err(QueueError::InvalidParameterValue(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
            settings.maximum_message_size
        )));
    }
    if let Some(d) = req.delay_seconds {
        if d > 900 {
            return Err(QueueError::InvalidParameterValue(format!(
                "Value {d} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900."
            )));
        }
        if queue.fifo && d != 0 {
            return Err(invalid_for_queue_type("DelaySeconds"));
        }
    }
    if let Some(t) = &req.trace_header {
        if t.len() > message::MAX_TRACE_HEADER {
            return Err(QueueError::InvalidParameterValue(format!(
                "Message system attribute AWSTraceHeader is longer than {} bytes.",
                message::MAX_TRACE_HEADER
            )));
        }
        message::validate_text(t)?;
    }
    let attrs = encode_attributes(&req.attributes);
    let md5_attributes = (!req.attributes.is_empty()).then(|| md5_hex(&attrs));
    let md5_system_attributes = req
        .trace_header
        .as_deref()
        .map(message::system_attributes_digest);
    let md5_body = md5_hex(req.body.as_bytes());
    let delay = req.delay_seconds.unwrap_or(settings.delay_seconds);
    let id = new_uuid();
    let mut stored = StoredMessage {
        id,
        sent_ms: now,
        available_ms: now + ms(delay),
        sequence: 0,
        group: req.group_id.clone(),
        dedup: None,
        trace_header: req.trace_header.clone(),
        dead_letter_source: None,
        attributes: attrs,
        body: Bytes::from(req.body),
    };
    if let Some(g) = &req.group_id {
        if !valid_fifo_id(g) {
            return Err(QueueError::InvalidParameterValue(
                "Value for parameter MessageGroupId is invalid. Reason: 1 to 128 alphanumeric or punctuation characters.".into(),
            ));
        }
    }
    if !queue.fifo {
        if req.dedup_id.is_some() {
            return Err(invalid_for_queue_type("MessageDeduplicationId"));
        }
        return Ok(Prepared::New(
            SendResult {
                message_id: stored.message_id(),
                md5_body,
                md5_attributes,
                md5_system_attributes,
                sequence_number: None,
            },
            Box::new(stored),
            None,
        ));
    }
    if req.group_id.is_none() {
        return Err(QueueError::MissingParameter("MessageGroupId".into()));
    }
    let dedup = match req.dedup_id {
        Some(d) if valid_fifo_id(&d) => d,
        Some(_) => {
            return Err(QueueError::InvalidParameterValue(
                "Value for parameter MessageDeduplicationId is invalid. Reason: 1 to 128 alphanumeric or punctuation characters.".into(),
            ))
        }
        None if settings.content_based_dedup => {
            hex::encode(Sha256::digest(&stored.body))
        }
        None => {
            return Err(QueueError::InvalidParameterValue(
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly".into(),
            ))
        }
    };
    stored.dedup = Some(dedup);
    let key = dedup_key(settings, &stored.group, &stored.dedup);
    if let Some(k) = &key {
        if let Some(entry) = inner.state.dedup_lookup(k, now) {
            return Ok(Prepared::Duplicate(SendResult {
                message_id: entry.message_id,
                md5_body,
                md5_attributes,
                md5_system_attributes,
                sequence_number: Some(format!("{:020}", entry.sequence)),
            }));
        }
    }
    stored.sequence = inner.next_sequence;
    inner.next_sequence += 1;
    if let Some(k) = &key {
        inner.state.dedup_insert(
            k.clone(),
            DedupEntry {
                expires_ms: now + DEDUP_WINDOW_MS,
                message_id: stored.message_id(),
                sequence: stored.sequence,
            },
        );
    }
    Ok(Prepared::New(
        SendResult {
            message_id: stored.message_id(),
            md5_body,
            md5_attributes,
            md5_system_attributes,
            sequence_number: Some(format!("{:020}", stored.sequence)),
        },
        Box::new(stored),
        key,
    ))
}
