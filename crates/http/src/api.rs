//! Which API a request on the one HTTP port is for (ADR 0017), decided the same way whichever
//! APIs this build serves, so a request for one that is left out gets a clear refusal in its own
//! protocol instead of another API's confusion.
//!
//! - `X-Amz-Target: AWSEvents.…` is EventBridge, any other target SQS's JSON protocol.
//! - `/topics/…`, `/retainedMessage…` and `/connections/…` without a target are the IoT data API.
//! - A query-protocol request is SNS when its credential scope says so
//!   (`…/us-east-1/sns/aws4_request`), or, unsigned (a GET of a SubscribeURL or UnsubscribeURL),
//!   by its action, since only SNS has topic actions. `AddPermission`/`RemovePermission`, which
//!   both services have, go to SNS when they name a `TopicArn`. Everything else is SQS's query
//!   protocol.

use axum::http::{header, HeaderMap, Method, Uri};
use bytes::Bytes;

use crate::query;

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

impl Api {
    /// The API's name, for people.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Api::SqsJson | Api::SqsQuery => "SQS",
            Api::Sns => "SNS",
            Api::Events => "EventBridge",
            Api::IotData => "IoT data",
        }
    }

    /// The cargo feature that builds it in.
    pub(crate) fn feature(self) -> &'static str {
        match self {
            Api::SqsJson | Api::SqsQuery => "sqs",
            Api::Sns => "sns",
            Api::Events => "events",
            Api::IotData => "iot-data",
        }
    }

    /// The service name a signature for this API is scoped to (botocore's `signingName`, else
    /// its `endpointPrefix`).
    pub(crate) fn signing_name(self) -> &'static str {
        match self {
            Api::SqsJson | Api::SqsQuery => "sqs",
            Api::Sns => "sns",
            Api::Events => "events",
            Api::IotData => "iotdata",
        }
    }
}

/// The API a request whose body was read is for.
pub(crate) fn api_of(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Api {
    if is_iot_data(uri, headers) {
        Api::IotData
    } else if events_operation(headers).is_some() {
        Api::Events
    } else if headers.contains_key("x-amz-target") {
        Api::SqsJson
    } else if is_sns(method, uri, headers, body) {
        Api::Sns
    } else {
        Api::SqsQuery
    }
}

/// The target prefix of EventBridge's operations.
const TARGET_PREFIX: &str = "AWSEvents.";

/// The operation an `X-Amz-Target` names, when it is an EventBridge one.
pub(crate) fn events_operation(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
}

/// True when a request is for this API (by its path; no other API on the port uses these).
pub(crate) fn is_iot_data(uri: &Uri, headers: &HeaderMap) -> bool {
    if headers.contains_key("x-amz-target") {
        return false;
    }
    let path = uri.path();
    path.starts_with("/topics/")
        || path == "/retainedMessage"
        || path.starts_with("/retainedMessage/")
        || path.starts_with("/connections/")
        || path.starts_with("/api/things/shadow/")
        || (path.starts_with("/things/") && path.ends_with("/shadow"))
}

/// Actions only SNS has.
const SNS_ACTIONS: &[&str] = &[
    "CreateTopic",
    "DeleteTopic",
    "ListTopics",
    "GetTopicAttributes",
    "SetTopicAttributes",
    "Subscribe",
    "ConfirmSubscription",
    "Unsubscribe",
    "ListSubscriptions",
    "ListSubscriptionsByTopic",
    "GetSubscriptionAttributes",
    "SetSubscriptionAttributes",
    "Publish",
    "PublishBatch",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
];

fn scope_service(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .map(|c| c.split([',', ' ']).next().unwrap_or("").to_string());
    let credential = from_header.or_else(|| {
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "X-Amz-Credential")
            .map(|(_, v)| v.into_owned())
    })?;
    // AKID/date/region/service/aws4_request
    credential.split('/').nth(3).map(str::to_string)
}

/// An unsigned GET of a `SubscribeURL` or `UnsubscribeURL` from a message: SNS lets these through
/// without credentials (the token, or the subscription's random id, is the secret), so HTTP
/// endpoints can confirm and leave even when access keys are required.
pub(crate) fn is_link_from_a_message(method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
    if method != Method::GET || headers.contains_key(header::AUTHORIZATION) {
        return false;
    }
    let mut action = None;
    let mut signed = false;
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).take(16) {
        match &*k {
            "Action" if action.is_none() => action = Some(v.into_owned()),
            "X-Amz-Signature" => signed = true,
            _ => {}
        }
    }
    !signed
        && matches!(
            action.as_deref(),
            Some("ConfirmSubscription" | "Unsubscribe")
        )
}

/// True when a query-protocol request is for SNS.
pub(crate) fn is_sns(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> bool {
    if headers.contains_key("x-amz-target") {
        return false;
    }
    if let Some(service) = scope_service(headers, uri) {
        return service == "sns";
    }
    let query = uri.query().unwrap_or("").as_bytes();
    let form: &[u8] = if method == Method::POST { body } else { b"" };
    let mut action = None;
    let mut topic = false;
    for (k, v) in form_urlencoded::parse(query)
        .chain(form_urlencoded::parse(form))
        .take(query::MAX_PARAMS + 1)
    {
        match &*k {
            "Action" if action.is_none() => action = Some(v.into_owned()),
            "TopicArn" => topic = true,
            _ => {}
        }
    }
    match action.as_deref() {
        Some(a) if SNS_ACTIONS.contains(&a) => true,
        Some("AddPermission" | "RemovePermission") => topic,
        _ => false,
    }
}
