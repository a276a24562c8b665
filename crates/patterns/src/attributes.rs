//! SNS message attributes as the JSON object a filter policy is matched against.

use serde_json::{Map, Value};

/// The JSON object an attribute-scoped filter policy sees: `String` attributes as strings,
/// `Number` as numbers, `String.Array` as the array their value holds. `Binary` attributes (and a
/// `Number` or `String.Array` whose value does not parse) are not matchable and are left out, as
/// SNS leaves them out. Custom types (`String.Custom`, `Number.Integer`) follow their base type.
pub fn attributes_to_json<'a>(
    attrs: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) -> Value {
    let mut out = Map::new();
    for (name, data_type, value) in attrs {
        let base = data_type.split('.').next().unwrap_or(data_type);
        let v = match (base, data_type) {
            (_, "String.Array") => match serde_json::from_str::<Value>(value) {
                Ok(a @ Value::Array(_)) => a,
                _ => continue,
            },
            ("String", _) => Value::String(value.to_string()),
            ("Number", _) => match value.trim().parse::<f64>() {
                Ok(n) => match serde_json::Number::from_f64(n) {
                    Some(n) => Value::Number(n),
                    None => continue,
                },
                Err(_) => continue,
            },
            _ => continue,
        };
        out.insert(name.to_string(), v);
    }
    Value::Object(out)
}
