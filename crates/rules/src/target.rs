//! Targets: where a rule sends the events it matches, and what it sends (`Input`, `InputPath`,
//! `InputTransformer`).
//!
//! Kinds, by ARN: an SQS queue of this broker (`arn:aws:sqs:…:<queue>`, `SqsParameters
//! .MessageGroupId` for FIFO queues), an SNS topic (`arn:aws:sns:…:<topic>`), or an MQTT topic
//! of this broker (`arn:aws:iot:<region>:<account>:topic/<template>`, AWS IoT's topic ARN form,
//! or the short `mqtt:<template>`), where the template may take event fields
//! (`alerts/${detail.site}`). Other ARNs are refused at `PutTargets`: Outpost has nothing to
//! deliver them to.

use serde_json::{Map, Value};

use crate::error::{EventsError, Result};
use crate::json_path::{self, clip, JsonPath};

/// Targets per rule (EventBridge: 5).
pub const MAX_TARGETS: usize = 5;
/// `InputPathsMap` entries (EventBridge: 100).
const MAX_INPUT_PATHS: usize = 100;
/// `Input` and `InputTemplate` length (EventBridge: 8192).
const MAX_INPUT: usize = 8192;
/// Largest input a target sends (an event's limit: 256 KB).
pub const MAX_RENDERED: usize = 256 * 1024;

fn too_large() -> String {
    format!("the target's input would be larger than {MAX_RENDERED} bytes")
}

/// `RetryPolicy` defaults and bounds.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 185;
pub const DEFAULT_EVENT_AGE_SECS: u64 = 86_400;

/// Where a target delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An SQS queue of this broker, by name.
    Queue {
        name: String,
        group_id: Option<String>,
    },
    /// An SNS topic of this broker, by ARN.
    Topic(String),
    /// An MQTT topic (template) of this broker.
    Mqtt(String),
}

/// What a target sends.
#[derive(Debug, Clone, PartialEq)]
enum Input {
    Event,
    Constant(String),
    Path(JsonPath),
    Transformer {
        paths: Vec<(String, JsonPath)>,
        template: String,
    },
}

/// A validated target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `Id`.
    pub id: String,
    /// `Arn`.
    pub arn: String,
    /// Where it goes.
    pub destination: Destination,
    input: Input,
    /// `RetryPolicy.MaximumRetryAttempts`.
    pub max_attempts: u32,
    /// `RetryPolicy.MaximumEventAgeInSeconds`.
    pub max_age_secs: u64,
    /// `DeadLetterConfig.Arn`: a queue name.
    pub dead_letter_queue: Option<String>,
    /// The target as given (AWS's shape), for `ListTargetsByRule`.
    pub raw: Value,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The queue name an SQS ARN of this region and account names.
pub(crate) fn queue_of(arn: &str, region: &str, account: &str) -> Option<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    (parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "sqs"
        && parts[3] == region
        && parts[4] == account
        && !parts[5].is_empty())
    .then(|| parts[5].to_string())
}

impl Target {
    /// Validates a target from `PutTargets` (AWS's JSON shape).
    pub fn parse(raw: &Value, region: &str, account: &str) -> Result<Target> {
        let o = raw
            .as_object()
            .ok_or_else(|| EventsError::validation("A target must be an object"))?;
        let text = |k: &str| o.get(k).and_then(Value::as_str);
        let id = text("Id").ok_or_else(|| EventsError::validation("Target Id is required"))?;
        if !valid_id(id) {
            return Err(EventsError::validation(format!(
                "Target Id {} is not valid: 1 to 64 of [.-_A-Za-z0-9]",
                clip(id)
            )));
        }
        let arn = text("Arn").ok_or_else(|| EventsError::validation("Target Arn is required"))?;
        if arn.is_empty() || arn.len() > 1600 {
            return Err(EventsError::validation("Target Arn is not valid"));
        }
        let destination = destination(arn, o, region, account)?;
        let given = ["Input", "InputPath", "InputTransformer"]
            .iter()
            .filter(|k| o.contains_key(**k))
            .count();
        if given > 1 {
            return Err(EventsError::validation(
                "Only one of Input, InputPath, or InputTransformer may be given for a target",
            ));
        }
        let input = if let Some(i) = text("Input") {
            if i.len() > MAX_INPUT || serde_json::from_str::<Value>(i).is_err() {
                return Err(EventsError::validation("Input is not valid JSON text"));
            }
            Input::Constant(i.to_string())
        } else if let Some(p) = text("InputPath") {
            Input::Path(JsonPath::parse(p)?)
        } else if let Some(t) = o.get("InputTransformer") {
            parse_transformer(t)?
        } else {
            Input::Event
        };
        let retry = o.get("RetryPolicy").and_then(Value::as_object);
        let max_attempts = match retry.and_then(|r| r.get("MaximumRetryAttempts")) {
            None => DEFAULT_RETRY_ATTEMPTS,
            Some(v) => v.as_u64().filter(|n| *n <= 185).ok_or_else(|| {
                EventsError::validation("MaximumRetryAttempts must be between 0 and 185")
            })? as u32,
        };
        let max_age_secs = match retry.and_then(|r| r.get("MaximumEventAgeInSeconds")) {
            None => DEFAULT_EVENT_AGE_SECS,
            Some(v) => v
                .as_u64()
                .filter(|n| (60..=86_400).contains(n))
                .ok_or_else(|| {
                    EventsError::validation("MaximumEventAgeInSeconds must be between 60 and 86400")
                })?,
        };
        let dead_letter_queue = match o
            .get("DeadLetterConfig")
            .and_then(|d| d.get("Arn"))
            .and_then(Value::as_str)
        {
            None => None,
            Some(a) => Some(queue_of(a, region, account).ok_or_else(|| {
                EventsError::validation(format!(
                    "DeadLetterConfig Arn {} is not an SQS queue ARN of this broker",
                    clip(a)
                ))
            })?),
        };
        Ok(Target {
            id: id.to_string(),
            arn: arn.to_string(),
            destination,
            input,
            max_attempts,
            max_age_secs,
            dead_letter_queue,
            raw: raw.clone(),
        })
    }

