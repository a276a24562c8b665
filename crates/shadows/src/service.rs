//! The shadows: kept in memory (a map from thing and shadow name to its document) and in one
//! store stream, `shadows`, where every accepted change appends the shadow's whole document
//! (at most 8 KB of state) and the record it replaces dies once the new one is durable. A delete
//! appends a record that remembers the version (AWS: deleting a shadow does not reset its
//! version), so a version never goes backwards, across restarts and `kill -9` too. At start the
//! newest record of each shadow wins.
//!
//! Both doors (MQTT topics, the iot-data API) call the same operations; the answers AWS
//! publishes on MQTT (`/accepted`, `/update/delta`, `/update/documents`) go out once the change
//! is durable, whichever door made it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use outpost_mqtt::Broker;
use outpost_store::{RecordId, Store, StoreError, StreamId};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::document::{Document, Update};
use crate::names::{prefix, Op};
use crate::ShadowError;

/// The stream holding the shadows.
const STREAM: &str = "shadows";

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct ShadowsConfig {
    /// Most shadows (classic and named, deleted ones count until restart); past it an update
    /// that would create one is refused (429).
    pub max_shadows: usize,
    /// For the ARNs the ACL is asked about (`arn:aws:iot:{region}:{account}:thing/{thing}`).
    pub region: String,
    pub account: String,
}

impl Default for ShadowsConfig {
    fn default() -> Self {
        ShadowsConfig {
            max_shadows: 100_000,
            region: "us-east-1".into(),
            account: "000000000000".into(),
        }
    }
}

/// A record on its way to the disk.
struct Pending {
    wait: std::pin::Pin<Box<dyn Future<Output = Result<RecordId, StoreError>> + Send>>,
    key: (String, String),
    version: u64,
    old: Option<RecordId>,
}

#[derive(Debug, Clone)]
struct Entry {
    doc: Document,
    deleted: bool,
    record: Option<RecordId>,
}

/// The Device Shadow service.
pub struct Shadows {
    store: Store,
    stream: StreamId,
    broker: Arc<Broker>,
    config: ShadowsConfig,
    /// (thing, shadow name; empty for the classic shadow) → its entry.
    map: Mutex<HashMap<(String, String), Entry>>,
}

impl std::fmt::Debug for Shadows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadows")
            .field("stream", &self.stream)
            .finish()
    }
}

/// Seconds since the Unix epoch (the shadow documents' timestamps).
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn key(thing: &str, shadow: Option<&str>) -> (String, String) {
    (thing.to_string(), shadow.unwrap_or("").to_string())
}

/// AWS names the classic shadow by its thing.
fn no_shadow(thing: &str, shadow: Option<&str>) -> ShadowError {
    ShadowError::NoShadow(shadow.unwrap_or(thing).to_string())
}

fn encode(thing: &str, shadow: &str, e: &Entry) -> Vec<u8> {
    json!({
        "thing": thing,
        "shadow": shadow,
        "deleted": e.deleted,
        "version": e.doc.version,
        "state": e.doc.state,
        "metadata": e.doc.metadata,
    })
    .to_string()
    .into_bytes()
}

fn decode(b: &[u8]) -> Option<(String, String, Entry)> {
    let v: Value = serde_json::from_slice(b).ok()?;
    let doc = Document {
        state: v.get("state")?.as_object()?.clone(),
        metadata: v.get("metadata")?.as_object()?.clone(),
        version: v.get("version")?.as_u64()?,
    };
    Some((
        v.get("thing")?.as_str()?.to_string(),
        v.get("shadow")?.as_str()?.to_string(),
        Entry {
            doc,
            deleted: v.get("deleted")?.as_bool()?,
            record: None,
        },
    ))
}

/// Adds the request's client token to an answer (AWS echoes it in every answer).
pub(crate) fn with_token(answer: &mut Value, token: Option<&str>) {
    if let (Some(t), Some(o)) = (token, answer.as_object_mut()) {
        o.insert("clientToken".into(), json!(t));
    }
}

/// What MQTT publishes after a change is durable: (topic, payload) pairs, in AWS's order.
pub type Answers = Vec<(String, Vec<u8>)>;

impl Shadows {
    /// Opens the stream and reads every shadow back (the newest record of each wins; older ones
    /// left by a crash are removed).
    pub fn open(
        store: Store,
        broker: Arc<Broker>,
        config: ShadowsConfig,
    ) -> Result<Arc<Shadows>, StoreError> {
        let stream = store.stream(STREAM)?;
        let mut map: HashMap<(String, String), Entry> = HashMap::new();
        let mut stale = Vec::new();
        let mut from = 0;
        loop {
            let batch = store.scan(stream, from, 1024);
            let Some(last) = batch.last() else { break };
            from = last.id.seq + 1;
            for r in batch {
                let Some((thing, shadow, mut entry)) = decode(&r.payload) else {
                    tracing::warn!(
                        seq = r.id.seq,
                        "a shadow record that cannot be read was dropped"
                    );
                    stale.push(r.id);
                    continue;
                };
                entry.record = Some(r.id);
                match map.get(&(thing.clone(), shadow.clone())) {
                    Some(old) if old.doc.version > entry.doc.version => stale.push(r.id),
                    Some(old) => {
                        if let Some(id) = old.record {
                            stale.push(id);
                        }
                        map.insert((thing, shadow), entry);
                    }
                    None => {
                        map.insert((thing, shadow), entry);
                    }
                }
            }
        }
        store.mark_dead_later(&stale);
        tracing::info!(
            shadows = map.values().filter(|e| !e.deleted).count(),
            "shadows restored"
        );
        Ok(Arc::new(Shadows {
            store,
            stream,
            broker,
            config,
            map: Mutex::new(map),
        }))
    }

