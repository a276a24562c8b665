//! `$queue/<name>` over MQTT: the queue side of the MQTT engine's queue door.
//!
//! - A PUBLISH to `$queue/<name>` is a `SendMessage`: the payload is the body (SQS bodies are
//!   text, so it must be UTF-8 in SQS's character set), MQTT 5 user properties become String
//!   message attributes, except `MessageGroupId` and `MessageDeduplicationId`, which set the FIFO
//!   fields. The PUBACK comes once the send is durable.
//! - A SUBSCRIBE to `$queue/<name>` starts one consumer task for that session and queue. It
//!   receives (long polls) as many messages as the subscriber's window has room for and hands
//!   each to the session; the subscriber's PUBACK deletes the message, a delivery the session
//!   drops releases it at once, and a subscriber that vanishes keeps its messages in flight until
//!   the visibility timeout returns them to the queue (to the next subscriber; `maxReceiveCount`
//!   then moves a poison message to the dead-letter queue, as SQS does). Each message goes to one
//!   subscriber: the queue engine's receive hands it out once. FIFO queues keep their groups in
//!   order because the engine holds back a group while one of its messages is in flight.
//! - Delivered messages carry their attributes back as user properties, plus `MessageId`,
//!   `ApproximateReceiveCount` and, on FIFO queues, `MessageGroupId`.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::message::{
    decode_attributes, validate_attributes, validate_text, AttributeValue, Attributes,
    MessageAttribute,
};
use crate::{QueueError, Queues, ReceiveRequest, ReceivedMessage, SendRequest};
use base64::Engine as _;
use outpost_codec::{QoS, ReasonCode};
use outpost_mqtt::{Broker, Message, MessageProperties, QueueDoor, QueueReceipt, TapWait};
use parking_lot::Mutex;

/// The user property that sets a FIFO message's group.
pub const GROUP_PROPERTY: &str = "MessageGroupId";
/// The user property that sets a FIFO message's deduplication id.
pub const DEDUP_PROPERTY: &str = "MessageDeduplicationId";
/// How long one receive of a consumer waits for messages: short enough to notice an
/// unsubscribe soon, long enough that an idle consumer costs nothing to speak of.
const POLL_SECONDS: i64 = 2;
/// How often a consumer whose subscriber has no room (or is offline) looks again.
const FULL_WAIT: Duration = Duration::from_millis(50);
/// How often a waiting receive checks that its subscriber is still there.
const GONE_CHECK: Duration = Duration::from_millis(100);

/// Queues over MQTT: plug into the MQTT engine with [`Broker::set_queue_door`].
pub struct MqttQueues {
    queues: Arc<Queues>,
    broker: Weak<Broker>,
    /// Running consumers, by (client, queue).
    consumers: Mutex<HashSet<(Arc<str>, String)>>,
    /// Itself, for the consumer tasks it starts.
    me: Weak<MqttQueues>,
}

impl MqttQueues {
    /// The door for `broker` (held weakly: the broker holds the door).
    pub fn new(queues: Arc<Queues>, broker: &Arc<Broker>) -> Arc<MqttQueues> {
        Arc::new_cyclic(|me| MqttQueues {
            queues,
            broker: Arc::downgrade(broker),
            consumers: Mutex::new(HashSet::new()),
            me: me.clone(),
        })
    }

    /// Whether `who` may do an SQS action on `queue`, the queue's own policy asked beside the ACL.
    fn may(&self, who: &outpost_access::Identity, action: &str, queue: &str) -> bool {
        let Some(broker) = self.broker.upgrade() else {
            return false;
        };
        if broker.authorizer().is_open() {
            return true;
        }
        let policy = self.queues.policy(queue);
        broker
            .authorizer()
            .http(who, action, &self.queues.arn(queue), policy.as_deref())
    }

    /// The send a PUBLISH to `$queue/<queue>` makes.
    fn request(&self, queue: &str, message: &Message) -> Result<SendRequest, ReasonCode> {
        let body = std::str::from_utf8(&message.payload)
            .map_err(|_| ReasonCode::PayloadFormatInvalid)?
            .to_string();
        validate_text(&body).map_err(|_| ReasonCode::PayloadFormatInvalid)?;
        let mut req = SendRequest {
            body,
            ..SendRequest::default()
        };
        let mut attributes = Attributes::new();
        for (k, v) in &message.properties.user_properties {
            match k.as_str() {
                GROUP_PROPERTY => req.group_id = Some(v.clone()),
                DEDUP_PROPERTY => req.dedup_id = Some(v.clone()),
                _ => {
                    attributes.insert(
                        k.clone(),
                        MessageAttribute {
                            data_type: "String".into(),
                            value: AttributeValue::String(v.clone()),
                        },
                    );
                }
            }
        }
        validate_attributes(&attributes, false).map_err(|_| ReasonCode::PayloadFormatInvalid)?;
        req.attributes = attributes;
        if queue.ends_with(".fifo") && req.group_id.is_none() {
            return Err(ReasonCode::ImplementationSpecificError);
        }
        Ok(req)
    }

