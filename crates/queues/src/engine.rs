//! The queue engine: every SQS operation, on the store.
//!
//! Durability follows the store's group commit: a send answers after its message record is
//! durable, a receive after its delivery records are (so receive counts and visibility deadlines
//! survive a crash), a delete after its tombstones are. Nothing holds a queue's lock across a disk
//! wait, so concurrent sends and receives share fsyncs instead of queueing behind each other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use outpost_store::{MetaOp, RecordId, Store};
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};

use crate::attributes::{self, RedriveAllow, Settings};
use crate::delivery::Delivery;
use crate::error::{QueueError, Result};
use crate::message::{self, encode_attributes, md5_hex, new_uuid, StoredMessage};
use crate::movetask::MoveTask;
use crate::queue::{Inner, Queue, QueueDef};
use crate::receipt::Receipt;
use crate::requests::{MoveTaskInfo, ReceiveRequest, ReceivedMessage, SendRequest, SendResult};
use crate::state::{DedupEntry, Msg, QueueState, ReceiptProblem, DEDUP_WINDOW_MS};

const QUEUES_TABLE: &str = "queues";
const COUNTERS_TABLE: &str = "queue_counters";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where queue ARNs and URLs point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuesConfig {
    /// Region in ARNs.
    pub region: String,
    /// Account id in ARNs and URLs.
    pub account: String,
    /// Most messages in flight per queue (SQS: 120,000).
    pub max_inflight: u64,
}

impl Default for QueuesConfig {
    fn default() -> Self {
        QueuesConfig {
            region: "us-east-1".into(),
            account: "000000000000".into(),
            max_inflight: 120_000,
        }
    }
}

/// Figures for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// Queue name.
    pub name: String,
    /// Visible messages.
    pub visible: u64,
    /// In flight.
    pub inflight: u64,
    /// Delayed.
    pub delayed: u64,
    /// Age of the oldest message, seconds.
    pub oldest_age_seconds: u64,
}

/// All queues.
pub struct Queues {
    store: Store,
    config: QueuesConfig,
    queues: RwLock<BTreeMap<String, Arc<Queue>>>,
    by_id: RwLock<HashMap<u64, Arc<Queue>>>,
    /// Serializes definition changes (create, delete, attributes, tags) and their metadata writes.
    defs: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<Arc<MoveTask>>>,
    sends: AtomicU64,
    receives: AtomicU64,
    deletes: AtomicU64,
    /// Set by [`Queues::shut_down`]: long polls answer at once (with what they have).
    closing: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("queues", &self.queues.read().len())
            .finish()
    }
}

fn meta_key(name: &str) -> Vec<u8> {
    name.as_bytes().to_vec()
}

fn valid_queue_name(name: &str) -> bool {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    !base.is_empty()
        && name.len() <= 80
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_fifo_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic())
}

fn ms(seconds: u32) -> u64 {
    u64::from(seconds) * 1000
}

impl Queues {
    /// Opens the engine on a store, recovering every queue.
    pub fn open(store: Store, config: QueuesConfig) -> Result<Arc<Queues>> {
        let queues = Arc::new(Queues {
            store,
            config,
            queues: RwLock::new(BTreeMap::new()),
            by_id: RwLock::new(HashMap::new()),
            defs: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
            sends: AtomicU64::new(0),
            receives: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
            closing: Default::default(),
        });
        queues.recover()?;
        Ok(queues)
    }

    /// The broker is stopping: every long poll waiting now, and any that starts later, answers
    /// at once with what is receivable (usually nothing), so HTTP requests can finish.
    pub fn shut_down(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for q in self.queues.read().values() {
            q.notify.notify_waiters();
        }
    }

