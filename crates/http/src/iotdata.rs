//! The MQTT data plane over HTTP: AWS IoT's data API (boto3 `iot-data`, REST with JSON), so a
//! service or a device that can't hold a connection publishes with one POST, and tools read
//! retained messages and manage client connections.
//!
//! - `POST /topics/{topic}?qos=&retain=&contentType=&responseTopic=&messageExpiry=` (Publish; the
//!   MQTT 5 user properties, payload format and correlation data in AWS's `x-amz-mqtt5-*`
//!   headers): reaches MQTT subscribers and the event rules; answered after the message is as
//!   durable as a QoS 1 PUBACK would make it.
//! - `GET /retainedMessage/{topic}`, `GET /retainedMessage` (paged).
//! - `GET /connections/{clientId}`, `DELETE /connections/{clientId}?cleanSession=&preventWillMessage=`,
//!   `GET /connections/{clientId}/subscriptions` (paged).
//!
//! Errors are AWS's rest-json shape: the status, `x-amzn-ErrorType`, and `{"message": …}`.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use outpost_codec::{QoS, ReasonCode};
use outpost_mqtt::{Broker, Message, MessageProperties};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An error in the rest-json shape.
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        kind: "InvalidRequestException",
        message: message.into(),
    }
}

/// The caller may not publish to `topic` (ADR 0015).
fn may_not_publish(topic: &str) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        kind: "ForbiddenException",
        message: format!("Not authorized to publish to {}.", clip(topic)),
    }
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "ResourceNotFoundException",
        message: message.into(),
    }
}

fn error_response(e: ApiError, rid: &str) -> Response {
    tracing::debug!(kind = e.kind, message = %e.message, "iot-data request refused");
    let mut r = (e.status, json!({"message": e.message}).to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-amzn-ErrorType", HeaderValue::from_static(e.kind));
    if let Ok(v) = HeaderValue::from_str(rid) {
        h.insert("x-amzn-RequestId", v);
    }
    r
}

fn json_response(v: Value, rid: &str) -> Response {
    let mut r = (StatusCode::OK, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(rid) {
        r.headers_mut().insert("x-amzn-RequestId", v);
    }
    r
}

/// A path segment, percent-decoded (botocore encodes `/` in a topic as `%2F`; curl users may
/// not, so the rest of the path is one topic).
fn decode(segment: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid("The path is not valid UTF-8."))
}

fn query(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .take(64)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn bool_param(q: &[(String, String)], key: &str) -> Result<bool, ApiError> {
    match param(q, key) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(invalid(format!("{key} must be true or false."))),
    }
}

fn page_size(q: &[(String, String)]) -> Result<usize, ApiError> {
    match param(q, "maxResults") {
        None => Ok(50),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| invalid("maxResults must be between 1 and 200.")),
    }
}

fn token(q: &[(String, String)]) -> Result<Option<String>, ApiError> {
    param(q, "nextToken")
        .map(|t| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| invalid("The nextToken is not valid."))
        })
        .transpose()
}

