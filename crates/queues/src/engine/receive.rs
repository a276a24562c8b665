//! ReceiveMessage: long polling on a notification, FIFO receive attempt ids, and durable delivery records before the answer.

use super::*;

impl Queues {
    /// `ReceiveMessage`, long-polling up to the wait time. A message that arrives during the wait
    /// is returned at once; the wait itself sleeps on a notification, not a poll loop.
    pub async fn receive(&self, name: &str, req: ReceiveRequest) -> Result<Vec<ReceivedMessage>> {
        let queue = self.queue(name)?;
        let max = match req.max_messages {
            None => 1,
            Some(n) if (1..=10).contains(&n) => n as usize,
            Some(n) => {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Value {n} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
                )))
            }
        };
        if let Some(v) = req.visibility_timeout.filter(|v| !(0..=43_200).contains(v)) {
            return Err(QueueError::InvalidParameterValue(format!(
                "Value {v} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200, if provided."
            )));
        }
        if let Some(w) = req.wait_seconds.filter(|w| !(0..=20).contains(w)) {
            return Err(QueueError::InvalidParameterValue(format!(
                "Value {w} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
            )));
        }
        let (wait_s, vis_s) = {
            let inner = queue.inner.lock();
            (
                req.wait_seconds
                    .map_or(inner.settings.receive_wait_seconds, |w| w as u32),
                req.visibility_timeout
                    .map_or(inner.settings.visibility_timeout, |v| v as u32),
            )
        };
        let attempt = req.attempt_id.filter(|_| queue.fifo);
        if let Some(id) = &attempt {
            if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_graphic()) {
                return Err(QueueError::InvalidParameterValue(
                    "Value for parameter ReceiveRequestAttemptId is invalid.".into(),
                ));
            }
            if let Some(again) = self.repeat_attempt(&queue, id) {
                return Ok(again);
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(wait_s));
        loop {
            let notified = queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if queue.is_deleted() {
                return Err(QueueError::QueueDoesNotExist);
            }
            let dlq = self.dead_letter_target(&queue);
            let now = now_ms();
            let (got, dead, next_timer) = {
                let mut inner = queue.inner.lock();
                let (vis_count, inflight, _) = inner.state.counts(now);
                if inflight >= self.config.max_inflight && vis_count > 0 {
                    return Err(QueueError::OverLimit(format!(
                        "Too many messages in flight (at most {}).",
                        self.config.max_inflight
                    )));
                }
                let max_receive = dlq.as_ref().map(|(_, n)| *n);
                let (got, dead) = inner.state.receive(now, max, ms(vis_s), max_receive);
                (got, dead, inner.state.next_timer())
            };
            if let Some((target, _)) = &dlq {
                if !dead.is_empty() {
                    self.dead_letter(&queue, target, dead).await?;
                }
            }
            if !got.is_empty() {
                if let Some(id) = &attempt {
                    let now = now_ms();
                    let mut inner = queue.inner.lock();
                    inner.attempts.retain(|_, (expires, _)| *expires > now);
                    let items = got
                        .iter()
                        .map(|r| (r.delivery.seq, r.delivery.nonce))
                        .collect();
                    inner
                        .attempts
                        .insert(id.clone(), (now + DEDUP_WINDOW_MS, items));
                }
                return self.deliver(&queue, got).await;
            }
            let now_i = tokio::time::Instant::now();
            if now_i >= deadline || self.closing.load(Ordering::SeqCst) {
                return Ok(Vec::new());
            }
            let mut wake = deadline;
            if let Some(at) = next_timer {
                let until = Duration::from_millis(at.saturating_sub(now_ms()));
                wake = wake.min(now_i + until);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// The deliveries of an earlier receive with the same attempt id, if all are still in flight.
    pub(super) fn repeat_attempt(&self, queue: &Queue, id: &str) -> Option<Vec<ReceivedMessage>> {
        let now = now_ms();
        let inner = queue.inner.lock();
        let (expires, items) = inner.attempts.get(id)?;
        if *expires <= now {
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for &(seq, nonce) in items {
            let m = inner.state.check_receipt(seq, nonce).ok()?;
            let rec = self.store.read(queue.message_record(seq))?;
            out.push(received(
                queue,
                StoredMessage::decode(&rec.payload)?,
                &m.delivery(seq),
            ));
        }
        Some(out)
    }

    /// Persists the deliveries of received messages and builds the answer.
    pub(super) async fn deliver(
        &self,
        queue: &Queue,
        got: Vec<crate::state::Received>,
    ) -> Result<Vec<ReceivedMessage>> {
        let events: Vec<Bytes> = got.iter().map(|r| r.delivery.encode()).collect();
        let ids = self.store.append_batch(queue.deliveries, events).await?;
        let mut obsolete = Vec::new();
        {
            let mut inner = queue.inner.lock();
            for (r, id) in got.iter().zip(&ids) {
                if let Some(old) =
                    inner
                        .state
                        .set_delivery_record(r.delivery.seq, r.delivery.nonce, id.seq)
                {
                    obsolete.push(queue.delivery_record(old));
                }
            }
        }
        self.store.mark_dead_later(&obsolete);
        let mut out = Vec::with_capacity(got.len());
        for r in got {
            let Some(rec) = self.store.read(queue.message_record(r.delivery.seq)) else {
                continue;
            };
            let Some(message) = StoredMessage::decode(&rec.payload) else {
                continue;
            };
            out.push(received(queue, message, &r.delivery));
        }
        self.receives.fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out)
    }
}