    /// The text this target sends for `event` matched by `rule_name`/`rule_arn`.
    /// What the target sends for `event`; an error when it would be larger than an event may
    /// be (256 KB): a template that repeats a large field is refused there, before anything is
    /// stored or sent (ADR 0015).
    pub fn render(
        &self,
        event: &Value,
        rule_name: &str,
        rule_arn: &str,
    ) -> std::result::Result<String, String> {
        let text = match &self.input {
            Input::Event => event.to_string(),
            Input::Constant(c) => c.clone(),
            Input::Path(p) => p.get(event).unwrap_or(&Value::Null).to_string(),
            Input::Transformer { paths, template } => {
                let mut vars: Map<String, Value> = Map::new();
                for (name, path) in paths {
                    vars.insert(
                        name.clone(),
                        path.get(event).cloned().unwrap_or(Value::Null),
                    );
                }
                fill_template(template, &vars, event, rule_name, rule_arn, MAX_RENDERED)?
            }
        };
        if text.len() > MAX_RENDERED {
            return Err(too_large());
        }
        Ok(text)
    }
}

fn destination(
    arn: &str,
    o: &Map<String, Value>,
    region: &str,
    account: &str,
) -> Result<Destination> {
    let unsupported = || {
        EventsError::validation(format!(
            "Target Arn {} is not supported: Outpost delivers to its SQS queues, SNS topics and MQTT topics",
            clip(arn)
        ))
    };
    if let Some(template) = arn.strip_prefix("mqtt:") {
        return mqtt_destination(template);
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" {
        return Err(unsupported());
    }
    if parts[3] != region || parts[4] != account {
        return Err(EventsError::validation(format!(
            "Target Arn {} is not in this broker's region and account",
            clip(arn)
        )));
    }
    match parts[2] {
        "sqs" => {
            let name = parts[5].to_string();
            let group_id = o
                .get("SqsParameters")
                .and_then(|p| p.get("MessageGroupId"))
                .and_then(Value::as_str)
                .map(str::to_string);
            if name.ends_with(".fifo") && group_id.is_none() {
                return Err(EventsError::validation(
                    "SqsParameters.MessageGroupId is required for a FIFO queue target",
                ));
            }
            Ok(Destination::Queue { name, group_id })
        }
        "sns" => Ok(Destination::Topic(arn.to_string())),
        "iot" => match parts[5].strip_prefix("topic/") {
            Some(template) => mqtt_destination(template),
            None => Err(unsupported()),
        },
        _ => Err(unsupported()),
    }
}

fn mqtt_destination(template: &str) -> Result<Destination> {
    if template.is_empty()
        || template.len() > 1024
        || template.contains(['+', '#', '\0'])
        || !json_path::check_template(template)
    {
        return Err(EventsError::validation(format!(
            "MQTT target topic {} is not a valid topic name template",
            clip(template)
        )));
    }
    Ok(Destination::Mqtt(template.to_string()))
}

