//! The link to SQS and SNS upstreams: the backlog forwarded in batches of up to 10 per target,
//! in order, and local queues moved to remote queues (deleted here only after the remote 200).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use outpost_codec::{Decoded, Packet, Version};
use outpost_queues::message::{
    decode_attributes, valid_attribute_name, validate_text, AttributeValue,
};
use outpost_queues::{Queues, ReceiveRequest};
use outpost_shutdown::Shutdown;
use outpost_store::RecordId;
use outpost_topics::Topics;

use crate::aws::{Aws, Outcome, Outgoing};
use crate::backlog::{Backlog, Entry, Target};
use crate::backoff::Backoff;
use crate::config::{BridgeConfig, QueueRule, TopicRule};
use crate::status::Status;

/// Entries read from the backlog per round.
const ROUND: usize = 100;
/// How long a moved message stays invisible locally while its remote send is under way.
const MOVE_VISIBILITY: i64 = 60;

/// One AWS bridge.
pub(crate) struct AwsLink {
    pub config: BridgeConfig,
    pub backlog: Arc<Backlog>,
    pub status: Arc<Status>,
    aws: Aws,
}

impl std::fmt::Debug for AwsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsLink")
            .field("name", &self.config.name)
            .finish()
    }
}

impl AwsLink {
    pub fn new(
        config: BridgeConfig,
        backlog: Arc<Backlog>,
        status: Arc<Status>,
    ) -> Result<AwsLink, String> {
        let aws = Aws::new(&config)?;
        Ok(AwsLink {
            config,
            backlog,
            status,
            aws,
        })
    }

