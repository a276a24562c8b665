//! The SQS API over HTTP, in both wire protocols the SDKs use:
//!
//! - **AWS JSON 1.0**: `POST /` with `X-Amz-Target: AmazonSQS.<Operation>` and a JSON body
//!   (current SDKs, boto3, the aws CLI). Errors carry `__type` and the `x-amzn-query-error` header
//!   through which the SDKs recover the classic error codes.
//! - **Query**: form-encoded `Action=<Operation>&…` (older SDKs and CLIs), answered in XML. The
//!   queue may also be named by the request path (`POST /<account>/<queue>`).

mod ops;
mod params;
pub mod query;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use outpost_queues::QueueError;
use serde_json::Value;

pub use ops::queue_name;

/// Largest request body by default: a batch of ten messages at the 1 MiB limit, base64 and
/// framing included.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Json,
    Query,
}

/// A protocol-level failure (before any operation runs).
struct ProtocolError {
    status: u16,
    json_type: &'static str,
    query_code: &'static str,
    message: String,
}

fn request_id() -> String {
    outpost_queues::message::uuid_text()
}

fn error_response(
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
                query::render_error(query_code, message, sender, rid),
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

fn queue_error(protocol: Protocol, op: &str, e: &QueueError, rid: &str) -> Response {
    if let QueueError::Internal(detail) = e {
        tracing::error!(operation = op, error = %detail, "SQS request failed");
    } else {
        tracing::debug!(operation = op, code = e.code(), "SQS request refused");
    }
    error_response(
        protocol,
        e.status(),
        e.code(),
        e.query_code(),
        e.sender_fault(),
        &e.to_string(),
        rid,
    )
}

fn protocol_error(protocol: Protocol, e: ProtocolError, rid: &str) -> Response {
    tracing::info!(code = e.query_code, message = %e.message, "malformed SQS request");
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

fn base_url(headers: &HeaderMap, fallback: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or(fallback);
    format!("http://{host}")
}

/// Parses a request into (protocol, operation, parameters).
fn parse(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Protocol, String, Value), (Protocol, ProtocolError)> {
    if let Some(target) = headers.get("x-amz-target") {
        let p = Protocol::Json;
        let target = target.to_str().unwrap_or("");
        let op = target.strip_prefix("AmazonSQS.").ok_or_else(|| {
            (
                p,
                ProtocolError {
                    status: 400,
                    json_type: "UnknownOperationException",
                    query_code: "InvalidAction",
                    message: format!("Unknown target {target}."),
                },
            )
        })?;
        let params = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice::<Value>(body).map_err(|_| {
                (
                    p,
                    ProtocolError {
                        status: 400,
                        json_type: "SerializationException",
                        query_code: "SerializationException",
                        message: "The request body is not valid JSON.".into(),
                    },
                )
            })?
        };
        if !params.is_object() {
            return Err((
                p,
                ProtocolError {
                    status: 400,
                    json_type: "SerializationException",
                    query_code: "SerializationException",
                    message: "The request body must be a JSON object.".into(),
                },
            ));
        }
        return Ok((p, op.to_string(), params));
    }
    let p = Protocol::Query;
    // At most one parameter more than allowed is decoded: a form of millions of empty parameters
    // costs no more memory than its bytes.
    let query = uri.query().unwrap_or("").as_bytes();
    let form: &[u8] = if *method == Method::POST { body } else { b"" };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query)
        .chain(form_urlencoded::parse(form))
        .take(query::MAX_PARAMS + 1)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let action = pairs
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| {
            (
                p,
                ProtocolError {
                    status: 400,
                    json_type: "MissingAction",
                    query_code: "MissingAction",
                    message: "The request must contain the parameter Action.".into(),
                },
            )
        })?;
    let mut params = query::params_to_json(pairs).map_err(|e| {
        (
            p,
            ProtocolError {
                status: 400,
                json_type: "InvalidParameterValue",
                query_code: "InvalidParameterValue",
                message: e.to_string(),
            },
        )
    })?;
    let path = uri.path().trim_matches('/');
    if !path.is_empty() && params.get("QueueUrl").is_none() {
        if let Value::Object(o) = &mut params {
            o.insert("QueueUrl".into(), Value::String(format!("/{path}")));
        }
    }
    Ok((p, action, params))
}

