//! Shadow documents as AWS's Device Shadow service keeps them ("Device Shadow service
//! documents"): `state.desired` and `state.reported`, a partial update merged into them (`null`
//! deletes a key, or a whole section; arrays are replaced whole), `metadata` with the time each
//! value was last written, a `version` that every update raises, and the `delta`: the desired
//! values that differ from the reported ones.
//!
//! Requests are checked before anything changes: 8 KB of state, six levels of nesting under a
//! section, a client token of at most 64 bytes. The functions below recurse, but only on
//! documents already checked to be at most [`MAX_DEPTH`] deep (a guard refuses more).

use serde_json::{json, Map, Value};

use crate::ShadowError;

/// Levels of nesting allowed under `desired` or `reported`.
pub const MAX_DEPTH: usize = 6;
/// Bytes of state (`desired` and `reported`, without metadata) a shadow may hold.
pub const MAX_STATE_BYTES: usize = 8 * 1024;
/// Bytes of a client token.
pub const MAX_CLIENT_TOKEN: usize = 64;
/// Largest request accepted at all (the state limit is checked after the merge).
pub const MAX_REQUEST_BYTES: usize = 128 * 1024;

/// A shadow's stored part.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    /// `desired` and/or `reported`, each an object.
    pub state: Map<String, Value>,
    /// The same shape, with `{"timestamp": seconds}` at every value.
    pub metadata: Map<String, Value>,
    pub version: u64,
}

/// A checked update request.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// `desired` and/or `reported`: an object, or `null` to remove the section.
    pub state: Map<String, Value>,
    pub client_token: Option<String>,
    pub version: Option<u64>,
}

/// The client token of any request (`get` and `delete` carry one too), checked.
pub fn client_token(request: &Value) -> Result<Option<String>, ShadowError> {
    match request.get("clientToken") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if t.len() <= MAX_CLIENT_TOKEN => Ok(Some(t.clone())),
        Some(_) => Err(ShadowError::InvalidClientToken),
    }
}

/// Parses a request body (`get` and `delete` may be empty).
pub fn parse_request(payload: &[u8]) -> Result<Value, ShadowError> {
    if payload.len() > MAX_REQUEST_BYTES {
        return Err(ShadowError::TooLarge);
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    let text = std::str::from_utf8(payload).map_err(|_| ShadowError::Encoding)?;
    // serde_json stops at 128 levels of nesting: no input makes it recurse deeper.
    serde_json::from_str(text).map_err(|_| ShadowError::InvalidJson)
}

/// Checks an update request.
pub fn parse_update(payload: &[u8]) -> Result<Update, ShadowError> {
    update_from(parse_request(payload)?)
}

/// Checks an update request already parsed by [`parse_request`].
pub fn update_from(request: Value) -> Result<Update, ShadowError> {
    let client_token = client_token(&request)?;
    let Value::Object(request) = request else {
        return Err(ShadowError::InvalidJson);
    };
    let version = match request.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or(ShadowError::InvalidVersion)?),
    };
    let state = match request.get("state") {
        None | Some(Value::Null) => return Err(ShadowError::MissingState),
        Some(Value::Object(s)) => s.clone(),
        Some(_) => return Err(ShadowError::StateNotObject),
    };
    if state.is_empty() {
        return Err(ShadowError::InvalidStateNode);
    }
    for (section, value) in &state {
        match (section.as_str(), value) {
            ("desired" | "reported", Value::Null) => {}
            ("desired" | "reported", Value::Object(o)) => {
                if depth(o) > MAX_DEPTH {
                    return Err(ShadowError::TooDeep);
                }
            }
            ("desired", _) => return Err(ShadowError::DesiredNotObject),
            ("reported", _) => return Err(ShadowError::ReportedNotObject),
            _ => return Err(ShadowError::InvalidStateNode),
        }
    }
    Ok(Update {
        state,
        client_token,
        version,
    })
}

/// Levels of nesting of an object (its own keys are level 1), counted without recursion.
fn depth(o: &Map<String, Value>) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = o.values().map(|v| (v, 1)).collect();
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Object(m) => stack.extend(m.values().map(|v| (v, d + 1))),
            Value::Array(a) => stack.extend(a.iter().map(|v| (v, d + 1))),
            _ => {}
        }
    }
    deepest
}