fn make_token(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

fn qos_number(q: QoS) -> u8 {
    match q {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

/// Serves one request whose body was read.
pub async fn handle(
    state: &crate::HttpState,
    who: &outpost_auth::Identity,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
    rid: &str,
) -> Response {
    let result = if crate::shadow_api::is_shadow_path(uri.path()) && normalized(uri.path()) {
        crate::shadow_api::serve(&state.shadows, method, uri, &query(uri), body)
            .await
            .map_err(|(status, kind, message)| ApiError {
                status,
                kind,
                message,
            })
    } else {
        route(&state.mqtt, who, method, uri, headers, body).await
    };
    match result {
        Ok(v) => json_response(v, rid),
        Err(e) => error_response(e, rid),
    }
}

async fn route(
    broker: &Arc<Broker>,
    who: &outpost_auth::Identity,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Value, ApiError> {
    let path = uri.path();
    // SigV4 signs the normalized path; acting on another spelling of it (`/topics/x/../a%2Fb`,
    // `/topics//a%2Fb`) would act on what was not signed. Such paths are refused.
    if !normalized(path) {
        return Err(invalid(
            "The request path must not contain empty, '.' or '..' segments.",
        ));
    }
    let q = query(uri);
    let wrong_method = || ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        kind: "MethodNotAllowedException",
        message: format!("{method} is not allowed on this resource."),
    };
    if let Some(topic) = path.strip_prefix("/topics/") {
        if method != Method::POST {
            return Err(wrong_method());
        }
        return publish(broker, who, decode(topic)?, &q, headers, body).await;
    }
    if path == "/retainedMessage" {
        if method != Method::GET {
            return Err(wrong_method());
        }
        return list_retained(broker, &q);
    }
    if let Some(topic) = path.strip_prefix("/retainedMessage/") {
        if method != Method::GET {
            return Err(wrong_method());
        }
        return get_retained(broker, &decode(topic)?);
    }
    let rest = path.strip_prefix("/connections/").unwrap_or("");
    if let Some(client) = rest.strip_suffix("/messages") {
        if method != Method::POST {
            return Err(wrong_method());
        }
        return send_direct(broker, who, &client_id(client)?, &q, headers, body);
    }
    if let Some(client) = rest.strip_suffix("/subscriptions") {
        if method != Method::GET {
            return Err(wrong_method());
        }
        return list_subscriptions(broker, &client_id(client)?, &q);
    }
    let client = client_id(rest)?;
    match *method {
        Method::GET => get_connection(broker, &client),
        Method::DELETE => {
            let clean = bool_param(&q, "cleanSession")?;
            let prevent_will = bool_param(&q, "preventWillMessage")?;
            if broker.delete_connection(&client, clean, prevent_will) {
                Ok(json!({}))
            } else {
                Err(not_found(format!(
                    "No session for client {}.",
                    clip(&client)
                )))
            }
        }
        _ => Err(wrong_method()),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(128).collect()
}

fn client_id(segment: &str) -> Result<String, ApiError> {
    let id = decode(segment)?;
    if id.is_empty() || id.chars().count() > 128 || id.contains('/') {
        return Err(invalid("clientId must be 1 to 128 characters."));
    }
    Ok(id)
}

/// `x-amz-mqtt5-user-properties`: base64 of a JSON array of one-key objects (botocore's
/// `jsonvalue` header encoding), e.g. `[{"site": "lyon"}, {"line": "3"}]`.
fn user_properties(headers: &HeaderMap) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = headers.get("x-amz-mqtt5-user-properties") else {
        return Ok(Vec::new());
    };
    let bad = || invalid("x-amz-mqtt5-user-properties must be base64 of a JSON array of objects.");
    let text = raw.to_str().map_err(|_| bad())?;
    let decoded = B64.decode(text.trim()).map_err(|_| bad())?;
    let mut value: Value = serde_json::from_slice(&decoded).map_err(|_| bad())?;
    // botocore JSON-encodes the value it is given: a caller that passes the JSON text (as AWS's
    // examples do) sends a JSON string holding it.
    if let Value::String(inner) = &value {
        value = serde_json::from_str(inner).map_err(|_| bad())?;
    }
    let items = match value {
        Value::Array(items) => items,
        Value::Object(_) => vec![value],
        _ => return Err(bad()),
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(o) = item else {
            return Err(bad());
        };
        for (k, v) in o {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.push((k, v));
        }
    }
    if out.len() > 100 {
        return Err(invalid("At most 100 user properties."));
    }
    Ok(out)
}

/// Refuses a message larger than the broker's packet limit.
fn fits(broker: &Broker, size: usize) -> Result<(), ApiError> {
    let limit = broker.config().max_packet_size as usize;
    if size > limit {
        return Err(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "RequestEntityTooLargeException",
            message: format!("The payload exceeds the maximum size of {limit} bytes."),
        });
    }
    Ok(())
}

/// The message a Publish or SendDirectMessage request describes (AWS's MQTT 5 fields).
fn message(
    topic: &str,
    qos: QoS,
    retain: bool,
    q: &[(String, String)],
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Message, ApiError> {
    let message_expiry_interval = param(q, "messageExpiry")
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| invalid("messageExpiry must be a number of seconds."))
        })
        .transpose()?;
    let payload_format_indicator = match headers
        .get("x-amz-mqtt5-payload-format-indicator")
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => None,
        Some("UNSPECIFIED_BYTES") => Some(false),
        Some("UTF8_DATA") => {
            if std::str::from_utf8(&body).is_err() {
                return Err(invalid("The payload is not UTF-8 but is marked UTF8_DATA."));
            }
            Some(true)
        }
        Some(_) => {
            return Err(invalid(
                "x-amz-mqtt5-payload-format-indicator must be UNSPECIFIED_BYTES or UTF8_DATA.",
            ))
        }
    };
    let correlation_data = headers
        .get("x-amz-mqtt5-correlation-data")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|t| B64.decode(t.trim()).ok())
                .map(Bytes::from)
                .ok_or_else(|| invalid("x-amz-mqtt5-correlation-data must be base64."))
        })
        .transpose()?;
    let response_topic = param(q, "responseTopic").map(str::to_string);
    if response_topic
        .as_deref()
        .is_some_and(|t| t.is_empty() || t.contains(['+', '#', '\0']))
    {
        return Err(invalid(
            "responseTopic must be a topic name without wildcards.",
        ));
    }
    Ok(Message {
        topic: topic.into(),
        payload: body,
        qos,
        retain,
        properties: MessageProperties {
            payload_format_indicator,
            message_expiry_interval,
            content_type: param(q, "contentType").map(str::to_string),
            response_topic,
            correlation_data,
            user_properties: user_properties(headers)?,
        },
        received: message_expiry_interval.map(|_| std::time::Instant::now()),
    })
}