/// Serves one SQS request (or hands an SNS one to `sns::handle` once its body is read).
pub async fn handle(
    state: &crate::HttpState,
    fallback_host: &str,
    peer: Option<crate::access::PeerAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rid = request_id();
    let protocol_hint = if headers.contains_key("x-amz-target") {
        Protocol::Json
    } else {
        Protocol::Query
    };
    // The body is read first, holding only its bytes' share of the body budget (per address
    // and in all, taken without waiting); the parsing permit is taken once it is here, so a
    // slow sender never holds what other callers need (ADR 0015).
    let ip = peer.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |p| p.0.ip());
    // A body without a length is chunked (up to the largest body) or absent.
    let chunked = headers.contains_key(axum::http::header::TRANSFER_ENCODING);
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(if chunked {
            state.limits.max_body as u64
        } else {
            0
        })
        .min(state.limits.max_body as u64);
    let unavailable = |message: &str| {
        protocol_error(
            protocol_hint,
            ProtocolError {
                status: 503,
                json_type: "ServiceUnavailable",
                query_code: "ServiceUnavailable",
                message: message.into(),
            },
            &rid,
        )
    };
    let Some(body_bytes) = state.bodies.take(ip, declared) else {
        tracing::info!(peer = %ip, bytes = declared, "HTTP request refused: too many request bodies in flight from this address or in all");
        return unavailable("Too many request bodies are in flight; retry later.");
    };
    let read = tokio::time::timeout(
        state.limits.body_timeout,
        axum::body::to_bytes(body, state.limits.max_body),
    )
    .await;
    let body = match read {
        Ok(Ok(b)) => b,
        Err(_) => {
            return protocol_error(
                protocol_hint,
                ProtocolError {
                    status: 408,
                    json_type: "RequestTimeout",
                    query_code: "RequestTimeout",
                    message: "The request body did not arrive in time.".into(),
                },
                &rid,
            )
        }
        Ok(Err(_)) => {
            return protocol_error(
                protocol_hint,
                ProtocolError {
                    status: 413,
                    json_type: "RequestEntityTooLarge",
                    query_code: "RequestEntityTooLarge",
                    message: format!("Request body larger than {} bytes.", state.limits.max_body),
                },
                &rid,
            )
        }
    };
    // Parsing takes a permit: a burst of large requests waits instead of holding many parse
    // trees in memory at once.
    let Ok(permit) = state.parsing.clone().acquire_owned().await else {
        return unavailable("The service is shutting down.");
    };
    // Read and parsing: the body's bytes go back to the budget (a long poll holds none).
    drop(body_bytes);
    use crate::access::{self, Api};
    let api = access::api_of(&method, &uri, &headers, &body);
    if !state.rates.admit(ip) {
        return access::respond(api, &access::Refusal::throttled(), &rid);
    }
    // A SubscribeURL/UnsubscribeURL from a message carries its own secret: not authenticated,
    // not checked against the ACL.
    let link = api == Api::Sns && crate::sns::is_link_from_a_message(&method, &uri, &headers);
    let identity = if link {
        outpost_auth::Identity::anonymous(state.security.account())
    } else {
        match access::authenticate(state, api, ip, &method, &uri, &headers, &body) {
            Ok(i) => i,
            Err(r) => return access::respond(api, &r, &rid),
        }
    };
    match api {
        Api::IotData => {
            drop(permit);
            let (action, resource) = access::iot_access(state, &method, &uri);
            if let Err(r) = access::authorize(state, &identity, &action, &resource, None) {
                return access::respond(api, &r, &rid);
            }
            return crate::iotdata::handle(
                &state.mqtt,
                &identity,
                &method,
                &uri,
                &headers,
                body,
                &rid,
            )
            .await;
        }
        Api::Events => {
            drop(permit);
            let op = crate::events::operation(&headers).unwrap_or_default();
            return crate::events::handle(state, &identity, op, body, &rid).await;
        }
        Api::Sns => {
            drop(permit);
            let checked = (!link).then_some(&identity);
            return crate::sns::handle(state, checked, &method, &uri, body, &rid).await;
        }
        Api::SqsJson | Api::SqsQuery => {}
    }
    let parsed = parse(&method, &uri, &headers, &body);
    drop(body);
    drop(permit);
    let (protocol, op, params) = match parsed {
        Ok(x) => x,
        Err((p, e)) => return protocol_error(p, e, &rid),
    };
    if state.security.has_acl() {
        // Each (action, queue) the operation acts on, each with the queue's own policy
        // (AddPermission) asked beside the ACL.
        for (action, resource) in access::sqs_checks(state, &op, &params) {
            let policy = resource
                .rsplit(':')
                .next()
                .and_then(|name| state.queues.policy(name));
            if let Err(r) =
                access::authorize(state, &identity, &action, &resource, policy.as_deref())
            {
                return access::respond(api, &r, &rid);
            }
        }
    }
    // Every ReceiveMessage holds a slot while it runs (a long poll for up to 20 s).
    let _slot = if op == "ReceiveMessage" {
        match state.rates.long_poll(ip) {
            Some(slot) => Some(slot),
            None => {
                let r = access::Refusal {
                    message: "Too many ReceiveMessage calls are waiting; retry later.".into(),
                    ..access::Refusal::throttled()
                };
                return access::respond(api, &r, &rid);
            }
        }
    } else {
        None
    };
    let ctx = ops::Ctx {
        queues: state.queues.clone(),
        base_url: base_url(&headers, fallback_host),
    };
    let result = match ops::call(&ctx, &op, &params).await {
        Some(r) => r,
        None => {
            return protocol_error(
                protocol,
                ProtocolError {
                    status: 400,
                    json_type: "UnknownOperationException",
                    query_code: "InvalidAction",
                    message: format!(
                        "The action {} is not valid for this endpoint.",
                        op.chars().take(64).collect::<String>()
                    ),
                },
                &rid,
            )
        }
    };
    let value = match result {
        Ok(v) => v,
        Err(e) => return queue_error(protocol, &op, &e, &rid),
    };
    let (content_type, text) = match protocol {
        Protocol::Json => ("application/x-amz-json-1.0", value.to_string()),
        Protocol::Query => ("text/xml", query::render(&op, &value, &rid)),
    };
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}
