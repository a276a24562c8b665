//! Reading request parameters from the JSON request shape, leniently typed: the query protocol
//! carries every value as a string, the JSON protocol as numbers and booleans.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use outpost_queues::message::{AttributeValue, Attributes, MessageAttribute};
use outpost_queues::QueueError;
use serde_json::Value;

/// A required string.
pub fn required<'a>(p: &'a Value, name: &str) -> Result<&'a str, QueueError> {
    match p.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(QueueError::MissingParameter(name.to_string()))
        }
        Some(_) => Err(invalid(name)),
    }
}

fn invalid(name: &str) -> QueueError {
    QueueError::InvalidParameterValue(format!("Value for parameter {name} is invalid."))
}

/// An optional string.
pub fn string(p: &Value, name: &str) -> Result<Option<String>, QueueError> {
    match p.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(name)),
    }
}

/// An optional integer (number or numeric string).
pub fn int(p: &Value, name: &str) -> Result<Option<i64>, QueueError> {
    match p.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| invalid(name)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
            QueueError::InvalidParameterValue(format!(
                "Value {s} for parameter {name} is invalid. Reason: must be an integer."
            ))
        }),
        Some(_) => Err(invalid(name)),
    }
}

/// An optional list of strings.
pub fn list(p: &Value, name: &str) -> Result<Vec<String>, QueueError> {
    match p.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| invalid(name)))
            .collect(),
        Some(_) => Err(invalid(name)),
    }
}

/// An optional map of strings.
pub fn map(p: &Value, name: &str) -> Result<BTreeMap<String, String>, QueueError> {
    match p.get(name) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Number(n) => Ok((k.clone(), n.to_string())),
                Value::Bool(b) => Ok((k.clone(), b.to_string())),
                _ => Err(invalid(name)),
            })
            .collect(),
        Some(_) => Err(invalid(name)),
    }
}

/// A list of objects (batch entries).
pub fn entries<'a>(p: &'a Value, name: &str) -> Result<&'a [Value], QueueError> {
    match p.get(name) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(invalid(name)),
    }
}

/// Message attributes (`MessageAttributes` or `MessageSystemAttributes`).
pub fn message_attributes(p: &Value, name: &str) -> Result<Attributes, QueueError> {
    let mut out = Attributes::new();
    let Some(obj) = p.get(name) else {
        return Ok(out);
    };
    let Some(obj) = obj.as_object() else {
        return Err(invalid(name));
    };
    for (attr, v) in obj {
        let bad = || {
            QueueError::InvalidParameterValue(format!(
                "The message attribute '{attr}' must contain a non-empty value of type {}",
                v.get("DataType")
                    .and_then(Value::as_str)
                    .unwrap_or("String")
            ))
        };
        let data_type = v
            .get("DataType")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                QueueError::InvalidParameterValue(format!(
                    "The message attribute '{attr}' must contain a non-empty message attribute type."
                ))
            })?;
        let string_value = v.get("StringValue").and_then(Value::as_str);
        let binary_value = v.get("BinaryValue").and_then(Value::as_str);
        let value = if data_type.starts_with("Binary") {
            let b = binary_value.ok_or_else(bad)?;
            AttributeValue::Binary(Bytes::from(STANDARD.decode(b.trim()).map_err(|_| bad())?))
        } else {
            let s = string_value.ok_or_else(bad)?;
            if s.is_empty() {
                return Err(bad());
            }
            AttributeValue::String(s.to_string())
        };
        out.insert(
            attr.clone(),
            MessageAttribute {
                data_type: data_type.to_string(),
                value,
            },
        );
    }
    Ok(out)
}

/// Batch entry ids: 1 to 10 entries, distinct, each 1–80 of `[A-Za-z0-9_-]`.
pub fn check_batch_ids(items: &[Value]) -> Result<Vec<String>, QueueError> {
    if items.is_empty() {
        return Err(QueueError::EmptyBatchRequest);
    }
    if items.len() > 10 {
        return Err(QueueError::TooManyEntriesInBatchRequest(items.len()));
    }
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let id = item.get("Id").and_then(Value::as_str).unwrap_or("");
        if id.is_empty()
            || id.len() > 80
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(QueueError::InvalidBatchEntryId);
        }
        if ids.iter().any(|i| i == id) {
            return Err(QueueError::BatchEntryIdsNotDistinct);
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}
