//! The Device Shadow service's REST operations of AWS IoT's data API (botocore's `iot-data`
//! model): `GetThingShadow`, `UpdateThingShadow`, `DeleteThingShadow` on
//! `/things/{thingName}/shadow?name={shadowName}`, and `ListNamedShadowsForThing` on
//! `/api/things/shadow/ListNamedShadowsForThing/{thingName}`. The documents and refusals are the
//! shadow service's (`outpost-shadows`); an update made here is also answered on MQTT
//! (`/update/accepted`, `/update/delta`, `/update/documents`), as AWS does.

use axum::http::{Method, StatusCode, Uri};
use bytes::Bytes;
use outpost_shadows::{ShadowError, Shadows};
use serde_json::{json, Value};

/// A refusal: status, error type, message.
pub(crate) type Refusal = (StatusCode, &'static str, String);

fn refusal(e: ShadowError) -> Refusal {
    (
        StatusCode::from_u16(e.code()).unwrap_or(StatusCode::BAD_REQUEST),
        e.api_type(),
        e.to_string(),
    )
}

fn invalid(message: impl Into<String>) -> Refusal {
    (
        StatusCode::BAD_REQUEST,
        "InvalidRequestException",
        message.into(),
    )
}

/// The path prefix of the list operation.
pub(crate) const LIST_PREFIX: &str = "/api/things/shadow/ListNamedShadowsForThing/";

/// True for the paths of these operations.
pub(crate) fn is_shadow_path(path: &str) -> bool {
    path.starts_with(LIST_PREFIX) || (path.starts_with("/things/") && path.ends_with("/shadow"))
}

/// The thing a path names (checked as AWS checks names), and the action the ACL is asked about.
pub(crate) fn target(method: &Method, path: &str) -> Option<(String, &'static str)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    if let Some(thing) = path.strip_prefix(LIST_PREFIX) {
        return Some((decode(thing)?, "iot:ListNamedShadowsForThing"));
    }
    let thing = path.strip_prefix("/things/")?.strip_suffix("/shadow")?;
    let action = match *method {
        Method::GET => "iot:GetThingShadow",
        Method::POST => "iot:UpdateThingShadow",
        Method::DELETE => "iot:DeleteThingShadow",
        _ => "iot:GetThingShadow",
    };
    Some((decode(thing)?, action))
}

/// Serves one shadow request.
pub(crate) async fn serve(
    shadows: &std::sync::Arc<Shadows>,
    method: &Method,
    uri: &Uri,
    q: &[(String, String)],
    body: Bytes,
) -> Result<Value, Refusal> {
    let path = uri.path();
    let param = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let (thing, _) =
        target(method, path).ok_or_else(|| invalid("The thing name is not valid UTF-8."))?;
    if !outpost_shadows::valid_thing(&thing) {
        return Err(invalid(
            "thingName must be 1 to 128 letters, digits, ':', '_' or '-'.",
        ));
    }
    if path.starts_with(LIST_PREFIX) {
        if *method != Method::GET {
            return Err(wrong_method(method));
        }
        let page = match param("pageSize") {
            None => 25,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| invalid("pageSize must be between 1 and 100."))?,
        };
        let (results, next) = shadows.list_named(&thing, param("nextToken"), page);
        let mut out = json!({ "results": results, "timestamp": outpost_shadows::now_s() });
        if let (Some(n), Some(o)) = (next, out.as_object_mut()) {
            o.insert("nextToken".into(), json!(n));
        }
        return Ok(out);
    }
    let shadow = param("name").filter(|n| !n.is_empty());
    if let Some(n) = shadow {
        if !outpost_shadows::valid_shadow(n) {
            return Err(invalid(
                "name must be 1 to 64 letters, digits, ':', '_' or '-'.",
            ));
        }
    }
    match *method {
        Method::GET => shadows.get(&thing, shadow).map_err(refusal),
        Method::POST => {
            let update = outpost_shadows::parse_update(&body).map_err(refusal)?;
            shadows
                .update(&thing, shadow, &update)
                .await
                .map_err(refusal)
        }
        Method::DELETE => shadows.delete(&thing, shadow).await.map_err(refusal),
        _ => Err(wrong_method(method)),
    }
}

fn wrong_method(method: &Method) -> Refusal {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowedException",
        format!("{method} is not allowed on this resource."),
    )
}