    fn endpoint(&self, service: &str, address: &str) -> String {
        let c = &self.config;
        let specific = if service == "sqs" {
            &c.sqs_endpoint
        } else {
            &c.sns_endpoint
        };
        if !specific.is_empty() {
            return specific.clone();
        }
        if !c.endpoint.is_empty() {
            return c.endpoint.clone();
        }
        // A queue URL names its endpoint; a topic ARN only its region.
        if service == "sqs" {
            if let Ok(uri) = address.parse::<http::Uri>() {
                if let (Some(scheme), Some(auth)) = (uri.scheme_str(), uri.authority()) {
                    return format!("{scheme}://{auth}/");
                }
            }
        }
        format!("https://{service}.{}.amazonaws.com/", c.region)
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.config.backoff_min_ms),
            Duration::from_millis(self.config.backoff_max_ms),
        )
    }

    /// Forwards the backlog until the broker shuts down.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut backoff = self.backoff();
        let mut cursor = 0u64;
        loop {
            if shutdown.is_shutdown() {
                return;
            }
            let entries = self.backlog.read(cursor, ROUND);
            if entries.is_empty() {
                tokio::select! {
                    _ = self.backlog.appended.notified() => continue,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => { cursor = 0; continue }
                    _ = shutdown.recv() => return,
                }
            }
            match self.forward(&entries).await {
                Ok(()) => {
                    backoff.reset();
                    self.backlog.link(true);
                    cursor = entries.last().map_or(cursor, |e| e.id.seq + 1);
                }
                Err(e) => {
                    tracing::warn!(bridge = %self.config.name, error = %e, "bridge upstream call failed; retrying");
                    self.status.failed(&e);
                    self.backlog.link(false);
                    // Start again at the oldest entry still owed.
                    cursor = 0;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = shutdown.recv() => return,
                    }
                }
            }
        }
    }

    /// Sends entries in order: consecutive entries to one target share a batch of up to 10.
    /// Stops at the first batch that cannot be fully delivered (order is kept).
    async fn forward(&self, entries: &[Entry]) -> Result<(), String> {
        let mut i = 0;
        while i < entries.len() {
            let first = &entries[i];
            let mut j = i + 1;
            while j < entries.len()
                && j - i < 10
                && entries[j].target == first.target
                && entries[j].address == first.address
            {
                j += 1;
            }
            let batch = &entries[i..j];
            let outgoing: Vec<Outgoing> = batch.iter().map(outgoing).collect();
            let outcomes = match first.target {
                Target::Sqs => {
                    let endpoint = self.endpoint("sqs", &first.address);
                    self.aws
                        .send_batch(&endpoint, &first.address, &outgoing)
                        .await?
                }
                Target::Sns => {
                    let endpoint = self.endpoint("sns", &first.address);
                    self.aws
                        .publish_batch(&endpoint, &first.address, &outgoing)
                        .await?
                }
                Target::Mqtt => {
                    vec![Outcome::Refused("an MQTT entry in an AWS bridge".into()); batch.len()]
                }
            };
            let mut done: Vec<RecordId> = Vec::new();
            let mut retry = None;
            for (entry, outcome) in batch.iter().zip(outcomes) {
                match outcome {
                    Outcome::Done => {
                        done.push(entry.id);
                        Status::add(&self.status.forwarded, 1);
                    }
                    Outcome::Refused(why) => {
                        tracing::warn!(bridge = %self.config.name, target = %entry.address, reason = %why, "the upstream refused a forwarded message; dropped");
                        Status::add(&self.status.dropped, 1);
                        done.push(entry.id);
                    }
                    Outcome::Retry(why) => retry = Some(why),
                }
            }
            self.backlog.done(&done);
            if let Some(why) = retry {
                return Err(why);
            }
            i = j;
        }
        Ok(())
    }

    /// Moves one local queue to its remote queue until the broker shuts down.
    pub async fn move_queue(
        self: Arc<Self>,
        queues: Arc<Queues>,
        rule: QueueRule,
        shutdown: Shutdown,
    ) {
        self.move_messages(queues, rule.local, Remote::Sqs(rule.remote), shutdown)
            .await
    }

    /// Forwards a local SNS topic: subscribes the bridge's own queue to it (raw delivery) and
    /// moves that queue to the remote queue or topic.
    pub async fn forward_topic(
        self: Arc<Self>,
        queues: Arc<Queues>,
        topics: Arc<Topics>,
        rule: TopicRule,
        shutdown: Shutdown,
    ) {
        let queue = rule.queue(&self.config.name);
        if let Err(e) = self
            .subscribe_queue(&queues, &topics, &rule.local, &queue)
            .await
        {
            tracing::error!(bridge = %self.config.name, topic = %rule.local, error = %e, "a topic rule could not be set up; it forwards nothing");
            self.status.failed(&e);
            return;
        }
        let remote = if rule.sqs.is_empty() {
            Remote::Sns(rule.sns)
        } else {
            Remote::Sqs(rule.sqs)
        };
        self.move_messages(queues, queue, remote, shutdown).await
    }

    async fn subscribe_queue(
        &self,
        queues: &Queues,
        topics: &Arc<Topics>,
        topic: &str,
        queue: &str,
    ) -> Result<(), String> {
        let arn = topics.topic_arn(topic);
        if topics.topic_by_arn(&arn).is_err() {
            topics
                .create_topic(topic, BTreeMap::new(), BTreeMap::new())
                .await
                .map_err(|e| format!("creating topic {topic}: {e}"))?;
        }
        if queues.queue(queue).is_err() {
            queues
                .create_queue(queue, &BTreeMap::new(), &BTreeMap::new())
                .await
                .map_err(|e| format!("creating queue {queue}: {e}"))?;
        }
        let endpoint = queues.arn(queue);
        let mut already = false;
        let mut token: Option<String> = None;
        loop {
            let (subs, next) = topics
                .list_subscriptions_by_topic(&arn, token.as_deref())
                .map_err(|e| format!("listing subscriptions of {topic}: {e}"))?;
            already |= subs.iter().any(|s| s.endpoint == endpoint);
            match next {
                Some(t) if !already => token = Some(t),
                _ => break,
            }
        }
        if !already {
            let principal = self.config.principal();
            let raw = BTreeMap::from([("RawMessageDelivery".to_string(), "true".to_string())]);
            topics
                .subscribe(&arn, "sqs", Some(&endpoint), raw, true, &principal)
                .await
                .map_err(|e| format!("subscribing queue {queue} to {topic}: {e}"))?;
        }
        Ok(())
    }

    /// Moves a local queue's messages to `remote` until the broker shuts down.
    async fn move_messages(
        self: Arc<Self>,
        queues: Arc<Queues>,
        local: String,
        remote: Remote,
        mut shutdown: Shutdown,
    ) {
        let mut backoff = self.backoff();
        let rule = QueueRule {
            local,
            remote: match &remote {
                Remote::Sqs(u) | Remote::Sns(u) => u.clone(),
            },
        };
        loop {
            let received = tokio::select! {
                r = queues.receive(&rule.local, ReceiveRequest {
                    max_messages: Some(10),
                    visibility_timeout: Some(MOVE_VISIBILITY),
                    wait_seconds: Some(5),
                    attempt_id: None,
                }) => r,
                _ = shutdown.recv() => return,
            };
            let result = match received {
                Err(e) => Err(format!("local queue {}: {e}", rule.local)),
                Ok(batch) if batch.is_empty() => continue,
                Ok(batch) => {
                    let outgoing: Vec<Outgoing> =
                        batch.iter().map(|m| queue_message(&m.message)).collect();
                    let sent = match &remote {
                        Remote::Sqs(url) => {
                            let endpoint = self.endpoint("sqs", url);
                            self.aws.send_batch(&endpoint, url, &outgoing).await
                        }
                        Remote::Sns(arn) => {
                            let endpoint = self.endpoint("sns", arn);
                            self.aws.publish_batch(&endpoint, arn, &outgoing).await
                        }
                    };
                    match sent {
                        Err(e) => Err(e),
                        Ok(outcomes) => {
                            let mut delete = Vec::new();
                            let mut retry = None;
                            for (m, o) in batch.iter().zip(outcomes) {
                                match o {
                                    Outcome::Done => {
                                        Status::add(&self.status.forwarded, 1);
                                        delete.push(m.receipt.clone());
                                    }
                                    // A refused message stays in the local queue: its redrive
                                    // policy (dead-letter queue) decides its fate.
                                    Outcome::Refused(why) | Outcome::Retry(why) => {
                                        retry = Some(why)
                                    }
                                }
                            }
                            if let Err(e) = queues.delete_batch(&rule.local, &delete).await {
                                tracing::warn!(bridge = %self.config.name, queue = %rule.local, error = %e, "moved messages could not be deleted locally; they will be sent again");
                            }
                            retry.map_or(Ok(()), Err)
                        }
                    }
                }
            };
            match result {
                Ok(()) => {
                    backoff.reset();
                    self.status.set_connected(true);
                }
                Err(e) => {
                    tracing::warn!(bridge = %self.config.name, queue = %rule.local, error = %e, "moving a queue upstream failed; retrying");
                    self.status.failed(&e);
                    self.status.set_connected(false);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = shutdown.recv() => return,
                    }
                }
            }
        }
    }
}

