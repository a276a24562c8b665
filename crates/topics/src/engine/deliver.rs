//! Deliveries to HTTP/S endpoints and MQTT topics: one task per delivery, retried along the
//! subscription's delivery policy, throttled per endpoint, and sent to the subscription's
//! dead-letter queue when the policy is exhausted. A slow or dead endpoint holds only its own
//! deliveries: the publisher was answered when the pending record became durable, and other
//! subscriptions have their own tasks.
//!
//! A pending record holds one message and the subscriptions it still owes; it is marked dead
//! when the last of them finished (delivered, dead-lettered, or unsubscribed). A crash replays
//! the live records, so a delivery in flight at the crash is made again (at least once, as SNS).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_store::RecordId;
use serde::{Deserialize, Serialize};

use super::*;
use crate::endpoints::{HttpRequest, MqttMessage};
use crate::message::{json_string, layout, timestamp, Notification};
use crate::signing::SignatureVersion;
use crate::subscription::Protocol;

/// SNS waits this long for an HTTP/S endpoint's answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Delivery figures since start.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub in_flight: AtomicU64,
    pub signatures: AtomicU64,
}

/// Delivery figures for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryStats {
    /// Messages published.
    pub published: u64,
    /// Copies delivered (queues, endpoints, MQTT).
    pub delivered: u64,
    /// Attempts retried.
    pub retried: u64,
    /// Deliveries that failed for good.
    pub failed: u64,
    /// Of those, sent to a dead-letter queue.
    pub dead_lettered: u64,
    /// HTTP/S and MQTT deliveries pending now.
    pub pending: u64,
    /// RSA signatures made (envelopes and confirmations): one per message, not per copy.
    pub signatures: u64,
}

/// One published message and the HTTP/S and MQTT deliveries it still owes.
#[derive(Debug)]
pub(super) struct Pending {
    record: RecordId,
    pub notification: Notification,
    remaining: AtomicUsize,
    /// The message's signatures, made once and shared by every subscription and retry.
    pub signatures: Signatures,
}

impl Pending {
    pub fn new(record: RecordId, notification: Notification, deliveries: usize) -> Pending {
        Pending {
            record,
            notification,
            remaining: AtomicUsize::new(deliveries),
            signatures: Signatures::default(),
        }
    }
}

/// A message's envelope signatures, one per signed text: the text depends on the protocol only
/// for a `MessageStructure=json` message ([`Notification::text_key`]) and on the topic's
/// `SignatureVersion`, never on the subscription (`UnsubscribeURL` is not signed). So queue copies
/// and ten endpoints, and every retry, share one RSA signature.
#[derive(Debug, Default)]
pub(super) struct Signatures {
    made: parking_lot::Mutex<Vec<SignatureSlot>>,
}

type SignatureSlot = (
    &'static str,
    SignatureVersion,
    Arc<tokio::sync::OnceCell<String>>,
);

impl Signatures {
    /// The slot of one signed text; the first caller fills it, the others wait for it.
    fn slot(
        &self,
        key: &'static str,
        version: SignatureVersion,
    ) -> Arc<tokio::sync::OnceCell<String>> {
        let mut made = self.made.lock();
        if let Some((_, _, cell)) = made.iter().find(|(k, v, _)| *k == key && *v == version) {
            return cell.clone();
        }
        let cell = Arc::new(tokio::sync::OnceCell::new());
        made.push((key, version, cell.clone()));
        cell
    }

    /// A signature already made (for the queue copies, while publishing).
    pub(super) fn seed(&self, key: &'static str, version: SignatureVersion, signature: String) {
        let _ = self.slot(key, version).set(signature);
    }
}

#[derive(Serialize, Deserialize)]
struct PendingRecord {
    n: Notification,
    s: Vec<String>,
}

/// A pending record: the message and the ARNs of the subscriptions it goes to.
pub(super) fn encode_pending(n: &Notification, subs: &[Arc<Subscription>]) -> Bytes {
    let r = PendingRecord {
        n: n.clone(),
        s: subs.iter().map(|s| s.arn.clone()).collect(),
    };
    Bytes::from(serde_json::to_vec(&r).unwrap_or_default())
}

/// A pending record read back at start.
#[derive(Debug)]
pub(super) struct Recovered {
    record: RecordId,
    notification: Notification,
    subscriptions: Vec<String>,
}

/// The host an HTTP/S subscription delivers to (lower case); `None` for other protocols.
fn endpoint_host(sub: &Subscription) -> Option<String> {
    if !sub.protocol.is_http() {
        return None;
    }
    let rest = sub.endpoint.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(host.to_ascii_lowercase())
}

