//! SNS's XML: results wrap lists in `<member>` and maps in `<entry><key/><value/></entry>`
//! (unlike SQS's flattened forms), in the `2010-03-31` namespace.

use serde_json::Value;

use crate::sqs::query::escape;

const NAMESPACE: &str = "http://sns.amazonaws.com/doc/2010-03-31/";

/// Names of results that are maps (everything else that is an object is a structure).
const MAPS: &[&str] = &["Attributes"];

fn write(out: &mut String, name: &str, v: &Value) {
    match v {
        Value::Array(items) => {
            out.push_str(&format!("<{name}>"));
            for item in items {
                write(out, "member", item);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Object(map) if MAPS.contains(&name) => {
            out.push_str(&format!("<{name}>"));
            for (k, val) in map {
                out.push_str(&format!("<entry><key>{}</key>", escape(k)));
                write(out, "value", val);
                out.push_str("</entry>");
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Object(map) => {
            out.push_str(&format!("<{name}>"));
            for (k, val) in map {
                write(out, k, val);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", escape(s))),
        Value::Bool(b) => out.push_str(&format!("<{name}>{b}</{name}>")),
        Value::Number(n) => out.push_str(&format!("<{name}>{n}</{name}>")),
        Value::Null => {}
    }
}

/// The XML response of `op`; a `null` result has no `<…Result>` element.
pub fn render(op: &str, result: &Value, request_id: &str) -> String {
    let op: String = op.chars().filter(char::is_ascii_alphanumeric).collect();
    let mut out = format!(r#"<?xml version="1.0"?><{op}Response xmlns="{NAMESPACE}">"#);
    if let Value::Object(map) = result {
        out.push_str(&format!("<{op}Result>"));
        for (k, v) in map {
            write(&mut out, k, v);
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
        r#"<?xml version="1.0"?><ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"#,
        if sender { "Sender" } else { "Receiver" },
        escape(code),
        escape(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_maps_are_wrapped() {
        let v = serde_json::json!({
            "Topics": [{"TopicArn": "a<b"}],
            "Attributes": {"K": "v"},
        });
        let xml = render("ListTopics", &v, "r");
        assert!(xml.contains("<Topics><member><TopicArn>a&lt;b</TopicArn></member></Topics>"));
        assert!(
            xml.contains("<Attributes><entry><key>K</key><value>v</value></entry></Attributes>")
        );
        assert!(render("DeleteTopic", &Value::Null, "r").contains("<DeleteTopicResponse"));
    }
}
