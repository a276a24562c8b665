//! The SQS API over HTTP, in both wire protocols the SDKs use:
//!
//! - **AWS JSON 1.0**: `POST /` with `X-Amz-Target: AmazonSQS.<Operation>` and a JSON body
//!   (current SDKs, boto3, the aws CLI). Errors carry `__type` and the `x-amzn-query-error` header
//!   through which the SDKs recover the classic error codes.
//! - **Query**: form-encoded `Action=<Operation>&…` (older SDKs and CLIs), answered in XML. The
//!   queue may also be named by the request path (`POST /<account>/<queue>`).

mod ops;
mod params;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use outpost_queues::QueueError;
use serde_json::Value;

use crate::query;
use crate::wire::{error_response, protocol_error, Protocol, ProtocolError};

pub use ops::queue_name;

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
    let pairs = query::form_pairs(method, uri, body);
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

/// Serves one SQS request, read and authenticated by the dispatcher: the operation is parsed,
/// authorized on each queue it acts on, and run.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn handle(
    state: &crate::HttpState,
    (identity, api): (&outpost_auth::Identity, crate::api::Api),
    ip: std::net::IpAddr,
    fallback_host: &str,
    (method, uri, headers): (&Method, &Uri, &HeaderMap),
    body: Bytes,
    permit: tokio::sync::OwnedSemaphorePermit,
    rid: &str,
) -> Response {
    use crate::access;
    let parsed = parse(method, uri, headers, &body);
    drop(body);
    drop(permit);
    let (protocol, op, params) = match parsed {
        Ok(x) => x,
        Err((p, e)) => return protocol_error(p, e, rid),
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
                access::authorize(state, identity, &action, &resource, policy.as_deref())
            {
                return access::respond(api, &r, rid);
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
                return access::respond(api, &r, rid);
            }
        }
    } else {
        None
    };
    let ctx = ops::Ctx {
        queues: state.queues.clone(),
        base_url: base_url(headers, fallback_host),
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
                rid,
            )
        }
    };
    let value = match result {
        Ok(v) => v,
        Err(e) => return queue_error(protocol, &op, &e, rid),
    };
    let (content_type, text) = match protocol {
        Protocol::Json => ("application/x-amz-json-1.0", value.to_string()),
        Protocol::Query => ("text/xml", query::render(&op, &value, rid)),
    };
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(rid) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}
