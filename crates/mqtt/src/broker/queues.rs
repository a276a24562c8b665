//! The engine's side of `$queue/` subscriptions: how much a subscriber can take now, handing it a
//! queue message, and telling the queue door when a queue delivery was acknowledged or dropped.
//! (The queue side, receiving and deleting, lives behind [`crate::QueueDoor`].)

use super::*;
use crate::QueueReceipt;

impl Broker {
    /// For a consumer of `$queue/<queue>` on behalf of `client`: how many more messages the
    /// subscriber may be handed now (its window less what it holds; 0 while it is disconnected),
    /// and the QoS to deliver with. `None` once the client no longer subscribes (unsubscribed,
    /// session ended): the consumer stops.
    pub fn queue_credit(&self, client: &str, queue: &str) -> Option<(usize, QoS)> {
        let cell = self.session_of(client)?;
        let s = cell.state.lock();
        if s.ended {
            return None;
        }
        let filter = format!("{}{queue}", crate::QUEUE_PREFIX);
        let sub = s.subscriptions.get(filter.as_str())?;
        let qos = sub.options.qos.min(QoS::AtLeastOnce);
        if s.connection.is_none() {
            return Some((0, qos));
        }
        let window = usize::from(s.outbox.receive_maximum());
        let holds = s.outbox.in_flight() + s.outbox.queued();
        Some((window.saturating_sub(holds), qos))
    }

    /// Hands a queue message to `client` (connected, subscribed): false when it can't take it
    /// (then the consumer releases the message).
    pub fn deliver_from_queue(
        &self,
        client: &str,
        message: Message,
        qos: QoS,
        receipt: QueueReceipt,
    ) -> bool {
        self.deliver_to(client, message, qos, Some(receipt))
    }

    /// Sends a message to one connected client whatever it subscribes to (`iot-data`
    /// SendDirectMessage); false when the client is not connected.
    pub fn deliver_direct(&self, client: &str, message: Message, qos: QoS) -> bool {
        self.deliver_to(client, message, qos, None)
    }

    fn deliver_to(
        &self,
        client: &str,
        message: Message,
        qos: QoS,
        receipt: Option<QueueReceipt>,
    ) -> bool {
        let Some(cell) = self.session_of(client) else {
            return false;
        };
        let mut wakes = Wakes::new();
        {
            let mut s = cell.state.lock();
            if s.ended || s.connection.is_none() {
                return false;
            }
            let ids = receipt
                .as_ref()
                .and_then(|r| {
                    let filter = format!("{}{}", crate::QUEUE_PREFIX, r.queue);
                    s.subscriptions
                        .get(filter.as_str())
                        .and_then(Subscription::identifier)
                })
                .into_iter()
                .collect();
            let d = Delivery {
                id: self.next_delivery.fetch_add(1, Ordering::Relaxed),
                message: Arc::new(message),
                qos,
                retain: false,
                subscription_ids: ids,
                queue: receipt.map(Arc::new),
            };
            self.offer(&mut s, d, &mut wakes);
        }
        wakes.wake_all();
        true
    }

    /// A delivery reached its subscriber (PUBACK, PUBCOMP, or a QoS 0 send): a queue message it
    /// carries is deleted.
    pub(super) fn queue_acked(&self, d: &Delivery) {
        if let (Some(r), Some(door)) = (&d.queue, self.queue_door.get()) {
            door.acked(r);
        }
    }

    /// A delivery will not reach its subscriber: a queue message it carries is released.
    pub(super) fn queue_released(&self, d: &Delivery) {
        if let (Some(r), Some(door)) = (&d.queue, self.queue_door.get()) {
            door.released(r);
        }
    }
}