fn parse_transformer(t: &Value) -> Result<Input> {
    let template = t
        .get("InputTemplate")
        .and_then(Value::as_str)
        .ok_or_else(|| EventsError::validation("InputTransformer.InputTemplate is required"))?;
    if template.len() > MAX_INPUT {
        return Err(EventsError::validation(
            "InputTemplate is longer than 8192 characters",
        ));
    }
    let mut paths = Vec::new();
    if let Some(map) = t.get("InputPathsMap") {
        let map = map
            .as_object()
            .ok_or_else(|| EventsError::validation("InputPathsMap must be an object"))?;
        if map.len() > MAX_INPUT_PATHS {
            return Err(EventsError::validation(
                "InputPathsMap has more than 100 entries",
            ));
        }
        for (name, path) in map {
            if name.starts_with("aws.") || name.is_empty() || name.len() > 256 {
                return Err(EventsError::validation(format!(
                    "InputPathsMap key {} is reserved or not valid",
                    clip(name)
                )));
            }
            let path = path
                .as_str()
                .ok_or_else(|| EventsError::validation("InputPathsMap values must be strings"))?;
            paths.push((name.clone(), JsonPath::parse(path)?));
        }
    }
    Ok(Input::Transformer {
        paths,
        template: template.to_string(),
    })
}

