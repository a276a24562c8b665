//! The HTTP port's one entry: four APIs (SQS in two protocols, SNS, EventBridge, IoT data) share
//! port 9324 as their SDKs expect (ADR 0017). Every request takes the same path here (body read
//! within the budgets, the API told apart, rates, authentication), then its API's module runs it.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;

use crate::api::{self, Api};
use crate::wire::{self, Protocol, ProtocolError};

/// Serves one request on the HTTP port: reads its body within the budgets, tells the API apart,
/// applies the rates, authenticates the caller and hands the request to its API.
pub(crate) async fn handle(
    state: &crate::HttpState,
    fallback_host: &str,
    peer: Option<crate::access::PeerAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rid = wire::request_id();
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
        wire::protocol_error(
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
            return wire::protocol_error(
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
            return wire::protocol_error(
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
    use crate::access;
    let api = api::api_of(&method, &uri, &headers, &body);
    if !state.rates.admit(ip) {
        return access::respond(api, &access::Refusal::throttled(), &rid);
    }
    // A SubscribeURL/UnsubscribeURL from a message carries its own secret: not authenticated,
    // not checked against the ACL.
    let link = api == Api::Sns && api::is_link_from_a_message(&method, &uri, &headers);
    let identity = if link {
        outpost_auth::Identity::anonymous(state.security.account())
    } else {
        match access::authenticate(state, api, ip, &method, &uri, &headers, &body) {
            Ok(i) => i,
            Err(r) => return access::respond(api, &r, &rid),
        }
    };
    match api {
        #[cfg(feature = "iot-data")]
        Api::IotData => {
            drop(permit);
            let (action, resource) = access::iot_access(state, &method, &uri);
            if let Err(r) = access::authorize(state, &identity, &action, &resource, None) {
                return access::respond(api, &r, &rid);
            }
            crate::iotdata::handle(state, &identity, &method, &uri, &headers, body, &rid).await
        }
        #[cfg(feature = "events")]
        Api::Events => {
            drop(permit);
            let op = api::events_operation(&headers).unwrap_or_default();
            crate::events::handle(state, &identity, op, body, &rid).await
        }
        #[cfg(feature = "sns")]
        Api::Sns => {
            drop(permit);
            let checked = (!link).then_some(&identity);
            crate::sns::handle(state, checked, &method, &uri, body, &rid).await
        }
        #[cfg(feature = "sqs")]
        Api::SqsJson | Api::SqsQuery => {
            crate::sqs::handle(
                state,
                (&identity, api),
                ip,
                fallback_host,
                (&method, &uri, &headers),
                body,
                permit,
                &rid,
            )
            .await
        }
        #[allow(unreachable_patterns)]
        _ => {
            tracing::info!(
                api = api.signing_name(),
                "HTTP request for an API this build leaves out"
            );
            access::respond(api, &access::Refusal::left_out(api), &rid)
        }
    }
}