/// Where a moved message goes.
enum Remote {
    Sqs(String),
    Sns(String),
}

/// A local queue message as a remote one: body, attributes, FIFO group and deduplication id.
fn queue_message(m: &outpost_queues::message::StoredMessage) -> Outgoing {
    let attributes = decode_attributes(&m.attributes)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, a)| match a.value {
            AttributeValue::String(s) => (name, a.data_type, s, false),
            AttributeValue::Binary(b) => (
                name,
                a.data_type,
                base64::engine::general_purpose::STANDARD.encode(&b),
                true,
            ),
        })
        .collect();
    Outgoing {
        body: String::from_utf8_lossy(&m.body).into_owned(),
        attributes,
        group_id: m.group.clone(),
        dedup_id: m.dedup.clone(),
    }
}

/// An MQTT message as an SQS/SNS message: the payload as the body (base64 when it is not text
/// SQS accepts, flagged by `outpost-encoding`), the topic as `mqtt-topic`, the content type and
/// user properties as String attributes — at most 10, SQS's limit.
fn outgoing(e: &Entry) -> Outgoing {
    let Ok(Decoded::Packet(Packet::Publish(p), _)) =
        outpost_codec::decode(&e.publish, Version::V5, usize::MAX)
    else {
        return Outgoing {
            body: String::new(),
            attributes: Vec::new(),
            group_id: None,
            dedup_id: None,
        };
    };
    let mut attributes: Vec<(String, String, String, bool)> = Vec::new();
    let text = std::str::from_utf8(p.payload)
        .ok()
        .filter(|s| !s.is_empty() && validate_text(s).is_ok());
    let body = match text {
        Some(s) => s.to_string(),
        None => {
            attributes.push((
                "outpost-encoding".into(),
                "String".into(),
                "base64".into(),
                false,
            ));
            base64::engine::general_purpose::STANDARD.encode(p.payload)
        }
    };
    attributes.push(("mqtt-topic".into(), "String".into(), p.topic.into(), false));
    if let Some(ct) = p.properties.content_type.filter(|s| !s.is_empty()) {
        attributes.push(("content-type".into(), "String".into(), ct.into(), false));
    }
    let mut seen: HashMap<String, ()> = attributes.iter().map(|a| (a.0.clone(), ())).collect();
    for u in p.properties.user_properties.iter() {
        if attributes.len() >= 10 {
            break;
        }
        if u.name == crate::HOP
            || !valid_attribute_name(u.name, false)
            || u.value.is_empty()
            || validate_text(u.value).is_err()
        {
            continue;
        }
        if seen.insert(u.name.to_string(), ()).is_none() {
            attributes.push((u.name.into(), "String".into(), u.value.into(), false));
        }
    }
    Outgoing {
        body,
        attributes,
        group_id: None,
        dedup_id: None,
    }
}