impl Document {
    /// Applies an update at `now` (seconds): the new document, and the metadata of what the
    /// request touched (for the `/accepted` answer). Fails when the result would exceed the
    /// state limit (the document is then unchanged).
    pub fn apply(&self, update: &Update, now: u64) -> Result<(Document, Value), ShadowError> {
        let mut next = self.clone();
        let mut touched = Map::new();
        for (section, patch) in &update.state {
            match patch {
                Value::Object(patch) => {
                    let target = next
                        .state
                        .entry(section.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    let meta = next
                        .metadata
                        .entry(section.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let (Value::Object(t), Value::Object(m)) = (target, meta) {
                        merge(t, m, patch, now, 0);
                    }
                    touched.insert(
                        section.clone(),
                        stamp(&Value::Object(patch.clone()), now, 0),
                    );
                }
                _ => {
                    next.state.remove(section);
                    next.metadata.remove(section);
                    touched.insert(section.clone(), json!({ "timestamp": now }));
                }
            }
            // A section left empty goes (AWS: "the section is removed from the document").
            if next
                .state
                .get(section)
                .is_some_and(|s| s.as_object().is_some_and(Map::is_empty))
            {
                next.state.remove(section);
                next.metadata.remove(section);
            }
        }
        if serde_json::to_vec(&next.state).map_or(usize::MAX, |b| b.len()) > MAX_STATE_BYTES {
            return Err(ShadowError::TooLarge);
        }
        next.version = self.version + 1;
        Ok((next, Value::Object(touched)))
    }

    /// The desired values that differ from the reported ones, with their metadata; `None`
    /// when there is no difference.
    pub fn delta(&self) -> Option<(Value, Value)> {
        let desired = self.state.get("desired")?.as_object()?;
        let empty = Map::new();
        let reported = self
            .state
            .get("reported")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let d = delta(desired, reported, 0);
        if d.is_empty() {
            return None;
        }
        let meta = self
            .metadata
            .get("desired")
            .and_then(Value::as_object)
            .map(|m| pick(m, &d, 0))
            .unwrap_or_default();
        Some((Value::Object(d), Value::Object(meta)))
    }

    /// The whole document as `get` answers it (`state` with `delta`, `metadata`, `version`).
    pub fn to_get(&self, now: u64) -> Value {
        let mut state = self.state.clone();
        if let Some((delta, _)) = self.delta() {
            state.insert("delta".into(), delta);
        }
        json!({
            "state": state,
            "metadata": self.metadata,
            "version": self.version,
            "timestamp": now,
        })
    }

    /// The document as `/update/documents` shows it (`previous` and `current`).
    pub fn to_snapshot(&self) -> Value {
        json!({ "state": self.state, "metadata": self.metadata, "version": self.version })
    }
}

/// Merges `patch` into `target`, writing `now` into `meta` for every value it sets.
fn merge(
    target: &mut Map<String, Value>,
    meta: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    now: u64,
    level: usize,
) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
                meta.remove(k);
            }
            Value::Object(p) if level < MAX_DEPTH + 2 => {
                if !target.get(k).is_some_and(Value::is_object) {
                    target.insert(k.clone(), Value::Object(Map::new()));
                }
                if !meta
                    .get(k)
                    .is_some_and(|m| m.is_object() && m.get("timestamp").is_none())
                {
                    meta.insert(k.clone(), Value::Object(Map::new()));
                }
                if let (Some(Value::Object(t)), Some(Value::Object(m))) =
                    (target.get_mut(k), meta.get_mut(k))
                {
                    merge(t, m, p, now, level + 1);
                    if t.is_empty() && !p.is_empty() {
                        // Emptied by this update's deletions.
                        target.remove(k);
                        meta.remove(k);
                    }
                }
            }
            _ => {
                target.insert(k.clone(), v.clone());
                meta.insert(k.clone(), json!({ "timestamp": now }));
            }
        }
    }
}

/// The metadata of a request's value: `{"timestamp": now}` at every leaf.
fn stamp(v: &Value, now: u64, level: usize) -> Value {
    match v {
        Value::Object(o) if level < MAX_DEPTH + 2 => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), stamp(v, now, level + 1)))
                .collect(),
        ),
        _ => json!({ "timestamp": now }),
    }
}