enum Outcome {
    Delivered,
    /// Worth retrying (5xx, 429, no answer).
    Retry(String),
    /// Not worth retrying (another 4xx): straight to the dead-letter queue.
    Refused(String),
}

impl Topics {
    pub(super) fn recover_pending(&self) {
        let mut found = Vec::new();
        for rec in self.store.scan(self.pending, 0, usize::MAX) {
            match serde_json::from_slice::<PendingRecord>(&rec.payload) {
                Ok(p) => found.push(Recovered {
                    record: rec.id,
                    notification: p.n,
                    subscriptions: p.s,
                }),
                Err(e) => {
                    tracing::error!(record = rec.id.seq, error = %e, "unreadable pending delivery record dropped");
                    self.store.mark_dead_later(&[rec.id]);
                }
            }
        }
        if !found.is_empty() {
            tracing::info!(messages = found.len(), "resuming pending topic deliveries");
        }
        *self.recovered.lock() = found;
    }

    pub(super) fn resume(self: &Arc<Self>, recovered: Vec<Recovered>) {
        for r in recovered {
            let subs: Vec<Arc<Subscription>> = {
                let all = self.subscriptions.read();
                r.subscriptions
                    .iter()
                    .filter_map(|arn| all.get(arn).cloned())
                    .collect()
            };
            if subs.is_empty() {
                self.store.mark_dead_later(&[r.record]);
                continue;
            }
            let pending = Arc::new(Pending::new(r.record, r.notification, subs.len()));
            self.spawn_deliveries(pending, subs);
        }
    }

