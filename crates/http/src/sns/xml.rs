//! SNS's XML: results wrap lists in `<member>` and maps in `<entry><key/><value/></entry>`
//! (unlike SQS's flattened forms), in the `2010-03-31` namespace.

use serde_json::Value;

use crate::query::escape;

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
    crate::query::envelope(&op, NAMESPACE, result, request_id, write)
}

/// The XML error response.
pub fn render_error(code: &str, message: &str, sender: bool, request_id: &str) -> String {
    crate::query::error_envelope(NAMESPACE, (code, message, sender), request_id, "")
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