/// True when no segment of the raw path is empty, `.` or `..` (the path SigV4 verified is the
/// path acted on).
pub(crate) fn normalized(path: &str) -> bool {
    path.strip_prefix('/')
        .is_some_and(|rest| rest.split('/').all(|seg| !matches!(seg, "" | "." | "..")))
}

async fn publish(
    broker: &Arc<Broker>,
    who: &outpost_auth::Identity,
    topic: String,
    q: &[(String, String)],
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Value, ApiError> {
    let qos = match param(q, "qos") {
        None | Some("0") => QoS::AtMostOnce,
        Some("1") => QoS::AtLeastOnce,
        Some(_) => return Err(invalid("qos must be 0 or 1.")),
    };
    let retain = bool_param(q, "retain")?;
    fits(broker, topic.len() + body.len())?;
    let message = message(topic.as_str(), qos, retain, q, headers, body)?;
    let (_, durable) = match broker.publish_from_outside(who, message) {
        Ok(x) => x,
        Err(ReasonCode::QuotaExceeded) => {
            return Err(ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                kind: "ThrottlingException",
                message: "A quota is exhausted: the retained message quota, or the queue of every session the message matches.".into(),
            })
        }
        Err(ReasonCode::NotAuthorized) => return Err(may_not_publish(&topic)),
        Err(ReasonCode::PacketTooLarge) => {
            return Err(invalid("A property is longer than MQTT's 65,535 bytes."))
        }
        Err(_) => {
            return Err(invalid(format!(
                "The topic {} is not a valid topic name for publishing.",
                clip(&topic)
            )))
        }
    };
    // QoS 0 over MQTT gets no acknowledgement at all; here the answer still waits, so a 200
    // always means the message is as durable as the broker's settings make it.
    durable.wait().await.map_err(|e| {
        tracing::warn!(error = %e, "HTTP publish could not be stored");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "InternalFailureException",
            message: "The message could not be stored.".into(),
        }
    })?;
    Ok(json!({}))
}