    /// The ARN the ACL is asked about for a thing's shadows.
    pub fn thing_arn(&self, thing: &str) -> String {
        format!(
            "arn:aws:iot:{}:{}:thing/{thing}",
            self.config.region, self.config.account
        )
    }

    /// Asks the broker's authorizer about an MQTT client's action on a thing.
    pub(crate) fn allows(
        &self,
        who: &outpost_access::Identity,
        client_id: &str,
        action: &str,
        thing: &str,
    ) -> bool {
        let a = self.broker.authorizer();
        a.is_open() || a.client_arn(who, client_id, action, &self.thing_arn(thing))
    }

    /// GetThingShadow: the whole document (state with delta, metadata, version, timestamp).
    pub fn get(&self, thing: &str, shadow: Option<&str>) -> Result<Value, ShadowError> {
        let map = self.map.lock();
        match map.get(&key(thing, shadow)) {
            Some(e) if !e.deleted => Ok(e.doc.to_get(now_s())),
            _ => Err(no_shadow(thing, shadow)),
        }
    }

    /// Appends `entry` (taking the record it replaces out of it) and returns the wait for the
    /// new record's id.
    fn persist(&self, k: &(String, String), entry: &mut Entry) -> Result<Pending, ShadowError> {
        let bytes = encode(&k.0, &k.1, entry);
        let wait = self
            .store
            .append_now(self.stream, bytes::Bytes::from(bytes))
            .map_err(|e| {
                tracing::warn!(error = %e, "a shadow change could not be stored");
                ShadowError::Internal
            })?;
        Ok(Pending {
            wait: Box::pin(wait),
            key: k.clone(),
            version: entry.doc.version,
            old: entry.record.take(),
        })
    }

    /// After a record is durable: it becomes its shadow's record (the one it replaced dies),
    /// unless a newer change came meanwhile (then it dies itself).
    async fn settle(&self, p: Pending) -> Result<(), ShadowError> {
        let id = p.wait.await.map_err(|e| {
            tracing::warn!(error = %e, "a shadow change could not be stored");
            ShadowError::Internal
        })?;
        let mut dead = Vec::new();
        dead.extend(p.old);
        {
            let mut map = self.map.lock();
            match map.get_mut(&p.key) {
                Some(e) if e.doc.version == p.version && e.record.is_none() => e.record = Some(id),
                _ => dead.push(id),
            }
        }
        self.store.mark_dead_later(&dead);
        Ok(())
    }

    /// UpdateThingShadow: merges, stores, and answers once durable with the `/accepted`
    /// document; `/update/delta` and `/update/documents` are published on MQTT meanwhile.
    pub async fn update(
        self: &Arc<Self>,
        thing: &str,
        shadow: Option<&str>,
        update: &Update,
    ) -> Result<Value, ShadowError> {
        self.update_now(thing, shadow, update)?.await
    }

    /// [`Shadows::update`] in two steps: the change is made now (requests are applied in the
    /// order they arrive, whatever the disk does), and the returned future resolves once it is
    /// durable, having published the MQTT answers.
    pub fn update_now(
        self: &Arc<Self>,
        thing: &str,
        shadow: Option<&str>,
        update: &Update,
    ) -> Result<impl Future<Output = Result<Value, ShadowError>> + Send + 'static, ShadowError>
    {
        let now = now_s();
        let (wait, accepted, answers) = {
            let mut map = self.map.lock();
            let k = key(thing, shadow);
            if !map.contains_key(&k) && map.len() >= self.config.max_shadows {
                return Err(ShadowError::Quota);
            }
            // The new entry is made from the stored one without copying it first.
            let (mut entry, previous, touched) = {
                let old = map.get(&k);
                let empty = Document::default();
                let doc = old.map_or(&empty, |e| &e.doc);
                if update.version.is_some_and(|v| v != doc.version) {
                    return Err(ShadowError::VersionConflict);
                }
                let previous = old.filter(|e| !e.deleted).map(|e| e.doc.to_snapshot());
                let (doc, touched) = doc.apply(update, now)?;
                let entry = Entry {
                    doc,
                    deleted: false,
                    record: old.and_then(|e| e.record),
                };
                (entry, previous, touched)
            };
            let wait = self.persist(&k, &mut entry)?;
            let token = |v: &mut Value| with_token(v, update.client_token.as_deref());
            let mut accepted = json!({
                "state": update.state,
                "metadata": touched,
                "version": entry.doc.version,
                "timestamp": now,
            });
            token(&mut accepted);
            let base = prefix(thing, shadow);
            let mut answers: Answers = vec![(
                format!("{base}/update/accepted"),
                accepted.to_string().into_bytes(),
            )];
            // AWS: a delta when the request changed `desired` and desired differs from reported.
            if update.state.contains_key("desired") {
                if let Some((delta, meta)) = entry.doc.delta() {
                    let mut d = json!({
                        "state": delta,
                        "metadata": meta,
                        "version": entry.doc.version,
                        "timestamp": now,
                    });
                    token(&mut d);
                    answers.push((format!("{base}/update/delta"), d.to_string().into_bytes()));
                }
            }
            let mut documents = json!({
                "previous": previous,
                "current": entry.doc.to_snapshot(),
                "timestamp": now,
            });
            token(&mut documents);
            answers.push((
                format!("{base}/update/documents"),
                documents.to_string().into_bytes(),
            ));
            map.insert(k, entry);
            (wait, accepted, answers)
        };
        let me = self.clone();
        Ok(async move {
            me.settle(wait).await?;
            me.announce_durably(answers).await;
            Ok(accepted)
        })
    }

