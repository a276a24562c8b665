//! `$queue/<name>`: SQS queues reached over MQTT, without the MQTT engine knowing about queues.
//!
//! A PUBLISH to `$queue/<name>` is handed to the door (a `SendMessage`; the PUBACK waits for it
//! to be durable) instead of being routed to subscribers. A SUBSCRIBE to `$queue/<name>` asks
//! the door to start a consumer for the session; the consumer takes messages from the queue as
//! the subscriber's window allows ([`Broker::queue_credit`](crate::Broker::queue_credit)) and
//! hands each to it ([`Broker::deliver_from_queue`](crate::Broker::deliver_from_queue)) with its
//! receipt. The subscriber's PUBACK tells the door to delete the message; a delivery the session
//! drops (expired, too large, refused) tells it to release the message to the next consumer.
//! A subscriber that disconnects leaves its messages in flight until the queue's visibility
//! timeout returns them, exactly as an SQS consumer that stops would.

use std::sync::Arc;

use outpost_codec::ReasonCode;

use crate::tap::TapWait;
use crate::Message;

/// The topic prefix of queues.
pub const QUEUE_PREFIX: &str = "$queue/";

/// What ties a delivery to the queue message it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueReceipt {
    /// The queue's name.
    pub queue: Arc<str>,
    /// The receipt handle of this receive.
    pub receipt: String,
}

/// The queue side of `$queue/` topics.
pub trait QueueDoor: Send + Sync {
    /// A client published `message` to `$queue/<queue>`: send it. `Err` refuses the PUBLISH with
    /// that reason code (e.g. Topic Name invalid for an unknown queue); `Ok` is a wait the PUBACK
    /// includes.
    /// The door checks `sqs:SendMessage` on the queue as `who` (ADR 0015).
    fn send(
        &self,
        client_id: &str,
        who: &outpost_access::Identity,
        queue: &str,
        message: &Message,
    ) -> Result<TapWait, ReasonCode>;
    /// `client` subscribed to `$queue/<queue>`: start consuming it for the client (once; a
    /// repeated SUBSCRIBE keeps the running consumer). `Err` refuses the subscription.
    /// The door checks `sqs:ReceiveMessage` on the queue as `who` (`None`: a subscription
    /// restored from the store, checked when it was made; its deliveries are still checked).
    fn subscribe(
        &self,
        client: Arc<str>,
        who: Option<&outpost_access::Identity>,
        queue: &str,
    ) -> Result<(), ReasonCode>;
    /// The subscriber acknowledged the delivery: delete the message.
    fn acked(&self, receipt: &QueueReceipt);
    /// The delivery will not reach the subscriber: release the message at once.
    fn released(&self, receipt: &QueueReceipt);
}

/// The queue a `$queue/<name>` topic or filter names; `None` for other topics and for names
/// that are empty or carry wildcards or further levels.
pub fn queue_name(topic: &str) -> Option<&str> {
    let name = topic.strip_prefix(QUEUE_PREFIX)?;
    (!name.is_empty() && !name.contains(['/', '+', '#'])).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        assert_eq!(queue_name("$queue/jobs"), Some("jobs"));
        assert_eq!(queue_name("$queue/jobs.fifo"), Some("jobs.fifo"));
        assert_eq!(queue_name("$queue/"), None);
        assert_eq!(queue_name("$queue/a/b"), None);
        assert_eq!(queue_name("$queue/+"), None);
        assert_eq!(queue_name("queue/jobs"), None);
    }
}