/// `SendDirectMessage`: one connected client gets the message at QoS 1, whatever it subscribes
/// to. Waiting for its PUBACK (`confirmation=true`) is not supported.
fn send_direct(
    broker: &Broker,
    who: &outpost_auth::Identity,
    client: &str,
    q: &[(String, String)],
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Value, ApiError> {
    let topic = param(q, "topic").ok_or_else(|| invalid("topic is required."))?;
    if topic.is_empty() || topic.starts_with('$') || topic.contains(['+', '#', '\0']) {
        return Err(invalid("topic must be a topic name without wildcards."));
    }
    if bool_param(q, "confirmation")? {
        return Err(invalid(
            "confirmation=true (waiting for the client's PUBACK) is not supported.",
        ));
    }
    fits(broker, topic.len() + body.len())?;
    let message = message(topic, QoS::AtLeastOnce, false, q, headers, body)?;
    // It enters a session as the caller's publish would (ADR 0015).
    if !message.properties.fit_mqtt() {
        return Err(invalid("A property is longer than MQTT's 65,535 bytes."));
    }
    if !broker
        .authorizer()
        .topic(who, outpost_access::TopicVerb::Publish, topic)
    {
        return Err(may_not_publish(topic));
    }
    if !broker.deliver_direct(client, message, QoS::AtLeastOnce) {
        return Err(not_found(format!(
            "Client {} is not connected.",
            clip(client)
        )));
    }
    Ok(json!({"message": "The message was handed to the client's connection."}))
}

fn get_retained(broker: &Broker, topic: &str) -> Result<Value, ApiError> {
    let (m, qos) = broker
        .retained_message(topic)
        .ok_or_else(|| not_found(format!("No retained message on {}.", clip(topic))))?;
    let mut out = json!({
        "topic": &*m.topic,
        "payload": B64.encode(&m.payload),
        "qos": qos_number(qos),
    });
    if !m.properties.user_properties.is_empty() {
        let props: Vec<Value> = m
            .properties
            .user_properties
            .iter()
            .map(|(k, v)| json!({ k: v }))
            .collect();
        out["userProperties"] = json!(B64.encode(Value::Array(props).to_string()));
    }
    Ok(out)
}

fn list_retained(broker: &Broker, q: &[(String, String)]) -> Result<Value, ApiError> {
    let max = page_size(q)?;
    let after = token(q)?;
    let (page, more) = broker.retained_page(after.as_deref(), max);
    let mut out = json!({
        "retainedTopics": page.iter().map(|r| json!({
            "topic": r.topic,
            "payloadSize": r.payload_size,
            "qos": qos_number(r.qos),
        })).collect::<Vec<_>>(),
    });
    if let (true, Some(last)) = (more, page.last()) {
        out["nextToken"] = json!(make_token(&last.topic));
    }
    Ok(out)
}

fn get_connection(broker: &Broker, client: &str) -> Result<Value, ApiError> {
    let info = broker
        .connection_info(client)
        .ok_or_else(|| not_found(format!("No session for client {}.", clip(client))))?;
    let mut out = json!({
        "clientId": client,
        "connected": info.connected,
        "cleanSession": info.clean_session,
    });
    if info.session_expiry != u32::MAX {
        out["sessionExpiry"] = json!(info.session_expiry);
    }
    if let Some(ms) = info
        .disconnected_since
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
    {
        out["disconnectedSince"] = json!(ms);
    }
    Ok(out)
}

fn list_subscriptions(
    broker: &Broker,
    client: &str,
    q: &[(String, String)],
) -> Result<Value, ApiError> {
    let max = page_size(q)?;
    let after = token(q)?;
    let subs = broker
        .client_subscriptions(client)
        .ok_or_else(|| not_found(format!("No session for client {}.", clip(client))))?;
    let rest: Vec<(String, QoS)> = subs
        .into_iter()
        .filter(|(f, _)| after.as_deref().is_none_or(|a| f.as_str() > a))
        .collect();
    let more = rest.len() > max;
    let page = &rest[..rest.len().min(max)];
    let mut out = json!({
        "subscriptions": page.iter().map(|(f, qos)| json!({
            "topicFilter": f,
            "qos": qos_number(*qos),
        })).collect::<Vec<_>>(),
    });
    if let (true, Some((last, _))) = (more, page.last()) {
        out["nextToken"] = json!(make_token(last));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_properties_are_base64_json() {
        let mut h = HeaderMap::new();
        let v = B64.encode(r#"[{"site":"lyon"},{"n":3}]"#);
        h.insert("x-amz-mqtt5-user-properties", v.parse().unwrap());
        assert_eq!(
            user_properties(&h).ok(),
            Some(vec![
                ("site".to_string(), "lyon".to_string()),
                ("n".to_string(), "3".to_string())
            ])
        );
        h.insert("x-amz-mqtt5-user-properties", "!!".parse().unwrap());
        assert!(user_properties(&h).is_err());
    }
}
