//! The query protocol (form-encoded requests, XML responses) that older SDKs and CLIs speak.
//!
//! Requests are turned into the same JSON shape the AWS JSON 1.0 protocol carries, so one set of
//! operation handlers serves both; responses are rendered from that JSON shape into SQS's XML,
//! where lists and maps are "flattened" (`<Attribute><Name/><Value/></Attribute>` repeated).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Query names of flattened lists and their JSON member names.
const LISTS: &[(&str, &str)] = &[
    ("AttributeName", "AttributeNames"),
    ("MessageSystemAttributeName", "MessageSystemAttributeNames"),
    ("MessageAttributeName", "MessageAttributeNames"),
    ("TagKey", "TagKeys"),
    ("AWSAccountId", "AWSAccountIds"),
    ("ActionName", "Actions"),
    ("SendMessageBatchRequestEntry", "Entries"),
    ("DeleteMessageBatchRequestEntry", "Entries"),
    ("ChangeMessageVisibilityBatchRequestEntry", "Entries"),
    ("StringListValue", "StringListValues"),
    ("BinaryListValue", "BinaryListValues"),
];

/// Query names of flattened maps: JSON member, key label, value label.
const MAPS: &[(&str, &str, &str, &str)] = &[
    ("Attribute", "Attributes", "Name", "Value"),
    ("Tag", "Tags", "Key", "Value"),
    ("MessageAttribute", "MessageAttributes", "Name", "Value"),
    (
        "MessageSystemAttribute",
        "MessageSystemAttributes",
        "Name",
        "Value",
    ),
];

#[derive(Debug, Default)]
struct Node {
    leaf: Option<String>,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn insert(&mut self, path: &[&str], value: String) {
        match path.split_first() {
            None => self.leaf = Some(value),
            Some((head, rest)) => self
                .children
                .entry((*head).to_string())
                .or_default()
                .insert(rest, value),
        }
    }

    /// Children named by index (`1`, `2`, …) in numeric order.
    fn indexed(&self) -> Vec<&Node> {
        let mut items: Vec<(u32, &Node)> = self
            .children
            .iter()
            .filter_map(|(k, v)| k.parse::<u32>().ok().map(|i| (i, v)))
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, v)| v).collect()
    }

    fn to_json(&self) -> Value {
        if self.children.is_empty() {
            return Value::String(self.leaf.clone().unwrap_or_default());
        }
        let mut obj = Map::new();
        for (k, child) in &self.children {
            if let Some((_, json)) = LISTS.iter().find(|(q, _)| q == k) {
                let items = child.indexed().into_iter().map(Node::to_json).collect();
                obj.insert((*json).to_string(), Value::Array(items));
            } else if let Some((_, json, key, value)) = MAPS.iter().find(|(q, ..)| q == k) {
                let mut map = Map::new();
                for entry in child.indexed() {
                    let Some(name) = entry.children.get(*key).and_then(|n| n.leaf.clone()) else {
                        continue;
                    };
                    let v = entry
                        .children
                        .get(*value)
                        .map_or(Value::String(String::new()), Node::to_json);
                    map.insert(name, v);
                }
                obj.insert((*json).to_string(), Value::Object(map));
            } else {
                obj.insert(k.clone(), child.to_json());
            }
        }
        Value::Object(obj)
    }
}

/// Form parameters (`Action` and `Version` removed) as the JSON request shape.
pub fn params_to_json(params: &[(String, String)]) -> Value {
    let mut root = Node::default();
    for (k, v) in params {
        if k == "Action" || k == "Version" {
            continue;
        }
        let path: Vec<&str> = k.split('.').collect();
        root.insert(&path, v.clone());
    }
    match root.to_json() {
        Value::Object(o) => Value::Object(o),
        _ => Value::Object(Map::new()),
    }
}

/// XML-escapes text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

