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

/// Most `.`-separated segments in a parameter name. The deepest SQS name has seven
/// (`SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringListValue.1`); anything deeper is
/// refused before a tree is built, so no input can make the parser deep.
pub const MAX_KEY_DEPTH: usize = 8;

/// Most parameters in one request. A full SendMessageBatch (10 entries, 10 message attributes each)
/// needs about 500.
pub const MAX_PARAMS: usize = 1_000;

/// Why a form could not be turned into a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// A parameter name has more than [`MAX_KEY_DEPTH`] segments.
    TooDeep,
    /// More than [`MAX_PARAMS`] parameters.
    TooMany,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::TooDeep => write!(
                f,
                "A parameter name has more than {MAX_KEY_DEPTH} dot-separated parts."
            ),
            QueryError::TooMany => write!(f, "The request has more than {MAX_PARAMS} parameters."),
        }
    }
}

/// One node of the parameter tree. Nodes live in one arena (`Vec`) and name their children by
/// index, and a child is always created after its parent: converting the nodes from the last to the
/// first sees every child before its parent, so building, converting and dropping the tree are
/// loops, never recursion.
#[derive(Debug, Default)]
struct Node {
    leaf: Option<String>,
    children: BTreeMap<String, usize>,
}

/// `json`'s members named by index (`1`, `2`, …), in numeric order.
fn indexed(json: Value) -> Vec<Value> {
    let Value::Object(map) = json else {
        return Vec::new();
    };
    let mut items: Vec<(u32, Value)> = map
        .into_iter()
        .filter_map(|(k, v)| k.parse::<u32>().ok().map(|i| (i, v)))
        .collect();
    items.sort_by_key(|(i, _)| *i);
    items.into_iter().map(|(_, v)| v).collect()
}

/// How a query service spells lists and maps in parameter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// SQS: flattened (`Attribute.1.Name`, `AttributeName.1`), named by the tables above.
    Sqs,
    /// SNS: wrapped (`Tags.member.1.Key`, `Attributes.entry.1.key`,
    /// `MessageAttributes.entry.1.Name`), recognised by their `member` and `entry` nodes.
    Sns,
}

/// Form parameters (`Action` and `Version` ignored) as the JSON request shape (SQS).
pub fn params_to_json(params: Vec<(String, String)>) -> Result<Value, QueryError> {
    params_to_json_as(params, Flavor::Sqs)
}

/// SNS's wrapped list (`member.N`) or map (`entry.N` of key/value or Name/Value), if `obj` is one.
fn wrapped(obj: &mut Map<String, Value>) -> Option<Value> {
    if obj.len() != 1 {
        return None;
    }
    if let Some(members) = obj.remove("member") {
        return Some(Value::Array(indexed(members)));
    }
    let entries = obj.remove("entry")?;
    let mut map = Map::new();
    for entry in indexed(entries) {
        let Value::Object(mut entry) = entry else {
            continue;
        };
        let (key, value) = match entry.remove("key") {
            Some(k) => (k, entry.remove("value")),
            None => match entry.remove("Name") {
                Some(k) => (k, entry.remove("Value")),
                None => continue,
            },
        };
        if let Value::String(key) = key {
            map.insert(key, value.unwrap_or_else(|| Value::String(String::new())));
        }
    }
    Some(Value::Object(map))
}