    /// Starts one task per delivery.
    pub(super) fn spawn_deliveries(
        self: &Arc<Self>,
        pending: Arc<Pending>,
        subs: Vec<Arc<Subscription>>,
    ) {
        let size = pending.notification.message.len() as u64;
        for sub in subs {
            self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            sub.backlog.fetch_add(1, Ordering::Relaxed);
            sub.backlog_bytes.fetch_add(size, Ordering::Relaxed);
            self.host_backlog(&sub, 1, size as i64);
            let (engine, pending) = (self.clone(), pending.clone());
            tokio::spawn(async move {
                engine.deliver(&pending, &sub).await;
                engine.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                sub.backlog.fetch_sub(1, Ordering::Relaxed);
                sub.backlog_bytes.fetch_sub(size, Ordering::Relaxed);
                engine.host_backlog(&sub, -1, -(size as i64));
                if pending.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    if let Err(e) = engine.store.mark_dead(&[pending.record]).await {
                        tracing::warn!(error = %e, "a finished pending delivery record stays until restart");
                    }
                }
            });
        }
    }

    /// True when the subscription (and its endpoint host) can owe one more delivery of `size`
    /// bytes; `taken` holds what earlier messages of the same publish took but have not yet
    /// started (by subscription ARN and by host), and this one is added to it.
    pub(super) fn has_room(
        &self,
        sub: &Subscription,
        size: u64,
        taken: &mut HashMap<String, (usize, u64)>,
    ) -> bool {
        let host = endpoint_host(sub);
        let (sub_n, sub_b) = taken.get(&sub.arn).copied().unwrap_or((0, 0));
        let (host_n, host_b) = host
            .as_ref()
            .and_then(|h| taken.get(h).copied())
            .unwrap_or((0, 0));
        let host_room = host.as_ref().is_none_or(|host| {
            let (count, bytes) = self.hosts.lock().get(host).copied().unwrap_or((0, 0));
            count + host_n < self.config.max_pending_deliveries_per_host
                && bytes + host_b + size <= self.config.max_pending_bytes_per_host
        });
        let room = host_room
            && sub.backlog.load(Ordering::Relaxed) + sub_n < self.config.max_pending_deliveries
            && sub.backlog_bytes.load(Ordering::Relaxed) + sub_b + size
                <= self.config.max_pending_bytes;
        if room {
            let e = taken.entry(sub.arn.clone()).or_insert((0, 0));
            *e = (e.0 + 1, e.1 + size);
            if let Some(h) = host {
                let e = taken.entry(h).or_insert((0, 0));
                *e = (e.0 + 1, e.1 + size);
            }
        }
        room
    }

    /// Counts deliveries owed to the subscription's endpoint host (HTTP/S), across every
    /// subscription that points there.
    fn host_backlog(&self, sub: &Subscription, count: i64, bytes: i64) {
        let Some(host) = endpoint_host(sub) else {
            return;
        };
        let mut hosts = self.hosts.lock();
        let entry = hosts.entry(host.clone()).or_insert((0, 0));
        entry.0 = (entry.0 as i64 + count).max(0) as usize;
        entry.1 = (entry.1 as i64 + bytes).max(0) as u64;
        if entry.0 == 0 {
            hosts.remove(&host);
        }
    }

    /// A message the subscription has no room for: to its dead-letter queue (SNS's redrive),
    /// else dropped, counted and logged.
    pub(super) async fn overflow(&self, sub: &Subscription, n: &Notification) {
        tracing::warn!(subscription = %sub.arn, message = %n.id, "the subscription owes too many deliveries; this one goes to its dead-letter queue or is dropped");
        self.redrive(sub, n, None).await;
    }

    /// What the subscription would have received goes to its dead-letter queue (its raw
    /// message with the attributes, or the envelope), if it has one.
    async fn redrive(&self, sub: &Subscription, n: &Notification, signatures: Option<&Signatures>) {
        let body = self.payload(n, sub, signatures).await;
        let attributes = if sub.raw() {
            super::publish::queue_attributes(&n.attributes)
        } else {
            Default::default()
        };
        self.dead_letter(sub, n, body, attributes).await;
    }

    /// Waits for the subscription's next slot under `maxReceivesPerSecond`.
    async fn throttle(&self, sub: &Subscription, per_second: Option<u32>) {
        let Some(rate) = per_second else {
            return;
        };
        let step = Duration::from_secs(1) / rate.max(1);
        let at = {
            let mut next = sub.next_slot.lock();
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + step;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }

    async fn deliver(&self, pending: &Pending, sub: &Subscription) {
        let n = &pending.notification;
        let mut retry = 0;
        loop {
            if sub.is_deleted() {
                return;
            }
            let policy = sub.policy.read().clone();
            self.throttle(sub, policy.max_per_second).await;
            let outcome = {
                let Ok(_permit) = sub.inflight.acquire().await else {
                    return;
                };
                self.attempt(pending, sub, policy.content_type.as_deref())
                    .await
            };
            let why = match outcome {
                Outcome::Delivered => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    let name = sub.topic_arn.rsplit(':').next().unwrap_or("");
                    if let Some(t) = self.topics.read().get(name) {
                        t.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Outcome::Refused(why) => why,
                Outcome::Retry(why) => {
                    retry += 1;
                    match policy.retry.delay(retry) {
                        Some(delay) => {
                            self.stats.retried.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(subscription = %sub.arn, retry, error = %why, "delivery failed; retrying");
                            // SNS jitters its retries; up to a tenth of the delay here.
                            let jitter = delay.mul_f64(rand::random::<f64>() * 0.1);
                            tokio::time::sleep(delay + jitter).await;
                            continue;
                        }
                        None => why,
                    }
                }
            };
            tracing::warn!(subscription = %sub.arn, message = %n.id, error = %why, "delivery failed for good");
            self.redrive(sub, n, Some(&pending.signatures)).await;
            return;
        }
    }

    /// What a subscription receives: the raw message or the signed envelope (its signature
    /// taken from `signatures` when another subscription or attempt made it already).
    async fn payload(
        &self,
        n: &Notification,
        sub: &Subscription,
        signatures: Option<&Signatures>,
    ) -> String {
        let text = n.message_for(sub.protocol.as_str());
        if sub.raw() {
            return text.to_string();
        }
        let sign = || async {
            self.sign_all(vec![(n, text)])
                .await
                .pop()
                .unwrap_or_default()
        };
        let signature = match signatures {
            Some(cache) => {
                let version = n.signature_version();
                let slot = cache.slot(n.text_key(sub.protocol.as_str()), version);
                slot.get_or_init(sign).await.clone()
            }
            None => sign().await,
        };
        n.envelope(
            text,
            &signature,
            &self.cert_url(),
            &self.unsubscribe_url(&sub.arn),
        )
    }

    async fn attempt(
        &self,
        pending: &Pending,
        sub: &Subscription,
        content_type: Option<&str>,
    ) -> Outcome {
        let n = &pending.notification;
        match sub.protocol {
            Protocol::Http | Protocol::Https => {
                let Some(http) = self.http.read().clone() else {
                    return Outcome::Retry("no HTTP client".into());
                };
                let body = self.payload(n, sub, Some(&pending.signatures)).await;
                let mut headers = vec![
                    ("x-amz-sns-message-type", "Notification".to_string()),
                    ("x-amz-sns-message-id", n.id.clone()),
                    ("x-amz-sns-topic-arn", n.topic_arn.clone()),
                    ("x-amz-sns-subscription-arn", sub.arn.clone()),
                    (
                        "content-type",
                        content_type
                            .unwrap_or("text/plain; charset=UTF-8")
                            .to_string(),
                    ),
                    (
                        "user-agent",
                        "Amazon Simple Notification Service Agent".to_string(),
                    ),
                ];
                if sub.raw() {
                    headers.push(("x-amz-sns-rawdelivery", "true".to_string()));
                }
                let request = HttpRequest {
                    url: sub.endpoint.clone(),
                    headers,
                    body,
                    timeout: HTTP_TIMEOUT,
                };
                match http.post(request).await {
                    Ok(status) if (200..300).contains(&status) => Outcome::Delivered,
                    Ok(status) if status == 429 || !(200..500).contains(&status) => {
                        Outcome::Retry(format!("HTTP {status}"))
                    }
                    Ok(status) => Outcome::Refused(format!("HTTP {status}")),
                    Err(e) => Outcome::Retry(e),
                }
            }
            Protocol::Mqtt => {
                let Some(mqtt) = self.mqtt.read().clone() else {
                    return Outcome::Retry("no MQTT engine".into());
                };
                let raw = sub.raw();
                let body = self.payload(n, sub, Some(&pending.signatures)).await;
                let user_properties = if raw {
                    n.attributes
                        .iter()
                        .map(|(k, a)| (k.clone(), a.value.clone()))
                        .collect()
                } else {
                    Vec::new()
                };
                let message = MqttMessage {
                    topic: sub.endpoint.clone(),
                    payload: Bytes::from(body),
                    content_type: (!raw).then_some("application/json"),
                    user_properties,
                    who: self.owner(sub),
                };
                match mqtt.publish(message).await {
                    Ok(()) => Outcome::Delivered,
                    Err(crate::endpoints::MqttRefusal::Refused(e)) => Outcome::Refused(e),
                    Err(crate::endpoints::MqttRefusal::Failed(e)) => Outcome::Retry(e),
                }
            }
            // Queue copies are made while publishing, never here.
            Protocol::Sqs => Outcome::Delivered,
        }
    }

    /// Puts an undeliverable message into the subscription's dead-letter queue, if it has one.
    pub(super) async fn dead_letter(
        &self,
        sub: &Subscription,
        n: &Notification,
        body: String,
        attributes: outpost_queues::message::Attributes,
    ) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        let Some(arn) = sub.dead_letter_arn() else {
            tracing::warn!(subscription = %sub.arn, message = %n.id, "undeliverable message dropped: the subscription has no dead-letter queue");
            return;
        };
        let Some(queue) = self.queues.name_from_arn(&arn) else {
            tracing::warn!(subscription = %sub.arn, dead_letter_queue = %arn, "undeliverable message dropped: the dead-letter queue is not on this broker");
            return;
        };
        if let Err(why) = self.owner_may_deliver(sub, Protocol::Sqs, &arn) {
            tracing::warn!(subscription = %sub.arn, error = %why, "undeliverable message dropped: its owner may not write the dead-letter queue");
            return;
        }
        let req = outpost_queues::SendRequest {
            body,
            attributes,
            group_id: n.group.clone(),
            dedup_id: n.dedup.clone(),
            ..Default::default()
        };
        match self.queues.send(&queue, req).await {
            Ok(_) => {
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(subscription = %sub.arn, dead_letter_queue = %arn, error = %e, "undeliverable message dropped: the dead-letter queue refused it");
            }
        }
    }

    /// The signatures of notifications carrying the messages given, computed on the blocking
    /// pool: an RSA signature takes a millisecond or more, too long for an async worker.
    pub(super) async fn sign_all(&self, items: Vec<(&Notification, &str)>) -> Vec<String> {
        let work: Vec<(SignatureVersion, String)> = items
            .into_iter()
            .map(|(n, message)| (n.signature_version(), n.string_to_sign(message)))
            .collect();
        self.sign_texts(work).await
    }

    /// Signatures of canonical strings, on the blocking pool.
    pub(super) async fn sign_texts(&self, work: Vec<(SignatureVersion, String)>) -> Vec<String> {
        if work.is_empty() {
            return Vec::new();
        }
        self.stats
            .signatures
            .fetch_add(work.len() as u64, Ordering::Relaxed);
        let Some(signer) = self.signer().cloned() else {
            return Vec::new();
        };
        let sign = move || {
            work.iter()
                .map(|(v, text)| signer.sign(*v, text.as_bytes()))
                .collect::<Vec<String>>()
        };
        match tokio::task::spawn_blocking(sign).await {
            Ok(signatures) => signatures,
            Err(e) => {
                tracing::error!(error = %e, "the signing task failed");
                Vec::new()
            }
        }
    }

    /// `SigningCertURL`.
    pub(super) fn cert_url(&self) -> String {
        format!(
            "{}/{}",
            self.config.public_url.trim_end_matches('/'),
            self.signer().map_or("", |s| s.cert_file())
        )
    }

    /// `UnsubscribeURL` of a subscription.
    pub(super) fn unsubscribe_url(&self, arn: &str) -> String {
        format!(
            "{}/?Action=Unsubscribe&SubscriptionArn={}",
            self.config.public_url.trim_end_matches('/'),
            arn
        )
    }

    /// POSTs the SubscriptionConfirmation of a pending HTTP/S subscription (retried along the
    /// topic's delivery policy; the subscription stays pending if it never arrives).
    pub(super) fn send_confirmation(self: &Arc<Self>, topic: &Topic, sub: &Arc<Subscription>) {
        let def = sub.def.lock().clone();
        let Some(token) = def.token else {
            return;
        };
        let now = now_ms();
        let id = uuid();
        let base = self.config.public_url.trim_end_matches('/').to_string();
        let subscribe_url = format!(
            "{base}/?Action=ConfirmSubscription&TopicArn={}&Token={token}",
            topic.arn
        );
        let message = format!(
            "You have chosen to subscribe to the topic {}.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
            topic.arn
        );
        let ts = timestamp(now);
        let version = topic.signature_version();
        let to_sign = format!(
            "Message\n{message}\nMessageId\n{id}\nSubscribeURL\n{subscribe_url}\nTimestamp\n{ts}\nToken\n{token}\nTopicArn\n{}\nType\nSubscriptionConfirmation\n",
            topic.arn
        );
        let (engine, sub) = (self.clone(), sub.clone());
        let cert_url = self.cert_url();
        let topic_arn = topic.arn.clone();
        tokio::spawn(async move {
            let signature = engine
                .sign_texts(vec![(version, to_sign)])
                .await
                .pop()
                .unwrap_or_default();
            let body = layout(&[
                ("Type", json_string("SubscriptionConfirmation")),
                ("MessageId", json_string(&id)),
                ("Token", json_string(&token)),
                ("TopicArn", json_string(&topic_arn)),
                ("Message", json_string(&message)),
                ("SubscribeURL", json_string(&subscribe_url)),
                ("Timestamp", json_string(&ts)),
                ("SignatureVersion", json_string(version.as_str())),
                ("Signature", json_string(&signature)),
                ("SigningCertURL", json_string(&cert_url)),
            ]);
            let request = HttpRequest {
                url: sub.endpoint.clone(),
                headers: vec![
                    ("x-amz-sns-message-type", "SubscriptionConfirmation".into()),
                    ("x-amz-sns-message-id", id),
                    ("x-amz-sns-topic-arn", topic_arn.clone()),
                    ("content-type", "text/plain; charset=UTF-8".into()),
                    (
                        "user-agent",
                        "Amazon Simple Notification Service Agent".into(),
                    ),
                ],
                body,
                timeout: HTTP_TIMEOUT,
            };
            let policy = sub.policy.read().retry;
            let mut retry = 0;
            loop {
                if sub.is_deleted() || sub.confirmed() {
                    return;
                }
                let http = engine.http.read().clone();
                let result = match http {
                    Some(h) => h.post(request.clone()).await,
                    None => Err("no HTTP client".into()),
                };
                match result {
                    Ok(s) if (200..300).contains(&s) => return,
                    other => {
                        retry += 1;
                        let Some(delay) = policy.delay(retry) else {
                            tracing::warn!(subscription = %sub.arn, result = ?other, "the subscription confirmation was not accepted; the subscription stays pending");
                            return;
                        };
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        });
    }

    /// Per topic: (name, messages published, copies delivered) since start.
    pub fn topic_stats(&self) -> Vec<(String, u64, u64)> {
        self.topics
            .read()
            .values()
            .map(|t| {
                (
                    t.name.clone(),
                    t.published.load(Ordering::Relaxed),
                    t.delivered.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Delivery figures.
    pub fn delivery_stats(&self) -> DeliveryStats {
        DeliveryStats {
            published: self.published.load(Ordering::Relaxed),
            delivered: self.stats.delivered.load(Ordering::Relaxed),
            retried: self.stats.retried.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
            dead_lettered: self.stats.dead_lettered.load(Ordering::Relaxed),
            pending: self.stats.in_flight.load(Ordering::Relaxed),
            signatures: self.stats.signatures.load(Ordering::Relaxed),
        }
    }
}
