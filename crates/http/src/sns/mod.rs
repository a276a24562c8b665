//! The SNS API over HTTP: the query protocol (form-encoded `Action=…&Version=2010-03-31`, XML
//! answers, AWS's error XML), on the same port as SQS (`crate::api` tells them apart).

mod client;
pub mod egress;
mod ops;
pub(crate) mod xml;

use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use outpost_topics::TopicError;

pub use client::HttpClient;

use crate::query::{self, Flavor};

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
            return crate::access::respond(crate::api::Api::Sns, &r, rid);
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
    let (pem, file) = state.topics.signing_certificate()?;
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
