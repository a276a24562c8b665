//! Who is calling, and may they: every API on the port authenticates the same way (AWS Signature
//! Version 4, verified by `outpost-auth` against the configured access keys) and asks the same
//! ACL with IAM's action names (`sqs:SendMessage`, `sns:Publish`, `events:PutEvents`,
//! `iot:Publish`) and the resource's ARN; only the error's shape differs per protocol.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use outpost_auth::{HttpAuthError, Identity, SigError, SignedRequest};

use crate::api::Api;
use serde_json::Value;

/// The address a request came from (put in the request's extensions by `serve`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

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
            SigError::Mismatch | SigError::Expired(_) | SigError::Scope(_) => {
                "InvalidSignatureException"
            }
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

    /// A request for an API this build was made without (a cargo feature left out).
    pub(crate) fn left_out(api: Api) -> Refusal {
        Refusal {
            status: 400,
            query_code: "InvalidAction",
            json_code: "UnknownOperationException",
            message: format!(
                "This broker was built without the {} API (cargo feature `{}`).",
                api.name(),
                api.feature()
            ),
        }
    }

    fn denied(who: &Identity, action: &str, resource: &str) -> Refusal {
        Refusal {
            status: 403,
            query_code: "AccessDenied",
            json_code: "AccessDeniedException",
            message: who.denial(action, resource),
        }
    }
}