fn member_name<'a>(op: &str, name: &'a str) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    match name {
        "Messages" => Cow::Borrowed("Message"),
        "QueueUrls" | "queueUrls" => Cow::Borrowed("QueueUrl"),
        "Successful" => Cow::Owned(format!("{op}ResultEntry")),
        "Failed" => Cow::Borrowed("BatchResultErrorEntry"),
        "Results" => Cow::Borrowed("ListMessageMoveTasksResultEntry"),
        "StringListValues" => Cow::Borrowed("StringListValue"),
        "BinaryListValues" => Cow::Borrowed("BinaryListValue"),
        other => Cow::Borrowed(other),
    }
}

fn write(out: &mut String, op: &str, name: &str, v: &Value) {
    match v {
        Value::Array(items) => {
            let member = member_name(op, name);
            for item in items {
                write(out, op, &member, item);
            }
        }
        Value::Object(map) => {
            let flattened = match name {
                "Attributes" => Some(("Attribute", "Name")),
                "MessageAttributes" => Some(("MessageAttribute", "Name")),
                "Tags" => Some(("Tag", "Key")),
                _ => None,
            };
            if let Some((elem, key)) = flattened {
                for (k, val) in map {
                    out.push_str(&format!("<{elem}><{key}>{}</{key}>", escape(k)));
                    write(out, op, "Value", val);
                    out.push_str(&format!("</{elem}>"));
                }
            } else {
                out.push_str(&format!("<{name}>"));
                for (k, val) in map {
                    write(out, op, k, val);
                }
                out.push_str(&format!("</{name}>"));
            }
        }
        Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", escape(s))),
        Value::Bool(b) => out.push_str(&format!("<{name}>{b}</{name}>")),
        Value::Number(n) => out.push_str(&format!("<{name}>{n}</{name}>")),
        Value::Null => {}
    }
}

const NAMESPACE: &str = "http://queue.amazonaws.com/doc/2012-11-05/";

/// The XML response of `op` for a JSON-shaped result.
pub fn render(op: &str, result: &Value, request_id: &str) -> String {
    let mut out = format!(r#"<?xml version="1.0"?><{op}Response xmlns="{NAMESPACE}">"#);
    if let Value::Object(map) = result {
        out.push_str(&format!("<{op}Result>"));
        for (k, v) in map {
            write(&mut out, op, k, v);
        }
        out.push_str(&format!("</{op}Result>"));
    }
    out.push_str(&format!(
        "<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{op}Response>"
    ));
    out
}

/// The XML error response.
pub fn render_error(code: &str, message: &str, sender: bool, request_id: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message><Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>"#,
        if sender { "Sender" } else { "Receiver" },
        escape(code),
        escape(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flattened_lists_and_maps_become_json() {
        let v = params_to_json(&p(&[
            ("Action", "SendMessageBatch"),
            ("QueueUrl", "http://h/1/q"),
            ("SendMessageBatchRequestEntry.2.Id", "b"),
            ("SendMessageBatchRequestEntry.1.Id", "a"),
            (
                "SendMessageBatchRequestEntry.1.MessageAttribute.1.Name",
                "color",
            ),
            (
                "SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType",
                "String",
            ),
            (
                "SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue",
                "red",
            ),
            ("Attribute.1.Name", "DelaySeconds"),
            ("Attribute.1.Value", "5"),
            ("AttributeName.1", "All"),
        ]));
        assert_eq!(v["QueueUrl"], "http://h/1/q");
        assert_eq!(v["Entries"][0]["Id"], "a");
        assert_eq!(v["Entries"][1]["Id"], "b");
        assert_eq!(
            v["Entries"][0]["MessageAttributes"]["color"]["StringValue"],
            "red"
        );
        assert_eq!(v["Attributes"]["DelaySeconds"], "5");
        assert_eq!(v["AttributeNames"][0], "All");
    }

    #[test]
    fn xml_is_flattened_and_escaped() {
        let result = serde_json::json!({
            "Messages": [{"Body": "a<b", "Attributes": {"SenderId": "x"}}]
        });
        let xml = render("ReceiveMessage", &result, "r");
        assert!(!xml.contains("<Attributes>"));
        assert!(xml.contains("<Message><Attribute><Name>SenderId</Name><Value>x</Value></Attribute><Body>a&lt;b</Body></Message>"));
    }
}
