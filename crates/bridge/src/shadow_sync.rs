//! Device shadows kept in sync with the upstream's Device Shadow service (AWS IoT Core, or
//! another Outpost), over the bridge's MQTT link, with the shadow service's own topics:
//!
//! - **Gateway → cloud**: every accepted change of a chosen local shadow (its
//!   `…/update/documents` answer) becomes an update of the same shadow upstream, carrying what
//!   changed (`null` for what was removed) and the client token `outpost-sync`. It goes through
//!   the backlog like any forwarded message: made while the link is down, it is sent when the
//!   link returns, after a restart or `kill -9` too.
//! - **Cloud → gateway**: the link subscribes upstream to the chosen shadows' `update/documents`
//!   (with a persistent session, the upstream keeps them while the link is down) and applies
//!   what changed to the local shadow, with the same client token.
//! - **Echoes**: a change carrying `outpost-sync` is never sent back where it came from.
//! - **Conflicts**: a key changed on both sides while the link was down keeps the gateway's
//!   value on both sides. The bridge remembers, per shadow, the paths of its changes that the
//!   upstream has not yet answered (its `documents` or `rejected` with `outpost-sync`, in order);
//!   a cloud change to those paths is not applied here, and the gateway's change, sent after it,
//!   overwrites it upstream. Everything else: the latest change wins, on both sides. (AWS's
//!   shadow manager on Greengrass likewise keeps a sync state per shadow; this rule was chosen
//!   because a cloud that applies every update it gets cannot be made to keep its own value
//!   without a read-modify-write round trip the link cannot hold while offline.)
//! - Deleting a shadow is not synchronized (AWS publishes no `documents` for a delete).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use outpost_shadows::Shadows;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::config::ShadowRule;

/// The client token of every change the bridge makes, on either side.
pub(crate) const SYNC_TOKEN: &str = "outpost-sync";

/// Nesting guard of the recursive helpers (shadow documents are at most 6 levels deep).
const GUARD: usize = 10;

/// Which way a rule synchronizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Both,
    DeviceToCloud,
    CloudToDevice,
}

impl Direction {
    pub(crate) fn parse(s: &str) -> Option<Direction> {
        match s {
            "" | "both" => Some(Direction::Both),
            "device-to-cloud" => Some(Direction::DeviceToCloud),
            "cloud-to-device" => Some(Direction::CloudToDevice),
            _ => None,
        }
    }
    fn up(self) -> bool {
        self != Direction::CloudToDevice
    }
    fn down(self) -> bool {
        self != Direction::DeviceToCloud
    }
}

/// A shadow: (thing, shadow name; empty for the classic one).
type Key = (String, String);

/// A cloud change to apply here; resolves once it is stored.
pub(crate) type Apply = Pin<Box<dyn Future<Output = bool> + Send>>;

/// One bridge's shadow synchronization.
pub(crate) struct ShadowSync {
    rules: Vec<(ShadowRule, Direction)>,
    shadows: Arc<Shadows>,
    /// Per shadow: the paths of each change sent upstream and not yet answered, oldest first.
    pending: Mutex<HashMap<Key, VecDeque<Vec<String>>>>,
}

impl std::fmt::Debug for ShadowSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowSync")
            .field("rules", &self.rules.len())
            .finish()
    }
}

fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl ShadowSync {
    pub(crate) fn new(rules: &[ShadowRule], shadows: Arc<Shadows>) -> Option<Arc<ShadowSync>> {
        if rules.is_empty() {
            return None;
        }
        let rules = rules
            .iter()
            .map(|r| {
                (
                    r.clone(),
                    Direction::parse(&r.direction).unwrap_or(Direction::Both),
                )
            })
            .collect();
        Some(Arc::new(ShadowSync {
            rules,
            shadows,
            pending: Mutex::default(),
        }))
    }

    /// The direction the first matching rule gives a shadow.
    fn direction(&self, thing: &str, shadow: &str) -> Option<Direction> {
        self.rules.iter().find_map(|(r, d)| {
            let thing_ok = r.things.iter().any(|t| name_matches(t, thing));
            let names: &[String] = &r.shadows;
            let shadow_ok = if names.is_empty() {
                shadow.is_empty()
            } else {
                names.iter().any(|n| {
                    n == "*"
                        || (n.is_empty() && shadow.is_empty())
                        || (!n.is_empty() && name_matches(n, shadow))
                })
            };
            (thing_ok && shadow_ok).then_some(*d)
        })
    }

    /// The upstream topic filters (the cloud's `documents` and `rejected` answers of the chosen
    /// shadows); none when no rule brings changes down.
    pub(crate) fn filters(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (r, d) in &self.rules {
            if !d.down() {
                continue;
            }
            let classic =
                r.shadows.is_empty() || r.shadows.iter().any(|n| n.is_empty() || n == "*");
            let named = r.shadows.iter().any(|n| !n.is_empty());
            for t in &r.things {
                let thing = if t.ends_with('*') { "+" } else { t.as_str() };
                for answer in ["update/documents", "update/rejected"] {
                    if classic {
                        out.push(format!("$aws/things/{thing}/shadow/{answer}"));
                    }
                    if named {
                        out.push(format!("$aws/things/{thing}/shadow/name/+/{answer}"));
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// True for an upstream message this module handles.
    pub(crate) fn handles(&self, topic: &str) -> bool {
        outpost_shadows::parse_topic(topic).is_some_and(|t| t.answer)
            && (topic.ends_with("/update/documents") || topic.ends_with("/update/rejected"))
    }

    /// A local shadow changed (its `update/documents` answer): the update to send upstream, as
    /// (topic, payload), unless the change came from upstream or the rule does not send up.
    pub(crate) fn up(&self, topic: &str, payload: &[u8]) -> Option<(String, Vec<u8>)> {
        if !topic.ends_with("/update/documents") {
            return None;
        }
        let t = outpost_shadows::parse_topic(topic)?;
        let shadow = t.shadow.unwrap_or("");
        if !self.direction(t.thing, shadow)?.up() {
            return None;
        }
        let doc: Value = serde_json::from_slice(payload).ok()?;
        if doc.get("clientToken").and_then(Value::as_str) == Some(SYNC_TOKEN) {
            return None;
        }
        let patch = diff(
            doc.pointer("/previous/state").and_then(Value::as_object),
            doc.pointer("/current/state")?.as_object()?,
        );
        if patch.is_empty() {
            return None;
        }
        self.pending
            .lock()
            .entry((t.thing.to_string(), shadow.to_string()))
            .or_default()
            .push_back(paths(&patch));
        let update = topic.strip_suffix("/documents")?.to_string();
        let body = json!({ "state": patch, "clientToken": SYNC_TOKEN });
        Some((update, body.to_string().into_bytes()))
    }

    /// Remembers a change found in the backlog at start (sent before a restart, not yet
    /// answered): its paths stay the gateway's until the upstream answers it.
    pub(crate) fn restore(&self, topic: &str, payload: &[u8]) {
        let Some(t) = outpost_shadows::parse_topic(topic) else {
            return;
        };
        if t.answer {
            return;
        }
        let Ok(doc) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        if doc.get("clientToken").and_then(Value::as_str) != Some(SYNC_TOKEN) {
            return;
        }
        if let Some(state) = doc.get("state").and_then(Value::as_object) {
            self.pending
                .lock()
                .entry((t.thing.to_string(), t.shadow.unwrap_or("").to_string()))
                .or_default()
                .push_back(paths(state));
        }
    }

    /// An upstream answer: ours (`outpost-sync`) settles the oldest pending change of that
    /// shadow; a cloud change is applied here (but for the paths the gateway still owns).
    /// `None` when there is nothing to apply.
    pub(crate) fn down(&self, topic: &str, payload: &[u8]) -> Option<Apply> {
        let t = outpost_shadows::parse_topic(topic)?;
        let key = (t.thing.to_string(), t.shadow.unwrap_or("").to_string());
        let doc: Value = serde_json::from_slice(payload).ok()?;
        if doc.get("clientToken").and_then(Value::as_str) == Some(SYNC_TOKEN) {
            let mut pending = self.pending.lock();
            if let Some(q) = pending.get_mut(&key) {
                q.pop_front();
                if q.is_empty() {
                    pending.remove(&key);
                }
            }
            return None;
        }
        if !topic.ends_with("/update/documents") || !self.direction(&key.0, &key.1)?.down() {
            return None;
        }
        let mut patch = diff(
            doc.pointer("/previous/state").and_then(Value::as_object),
            doc.pointer("/current/state")?.as_object()?,
        );
        let owned: Vec<String> = self
            .pending
            .lock()
            .get(&key)
            .map(|q| q.iter().flatten().cloned().collect())
            .unwrap_or_default();
        remove_paths(&mut patch, &owned, "", 0);
        if patch.is_empty() {
            return None;
        }
        let body = json!({ "state": patch, "clientToken": SYNC_TOKEN }).to_string();
        let update = match outpost_shadows::parse_update(body.as_bytes()) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(thing = %key.0, error = %e, "a cloud shadow change cannot be applied here; skipped");
                return None;
            }
        };
        let shadows = self.shadows.clone();
        Some(Box::pin(async move {
            let shadow = (!key.1.is_empty()).then_some(key.1.as_str());
            match shadows.update(&key.0, shadow, &update).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(thing = %key.0, error = %e, "a cloud shadow change was refused here");
                    // Refused for good (too large, say): acknowledged, or it would come back forever.
                    !matches!(e, outpost_shadows::ShadowError::Internal)
                }
            }
        }))
    }
}

/// What changed from `prev` to `cur` (their `desired` and `reported`), as an update: changed
/// and new values, `null` for what was removed.
pub(crate) fn diff(
    prev: Option<&Map<String, Value>>,
    cur: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for section in ["desired", "reported"] {
        let p = prev.and_then(|p| p.get(section)).and_then(Value::as_object);
        let c = cur.get(section).and_then(Value::as_object);
        match (p, c) {
            (Some(_), None) => {
                out.insert(section.into(), Value::Null);
            }
            (None, Some(c)) if !c.is_empty() => {
                out.insert(section.into(), Value::Object(c.clone()));
            }
            (Some(p), Some(c)) => {
                let d = diff_objects(p, c, 0);
                if !d.is_empty() {
                    out.insert(section.into(), Value::Object(d));
                }
            }
            _ => {}
        }
    }
    out
}

fn diff_objects(
    p: &Map<String, Value>,
    c: &Map<String, Value>,
    level: usize,
) -> Map<String, Value> {
    let mut out = Map::new();
    for k in p.keys() {
        if !c.contains_key(k) {
            out.insert(k.clone(), Value::Null);
        }
    }
    for (k, cv) in c {
        match (p.get(k), cv) {
            (Some(pv), cv) if pv == cv => {}
            (Some(Value::Object(po)), Value::Object(co)) if level < GUARD => {
                let d = diff_objects(po, co, level + 1);
                if !d.is_empty() {
                    out.insert(k.clone(), Value::Object(d));
                }
            }
            _ => {
                out.insert(k.clone(), cv.clone());
            }
        }
    }
    out
}

/// The dotted paths of an update's values (`desired.light.level`; a section set to `null` is
/// `desired`).
pub(crate) fn paths(patch: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, &Value, usize)> =
        patch.iter().map(|(k, v)| (k.clone(), v, 0)).collect();
    while let Some((path, v, level)) = stack.pop() {
        match v {
            Value::Object(o) if !o.is_empty() && level < GUARD => {
                stack.extend(o.iter().map(|(k, v)| (format!("{path}.{k}"), v, level + 1)));
            }
            _ => out.push(path),
        }
    }
    out
}