    /// Runs retention every second until the engine is dropped. Spawn it once on the runtime.
    pub async fn run_maintenance(self: Arc<Self>) {
        let weak = Arc::downgrade(&self);
        drop(self);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(q) = weak.upgrade() else {
                return;
            };
            q.expire_messages(now_ms());
        }
    }

    fn recover(&self) -> Result<()> {
        let now = now_ms();
        let defs = self.store.meta().scan(QUEUES_TABLE, b"")?;
        let mut live_ids = HashSet::new();
        for (_, value) in defs {
            let def: QueueDef = match serde_json::from_slice(&value) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "skipping an unreadable queue definition");
                    continue;
                }
            };
            live_ids.insert(def.id);
            let queue = self.build_queue(def)?;
            self.recover_messages(&queue, now);
            self.by_id.write().insert(queue.id, queue.clone());
            self.queues.write().insert(queue.name.clone(), queue);
        }
        // Streams of queues whose deletion was cut short by a crash.
        for (name, stream) in self.store.streams()? {
            let Some(rest) = name.strip_prefix("queue/") else {
                continue;
            };
            let id = rest.split('/').next().and_then(|s| s.parse::<u64>().ok());
            if id.is_some_and(|id| !live_ids.contains(&id)) {
                let ids: Vec<RecordId> = self
                    .store
                    .scan(stream, 0, usize::MAX)
                    .into_iter()
                    .map(|r| r.id)
                    .collect();
                if ids.is_empty() {
                    // Nothing left in it: the name goes too.
                    self.store.remove_stream(&name)?;
                } else {
                    self.store.mark_dead_later(&ids);
                }
            }
        }
        Ok(())
    }

    fn build_queue(&self, def: QueueDef) -> Result<Arc<Queue>> {
        let (m, d) = Queue::stream_names(def.id);
        let messages = self.store.stream(&m)?;
        let deliveries = self.store.stream(&d)?;
        let settings = Settings::from_map(&def.attributes, def.fifo);
        Ok(Arc::new(Queue {
            id: def.id,
            name: def.name.clone(),
            fifo: def.fifo,
            messages,
            deliveries,
            inner: Mutex::new(Inner {
                state: QueueState::new(def.fifo),
                settings,
                def,
                next_sequence: 1,
                last_purge_ms: 0,
                attempts: HashMap::new(),
            }),
            notify: tokio::sync::Notify::new(),
            deleted: Default::default(),
            send_order: tokio::sync::Mutex::new(()),
        }))
    }

    fn recover_messages(&self, queue: &Queue, now: u64) {
        let mut latest: HashMap<u64, (u64, Delivery)> = HashMap::new();
        let mut obsolete = Vec::new();
        for rec in self.store.scan(queue.deliveries, 0, usize::MAX) {
            let Some(d) = Delivery::decode(&rec.payload) else {
                obsolete.push(rec.id);
                continue;
            };
            if let Some((old, _)) = latest.insert(d.seq, (rec.id.seq, d)) {
                obsolete.push(queue.delivery_record(old));
            }
        }
        let mut inner = queue.inner.lock();
        let mut max_sequence = 0;
        for rec in self.store.scan(queue.messages, 0, usize::MAX) {
            let Some(m) = StoredMessage::decode(&rec.payload) else {
                tracing::error!(queue = %queue.name, seq = rec.id.seq, "dropping an unreadable message record");
                obsolete.push(rec.id);
                continue;
            };
            max_sequence = max_sequence.max(m.sequence);
            if queue.fifo && m.sent_ms + DEDUP_WINDOW_MS > now {
                if let Some(key) = dedup_key(&inner.settings, &m.group, &m.dedup) {
                    inner.state.dedup_insert(
                        key,
                        DedupEntry {
                            expires_ms: m.sent_ms + DEDUP_WINDOW_MS,
                            message_id: m.message_id(),
                            sequence: m.sequence,
                        },
                    );
                }
            }
            let delivery = latest.remove(&rec.id.seq);
            inner.state.insert(
                rec.id.seq,
                m.sent_ms,
                m.available_ms,
                m.group.as_deref().filter(|_| queue.fifo).map(Arc::from),
                rec.payload.len() as u64,
                delivery,
                now,
            );
        }
        inner.next_sequence = max_sequence + 1;
        drop(inner);
        // Deliveries of messages that are gone.
        obsolete.extend(latest.values().map(|(rec, _)| queue.delivery_record(*rec)));
        self.store.mark_dead_later(&obsolete);
    }

    /// The configuration.
    pub fn config(&self) -> &QueuesConfig {
        &self.config
    }

    /// A queue's ARN.
    pub fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:sqs:{}:{}:{}",
            self.config.region, self.config.account, name
        )
    }

    /// The queue name in an ARN of this region and account.
    pub fn name_from_arn(&self, arn: &str) -> Option<String> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", _, "sqs", region, account, name]
                if *region == self.config.region && *account == self.config.account =>
            {
                Some((*name).to_string())
            }
            _ => None,
        }
    }

    /// A live queue.
    pub fn queue(&self, name: &str) -> Result<Arc<Queue>> {
        self.queues
            .read()
            .get(name)
            .cloned()
            .ok_or(QueueError::QueueDoesNotExist)
    }

    async fn save_def(&self, def: &QueueDef) -> Result<()> {
        let value = serde_json::to_vec(def).map_err(|e| QueueError::Internal(e.to_string()))?;
        let key = meta_key(&def.name);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.meta().apply(&[MetaOp::Put {
                table: QUEUES_TABLE,
                key: &key,
                value: &value,
            }])
        })
        .await
        .map_err(|e| QueueError::Internal(e.to_string()))??;
        Ok(())
    }

    fn check_redrive_target(&self, source_name: &str, fifo: bool, value: &str) -> Result<()> {
        let Some(policy) = attributes::parse_redrive(value)? else {
            return Ok(());
        };
        let invalid = |reason: &str| {
            QueueError::InvalidParameterValue(format!(
                "Value {value} for parameter RedrivePolicy is invalid. Reason: {reason}"
            ))
        };
        let target = self
            .name_from_arn(&policy.target_arn)
            .and_then(|n| self.queue(&n).ok())
            .ok_or_else(|| invalid("Dead letter target does not exist."))?;
        if target.fifo != fifo {
            return Err(invalid(
                "Dead-letter target queue must be of the same type as the source queue.",
            ));
        }
        if target.name == source_name {
            return Err(invalid("A queue cannot be its own dead-letter queue."));
        }
        let allow = target.inner.lock().settings.redrive_allow.clone();
        let source_arn = self.arn(source_name);
        match allow {
            RedriveAllow::AllowAll => Ok(()),
            RedriveAllow::ByQueue(arns) if arns.contains(&source_arn) => Ok(()),
            _ => Err(invalid(
                "The dead-letter queue's RedriveAllowPolicy does not allow this source queue.",
            )),
        }
    }

    fn validate_attributes(
        &self,
        name: &str,
        fifo: bool,
        attrs: &BTreeMap<String, String>,
        creating: bool,
    ) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (k, v) in attrs {
            let v = attributes::validate(k, v, fifo, creating)?;
            if k == "RedrivePolicy" {
                self.check_redrive_target(name, fifo, &v)?;
            }
            out.insert(k.clone(), v);
        }
        if out.get("FifoThroughputLimit").map(String::as_str) == Some("perMessageGroupId")
            && out.get("DeduplicationScope").map(String::as_str) == Some("queue")
        {
            return Err(QueueError::InvalidAttributeValue(
                "The perMessageGroupId value is allowed only when the value for DeduplicationScope is messageGroup.".into(),
            ));
        }
        Ok(out)
    }

    /// `CreateQueue`: idempotent for equal attributes.
    pub async fn create_queue(
        &self,
        name: &str,
        attrs: &BTreeMap<String, String>,
        tags: &BTreeMap<String, String>,
    ) -> Result<()> {
        let fifo_attr = attrs
            .get("FifoQueue")
            .map(|v| v.eq_ignore_ascii_case("true"));
        let fifo = name.ends_with(".fifo");
        if !valid_queue_name(name)
            || fifo_attr.is_some_and(|f| f != fifo)
            || (fifo && fifo_attr.is_none())
        {
            return Err(QueueError::InvalidParameterValue(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length. A FIFO queue name must end with the .fifo suffix and be created with the FifoQueue attribute.".into(),
            ));
        }
        let _guard = self.defs.lock().await;
        let mut validated = self.validate_attributes(name, fifo, attrs, true)?;
        validated.remove("FifoQueue");
        if let Ok(existing) = self.queue(name) {
            let inner = existing.inner.lock();
            let current = attributes::with_defaults(&inner.def.attributes, fifo);
            let requested = attributes::with_defaults(&validated, fifo);
            for (k, v) in &validated {
                if current.get(k) != Some(v) || requested.get(k) != current.get(k) {
                    return Err(QueueError::QueueNameExists(format!(
                        "A queue already exists with the same name and a different value for attribute {k}"
                    )));
                }
            }
            return Ok(());
        }
        if tags.len() > 50 {
            return Err(QueueError::InvalidParameterValue(
                "Too many tags: a queue can have at most 50.".into(),
            ));
        }
        let id = self.next_queue_id().await?;
        let now_s = now_ms() / 1000;
        let def = QueueDef {
            id,
            name: name.to_string(),
            fifo,
            attributes: validated,
            tags: tags.clone(),
            created: now_s,
            modified: now_s,
        };
        self.save_def(&def).await?;
        let queue = self.build_queue(def)?;
        self.by_id.write().insert(id, queue.clone());
        self.queues.write().insert(name.to_string(), queue);
        tracing::info!(queue = name, fifo, "queue created");
        Ok(())
    }

    async fn next_queue_id(&self) -> Result<u64> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let meta = store.meta();
            let next = meta
                .get(COUNTERS_TABLE, b"next_id")?
                .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
                .unwrap_or(1);
            meta.apply(&[MetaOp::Put {
                table: COUNTERS_TABLE,
                key: b"next_id",
                value: &(next + 1).to_be_bytes(),
            }])?;
            Ok(next)
        })
        .await
        .map_err(|e| QueueError::Internal(e.to_string()))?
    }

    /// `DeleteQueue`: the queue and its messages are gone.
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        let _guard = self.defs.lock().await;
        let queue = self.queue(name)?;
        let key = meta_key(name);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.meta().apply(&[MetaOp::Delete {
                table: QUEUES_TABLE,
                key: &key,
            }])
        })
        .await
        .map_err(|e| QueueError::Internal(e.to_string()))??;
        self.queues.write().remove(name);
        self.by_id.write().remove(&queue.id);
        queue.deleted.store(true, Ordering::Release);
        queue.notify.notify_waiters();
        let drained = queue.inner.lock().state.drain();
        self.kill_messages(&queue, &drained, false).await?;
        // The queue's streams leave the store's registry once nothing in them is live (a crash
        // before that is finished by the next recovery). A failure here leaves only names behind.
        let mut ids: Vec<RecordId> = Vec::new();
        for stream in [queue.messages, queue.deliveries] {
            ids.extend(
                self.store
                    .scan(stream, 0, usize::MAX)
                    .into_iter()
                    .map(|r| r.id),
            );
        }
        match self.store.mark_dead(&ids).await {
            Ok(_) => {
                let store = self.store.clone();
                let names = Queue::stream_names(queue.id);
                let removed = tokio::task::spawn_blocking(move || {
                    store.remove_stream(&names.0)?;
                    store.remove_stream(&names.1)
                })
                .await;
                if let Ok(Err(e)) = removed {
                    tracing::warn!(queue = name, error = %e, "streams of a deleted queue not removed");
                }
            }
            Err(e) => {
                tracing::warn!(queue = name, error = %e, "records of a deleted queue not removed")
            }
        }
        tracing::info!(queue = name, "queue deleted");
        Ok(())
    }

    /// `ListQueues`: names with `prefix`, sorted, paginated.
    pub fn list_queues(
        &self,
        prefix: &str,
        max_results: Option<i64>,
        next_token: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>)> {
        let limit = match max_results {
            None => 1000,
            Some(n) if (1..=1000).contains(&n) => n as usize,
            Some(n) => {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Value {n} for parameter MaxResults is invalid. Reason: must be between 1 and 1000."
                )))
            }
        };
        let after = match next_token {
            Some(t) if !t.is_empty() => Some(
                URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        QueueError::InvalidParameterValue("Invalid NextToken value.".into())
                    })?,
            ),
            _ => None,
        };
        let queues = self.queues.read();
        let mut names: Vec<String> = queues
            .keys()
            .filter(|n| n.starts_with(prefix))
            .filter(|n| after.as_ref().is_none_or(|a| n.as_str() > a.as_str()))
            .take(limit + 1)
            .cloned()
            .collect();
        let token = if names.len() > limit && max_results.is_some() {
            names.truncate(limit);
            names.last().map(|n| URL_SAFE_NO_PAD.encode(n.as_bytes()))
        } else {
            names.truncate(limit);
            None
        };
        Ok((names, token))
    }

    /// `GetQueueAttributes`: the named attributes (`All` for every one).
    pub fn get_attributes(&self, name: &str, names: &[String]) -> Result<BTreeMap<String, String>> {
        let queue = self.queue(name)?;
        for n in names {
            if n != "All" && !attributes::is_known(n) {
                return Err(QueueError::InvalidAttributeName(format!(
                    "Unknown Attribute {n}."
                )));
            }
        }
        let all = names.iter().any(|n| n == "All");
        let mut inner = queue.inner.lock();
        let mut out = attributes::with_defaults(&inner.def.attributes, queue.fifo);
        let (visible, inflight, delayed) = inner.state.counts(now_ms());
        out.insert("ApproximateNumberOfMessages".into(), visible.to_string());
        out.insert(
            "ApproximateNumberOfMessagesNotVisible".into(),
            inflight.to_string(),
        );
        out.insert(
            "ApproximateNumberOfMessagesDelayed".into(),
            delayed.to_string(),
        );
        out.insert("CreatedTimestamp".into(), inner.def.created.to_string());
        out.insert(
            "LastModifiedTimestamp".into(),
            inner.def.modified.to_string(),
        );
        out.insert("QueueArn".into(), self.arn(name));
        drop(inner);
        if !all {
            out.retain(|k, _| names.contains(k));
        }
        Ok(out)
    }

    /// `SetQueueAttributes`.
    pub async fn set_attributes(&self, name: &str, attrs: &BTreeMap<String, String>) -> Result<()> {
        let _guard = self.defs.lock().await;
        let queue = self.queue(name)?;
        let validated = self.validate_attributes(name, queue.fifo, attrs, false)?;
        let mut def = queue.inner.lock().def.clone();
        for (k, v) in validated {
            def.attributes.insert(k, v);
        }
        def.attributes.retain(|k, v| {
            !(v.is_empty()
                && matches!(
                    k.as_str(),
                    "RedrivePolicy" | "RedriveAllowPolicy" | "Policy"
                ))
        });
        def.modified = now_ms() / 1000;
        self.save_def(&def).await?;
        let mut inner = queue.inner.lock();
        inner.settings = Settings::from_map(&def.attributes, queue.fifo);
        inner.def = def;
        drop(inner);
        // A shorter retention or delay may make messages vanish or appear now.
        queue.notify.notify_waiters();
        Ok(())
    }

    /// `TagQueue`, `UntagQueue`: adds `add` and removes `remove`.
    pub async fn tag(
        &self,
        name: &str,
        add: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        let _guard = self.defs.lock().await;
        let queue = self.queue(name)?;
        let mut def = queue.inner.lock().def.clone();
        for (k, v) in add {
            if k.is_empty() || k.len() > 128 || v.len() > 256 {
                return Err(QueueError::InvalidParameterValue(
                    "Tag keys must be 1 to 128 characters and values at most 256.".into(),
                ));
            }
            def.tags.insert(k.clone(), v.clone());
        }
        for k in remove {
            def.tags.remove(k);
        }
        if def.tags.len() > 50 {
            return Err(QueueError::InvalidParameterValue(
                "Too many tags: a queue can have at most 50.".into(),
            ));
        }
        self.save_def(&def).await?;
        queue.inner.lock().def = def;
        Ok(())
    }

    /// `ListQueueTags`.
    pub fn tags(&self, name: &str) -> Result<BTreeMap<String, String>> {
        Ok(self.queue(name)?.inner.lock().def.tags.clone())
    }

    /// `AddPermission`: a statement in the queue's policy.
    pub async fn add_permission(
        &self,
        name: &str,
        label: &str,
        accounts: &[String],
        actions: &[String],
    ) -> Result<()> {
        if label.is_empty() || accounts.is_empty() || actions.is_empty() {
            return Err(QueueError::MissingParameter(
                "Label, AWSAccountIds and Actions".into(),
            ));
        }
        let arn = self.arn(name);
        let queue = self.queue(name)?;
        let policy = queue.inner.lock().def.attributes.get("Policy").cloned();
        let mut doc: serde_json::Value = policy
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_else(|| {
                serde_json::json!({"Version": "2012-10-17", "Id": format!("{arn}/SQSDefaultPolicy"), "Statement": []})
            });
        let statements = doc
            .get_mut("Statement")
            .and_then(|s| s.as_array_mut())
            .ok_or_else(|| {
                QueueError::InvalidParameterValue("The queue policy has no Statement list.".into())
            })?;
        if statements
            .iter()
            .any(|s| s.get("Sid").and_then(|v| v.as_str()) == Some(label))
        {
            return Err(QueueError::InvalidParameterValue(format!(
                "Value {label} for parameter Label is invalid. Reason: Already exists."
            )));
        }
        let principals: Vec<String> = accounts
            .iter()
            .map(|a| format!("arn:aws:iam::{a}:root"))
            .collect();
        let actions: Vec<String> = actions.iter().map(|a| format!("SQS:{a}")).collect();
        statements.push(serde_json::json!({
            "Sid": label,
            "Effect": "Allow",
            "Principal": {"AWS": principals},
            "Action": actions,
            "Resource": arn,
        }));
        let mut attrs = BTreeMap::new();
        attrs.insert("Policy".to_string(), doc.to_string());
        self.set_attributes(name, &attrs).await
    }

    /// `RemovePermission`.
    pub async fn remove_permission(&self, name: &str, label: &str) -> Result<()> {
        let queue = self.queue(name)?;
        let policy = queue.inner.lock().def.attributes.get("Policy").cloned();
        let mut doc: serde_json::Value = policy
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(serde_json::Value::Null);
        let missing = || {
            QueueError::InvalidParameterValue(format!(
                "Value {label} for parameter Label is invalid. Reason: can't find label on existing policy."
            ))
        };
        let statements = doc
            .get_mut("Statement")
            .and_then(|s| s.as_array_mut())
            .ok_or_else(missing)?;
        let before = statements.len();
        statements.retain(|s| s.get("Sid").and_then(|v| v.as_str()) != Some(label));
        if statements.len() == before {
            return Err(missing());
        }
        let value = if statements.is_empty() {
            String::new()
        } else {
            doc.to_string()
        };
        let mut attrs = BTreeMap::new();
        attrs.insert("Policy".to_string(), value);
        self.set_attributes(name, &attrs).await
    }

    /// `PurgeQueue`: deletes every message; once per 60 s.
    pub async fn purge(&self, name: &str) -> Result<()> {
        let queue = self.queue(name)?;
        let now = now_ms();
        let drained = {
            let mut inner = queue.inner.lock();
            if inner.last_purge_ms != 0 && now < inner.last_purge_ms + 60_000 {
                return Err(QueueError::PurgeQueueInProgress(self.arn(name)));
            }
            inner.last_purge_ms = now;
            inner.state.drain()
        };
        self.kill_messages(&queue, &drained, true).await
    }

    /// Marks the records of removed messages dead.
    async fn kill_messages(&self, queue: &Queue, msgs: &[(u64, Msg)], wait: bool) -> Result<()> {
        let ids = records_of(queue, msgs);
        if ids.is_empty() {
            return Ok(());
        }
        if wait {
            self.store.mark_dead(&ids).await?;
        } else {
            self.store.mark_dead_later(&ids);
        }
        Ok(())
    }

    /// Removes messages older than their queue's retention period, as of `now` (ms); the
    /// maintenance task calls it every second.
    pub fn expire_messages(&self, now: u64) {
        let queues: Vec<Arc<Queue>> = self.queues.read().values().cloned().collect();
        for q in queues {
            let expired = {
                let mut inner = q.inner.lock();
                let cutoff = now.saturating_sub(ms(inner.settings.retention_seconds));
                inner.state.expire(cutoff)
            };
            if !expired.is_empty() {
                tracing::debug!(queue = %q.name, count = expired.len(), "messages expired");
                self.store.mark_dead_later(&records_of(&q, &expired));
            }
        }
    }

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
    fn repeat_attempt(&self, queue: &Queue, id: &str) -> Option<Vec<ReceivedMessage>> {
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

    fn dead_letter_target(&self, queue: &Queue) -> Option<(Arc<Queue>, u32)> {
        let policy = queue.inner.lock().settings.redrive.clone()?;
        let target = self.queue(&self.name_from_arn(&policy.target_arn)?).ok()?;
        Some((target, policy.max_receive_count))
    }

    /// Persists the deliveries of received messages and builds the answer.
    async fn deliver(
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

    /// Moves messages that exhausted their receives to the dead-letter queue.
    async fn dead_letter(
        &self,
        source: &Queue,
        target: &Arc<Queue>,
        dead: Vec<(u64, Msg)>,
    ) -> Result<()> {
        let source_arn = self.arn(&source.name);
        let moved: Vec<StoredMessage> = dead
            .iter()
            .filter_map(|(seq, _)| self.store.read(source.message_record(*seq)))
            .filter_map(|r| StoredMessage::decode(&r.payload))
            .map(|mut m| {
                m.dead_letter_source = Some(source_arn.clone());
                m
            })
            .collect();
        tracing::debug!(queue = %source.name, dlq = %target.name, count = moved.len(), "dead-lettering messages");
        self.append_moved(target, moved).await?;
        self.kill_messages(source, &dead, true).await
    }

    /// Appends messages moved in from another queue (dead-lettered or redriven).
    async fn append_moved(&self, target: &Arc<Queue>, mut msgs: Vec<StoredMessage>) -> Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        {
            let mut inner = target.inner.lock();
            for m in &mut msgs {
                m.available_ms = now;
                if target.fifo {
                    m.sequence = inner.next_sequence;
                    inner.next_sequence += 1;
                }
            }
        }
        let records: Vec<Bytes> = msgs.iter().map(StoredMessage::encode).collect();
        let sizes: Vec<u64> = records.iter().map(|r| r.len() as u64).collect();
        let ids = self.store.append_batch(target.messages, records).await?;
        {
            let mut inner = target.inner.lock();
            for ((m, id), size) in msgs.iter().zip(&ids).zip(sizes) {
                inner.state.insert(
                    id.seq,
                    m.sent_ms,
                    m.available_ms,
                    m.group.as_deref().filter(|_| target.fifo).map(Arc::from),
                    size,
                    None,
                    now,
                );
            }
        }
        target.notify.notify_waiters();
        Ok(())
    }

    fn resolve_receipt(&self, queue: &Queue, handle: &str) -> Result<Receipt> {
        let receipt = Receipt::decode(handle)?;
        if receipt.queue != queue.id {
            return Err(QueueError::ReceiptHandleIsInvalid(format!(
                "The input receipt handle \"{handle}\" is not a valid receipt handle for this queue."
            )));
        }
        Ok(receipt)
    }

    fn take_for_delete(&self, queue: &Queue, handle: &str) -> Result<(u64, Msg)> {
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

    /// `ListDeadLetterSourceQueues`: queues whose redrive policy targets `name`.
    pub fn dead_letter_sources(&self, name: &str) -> Result<Vec<String>> {
        self.queue(name)?;
        let arn = self.arn(name);
        Ok(self
            .queues
            .read()
            .values()
            .filter(|q| {
                q.inner
                    .lock()
                    .settings
                    .redrive
                    .as_ref()
                    .is_some_and(|r| r.target_arn == arn)
            })
            .map(|q| q.name.clone())
            .collect())
    }

    /// `StartMessageMoveTask`: moves a dead-letter queue's messages back to their source queues
    /// (or to `destination_arn`), at most `rate` per second.
    pub fn start_move_task(
        self: &Arc<Self>,
        source_arn: &str,
        destination_arn: Option<&str>,
        rate: Option<i64>,
    ) -> Result<String> {
        let source_name = self.name_from_arn(source_arn).ok_or_else(|| {
            QueueError::ResourceNotFound(
                "The resource that you specified for the SourceArn parameter doesn't exist.".into(),
            )
        })?;
        let source = self.queue(&source_name).map_err(|_| {
            QueueError::ResourceNotFound(
                "The resource that you specified for the SourceArn parameter doesn't exist.".into(),
            )
        })?;
        if self.dead_letter_sources(&source_name)?.is_empty() {
            return Err(QueueError::InvalidParameterValue(
                "Source queue must be configured as a Dead Letter Queue.".into(),
            ));
        }
        if let Some(dest) = destination_arn {
            let dest_queue = self
                .name_from_arn(dest)
                .and_then(|n| self.queue(&n).ok())
                .ok_or_else(|| QueueError::ResourceNotFound("The resource that you specified for the DestinationArn parameter doesn't exist.".into()))?;
            if dest_queue.fifo != source.fifo || dest_queue.name == source.name {
                return Err(QueueError::InvalidParameterValue(
                    "The destination must be a different queue of the same type.".into(),
                ));
            }
        }
        let rate = match rate {
            None => None,
            Some(r) if (1..=500).contains(&r) => Some(r as u32),
            Some(r) => {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Value {r} for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: must be between 1 and 500."
                )))
            }
        };
        let mut tasks = self.tasks.lock();
        if tasks
            .iter()
            .any(|t| t.source_arn == source_arn && t.is_running())
        {
            return Err(QueueError::UnsupportedOperation(
                "There is already a task running. Only one active task is allowed for a source queue arn at a given time.".into(),
            ));
        }
        let to_move = source.inner.lock().state.counts(now_ms()).0;
        let task = Arc::new(MoveTask::new(
            source_arn.to_string(),
            destination_arn.map(str::to_string),
            rate,
            to_move,
        ));
        tasks.retain(|t| t.is_running() || tasks_recent(t));
        tasks.push(task.clone());
        drop(tasks);
        let engine = Arc::downgrade(self);
        let handle = task.handle.clone();
        tokio::spawn(async move { MoveTask::run(task, engine).await });
        Ok(handle)
    }

    /// Moves up to `limit` visible messages out of a dead-letter queue; returns how many moved and
    /// whether the queue had no more visible messages.
    pub(crate) async fn redrive_some(
        &self,
        source_name: &str,
        destination_arn: Option<&str>,
        limit: usize,
    ) -> Result<(u64, bool)> {
        let source = self.queue(source_name)?;
        let picked: Vec<(u64, Msg)> = {
            let mut inner = source.inner.lock();
            let seqs = inner.state.visible_seqs(now_ms(), limit);
            seqs.into_iter()
                .filter_map(|s| inner.state.remove(s).map(|m| (s, m)))
                .collect()
        };
        if picked.is_empty() {
            return Ok((0, true));
        }
        let mut by_dest: BTreeMap<String, Vec<StoredMessage>> = BTreeMap::new();
        for (seq, _) in &picked {
            let Some(m) = self
                .store
                .read(source.message_record(*seq))
                .and_then(|r| StoredMessage::decode(&r.payload))
            else {
                continue;
            };
            let dest = destination_arn
                .map(str::to_string)
                .or_else(|| m.dead_letter_source.clone())
                .unwrap_or_default();
            let mut m = m;
            m.dead_letter_source = None;
            by_dest.entry(dest).or_default().push(m);
        }
        let mut failure = None;
        for (dest, msgs) in by_dest {
            match self.name_from_arn(&dest).and_then(|n| self.queue(&n).ok()) {
                Some(q) => self.append_moved(&q, msgs).await?,
                None => failure = Some(dest),
            }
        }
        if let Some(dest) = failure {
            // Put back what could not go anywhere; the task fails.
            let now = now_ms();
            let mut inner = source.inner.lock();
            for (seq, m) in &picked {
                inner
                    .state
                    .insert(*seq, m.sent_ms, now, m.group.clone(), m.bytes, None, now);
            }
            return Err(QueueError::ResourceNotFound(format!(
                "Destination queue {dest} does not exist."
            )));
        }
        let moved = picked.len() as u64;
        self.kill_messages(&source, &picked, true).await?;
        Ok((moved, false))
    }

    /// `CancelMessageMoveTask`: returns how many messages were moved.
    pub fn cancel_move_task(&self, handle: &str) -> Result<u64> {
        let tasks = self.tasks.lock();
        let task = tasks
            .iter()
            .find(|t| t.handle == handle)
            .ok_or_else(|| QueueError::ResourceNotFound("Task does not exist.".into()))?;
        if !task.is_running() {
            return Err(QueueError::UnsupportedOperation(
                "Only active tasks can be cancelled.".into(),
            ));
        }
        task.cancel();
        Ok(task.moved())
    }

    /// `ListMessageMoveTasks`: the newest tasks of a dead-letter queue first.
    pub fn list_move_tasks(&self, source_arn: &str, max: Option<i64>) -> Result<Vec<MoveTaskInfo>> {
        let max = match max {
            None => 1,
            Some(n) if (1..=10).contains(&n) => n as usize,
            Some(n) => {
                return Err(QueueError::InvalidParameterValue(format!(
                "Value {n} for parameter MaxResults is invalid. Reason: must be between 1 and 10."
            )))
            }
        };
        let name = self.name_from_arn(source_arn).ok_or_else(|| {
            QueueError::ResourceNotFound(
                "The resource that you specified for the SourceArn parameter doesn't exist.".into(),
            )
        })?;
        self.queue(&name).map_err(|_| {
            QueueError::ResourceNotFound(
                "The resource that you specified for the SourceArn parameter doesn't exist.".into(),
            )
        })?;
        let tasks = self.tasks.lock();
        Ok(tasks
            .iter()
            .rev()
            .filter(|t| t.source_arn == source_arn)
            .take(max)
            .map(|t| t.info())
            .collect())
    }

    /// Figures per queue.
    pub fn stats(&self) -> Vec<QueueStats> {
        let now = now_ms();
        self.queues
            .read()
            .values()
            .map(|q| {
                let mut inner = q.inner.lock();
                let (visible, inflight, delayed) = inner.state.counts(now);
                QueueStats {
                    name: q.name.clone(),
                    visible,
                    inflight,
                    delayed,
                    oldest_age_seconds: inner
                        .state
                        .oldest_sent()
                        .map_or(0, |s| now.saturating_sub(s) / 1000),
                }
            })
            .collect()
    }

    /// Messages sent, received and deleted since start.
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.sends.load(Ordering::Relaxed),
            self.receives.load(Ordering::Relaxed),
            self.deletes.load(Ordering::Relaxed),
        )
    }
}