/// Fills `<name>` placeholders as EventBridge does: inside a JSON string a string value goes in
/// without quotes (escaped), anything else as its JSON text; outside strings every value goes in
/// as JSON. `<aws.events.rule-name>`, `<aws.events.rule-arn>`, `<aws.events.event>` (the event
/// without `detail`), `<aws.events.event.json>` (the whole event) and
/// `<aws.events.event.ingestion-time>` are predefined. Unknown names stay as they are.
fn fill_template(
    template: &str,
    vars: &Map<String, Value>,
    event: &Value,
    rule_name: &str,
    rule_arn: &str,
    limit: usize,
) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = template;
    // Each placeholder's text is made once, however often the template repeats it.
    let mut texts: std::collections::HashMap<(&str, bool), String> = Default::default();
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            if let Some(end) = rest.find('>') {
                let name = &rest[1..end];
                let text = match texts.get(&(name, in_string)) {
                    Some(t) => Some(t.as_str()),
                    None => match lookup(name, vars, event, rule_name, rule_arn) {
                        Some(v) => {
                            let t = match (&v, in_string) {
                                (Value::String(s), true) => {
                                    let quoted = Value::String(s.clone()).to_string();
                                    quoted[1..quoted.len() - 1].to_string()
                                }
                                (Value::Null, true) => String::new(),
                                (other, true) => {
                                    let quoted = Value::String(other.to_string()).to_string();
                                    quoted[1..quoted.len() - 1].to_string()
                                }
                                (other, false) => other.to_string(),
                            };
                            Some(texts.entry((name, in_string)).or_insert(t).as_str())
                        }
                        None => None,
                    },
                };
                if let Some(text) = text {
                    if out.len() + text.len() > limit {
                        return Err(too_large());
                    }
                    out.push_str(text);
                    rest = &rest[end + 1..];
                    escaped = false;
                    continue;
                }
            }
        }
        if in_string && escaped {
            escaped = false;
        } else if in_string && c == '\\' {
            escaped = true;
        } else if c == '"' {
            in_string = !in_string;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

fn lookup(
    name: &str,
    vars: &Map<String, Value>,
    event: &Value,
    rule_name: &str,
    rule_arn: &str,
) -> Option<Value> {
    match name {
        "aws.events.rule-name" => Some(Value::String(rule_name.to_string())),
        "aws.events.rule-arn" => Some(Value::String(rule_arn.to_string())),
        "aws.events.event.json" => Some(event.clone()),
        "aws.events.event" => {
            let mut e = event.clone();
            if let Value::Object(o) = &mut e {
                o.remove("detail");
            }
            Some(e)
        }
        "aws.events.event.ingestion-time" => event.get("time").cloned(),
        _ => vars.get(name).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const R: &str = "us-east-1";
    const A: &str = "000000000000";

    fn target(v: Value) -> Result<Target> {
        Target::parse(&v, R, A)
    }

    #[test]
    fn destinations() {
        let q =
            target(json!({"Id": "q", "Arn": "arn:aws:sqs:us-east-1:000000000000:alerts"})).unwrap();
        assert_eq!(
            q.destination,
            Destination::Queue {
                name: "alerts".into(),
                group_id: None
            }
        );
        let m = target(json!({"Id": "m", "Arn": "arn:aws:iot:us-east-1:000000000000:topic/alerts/${detail.site}"})).unwrap();
        assert_eq!(
            m.destination,
            Destination::Mqtt("alerts/${detail.site}".into())
        );
        let s = target(json!({"Id": "m", "Arn": "mqtt:a/b"})).unwrap();
        assert_eq!(s.destination, Destination::Mqtt("a/b".into()));
        assert!(target(
            json!({"Id": "x", "Arn": "arn:aws:lambda:us-east-1:000000000000:function:f"})
        )
        .is_err());
        assert!(target(json!({"Id": "x", "Arn": "arn:aws:sqs:eu-west-1:000000000000:q"})).is_err());
        assert!(target(json!({"Id": "x", "Arn": "mqtt:a/#"})).is_err());
        assert!(target(json!({"Id": "x y", "Arn": "mqtt:a"})).is_err());
        assert!(
            target(json!({"Id": "f", "Arn": "arn:aws:sqs:us-east-1:000000000000:q.fifo"})).is_err()
        );
        assert!(target(json!({"Id": "f", "Arn": "arn:aws:sqs:us-east-1:000000000000:q.fifo", "SqsParameters": {"MessageGroupId": "g"}})).is_ok());
        assert!(
            target(json!({"Id": "x", "Arn": "mqtt:a", "Input": "{}", "InputPath": "$"})).is_err()
        );
        assert!(target(json!({"Id": "x", "Arn": "mqtt:a", "Input": "{not json"})).is_err());
        assert!(target(
            json!({"Id": "x", "Arn": "mqtt:a", "RetryPolicy": {"MaximumRetryAttempts": 186}})
        )
        .is_err());
        assert!(target(
            json!({"Id": "x", "Arn": "mqtt:a", "RetryPolicy": {"MaximumEventAgeInSeconds": 59}})
        )
        .is_err());
    }

    #[test]
    fn inputs() {
        let event = json!({"id": "e1", "source": "s", "time": "2020-01-01T00:00:00Z", "detail": {"instance": "i-1", "state": "running", "n": 3}});
        let render = |t: Value| target(t).unwrap().render(&event, "r", "arn:r").unwrap();
        assert_eq!(
            render(json!({"Id": "a", "Arn": "mqtt:a"})),
            event.to_string()
        );
        assert_eq!(
            render(json!({"Id": "a", "Arn": "mqtt:a", "Input": "{\"k\":1}"})),
            "{\"k\":1}"
        );
        assert_eq!(
            render(json!({"Id": "a", "Arn": "mqtt:a", "InputPath": "$.detail.state"})),
            "\"running\""
        );
        // AWS's documented transformer example, string and JSON forms.
        let t = json!({"Id": "a", "Arn": "mqtt:a", "InputTransformer": {
            "InputPathsMap": {"instance": "$.detail.instance", "state": "$.detail.state", "n": "$.detail.n"},
            "InputTemplate": "\"<instance> is in state <state>\""}});
        assert_eq!(render(t), "\"i-1 is in state running\"");
        let t = json!({"Id": "a", "Arn": "mqtt:a", "InputTransformer": {
            "InputPathsMap": {"instance": "$.detail.instance", "n": "$.detail.n", "gone": "$.detail.gone"},
            "InputTemplate": "{\"id\": <instance>, \"count\": <n>, \"text\": \"n=<n>\", \"g\": <gone>, \"rule\": \"<aws.events.rule-name>\", \"other\": \"<unknown>\"}"}});
        let out: Value = serde_json::from_str(&render(t)).unwrap();
        assert_eq!(
            out,
            json!({"id": "i-1", "count": 3, "text": "n=3", "g": null, "rule": "r", "other": "<unknown>"})
        );
        let t = json!({"Id": "a", "Arn": "mqtt:a", "InputTransformer": {"InputTemplate": "{\"e\": <aws.events.event>}"}});
        let out: Value = serde_json::from_str(&render(t)).unwrap();
        assert!(out["e"].get("detail").is_none());
        assert_eq!(out["e"]["id"], "e1");
        let bad = json!({"Id": "a", "Arn": "mqtt:a", "InputTransformer": {"InputPathsMap": {"aws.x": "$"}, "InputTemplate": "x"}});
        assert!(target(bad).is_err());
    }

    /// A template that repeats a large field cannot multiply an event past 256 KB: the copy is
    /// refused (and its work stops there), a small one still renders.
    #[test]
    fn transformed_inputs_are_bounded() {
        let t = |template: String| {
            target(json!({"Id": "q", "Arn": "arn:aws:sqs:us-east-1:000000000000:alerts",
                "InputTransformer": {"InputPathsMap": {"e": "$.detail"}, "InputTemplate": template}}))
            .unwrap()
        };
        let event = json!({"detail": {"blob": "x".repeat(4000)}});
        let big = t("<e>".repeat(2730));
        let started = std::time::Instant::now();
        assert!(big.render(&event, "r", "arn:r").is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let small = t("[<e>,<e>]".into());
        assert!(small.render(&event, "r", "arn:r").unwrap().len() > 8000);
    }
}