fn delta(
    desired: &Map<String, Value>,
    reported: &Map<String, Value>,
    level: usize,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, d) in desired {
        match (d, reported.get(k)) {
            (Value::Object(dm), Some(Value::Object(rm))) if level < MAX_DEPTH + 2 => {
                let sub = delta(dm, rm, level + 1);
                if !sub.is_empty() {
                    out.insert(k.clone(), Value::Object(sub));
                }
            }
            (d, Some(r)) if d == r => {}
            (d, _) => {
                out.insert(k.clone(), d.clone());
            }
        }
    }
    out
}

/// The part of `meta` that has the shape of `of`.
fn pick(meta: &Map<String, Value>, of: &Map<String, Value>, level: usize) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in of {
        let Some(m) = meta.get(k) else { continue };
        match (v, m) {
            (Value::Object(vo), Value::Object(mo))
                if mo.get("timestamp").is_none() && level < MAX_DEPTH + 2 =>
            {
                out.insert(k.clone(), Value::Object(pick(mo, vo, level + 1)));
            }
            _ => {
                out.insert(k.clone(), m.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(v: Value) -> Update {
        parse_update(v.to_string().as_bytes()).expect("a valid update")
    }

    #[test]
    fn partial_updates_merge_and_null_deletes() {
        let doc = Document::default();
        let (doc, touched) = doc
            .apply(
                &update(json!({"state": {"desired": {"color": "red", "light": {"on": true, "level": 3}}}})),
                100,
            )
            .expect("applied");
        assert_eq!(doc.version, 1);
        assert_eq!(touched["desired"]["light"]["level"]["timestamp"], 100);
        let (doc, _) = doc
            .apply(
                &update(json!({"state": {"desired": {"light": {"level": null}}, "reported": {"color": "blue", "seq": [1, 2]}}})),
                200,
            )
            .expect("applied");
        assert_eq!(
            Value::Object(doc.state.clone()),
            json!({"desired": {"color": "red", "light": {"on": true}}, "reported": {"color": "blue", "seq": [1, 2]}})
        );
        assert_eq!(doc.metadata["desired"]["color"]["timestamp"], 100);
        assert_eq!(doc.metadata["reported"]["seq"]["timestamp"], 200);
        assert!(doc.metadata["desired"]["light"].get("level").is_none());
        let (delta, meta) = doc.delta().expect("a delta");
        assert_eq!(delta, json!({"color": "red", "light": {"on": true}}));
        assert_eq!(meta["color"]["timestamp"], 100);
        // Arrays are replaced whole; a null section goes.
        let (doc, _) = doc
            .apply(
                &update(json!({"state": {"reported": {"seq": [3]}, "desired": null}})),
                300,
            )
            .expect("applied");
        assert_eq!(doc.state["reported"]["seq"], json!([3]));
        assert!(doc.state.get("desired").is_none());
        assert!(doc.delta().is_none());
        assert_eq!(doc.version, 3);
    }

    #[test]
    fn refusals_name_aws_messages() {
        let e = |s: &str| parse_update(s.as_bytes()).unwrap_err().to_string();
        assert_eq!(e("{"), "Invalid JSON");
        assert_eq!(e(r#"{"x": 1}"#), "Missing required node: state");
        assert_eq!(e(r#"{"state": 1}"#), "State node must be an object");
        assert_eq!(
            e(r#"{"state": {"desired": 1}}"#),
            "Desired node must be an object"
        );
        assert_eq!(
            e(r#"{"state": {"reported": []}}"#),
            "Reported node must be an object"
        );
        assert_eq!(
            e(r#"{"state": {"other": {}}}"#),
            "State contains an invalid node"
        );
        assert_eq!(
            e(r#"{"state": {"desired": {}}, "version": "x"}"#),
            "Invalid version"
        );
        let long = "t".repeat(65);
        assert_eq!(
            e(&format!(
                r#"{{"state": {{"desired": {{}}}}, "clientToken": "{long}"}}"#
            )),
            "Invalid clientToken"
        );
        assert_eq!(
            e(r#"{"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}"#),
            "JSON contains too many levels of nesting; maximum is 6"
        );
        assert!(parse_update(
            br#"{"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}}"#
        )
        .is_ok());
        let big = format!(
            r#"{{"state": {{"desired": {{"a": "{}"}}}}}}"#,
            "x".repeat(9000)
        );
        let doc = Document::default();
        assert_eq!(
            doc.apply(&parse_update(big.as_bytes()).expect("parsed"), 1)
                .unwrap_err(),
            ShadowError::TooLarge
        );
    }
}