/// Removes from `patch` every value on, under or above one of `owned`'s paths.
fn remove_paths(patch: &mut Map<String, Value>, owned: &[String], prefix: &str, level: usize) {
    if owned.is_empty() {
        return;
    }
    let keys: Vec<String> = patch.keys().cloned().collect();
    for k in keys {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let on_or_under = owned
            .iter()
            .any(|o| path == *o || path.starts_with(&format!("{o}.")));
        if on_or_under {
            patch.remove(&k);
            continue;
        }
        let above = owned.iter().any(|o| o.starts_with(&format!("{path}.")));
        if !above {
            continue;
        }
        match patch.get_mut(&k) {
            Some(Value::Object(sub)) if level < GUARD => {
                remove_paths(sub, owned, &path, level + 1);
                if sub.is_empty() {
                    patch.remove(&k);
                }
            }
            // A whole value (or a deleted section) over a path the gateway owns: the gateway's
            // change wins, so the cloud's is not applied.
            _ => {
                patch.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn diffs_are_updates() {
        let prev = obj(json!({"desired": {"a": 1, "b": {"c": 2, "d": 3}}, "reported": {"x": 1}}));
        let cur = obj(json!({"desired": {"a": 1, "b": {"c": 5}, "e": [1]}}));
        assert_eq!(
            Value::Object(diff(Some(&prev), &cur)),
            json!({"desired": {"b": {"c": 5, "d": null}, "e": [1]}, "reported": null})
        );
        assert_eq!(Value::Object(diff(None, &cur)), Value::Object(cur.clone()));
        let mut p = paths(&diff(Some(&prev), &cur));
        p.sort();
        assert_eq!(p, ["desired.b.c", "desired.b.d", "desired.e", "reported"]);
    }

    #[test]
    fn the_gateway_keeps_the_paths_it_owns() {
        let mut patch = obj(
            json!({"desired": {"mode": "turbo", "fan": {"speed": 3, "on": true}}, "reported": {"t": 1}}),
        );
        remove_paths(
            &mut patch,
            &[
                "desired.mode".into(),
                "desired.fan.speed".into(),
                "reported".into(),
            ],
            "",
            0,
        );
        assert_eq!(
            Value::Object(patch),
            json!({"desired": {"fan": {"on": true}}})
        );
    }
}