/// A received message as handed to the caller, with the receipt of delivery `d`.
fn received(queue: &Queue, message: StoredMessage, d: &Delivery) -> ReceivedMessage {
    ReceivedMessage {
        message,
        receipt: Receipt {
            queue: queue.id,
            seq: d.seq,
            nonce: d.nonce,
        }
        .encode(),
        receive_count: d.receive_count,
        first_receive_ms: d.first_receive_ms,
    }
}

/// The message and latest delivery records of removed messages.
fn records_of(queue: &Queue, msgs: &[(u64, Msg)]) -> Vec<RecordId> {
    let mut ids = Vec::with_capacity(msgs.len() * 2);
    for (seq, m) in msgs {
        ids.push(queue.message_record(*seq));
        ids.extend(m.delivery_record.map(|d| queue.delivery_record(d)));
    }
    ids
}

fn tasks_recent(t: &MoveTask) -> bool {
    now_ms().saturating_sub(t.started_ms) < 14 * 24 * 3600 * 1000
}

fn expired(handle: &str) -> QueueError {
    QueueError::ReceiptHandleIsInvalid(format!(
        "The receipt handle \"{}\" has expired or its message was deleted or received again.",
        handle.chars().take(100).collect::<String>()
    ))
}

fn dedup_key(
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

enum Prepared {
    Duplicate(SendResult),
    New(SendResult, Box<StoredMessage>, Option<String>),
}

fn invalid_for_queue_type(param: &str) -> QueueError {
    QueueError::InvalidParameterValue(format!(
        "Value for parameter {param} is invalid. Reason: The request include parameter that is not valid for this queue type."
    ))
}

/// Validates a send and, for FIFO queues, resolves deduplication and assigns the sequence number.
fn prepare(queue: &Queue, inner: &mut Inner, req: SendRequest, now: u64) -> Result<Prepared> {
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
            let digest = Sha256::digest(&stored.body);
            digest.iter().map(|b| format!("{b:02x}")).collect()
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