/// Form parameters (`Action` and `Version` ignored) as the JSON request shape of `flavor`.
pub fn params_to_json_as(
    params: Vec<(String, String)>,
    flavor: Flavor,
) -> Result<Value, QueryError> {
    if params.len() > MAX_PARAMS {
        return Err(QueryError::TooMany);
    }
    if params
        .iter()
        .any(|(k, _)| k.split('.').nth(MAX_KEY_DEPTH).is_some())
    {
        return Err(QueryError::TooDeep);
    }
    let mut nodes = vec![Node::default()];
    for (k, v) in params {
        if k == "Action" || k == "Version" {
            continue;
        }
        let mut at = 0;
        for segment in k.split('.') {
            let next = nodes.len();
            at = *nodes[at]
                .children
                .entry(segment.to_string())
                .or_insert(next);
            if at == next {
                nodes.push(Node::default());
            }
        }
        nodes[at].leaf = Some(v);
    }
    let mut json: Vec<Value> = Vec::with_capacity(nodes.len());
    json.resize(nodes.len(), Value::Null);
    for i in (0..nodes.len()).rev() {
        let node = std::mem::take(&mut nodes[i]);
        if node.children.is_empty() {
            json[i] = Value::String(node.leaf.unwrap_or_default());
            continue;
        }
        let mut obj = Map::new();
        for (k, child) in node.children {
            let value = std::mem::take(&mut json[child]);
            if flavor == Flavor::Sns {
                obj.insert(k, value);
                continue;
            }
            if let Some((_, name)) = LISTS.iter().find(|(q, _)| *q == k) {
                obj.insert((*name).to_string(), Value::Array(indexed(value)));
            } else if let Some((_, name, key, val)) = MAPS.iter().find(|(q, ..)| *q == k) {
                let mut map = Map::new();
                for entry in indexed(value) {
                    let Value::Object(mut entry) = entry else {
                        continue;
                    };
                    let Some(Value::String(name)) = entry.remove(*key) else {
                        continue;
                    };
                    let v = entry
                        .remove(*val)
                        .unwrap_or_else(|| Value::String(String::new()));
                    map.insert(name, v);
                }
                obj.insert((*name).to_string(), Value::Object(map));
            } else {
                obj.insert(k, value);
            }
        }
        json[i] = match flavor {
            Flavor::Sns if i > 0 => wrapped(&mut obj).unwrap_or(Value::Object(obj)),
            _ => Value::Object(obj),
        };
    }
    match json.into_iter().next() {
        Some(Value::Object(o)) => Ok(Value::Object(o)),
        _ => Ok(Value::Object(Map::new())),
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
    envelope(op, NAMESPACE, result, request_id, |out, k, v| {
        write(out, op, k, v)
    })
}

/// The XML error response.
pub fn render_error(code: &str, message: &str, sender: bool, request_id: &str) -> String {
    error_envelope(NAMESPACE, (code, message, sender), request_id, "<Detail/>")
}

/// The query protocol's response envelope (SQS and SNS alike): `<{op}Response>` in `namespace`,
/// the result's fields (each rendered by `field`, the API's own XML dialect) in `<{op}Result>`,
/// then the request id. A result that is not an object has no `<{op}Result>`.
pub fn envelope(
    op: &str,
    namespace: &str,
    result: &Value,
    request_id: &str,
    mut field: impl FnMut(&mut String, &str, &Value),
) -> String {
    let mut out = format!(r#"<?xml version="1.0"?><{op}Response xmlns="{namespace}">"#);
    if let Value::Object(map) = result {
        out.push_str(&format!("<{op}Result>"));
        for (k, v) in map {
            field(&mut out, k, v);
        }
        out.push_str(&format!("</{op}Result>"));
    }
    out.push_str(&format!(
        "<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{op}Response>"
    ));
    out
}

/// The query protocol's error envelope: `(code, message, sender)` in `namespace`, with `extra`
/// (SQS's `<Detail/>`) after the message.
pub fn error_envelope(
    namespace: &str,
    (code, message, sender): (&str, &str, bool),
    request_id: &str,
    extra: &str,
) -> String {
    format!(
        r#"<?xml version="1.0"?><ErrorResponse xmlns="{namespace}"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message>{extra}</Error><RequestId>{request_id}</RequestId></ErrorResponse>"#,
        if sender { "Sender" } else { "Receiver" },
        escape(code),
        escape(message)
    )
}

/// The parameters of a query-protocol request: the URL's query, then a POST's form body. At most
/// one parameter more than [`MAX_PARAMS`] is decoded: a form of millions of empty parameters
/// costs no more memory than its bytes.
pub fn form_pairs(
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    body: &[u8],
) -> Vec<(String, String)> {
    let query = uri.query().unwrap_or("").as_bytes();
    let form: &[u8] = if method == axum::http::Method::POST {
        body
    } else {
        b""
    };
    form_urlencoded::parse(query)
        .chain(form_urlencoded::parse(form))
        .take(MAX_PARAMS + 1)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
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
        let v = params_to_json(p(&[
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
        ]))
        .unwrap();
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
    fn deep_or_many_names_are_refused_not_recursed() {
        let deep = format!("Attribute.1{}", ".a".repeat(10_000));
        assert_eq!(params_to_json(p(&[(&deep, "x")])), Err(QueryError::TooDeep));
        let ok = "SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringListValue.1";
        assert!(params_to_json(p(&[(ok, "x")])).is_ok());
        let many: Vec<(String, String)> = (0..=MAX_PARAMS)
            .map(|i| (format!("K{i}"), String::new()))
            .collect();
        assert_eq!(params_to_json(many), Err(QueryError::TooMany));
    }

    #[test]
    fn a_name_that_is_both_leaf_and_branch_keeps_the_branch() {
        let v = params_to_json(p(&[("A", "x"), ("A.B", "y"), ("Attribute.1.Value", "v")])).unwrap();
        assert_eq!(v["A"]["B"], "y");
        assert_eq!(
            v["Attributes"],
            serde_json::json!({}),
            "an entry without a name is skipped"
        );
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
