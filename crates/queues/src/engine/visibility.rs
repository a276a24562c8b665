//! Receipt handles at work: DeleteMessage, ChangeMessageVisibility and their batches.

use super::*;

impl Queues {
    pub(super) fn resolve_receipt(&self, queue: &Queue, handle: &str) -> Result<Receipt> {
        let receipt = Receipt::decode(handle)?;
        if receipt.queue != queue.id {
            return Err(QueueError::ReceiptHandleIsInvalid(format!(
                "The input receipt handle \"{handle}\" is not a valid receipt handle for this queue."
            )));
        }
        Ok(receipt)
    }

    pub(super) fn take_for_delete(&self, queue: &Queue, handle: &str) -> Result<(u64, Msg)> {
        let receipt = self.resolve_receipt(queue, handle)?;
        let mut inner = queue.inner.lock();
        inner.state.promote(now_ms());
        match inner.state.check_receipt(receipt.seq, receipt.nonce) {
            Ok(_) => inner
                .state
                .remove(receipt.seq)
                .map(|m| (receipt.seq, m))
                .ok_or_else(|| expired(handle)),
            Err(_) => Err(expired(handle)),
        }
    }

    /// `DeleteMessage`.
    pub async fn delete_message(&self, name: &str, handle: &str) -> Result<()> {
        let queue = self.queue(name)?;
        let removed = self.take_for_delete(&queue, handle)?;
        self.kill_messages(&queue, &[removed], true).await?;
        self.deletes.fetch_add(1, Ordering::Relaxed);
        queue.notify.notify_waiters();
        Ok(())
    }

    /// `DeleteMessageBatch`: one durable tombstone batch for all entries.
    pub async fn delete_batch(&self, name: &str, handles: &[String]) -> Result<Vec<Result<()>>> {
        let queue = self.queue(name)?;
        let mut results = Vec::with_capacity(handles.len());
        let mut removed = Vec::new();
        for h in handles {
            match self.take_for_delete(&queue, h) {
                Ok(m) => {
                    removed.push(m);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        self.kill_messages(&queue, &removed, true).await?;
        self.deletes
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        queue.notify.notify_waiters();
        Ok(results)
    }

    /// `ChangeMessageVisibility` (and each entry of the batch form).
    pub async fn change_visibility(&self, name: &str, handle: &str, timeout: i64) -> Result<()> {
        let mut r = self
            .change_visibility_batch(name, &[(handle.to_string(), timeout)])
            .await?;
        r.pop().unwrap_or(Ok(()))
    }

    /// `ChangeMessageVisibilityBatch`.
    pub async fn change_visibility_batch(
        &self,
        name: &str,
        entries: &[(String, i64)],
    ) -> Result<Vec<Result<()>>> {
        let queue = self.queue(name)?;
        let mut results = Vec::with_capacity(entries.len());
        let mut deliveries = Vec::new();
        let mut released = false;
        for (handle, timeout) in entries {
            let r = (|| {
                if !(0..=43_200).contains(timeout) {
                    return Err(QueueError::InvalidParameterValue(format!(
                        "Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
                    )));
                }
                let receipt = self.resolve_receipt(&queue, handle)?;
                let mut inner = queue.inner.lock();
                let d = inner
                    .state
                    .change_visibility(receipt.seq, receipt.nonce, now_ms(), *timeout as u64 * 1000)
                    .map_err(|p| match p {
                        ReceiptProblem::NotInFlight => QueueError::MessageNotInflight,
                        ReceiptProblem::Stale => expired(handle),
                    })?;
                Ok(d)
            })();
            match r {
                Ok(d) => {
                    released |= *timeout == 0;
                    deliveries.push(d);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if !deliveries.is_empty() {
            let events: Vec<Bytes> = deliveries.iter().map(Delivery::encode).collect();
            let ids = self.store.append_batch(queue.deliveries, events).await?;
            let mut obsolete = Vec::new();
            {
                let mut inner = queue.inner.lock();
                for (d, id) in deliveries.iter().zip(&ids) {
                    if let Some(old) = inner.state.set_delivery_record(d.seq, d.nonce, id.seq) {
                        obsolete.push(queue.delivery_record(old));
                    }
                }
            }
            self.store.mark_dead_later(&obsolete);
        }
        if released {
            queue.notify.notify_waiters();
        }
        Ok(results)
    }
}
