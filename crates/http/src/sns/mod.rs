//! The SNS API over HTTP: the query protocol (form-encoded `Action=…&Version=2010-03-31`, XML
//! answers, AWS's error XML), on the same port as SQS.
//!
//! Which service a request is for: SQS's JSON protocol carries `X-Amz-Target`; a signed query
//! request names its service in the credential scope (`…/us-east-1/sns/aws4_request`); an
//! unsigned one (a GET of a SubscribeURL or UnsubscribeURL) by its action, since only SNS has
//! topic actions. `AddPermission`/`RemovePermission`, which both services have, go to SNS when
//! they name a `TopicArn`.

mod client;
pub mod egress;
mod ops;
pub(crate) mod xml;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use outpost_topics::TopicError;

pub use client::HttpClient;

use crate::sqs::query::{self, Flavor};

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
pub fn is_link_from_a_message(method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
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
pub fn is_sns(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> bool {
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

fn xml_response(status: StatusCode, text: String, rid: &str) -> Response {
    let mut r = (status, text).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(rid) {
        r.headers_mut().insert("x-amzn-RequestId", v);
    }
    r
}

fn error(e: &TopicError, op: &str, rid: &str) -> Response {
    if let TopicError::Internal(detail) = e {
        tracing::error!(operation = op, error = %detail, "SNS request failed");
    } else {
        tracing::debug!(operation = op, code = e.code(), "SNS request refused");
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    xml_response(
        status,
        xml::render_error(e.code(), &e.to_string(), e.sender_fault(), rid),
        rid,
    )
}

/// Serves one SNS request whose body was read.
pub async fn handle(
    state: &crate::HttpState,
    // `None`: a link from a message (its token is the secret), not checked against the ACL.
    identity: Option<&outpost_auth::Identity>,
    method: &Method,
    uri: &Uri,
    body: Bytes,
    rid: &str,
) -> Response {
    let pairs = query::form_pairs(method, uri, &body);
    let action = pairs
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let params = match query::params_to_json_as(pairs, Flavor::Sns) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(message = %e, "malformed SNS request");
            return error(&TopicError::invalid(e), &action, rid);
        }
    };
    if let (true, Some(identity)) = (state.security.has_acl(), identity) {
        let resource = crate::access::sns_resource(state, &action, &params);
        let policy = state.topics.topic_policy(&resource);
        let name = format!("sns:{}", action.chars().take(64).collect::<String>());
        if let Err(r) =
            crate::access::authorize(state, identity, &name, &resource, policy.as_deref())
        {
            return crate::access::respond(crate::access::Api::Sns, &r, rid);
        }
    }
    // A link from a message acts as nobody in particular: it only confirms or unsubscribes.
    let anonymous = outpost_auth::Identity::anonymous(state.security.account());
    let who = identity.unwrap_or(&anonymous);
    match ops::call(&state.topics, who, &action, &params).await {
        Some(Ok(result)) => xml_response(StatusCode::OK, xml::render(&action, &result, rid), rid),
        Some(Err(e)) => error(&e, &action, rid),
        None => {
            let message = format!(
                "The action {} is not valid for this web service.",
                action.chars().take(64).collect::<String>()
            );
            tracing::info!(%message, "unknown SNS action");
            xml_response(
                StatusCode::BAD_REQUEST,
                xml::render_error("InvalidAction", &message, true, rid),
                rid,
            )
        }
    }
}

/// The signing certificate, if `path` names it.
pub fn certificate(state: &crate::HttpState, path: &str) -> Option<Response> {
    let (pem, file) = state.topics.signing_certificate();
    if path.trim_start_matches('/') != file {
        return None;
    }
    let mut r = (StatusCode::OK, pem.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-x509-ca-cert"),
    );
    Some(r)
}