    /// DeleteThingShadow: answers `{"version", "timestamp"}` once the deletion is durable.
    pub async fn delete(
        self: &Arc<Self>,
        thing: &str,
        shadow: Option<&str>,
    ) -> Result<Value, ShadowError> {
        self.delete_now(thing, shadow)?.await
    }

    /// [`Shadows::delete`] in two steps, as [`Shadows::update_now`].
    pub fn delete_now(
        self: &Arc<Self>,
        thing: &str,
        shadow: Option<&str>,
    ) -> Result<impl Future<Output = Result<Value, ShadowError>> + Send + 'static, ShadowError>
    {
        let (wait, accepted) = {
            let mut map = self.map.lock();
            let k = key(thing, shadow);
            let Some(entry) = map.get_mut(&k).filter(|e| !e.deleted) else {
                return Err(no_shadow(thing, shadow));
            };
            let mut gone = Entry {
                doc: Document {
                    version: entry.doc.version,
                    ..Document::default()
                },
                deleted: true,
                record: entry.record,
            };
            let wait = self.persist(&k, &mut gone)?;
            let accepted = json!({ "version": gone.doc.version, "timestamp": now_s() });
            *entry = gone;
            (wait, accepted)
        };
        let me = self.clone();
        Ok(async move {
            me.settle(wait).await?;
            Ok(accepted)
        })
    }

    /// ListNamedShadowsForThing: the thing's named shadows, sorted, a page from `after` on.
    pub fn list_named(
        &self,
        thing: &str,
        after: Option<&str>,
        page: usize,
    ) -> (Vec<String>, Option<String>) {
        let map = self.map.lock();
        let mut names: Vec<&str> = map
            .iter()
            .filter(|((t, s), e)| t == thing && !s.is_empty() && !e.deleted)
            .map(|((_, s), _)| s.as_str())
            .filter(|s| after.is_none_or(|a| *s > a))
            .collect();
        names.sort_unstable();
        let more = names.len() > page;
        names.truncate(page);
        let next = more.then(|| names.last().map(|s| s.to_string())).flatten();
        (names.into_iter().map(str::to_string).collect(), next)
    }

    /// Publishes answers on MQTT as the broker (subscribers, the rules, the bridges).
    pub(crate) fn announce(&self, answers: Answers) {
        for (topic, payload) in answers {
            let _ = self.broker.publish_own(&topic, payload);
        }
    }

    /// Publishes answers and waits until what they became is durable: a bridge's backlog entry
    /// that carries the change to the cloud is on disk before the change is acknowledged (a
    /// `kill -9` right after the acknowledgement must not lose the way up).
    async fn announce_durably(&self, answers: Answers) {
        let waits: Vec<_> = answers
            .into_iter()
            .map(|(topic, payload)| self.broker.publish_own(&topic, payload))
            .collect();
        for w in waits {
            if let Err(e) = w.wait().await {
                tracing::warn!(error = %e, "a copy of a shadow answer could not be stored");
            }
        }
    }

    /// An MQTT request's answer as the `/rejected` topic carries it.
    pub(crate) fn rejection(
        thing: &str,
        shadow: Option<&str>,
        op: Op,
        e: &ShadowError,
        token: Option<&str>,
    ) -> (String, Vec<u8>) {
        let mut doc = Map::new();
        doc.insert("code".into(), json!(e.code()));
        doc.insert("message".into(), json!(e.to_string()));
        doc.insert("timestamp".into(), json!(now_s()));
        if let Some(t) = token {
            doc.insert("clientToken".into(), json!(t));
        }
        (
            format!("{}/{}/rejected", prefix(thing, shadow), op.as_str()),
            Value::Object(doc).to_string().into_bytes(),
        )
    }
}
