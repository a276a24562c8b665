//! The JSONPath subset EventBridge uses in `InputPath` and `InputPathsMap` (`$`, `$.a.b`,
//! `$.a[0]`, `$['a b']`), and `${path}` templates for MQTT target topics. Paths are parsed once
//! into steps and walked iteratively; their length bounds the work.

use serde_json::Value;

use crate::error::{EventsError, Result};

/// Longest path accepted (EventBridge: 256 characters).
pub const MAX_PATH: usize = 256;

/// One step down a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `$`-rooted JSONPath text.
    pub fn parse(text: &str) -> Result<JsonPath> {
        let bad = || EventsError::validation(format!("{} is not a valid JSONPath", clip(text)));
        if text.len() > MAX_PATH {
            return Err(bad());
        }
        let rest = text.strip_prefix('$').ok_or_else(bad)?;
        JsonPath::parse_steps(rest, true).ok_or_else(bad)
    }

    /// Parses a dotted path without the `$.` (`detail.site`, `detail.list[0]`), as in MQTT
    /// topic templates.
    pub fn parse_dotted(text: &str) -> Option<JsonPath> {
        if text.is_empty() || text.len() > MAX_PATH {
            return None;
        }
        JsonPath::parse_steps(&format!(".{text}"), false)
    }

    fn parse_steps(mut rest: &str, brackets_quoted: bool) -> Option<JsonPath> {
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let key = &r[..end];
                if key.is_empty() {
                    return None;
                }
                steps.push(Step::Key(key.to_string()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']')?;
                let inner = &r[..end];
                let quoted = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
                match quoted {
                    Some(key) if brackets_quoted => steps.push(Step::Key(key.to_string())),
                    Some(_) => return None,
                    None => steps.push(Step::Index(inner.parse().ok()?)),
                }
                rest = &r[end + 1..];
            } else {
                return None;
            }
        }
        Some(JsonPath { steps })
    }

    /// The value the path names in `v`, if any.
    pub fn get<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        let mut at = v;
        for step in &self.steps {
            at = match step {
                Step::Key(k) => at.as_object()?.get(k)?,
                Step::Index(i) => at.as_array()?.get(*i)?,
            };
        }
        Some(at)
    }
}

/// The first 64 characters, for error messages.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Fills `${path}` placeholders of an MQTT topic template from `event`: strings as they are,
/// numbers and booleans as JSON text; a missing value, an object or an array is an error (a
/// topic can't hold it).
pub fn fill_topic(template: &str, event: &Value) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed placeholder in {}", clip(template)))?;
        let path = JsonPath::parse_dotted(&after[..end])
            .ok_or_else(|| format!("bad placeholder ${{{}}}", clip(&after[..end])))?;
        match path.get(event) {
            Some(Value::String(s)) => out.push_str(s),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
            _ => {
                return Err(format!(
                    "placeholder ${{{}}} has no text value in the event",
                    clip(&after[..end])
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks a topic template's placeholders without an event.
pub fn check_template(template: &str) -> bool {
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return false;
        };
        if JsonPath::parse_dotted(&after[..end]).is_none() {
            return false;
        }
        rest = &after[end + 1..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let v = json!({"detail": {"a b": 1, "list": [10, {"x": "y"}]}, "source": "s"});
        let get = |p: &str| JsonPath::parse(p).unwrap().get(&v).cloned();
        assert_eq!(get("$"), Some(v.clone()));
        assert_eq!(get("$.source"), Some(json!("s")));
        assert_eq!(get("$.detail['a b']"), Some(json!(1)));
        assert_eq!(get("$.detail.list[0]"), Some(json!(10)));
        assert_eq!(get("$.detail.list[1].x"), Some(json!("y")));
        assert_eq!(get("$.detail.nope"), None);
        for bad in ["", "detail", "$.", "$..a", "$[x", "$.a[b]"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
        assert!(JsonPath::parse(&format!("$.{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn topic_templates() {
        let v = json!({"detail": {"site": "north", "n": 7, "o": {}}, "detail-type": "t"});
        assert_eq!(
            fill_topic("alerts/${detail.site}/${detail.n}", &v).unwrap(),
            "alerts/north/7"
        );
        assert_eq!(fill_topic("plain", &v).unwrap(), "plain");
        assert!(fill_topic("a/${detail.missing}", &v).is_err());
        assert!(fill_topic("a/${detail.o}", &v).is_err());
        assert!(fill_topic("a/${detail.site", &v).is_err());
        assert!(check_template("a/${detail.site}"));
        assert!(!check_template("a/${}"));
        assert!(!check_template("a/${x"));
    }
}
