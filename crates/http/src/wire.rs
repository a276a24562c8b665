//! What every API on the port shares on the wire before its own module runs: request ids, the
//! largest body, and the errors of a request that is refused before its API is known (a body too
//! large or too slow, the port busy), in the two shapes AWS's SDKs read (JSON's `__type` with the
//! `x-amzn-query-error` header, the query protocol's XML).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Largest request body by default: a batch of ten messages at the 1 MiB limit, base64 and
/// framing included.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Json,
    Query,
}

/// A protocol-level failure (before any operation runs).
pub(crate) struct ProtocolError {
    pub status: u16,
    pub json_type: &'static str,
    pub query_code: &'static str,
    pub message: String,
}

/// A request id (`x-amzn-RequestId`): a random version-4 UUID, as AWS's.
pub(crate) fn request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .to_string()
}

pub(crate) fn error_response(
    protocol: Protocol,
    status: u16,
    json_type: &str,
    query_code: &str,
    sender: bool,
    message: &str,
    rid: &str,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let fault = if sender { "Sender" } else { "Receiver" };
    let mut resp = match protocol {
        Protocol::Json => {
            let body = serde_json::json!({
                "__type": format!("com.amazonaws.sqs#{json_type}"),
                "message": message,
            });
            let mut r = (status, body.to_string()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.0"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("{query_code};{fault}")) {
                r.headers_mut().insert("x-amzn-query-error", v);
            }
            r
        }
        Protocol::Query => {
            let mut r = (
                status,
                crate::query::render_error(query_code, message, sender, rid),
            )
                .into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
            r
        }
    };
    if let Ok(v) = HeaderValue::from_str(rid) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

pub(crate) fn protocol_error(protocol: Protocol, e: ProtocolError, rid: &str) -> Response {
    tracing::info!(code = e.query_code, message = %e.message, "malformed request");
    error_response(
        protocol,
        e.status,
        e.json_type,
        e.query_code,
        true,
        &e.message,
        rid,
    )
}
