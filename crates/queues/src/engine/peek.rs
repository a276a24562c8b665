//! Looking at a queue without receiving from it: what an operator's console shows (the first
//! visible messages), leaving their visibility, receive counts and receipts untouched.

use super::*;

/// A message as a peek shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    /// The message id (SQS's `MessageId`).
    pub message_id: String,
    /// When it was sent (ms since the epoch).
    pub sent_ms: u64,
    /// Times it was received.
    pub receive_count: u32,
    /// The body.
    pub body: String,
}

impl Queues {
    /// The first `max` visible messages of a queue, oldest first (at most 100).
    pub fn peek(&self, name: &str, max: usize) -> Result<Vec<Peeked>> {
        let queue = self.queue(name)?;
        let picked: Vec<(u64, u32)> = {
            let mut inner = queue.inner.lock();
            let seqs = inner.state.visible_seqs(now_ms(), max.min(100));
            seqs.into_iter()
                .map(|s| (s, inner.state.receive_count(s)))
                .collect()
        };
        Ok(picked
            .into_iter()
            .filter_map(|(seq, receive_count)| {
                let m = self
                    .store
                    .read(queue.message_record(seq))
                    .and_then(|r| StoredMessage::decode(&r.payload))?;
                Some(Peeked {
                    message_id: m.message_id(),
                    sent_ms: m.sent_ms,
                    receive_count,
                    body: String::from_utf8_lossy(&m.body).into_owned(),
                })
            })
            .collect())
    }
}
