//! Who is calling, and may they: every API on the port authenticates the same way (AWS Signature
//! Version 4, verified by `outpost-auth` against the configured access keys) and asks the same
//! ACL with IAM's action names (`sqs:SendMessage`, `sns:Publish`, `events:PutEvents`,
//! `iot:Publish`) and the resource's ARN; only the error's shape differs per protocol.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use outpost_auth::{HttpAuthError, Identity, SigError, SignedRequest};
use serde_json::Value;

/// The address a request came from (put in the request's extensions by `serve`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Which API (and wire protocol) a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// SQS, AWS JSON 1.0.
    SqsJson,
    /// SQS, query/XML.
    SqsQuery,
    /// SNS, query/XML.
    Sns,
    /// EventBridge, AWS JSON 1.1.
    Events,
    /// AWS IoT data plane, REST JSON.
    IotData,
}

/// A refusal before the operation runs, with its code in each protocol family.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub status: u16,
    /// The code of the query/XML protocols (and SQS JSON's `x-amzn-query-error`).
    pub query_code: &'static str,
    /// The `__type` / `x-amzn-ErrorType` of the JSON protocols.
    pub json_code: &'static str,
    pub message: String,
}

impl Refusal {
    fn signature(e: &SigError) -> Refusal {
        let json_code = match e {
            SigError::Missing => "MissingAuthenticationTokenException",
            SigError::Incomplete(_) => "IncompleteSignatureException",
            SigError::UnknownKey => "UnrecognizedClientException",
            SigError::Mismatch | SigError::Expired(_) => "InvalidSignatureException",
        };
        Refusal {
            status: e.status(),
            query_code: e.code(),
            json_code,
            message: e.to_string(),
        }
    }

    pub(crate) fn throttled() -> Refusal {
        Refusal {
            status: 400,
            query_code: "RequestThrottled",
            json_code: "ThrottlingException",
            message: "Rate exceeded".into(),
        }
    }

    fn denied(who: &Identity, action: &str, resource: &str) -> Refusal {
        let principal = if who.is_anonymous() {
            "anonymous".to_string()
        } else {
            who.principal_arn()
        };
        Refusal {
            status: 403,
            query_code: "AccessDenied",
            json_code: "AccessDeniedException",
            message: format!(
                "User: {principal} is not authorized to perform: {action} on resource: {}",
                resource.chars().take(256).collect::<String>()
            ),
        }
    }
}

/// The API a request whose body was read is for.
pub(crate) fn api_of(method: &Method, uri: &Uri, headers: &HeaderMap, body: &bytes::Bytes) -> Api {
    if crate::iotdata::is_iot_data(uri, headers) {
        Api::IotData
    } else if crate::events::operation(headers).is_some() {
        Api::Events
    } else if headers.contains_key("x-amz-target") {
        Api::SqsJson
    } else if crate::sns::is_sns(method, uri, headers, body) {
        Api::Sns
    } else {
        Api::SqsQuery
    }
}

/// The caller of a request: verified against the access keys when they are configured.
pub(crate) fn authenticate(
    state: &crate::HttpState,
    ip: std::net::IpAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Identity, Refusal> {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = SignedRequest {
        method: method.as_str(),
        path_and_query,
        headers: &pairs,
        body,
    };
    state
        .security
        .authenticate_http(ip, &req)
        .map_err(|e| match e {
            HttpAuthError::Signature(e) => {
                // The access key id is public; the signature and secret never reach the log.
                let key = outpost_auth::sigv4::claimed_key(&req).unwrap_or_default();
                tracing::warn!(peer = %ip, access_key_id = %key.chars().take(128).collect::<String>(), code = e.code(), "HTTP request refused: signature");
                Refusal::signature(&e)
            }
            HttpAuthError::Throttled => {
                tracing::warn!(peer = %ip, "HTTP request refused: too many failed signatures from this address");
                Refusal::throttled()
            }
        })
}

/// Asks the ACL (and the resource's own policy, if any) whether `who` may do `action` on
/// `resource`.
pub(crate) fn authorize(
    state: &crate::HttpState,
    who: &Identity,
    action: &str,
    resource: &str,
    policy: Option<&str>,
) -> Result<(), Refusal> {
    if state.security.http_allows(who, action, resource, policy) {
        Ok(())
    } else {
        tracing::info!(identity = &*who.name, action, resource = %resource.chars().take(256).collect::<String>(), "HTTP request denied by the ACL");
        Err(Refusal::denied(who, action, resource))
    }
}

/// The refusal in the protocol's error shape.
pub(crate) fn respond(api: Api, r: &Refusal, rid: &str) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
    let throttled = r.query_code == "RequestThrottled";
    // SNS and the IoT data plane answer throttling with 429, the others with 400.
    let status = if throttled && matches!(api, Api::Sns | Api::IotData) {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        status
    };
    let mut resp = match api {
        Api::SqsQuery | Api::Sns => {
            let body = if api == Api::Sns {
                // SNS names a denial `AuthorizationError`.
                let code = match r.query_code {
                    "AccessDenied" => "AuthorizationError",
                    "RequestThrottled" => "Throttled",
                    c => c,
                };
                crate::sns::xml::render_error(code, &r.message, true, rid)
            } else {
                crate::sqs::query::render_error(r.query_code, &r.message, true, rid)
            };
            let mut resp = (status, body).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
            resp
        }
        Api::SqsJson => {
            // SQS's JSON protocol has its own throttling shape.
            let json_code = if throttled {
                "RequestThrottled"
            } else {
                r.json_code
            };
            let body = serde_json::json!({
                "__type": format!("com.amazonaws.sqs#{json_code}"),
                "message": r.message,
            });
            let mut resp = (status, body.to_string()).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.0"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("{};Sender", r.query_code)) {
                h.insert("x-amzn-query-error", v);
            }
            resp
        }
        Api::Events => {
            let body = serde_json::json!({"__type": r.json_code, "message": r.message});
            let mut resp = (status, body.to_string()).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            resp
        }
        Api::IotData => {
            let kind = if r.json_code == "AccessDeniedException" {
                "ForbiddenException"
            } else {
                r.json_code
            };
            let body = serde_json::json!({"message": r.message});
            let mut resp = (status, body.to_string()).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert("x-amzn-ErrorType", HeaderValue::from_static(kind));
            resp
        }
    };
    if let Ok(v) = HeaderValue::from_str(rid) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