/// The caller of a request: verified against the access keys when they are configured.
pub(crate) fn authenticate(
    state: &crate::HttpState,
    api: Api,
    ip: std::net::IpAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Identity, Refusal> {
    // The web console calls the AWS APIs with its session (no signature): the session's
    // identity, authorized as any caller's.
    if !headers.contains_key(axum::http::header::AUTHORIZATION) {
        if let Some(who) = crate::admin::console_identity(state, headers) {
            return Ok(who);
        }
    }
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
        .authenticate_http(ip, &req, api.signing_name())
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
                #[cfg(feature = "sns")]
                let text = crate::sns::xml::render_error(code, &r.message, true, rid);
                #[cfg(not(feature = "sns"))]
                let text = crate::query::render_error(code, &r.message, true, rid);
                text
            } else {
                crate::query::render_error(r.query_code, &r.message, true, rid)
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
    format!(
        "arn:aws:{service}:{}:{}:",
        state.region,
        state.security.account()
    )
}

/// The queue an SQS request names (by `QueueUrl`, or `QueueName` for the calls that create or
/// look one up), as an ARN; `arn:…:*` for account-wide calls.
#[cfg(feature = "sqs")]
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

/// What an SQS request must be allowed: the operation on its queue, and for
/// `StartMessageMoveTask` reading and deleting in the source (a dead-letter queue) and sending
/// to the destination, or to every queue the messages go back to when none is named.
#[cfg(feature = "sqs")]
pub(crate) fn sqs_checks(state: &crate::HttpState, op: &str, p: &Value) -> Vec<(String, String)> {
    let action = |a: &str| format!("sqs:{}", a.chars().take(64).collect::<String>());
    let s = |k: &str| p.get(k).and_then(Value::as_str);
    match op {
        "StartMessageMoveTask" => {
            let Some(source) = s("SourceArn") else {
                return vec![(action(op), format!("{}*", arn_prefix(state, "sqs")))];
            };
            let mut checks = vec![
                (action(op), source.to_string()),
                (action("ReceiveMessage"), source.to_string()),
                (action("DeleteMessage"), source.to_string()),
            ];
            match s("DestinationArn") {
                Some(dest) => checks.push((action("SendMessage"), dest.to_string())),
                None => {
                    let name = state.queues.name_from_arn(source).unwrap_or_default();
                    for queue in state.queues.dead_letter_sources(&name).unwrap_or_default() {
                        checks.push((action("SendMessage"), state.queues.arn(&queue)));
                    }
                }
            }
            checks
        }
        "ListMessageMoveTasks" => vec![(
            action(op),
            s("SourceArn").map_or_else(|| format!("{}*", arn_prefix(state, "sqs")), str::to_string),
        )],
        "CreateQueue" | "SetQueueAttributes" => {
            let mut checks = vec![(action(op), sqs_resource(state, op, p))];
            // A redrive policy makes the queue write into its dead-letter queue: the caller
            // must be allowed to send there (ADR 0015).
            let dlq = p
                .get("Attributes")
                .and_then(|a| a.get("RedrivePolicy"))
                .and_then(Value::as_str)
                .and_then(|r| serde_json::from_str::<Value>(r).ok())
                .and_then(|r| {
                    r.get("deadLetterTargetArn")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
            if let Some(dlq) = dlq {
                checks.push((action("SendMessage"), dlq));
            }
            checks
        }
        _ => vec![(action(op), sqs_resource(state, op, p))],
    }
}

/// The topic an SNS request acts on, as an ARN, read from the parameter the action itself uses
/// (AWS's model): a parameter the action ignores never changes what is checked (ADR 0015).
/// Subscription calls act on the subscription's topic; account-wide calls on `arn:…:*`.
#[cfg(feature = "sns")]
pub(crate) fn sns_resource(state: &crate::HttpState, action: &str, p: &Value) -> String {
    let s = |k: &str| p.get(k).and_then(Value::as_str);
    let account_wide = || format!("{}*", arn_prefix(state, "sns"));
    let of_subscription = |sub: Option<&str>| {
        // `<topic arn>:<subscription id>`.
        sub.and_then(|sub| sub.rsplit_once(':'))
            .map_or_else(account_wide, |(topic, _)| topic.to_string())
    };
    let named = |v: Option<&str>| v.map_or_else(account_wide, str::to_string);
    match action {
        "CreateTopic" => s("Name").map_or_else(account_wide, |n| state.topics.topic_arn(n)),
        "Unsubscribe" | "GetSubscriptionAttributes" | "SetSubscriptionAttributes" => {
            of_subscription(s("SubscriptionArn"))
        }
        // Publish takes one of the two (both is refused by the operation).
        "Publish" => match (s("TopicArn"), s("TargetArn")) {
            (Some(t), None) | (None, Some(t)) => t.to_string(),
            _ => account_wide(),
        },
        "DeleteTopic"
        | "GetTopicAttributes"
        | "SetTopicAttributes"
        | "Subscribe"
        | "ConfirmSubscription"
        | "ListSubscriptionsByTopic"
        | "PublishBatch"
        | "AddPermission"
        | "RemovePermission" => named(s("TopicArn")),
        "TagResource"
        | "UntagResource"
        | "ListTagsForResource"
        | "GetDataProtectionPolicy"
        | "PutDataProtectionPolicy" => named(s("ResourceArn")),
        _ => account_wide(),
    }
}

/// An EventBridge bus given by name or ARN, as this broker's bus ARN (the engine reads an ARN's
/// bus name the same way, so the check and the action name one bus).
#[cfg(feature = "events")]
fn bus_arn(prefix: &str, name_or_arn: Option<&str>) -> String {
    let b = name_or_arn.unwrap_or("default");
    let name = match b.strip_prefix("arn:") {
        Some(_) => b.split_once(":event-bus/").map_or(b, |(_, n)| n),
        None => b,
    };
    format!("{prefix}event-bus/{name}")
}

/// The EventBridge resources a request acts on, read from the parameters the operation itself
/// uses (ADR 0015): the rule (`Name` for rule calls, `Rule` for target calls) on its bus, the
/// buses events are put on, an archive and the bus it records, a replay with its archive and
/// destination bus; else the bus or the account.
#[cfg(feature = "events")]
pub(crate) fn events_resources(state: &crate::HttpState, op: &str, p: &Value) -> Vec<String> {
    let prefix = arn_prefix(state, "events");
    let s = |k: &str| p.get(k).and_then(Value::as_str);
    let bus = |b: Option<&str>| bus_arn(&prefix, b);
    let rule = |name: Option<&str>| -> Vec<String> {
        let Some(name) = name else {
            return vec![format!("{prefix}*")];
        };
        let b = bus(s("EventBusName"));
        let bus_name = b.rsplit_once("event-bus/").map_or("default", |(_, n)| n);
        vec![if bus_name == "default" {
            format!("{prefix}rule/{name}")
        } else {
            format!("{prefix}rule/{bus_name}/{name}")
        }]
    };
    match op {
        "PutEvents" => {
            let mut buses: Vec<String> = p
                .get("Entries")
                .and_then(Value::as_array)
                .map(|entries| {
                    entries
                        .iter()
                        .map(|e| bus(e.get("EventBusName").and_then(Value::as_str)))
                        .collect()
                })
                .unwrap_or_default();
            buses.sort();
            buses.dedup();
            if buses.is_empty() {
                buses.push(bus(None));
            }
            buses
        }
        "PutRule" | "DescribeRule" | "DeleteRule" | "EnableRule" | "DisableRule" => rule(s("Name")),
        "PutTargets" | "RemoveTargets" | "ListTargetsByRule" => rule(s("Rule")),
        "CreateEventBus" | "DeleteEventBus" | "DescribeEventBus" => vec![bus(s("Name"))],
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            vec![s("ResourceARN").map_or_else(|| format!("{prefix}*"), str::to_string)]
        }
        "CreateArchive" => {
            let mut r = vec![format!(
                "{prefix}archive/{}",
                s("ArchiveName").unwrap_or("")
            )];
            r.extend(s("EventSourceArn").map(|b| bus(Some(b))));
            r
        }
        "DescribeArchive" | "UpdateArchive" | "DeleteArchive" => {
            vec![format!(
                "{prefix}archive/{}",
                s("ArchiveName").unwrap_or("")
            )]
        }
        "StartReplay" => {
            let mut r = vec![format!("{prefix}replay/{}", s("ReplayName").unwrap_or(""))];
            r.extend(s("EventSourceArn").map(str::to_string));
            r.extend(
                p.get("Destination")
                    .and_then(|d| d.get("Arn"))
                    .and_then(Value::as_str)
                    .map(|b| bus(Some(b))),
            );
            r
        }
        "DescribeReplay" | "CancelReplay" => {
            vec![format!("{prefix}replay/{}", s("ReplayName").unwrap_or(""))]
        }
        "ListRules" | "ListRuleNamesByTarget" => vec![bus(s("EventBusName"))],
        _ => vec![format!("{prefix}*")],
    }
}

/// The IoT action and resource of an iot-data request (`iot:Publish` on
/// `arn:aws:iot:…:topic/<topic>`, `iot:GetConnection` on `…:client/<id>`, …).
#[cfg(feature = "iot-data")]
pub(crate) fn iot_access(state: &crate::HttpState, method: &Method, uri: &Uri) -> (String, String) {
    let prefix = arn_prefix(state, "iot");
    let path = uri.path();
    let decoded = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    if let Some((thing, action)) = crate::shadow_api::target(method, path) {
        return (action.into(), format!("{prefix}thing/{thing}"));
    }
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
