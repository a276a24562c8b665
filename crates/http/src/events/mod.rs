//! The EventBridge API over HTTP: the JSON 1.1 protocol (`X-Amz-Target: AWSEvents.<Operation>`,
//! a JSON body, errors as `{"__type": …, "message": …}`), on the same port as SQS and SNS
//! (`crate::api` tells them apart).

mod ops;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use outpost_rules::EventsError;
use serde_json::Value;

fn json_response(status: StatusCode, body: String, rid: &str) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(rid) {
        r.headers_mut().insert("x-amzn-RequestId", v);
    }
    r
}

fn error(e: &EventsError, op: &str, rid: &str) -> Response {
    if let EventsError::Internal(detail) = e {
        tracing::error!(operation = op, error = %detail, "EventBridge request failed");
    } else {
        tracing::debug!(
            operation = op,
            code = e.code(),
            "EventBridge request refused"
        );
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = serde_json::json!({"__type": e.code(), "message": e.to_string()});
    json_response(status, body.to_string(), rid)
}

/// Serves one EventBridge request whose body was read.
pub async fn handle(
    state: &crate::HttpState,
    identity: &outpost_auth::Identity,
    op: &str,
    body: Bytes,
    rid: &str,
) -> Response {
    let op: String = op.chars().take(64).collect();
    let params: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) | Err(_) => {
                tracing::info!(operation = %op, "malformed EventBridge request body");
                let body = serde_json::json!({
                    "__type": "SerializationException",
                    "message": "The request body is not a valid JSON object."
                });
                return json_response(StatusCode::BAD_REQUEST, body.to_string(), rid);
            }
        }
    };
    if state.security.has_acl() {
        let action = format!("events:{op}");
        for resource in crate::access::events_resources(state, &op, &params) {
            if let Err(r) = crate::access::authorize(state, identity, &action, &resource, None) {
                return crate::access::respond(crate::api::Api::Events, &r, rid);
            }
        }
    }
    match ops::call(&state.events, identity, &op, &params).await {
        Some(Ok(v)) => json_response(StatusCode::OK, v.to_string(), rid),
        Some(Err(e)) => error(&e, &op, rid),
        None => {
            let body = serde_json::json!({
                "__type": "UnknownOperationException",
                "message": format!("The operation {op} is not supported by this endpoint."),
            });
            json_response(StatusCode::BAD_REQUEST, body.to_string(), rid)
        }
    }
}