/// `arn:aws:<service>:<region>:<account>:` of this broker.
fn arn_prefix(state: &crate::HttpState, service: &str) -> String {
    // The queue engine knows the region and account: `arn:aws:sqs:<region>:<account>:`.
    let q = state.queues.arn("");
    let rest = q.strip_prefix("arn:aws:sqs:").unwrap_or(":");
    format!("arn:aws:{service}:{rest}")
}

/// The queue an SQS request names (by `QueueUrl`, or `QueueName` for the calls that create or
/// look one up), as an ARN; `arn:…:*` for account-wide calls.
pub(crate) fn sqs_resource(state: &crate::HttpState, op: &str, p: &Value) -> String {
    let name = match op {
        "CreateQueue" | "GetQueueUrl" => p
            .get("QueueName")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => p
            .get("QueueUrl")
            .and_then(Value::as_str)
            .and_then(|u| crate::sqs::queue_name(u).ok()),
    };
    match name {
        Some(n) => state.queues.arn(&n),
        None => format!("{}*", arn_prefix(state, "sqs")),
    }
}

/// The topic an SNS request names, as an ARN (a subscription's topic for subscription calls).
pub(crate) fn sns_resource(state: &crate::HttpState, action: &str, p: &Value) -> String {
    let s = |k: &str| p.get(k).and_then(Value::as_str);
    if action == "CreateTopic" {
        if let Some(name) = s("Name") {
            return state.topics.topic_arn(name);
        }
    }
    if let Some(arn) = s("TopicArn").or(s("ResourceArn")) {
        return arn.to_string();
    }
    if let Some(sub) = s("SubscriptionArn") {
        // `<topic arn>:<subscription id>`.
        if let Some((topic, _)) = sub.rsplit_once(':') {
            return topic.to_string();
        }
    }
    format!("{}*", arn_prefix(state, "sns"))
}

/// The EventBridge resources a request touches: the rule (for rule and target calls), the
/// event buses an event is put on, else the bus or the account.
pub(crate) fn events_resources(state: &crate::HttpState, op: &str, p: &Value) -> Vec<String> {
    let prefix = arn_prefix(state, "events");
    let s = |k: &str| p.get(k).and_then(Value::as_str);
    let bus_name = |b: Option<&str>| -> String {
        let b = b.unwrap_or("default");
        if b.starts_with("arn:") {
            b.to_string()
        } else {
            format!("{prefix}event-bus/{b}")
        }
    };
    if op == "PutEvents" {
        let mut buses: Vec<String> = p
            .get("Entries")
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| bus_name(e.get("EventBusName").and_then(Value::as_str)))
                    .collect()
            })
            .unwrap_or_default();
        buses.sort();
        buses.dedup();
        if buses.is_empty() {
            buses.push(bus_name(None));
        }
        return buses;
    }
    let rule = s("Rule").or_else(|| op.contains("Rule").then(|| s("Name")).flatten());
    if let Some(rule) = rule {
        let bus = s("EventBusName").unwrap_or("default");
        return vec![if bus == "default" {
            format!("{prefix}rule/{rule}")
        } else {
            format!("{prefix}rule/{bus}/{rule}")
        }];
    }
    if let Some(name) = s("ArchiveName") {
        return vec![format!("{prefix}archive/{name}")];
    }
    if let Some(name) = s("ReplayName") {
        return vec![format!("{prefix}replay/{name}")];
    }
    if op.contains("EventBus") {
        if let Some(name) = s("Name") {
            return vec![bus_name(Some(name))];
        }
    }
    if let Some(bus) = s("EventBusName") {
        return vec![bus_name(Some(bus))];
    }
    vec![format!("{prefix}*")]
}

/// The IoT action and resource of an iot-data request (`iot:Publish` on
/// `arn:aws:iot:…:topic/<topic>`, `iot:GetConnection` on `…:client/<id>`, …).
pub(crate) fn iot_access(state: &crate::HttpState, method: &Method, uri: &Uri) -> (String, String) {
    let prefix = arn_prefix(state, "iot");
    let path = uri.path();
    let decoded = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    if let Some(topic) = path.strip_prefix("/topics/") {
        return (
            "iot:Publish".into(),
            format!("{prefix}topic/{}", decoded(topic)),
        );
    }
    if path == "/retainedMessage" {
        return ("iot:ListRetainedMessages".into(), format!("{prefix}*"));
    }
    if let Some(topic) = path.strip_prefix("/retainedMessage/") {
        return (
            "iot:GetRetainedMessage".into(),
            format!("{prefix}topic/{}", decoded(topic)),
        );
    }
    let rest = path.strip_prefix("/connections/").unwrap_or("");
    let (client, action) = if let Some(c) = rest.strip_suffix("/messages") {
        (c, "iot:SendDirectMessage")
    } else if let Some(c) = rest.strip_suffix("/subscriptions") {
        (c, "iot:ListSubscriptions")
    } else if *method == Method::DELETE {
        (rest, "iot:DeleteConnection")
    } else {
        (rest, "iot:GetConnection")
    };
    (action.into(), format!("{prefix}client/{}", decoded(client)))
}