    /// The MQTT message a received queue message becomes.
    fn message(queue: &str, m: &ReceivedMessage) -> Message {
        let mut props = vec![
            ("MessageId".to_string(), m.message.message_id()),
            (
                "ApproximateReceiveCount".to_string(),
                m.receive_count.to_string(),
            ),
        ];
        if let Some(g) = &m.message.group {
            props.push((GROUP_PROPERTY.to_string(), g.clone()));
        }
        for (name, attr) in decode_attributes(&m.message.attributes).unwrap_or_default() {
            let value = match attr.value {
                AttributeValue::String(s) => s,
                AttributeValue::Binary(b) => base64::engine::general_purpose::STANDARD.encode(b),
            };
            props.push((name, value));
        }
        Message {
            topic: format!("{}{queue}", outpost_mqtt::QUEUE_PREFIX).into(),
            payload: m.message.body.clone(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: MessageProperties {
                payload_format_indicator: Some(true),
                user_properties: props,
                ..MessageProperties::default()
            },
            received: None,
        }
    }

    fn release_now(&self, queue: &str, receipt: &str) {
        let (queues, queue, receipt) =
            (self.queues.clone(), queue.to_string(), receipt.to_string());
        tokio::spawn(async move {
            // A message already back in the queue (or deleted) is no error here.
            let _ = queues.change_visibility(&queue, &receipt, 0).await;
        });
    }

    /// One consumer: runs while `client` subscribes to `$queue/<queue>`.
    async fn consume(self: Arc<Self>, client: Arc<str>, queue: String) {
        let key = (client.clone(), queue.clone());
        loop {
            self.serve(&client, &queue).await;
            self.consumers.lock().remove(&key);
            // A SUBSCRIBE that came while this one was ending found it running: look once more.
            let again = self
                .broker
                .upgrade()
                .is_some_and(|b| b.queue_credit(&client, &queue).is_some());
            if !again || !self.consumers.lock().insert(key.clone()) {
                return;
            }
        }
    }

    async fn serve(&self, client: &Arc<str>, queue: &str) {
        loop {
            let Some(broker) = self.broker.upgrade() else {
                return;
            };
            let Some((credit, qos)) = broker.queue_credit(client, queue) else {
                return;
            };
            drop(broker);
            if credit == 0 {
                tokio::time::sleep(FULL_WAIT).await;
                continue;
            }
            let req = ReceiveRequest {
                max_messages: Some(credit.min(10) as i64),
                wait_seconds: Some(POLL_SECONDS),
                ..ReceiveRequest::default()
            };
            // The long poll ends early when the subscriber goes (disconnects, unsubscribes):
            // a message received for a subscriber that is gone would count a receive against
            // its `maxReceiveCount` for nothing. (Cancelling is safe: a receive dropped after it
            // took messages leaves them in flight until their visibility timeout.)
            let gone = async {
                loop {
                    tokio::time::sleep(GONE_CHECK).await;
                    let still = self
                        .broker
                        .upgrade()
                        .and_then(|b| b.queue_credit(client, queue))
                        .is_some_and(|(credit, _)| credit > 0);
                    if !still {
                        return;
                    }
                }
            };
            let received = tokio::select! {
                r = self.queues.receive(queue, req) => r,
                () = gone => continue,
            };
            let got = match received {
                Ok(got) => got,
                Err(QueueError::QueueDoesNotExist) => {
                    tracing::info!(
                        client = &**client,
                        queue,
                        "a $queue subscription's queue was deleted; its consumer stops"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(client = &**client, queue, error = %e, "receive for a $queue subscriber failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let broker = self.broker.upgrade();
            for m in got {
                let receipt = QueueReceipt {
                    queue: queue.into(),
                    receipt: m.receipt.clone(),
                };
                let handed = broker.as_ref().is_some_and(|b| {
                    b.deliver_from_queue(client, Self::message(queue, &m), qos, receipt)
                });
                if !handed {
                    self.release_now(queue, &m.receipt);
                }
            }
        }
    }
}

impl QueueDoor for MqttQueues {
    fn send(
        &self,
        client: &str,
        who: &outpost_access::Identity,
        queue: &str,
        message: &Message,
    ) -> Result<TapWait, ReasonCode> {
        if self.queues.queue(queue).is_err() {
            return Err(ReasonCode::TopicNameInvalid);
        }
        // A `$queue/` publish is a SendMessage, checked as one (ADR 0015).
        if !self.may(who, "sqs:SendMessage", queue) {
            tracing::info!(
                client,
                user = &*who.name,
                queue,
                "PUBLISH to a queue denied: sqs:SendMessage"
            );
            return Err(ReasonCode::NotAuthorized);
        }
        let req = self.request(queue, message)?;
        let (queues, queue) = (self.queues.clone(), queue.to_string());
        Ok(Box::pin(async move {
            queues
                .send(&queue, req)
                .await
                .map(|_| ())
                .map_err(|e| format!("SendMessage to {queue}: {e}"))
        }))
    }

    fn subscribe(
        &self,
        client: Arc<str>,
        who: Option<&outpost_access::Identity>,
        queue: &str,
    ) -> Result<(), ReasonCode> {
        if self.queues.queue(queue).is_err() {
            return Err(ReasonCode::TopicFilterInvalid);
        }
        if let Some(who) = who {
            if !self.may(who, "sqs:ReceiveMessage", queue) {
                tracing::info!(
                    client = &*client,
                    user = &*who.name,
                    queue,
                    "SUBSCRIBE to a queue denied: sqs:ReceiveMessage"
                );
                return Err(ReasonCode::NotAuthorized);
            }
        }
        let key = (client.clone(), queue.to_string());
        if let Some(this) = self.me.upgrade() {
            if self.consumers.lock().insert(key) {
                tokio::spawn(this.consume(client, queue.to_string()));
            }
        }
        Ok(())
    }

    fn acked(&self, receipt: &QueueReceipt) {
        let (queues, r) = (self.queues.clone(), receipt.clone());
        tokio::spawn(async move {
            if let Err(e) = queues.delete_message(&r.queue, &r.receipt).await {
                tracing::debug!(queue = &*r.queue, error = %e, "deleting an acknowledged $queue message failed (visibility timeout passed?)");
            }
        });
    }

    fn released(&self, receipt: &QueueReceipt) {
        self.release_now(&receipt.queue, &receipt.receipt);
    }
}
