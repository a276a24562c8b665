//! The admin API (`/admin/v1/…`, described by `openapi.json`) and the web console
//! (`/console`): what an operator needs that AWS's APIs do not have — who is connected (and
//! disconnecting them), a session's subscriptions and queue, retained messages, the broker's
//! figures, a queue's messages without receiving them, and dynamic security's commands over
//! HTTP. Queues, SNS topics and rules are managed through their AWS APIs (the console calls them
//! too, with its session instead of a signature).
//!
//! Authentication: a console session cookie (`POST /admin/v1/login`), or HTTP Basic with a
//! username and password of the password file or dynamic security; anonymous callers only when
//! the broker lets anonymous callers in. Authorization: each operation is an `outpost:*` action
//! on the resource it acts on (`arn:outpost:{region}:{account}:broker`, `…:client/{id}`,
//! `…:dynsec`, a topic's or queue's ARN), asked of the ACL file and dynamic security as any
//! other action.

pub(crate) mod console;

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use outpost_auth::{Identity, LoginError};
use serde_json::{json, Value};

use crate::access::PeerAddr;
use crate::HttpState;

/// The cookie of a console session.
pub(crate) const COOKIE: &str = "outpost_session";
/// Largest admin request body.
const MAX_BODY: usize = 256 * 1024;
/// The description of this API.
const OPENAPI: &str = include_str!("openapi.json");

pub(crate) fn started() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

pub(crate) fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// A refused admin request: its status and the error it says.
pub(crate) struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Tell a caller other than the console how to authenticate (`WWW-Authenticate`).
    challenge: bool,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut r = reply(
            self.status,
            json!({"error": self.code, "message": self.message}),
        );
        if self.challenge {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"outpost\""),
            );
        }
        r
    }
}

fn error(status: StatusCode, code: &'static str, message: &str) -> Failure {
    Failure {
        status,
        code,
        message: message.to_string(),
        challenge: false,
    }
}

/// The session token in the request's cookies.
pub(crate) fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE).then_some(v)
        })
}

/// The console's session identity: a live session cookie on a request that says it comes from
/// the console (`x-outpost-console`, which a cross-site form cannot set).
pub(crate) fn console_identity(state: &HttpState, headers: &HeaderMap) -> Option<Identity> {
    if !headers.contains_key("x-outpost-console") {
        return None;
    }
    state.security.sessions.get(session_token(headers)?)
}

/// Who is calling: a console session, HTTP Basic, or anonymous when the broker allows it.
async fn caller(state: &HttpState, ip: IpAddr, headers: &HeaderMap) -> Result<Identity, Failure> {
    if let Some(who) = console_identity(state, headers) {
        return Ok(who);
    }
    let basic = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    match basic {
        Some(pair) => {
            let (user, password) = pair.split_once(':').unwrap_or((&pair, ""));
            login(state, ip, user, password).await
        }
        None if state.security.anonymous_allowed() => {
            Ok(Identity::anonymous(state.security.account()))
        }
        None => Err(unauthorized(headers)),
    }
}

fn unauthorized(headers: &HeaderMap) -> Failure {
    let mut f = error(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "Log in with a username and password.",
    );
    // The console shows its own login form; other callers are told how to authenticate.
    f.challenge = !headers.contains_key("x-outpost-console");
    f
}

async fn login(
    state: &HttpState,
    ip: IpAddr,
    user: &str,
    password: &str,
) -> Result<Identity, Failure> {
    if user.is_empty() {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "A username is required.",
        ));
    }
    match state
        .security
        .login_mqtt(ip, None, Some(user), Some(password.as_bytes()), None)
        .await
    {
        Ok(who) if !who.is_anonymous() => Ok(who),
        Ok(_) => Err(error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "No users are configured: the console is open to local callers without logging in.",
        )),
        Err(LoginError::Throttled) => Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            "Too many failed logins from this address; try again later.",
        )),
        Err(_) => {
            tracing::warn!(peer = %ip, user, "console login refused");
            Err(error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Wrong username or password.",
            ))
        }
    }
}

/// Asks the ACL and dynamic security whether `who` may do `action` on `resource`.
fn authorize(
    state: &HttpState,
    who: &Identity,
    action: &str,
    resource: &str,
) -> Result<(), Failure> {
    if state.security.http_allows(who, action, resource, None) {
        Ok(())
    } else {
        tracing::info!(
            identity = &*who.name,
            action,
            resource,
            "admin request denied by the ACL"
        );
        Err(error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            &format!(
                "{} is not authorized to perform {action} on {resource}.",
                display(who)
            ),
        ))
    }
}

fn display(who: &Identity) -> String {
    if who.is_anonymous() {
        "anonymous".into()
    } else {
        who.name.to_string()
    }
}

/// The query string's parameters.
fn query(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// An integer parameter (`default` when absent); anything but a whole number from 0 is refused
/// with 400, and values above `max` are taken as `max`.
fn number(q: &[(String, String)], key: &str, default: usize, max: usize) -> Result<usize, Failure> {
    let mut values = q.iter().filter(|(k, _)| k == key);
    match (values.next(), values.next()) {
        (None, _) => Ok(default.min(max)),
        // A whole number too large for the machine is still a whole number: the largest.
        (Some((_, v)), None) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(v.parse::<usize>().unwrap_or(usize::MAX).min(max))
        }
        (Some((_, v)), None) => v.parse::<usize>().map(|n| n.min(max)).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("{key} must be a whole number from 0."),
            )
        }),
        (Some(_), Some(_)) => Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("{key} is given more than once."),
        )),
    }
}

/// A boolean parameter (`false` when absent): `true` or `false`, else 400.
fn flag(q: &[(String, String)], key: &str) -> Result<bool, Failure> {
    match param(q, key) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("{key} must be true or false."),
        )),
    }
}

/// Every `/admin/…` request.
pub(crate) async fn handle(
    State(state): State<HttpState>,
    peer: Option<axum::Extension<PeerAddr>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ip = peer.map_or(IpAddr::from([127, 0, 0, 1]), |axum::Extension(p)| p.0.ip());
    if !state.rates.admit(ip) {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            "Too many requests; slow down.",
        )
        .into_response();
    }
    let Some(path) = uri.path().strip_prefix("/admin/v1/") else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "No such admin resource (the API is /admin/v1/).",
        )
        .into_response();
    };
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("Request body larger than {MAX_BODY} bytes."),
            )
            .into_response()
        }
    };
    // A known resource asked with a method it does not have: 405 with the methods it has.
    if let Some(allowed) = methods(&segs) {
        if !allowed.contains(&method.as_str()) {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!(
                    "{} is not allowed here; allowed: {}.",
                    method,
                    allowed.join(", ")
                ),
            )
            .into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&allowed.join(", ")) {
                r.headers_mut().insert(axum::http::header::ALLOW, v);
            }
            return r;
        }
    }
    // A POST's body must be JSON, said so (a form of another site, which a browser would send
    // with the credentials it holds for this one, cannot say it); a POST without a body and
    // without a content type changes nothing another site could use (a one-time password it
    // cannot read, a logout). The console's own header passes too.
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let json_body = content_type.is_some_and(|v| v.trim_start().starts_with("application/json"));
    let nothing = content_type.is_none() && body.is_empty();
    if method == Method::POST
        && !json_body
        && !nothing
        && !headers.contains_key("x-outpost-console")
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "Send JSON (Content-Type: application/json).",
        )
        .into_response();
    }
    // Open to everyone: the API's description, logging in and out.
    match (&method, segs.as_slice()) {
        (&Method::GET, ["openapi.json"]) => {
            return ([("content-type", "application/json")], OPENAPI).into_response()
        }
        (&Method::POST, ["login"]) => return open_session(&state, ip, &headers, &body).await,
        (&Method::POST, ["logout"]) => {
            if let Some(t) = session_token(&headers) {
                state.security.sessions.close(t);
            }
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut().insert(
                axum::http::header::SET_COOKIE,
                axum::http::HeaderValue::from_static(
                    "outpost_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict",
                ),
            );
            return r;
        }
        _ => {}
    }
    let who = match caller(&state, ip, &headers).await {
        Ok(w) => w,
        Err(f) => return f.into_response(),
    };
    let q = query(&uri);
    match route(&state, &who, &method, &segs, &q, &body).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    }
}

/// The methods a known admin resource answers (`None`: no such resource, 404).
fn methods(segs: &[&str]) -> Option<&'static [&'static str]> {
    Some(match segs {
        ["openapi.json" | "whoami" | "overview" | "clients" | "retained" | "queues"] => &["GET"],
        ["login" | "logout" | "dynsec" | "live-token"] => &["POST"],
        ["clients", _] | ["queues", _, "messages"] => &["GET"],
        ["clients", _, "connection"] => &["DELETE"],
        ["retained", "message"] => &["GET", "DELETE"],
        _ => return None,
    })
}

/// `POST /admin/v1/login` with `{"username", "password"}`: a session cookie.
async fn open_session(state: &HttpState, ip: IpAddr, headers: &HeaderMap, body: &[u8]) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The body must be JSON: {\"username\", \"password\"}.",
        )
        .into_response();
    };
    let user = v["username"].as_str().unwrap_or("");
    let password = v["password"].as_str().unwrap_or("");
    let who = match login(state, ip, user, password).await {
        Ok(w) => w,
        Err(f) => return f.into_response(),
    };
    let token = state.security.sessions.open(who.clone());
    // Secure when the console was reached over HTTPS (its scheme as the browser saw it).
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "https")
        || headers
            .get(axum::http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|o| o.starts_with("https:"));
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    tracing::info!(peer = %ip, user = &*who.name, "console login");
    let mut r = reply(StatusCode::OK, json!({"identity": &*who.name}));
    if let Ok(v) = axum::http::HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(axum::http::header::SET_COOKIE, v);
    }
    r
}

/// The broker's ARN of one of its own resources.
fn arn(state: &HttpState, resource: &str) -> String {
    format!(
        "arn:outpost:{}:{}:{resource}",
        state.region,
        state.security.account()
    )
}

async fn route(
    state: &HttpState,
    who: &Identity,
    method: &Method,
    segs: &[&str],
    q: &[(String, String)],
    body: &[u8],
) -> Result<Response, Failure> {
    let broker = arn(state, "broker");
    let mqtt = &state.mqtt;
    Ok(match (method, segs) {
        (&Method::GET, ["whoami"]) => reply(
            StatusCode::OK,
            json!({"identity": display(who), "anonymous": who.is_anonymous()}),
        ),
        (&Method::GET, ["overview"]) => {
            authorize(state, who, "outpost:GetOverview", &broker)?;
            reply(StatusCode::OK, overview(state))
        }
        (&Method::GET, ["clients"]) => {
            authorize(state, who, "outpost:ListClients", &broker)?;
            let (page, total) = mqtt.session_page(
                param(q, "search").unwrap_or(""),
                number(q, "offset", 0, usize::MAX)?,
                number(q, "limit", 100, 1000)?,
            );
            let clients: Vec<Value> = page.iter().map(session_json).collect();
            reply(StatusCode::OK, json!({"total": total, "clients": clients}))
        }
        (&Method::GET, ["clients", id]) => {
            authorize(
                state,
                who,
                "outpost:DescribeClient",
                &arn(state, &format!("client/{id}")),
            )?;
            let (Some(summary), Some(subs)) =
                (mqtt.session_summary(id), mqtt.client_subscriptions(id))
            else {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "No session has this client id.",
                ));
            };
            let held = mqtt
                .session_messages(id, number(q, "messages", 20, 1000)?)
                .unwrap_or_default();
            let mut detail = session_json(&summary);
            detail["cleanSession"] = json!(summary.session_expiry == 0);
            detail["subscriptions"] = subs
                .iter()
                .map(|(f, qos)| json!({"filter": f, "qos": *qos as u8}))
                .collect();
            detail["messages"] = held
                .iter()
                .map(|m| json!({"topic": m.topic, "qos": m.qos as u8, "bytes": m.bytes, "inFlight": m.in_flight}))
                .collect();
            reply(StatusCode::OK, detail)
        }
        (&Method::DELETE, ["clients", id, "connection"]) => {
            authorize(
                state,
                who,
                "outpost:DisconnectClient",
                &arn(state, &format!("client/{id}")),
            )?;
            let clean = flag(q, "cleanSession")?;
            let prevent_will = flag(q, "preventWill")?;
            if !mqtt.delete_connection(id, clean, prevent_will) {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "No session has this client id.",
                ));
            }
            tracing::info!(client = *id, by = &*who.name, "disconnected by an operator");
            StatusCode::NO_CONTENT.into_response()
        }
        (&Method::GET, ["retained"]) => {
            authorize(state, who, "outpost:ListRetainedMessages", &broker)?;
            let (page, more) =
                mqtt.retained_page(param(q, "after"), number(q, "limit", 100, 1000)?);
            let next = more.then(|| page.last().map(|r| r.topic.clone())).flatten();
            let topics: Vec<Value> = page
                .iter()
                .map(|r| json!({"topic": r.topic, "payloadSize": r.payload_size, "qos": r.qos as u8}))
                .collect();
            reply(StatusCode::OK, json!({"retained": topics, "next": next}))
        }
        (m, ["retained", "message"]) if m == Method::GET || m == Method::DELETE => {
            let Some(topic) = param(q, "topic") else {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "The topic parameter is required.",
                ));
            };
            let resource = format!(
                "arn:aws:iot:{}:{}:topic/{topic}",
                state.region,
                state.security.account()
            );
            if m == Method::GET {
                authorize(state, who, "outpost:GetRetainedMessage", &resource)?;
                let Some((message, qos)) = mqtt.retained_message(topic) else {
                    return Err(error(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        "No retained message on this topic.",
                    ));
                };
                use base64::Engine as _;
                reply(
                    StatusCode::OK,
                    json!({
                        "topic": topic, "qos": qos as u8,
                        "payload": base64::engine::general_purpose::STANDARD.encode(&message.payload),
                        "text": std::str::from_utf8(&message.payload).ok(),
                    }),
                )
            } else {
                authorize(state, who, "outpost:DeleteRetainedMessage", &resource)?;
                let Some(durable) = mqtt.clear_retained(topic) else {
                    return Err(error(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        "No retained message on this topic.",
                    ));
                };
                if durable.wait().await.is_err() {
                    return Err(error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalError",
                        "The change could not be stored.",
                    ));
                }
                tracing::info!(
                    topic,
                    by = &*who.name,
                    "retained message purged by an operator"
                );
                StatusCode::NO_CONTENT.into_response()
            }
        }
        #[cfg(feature = "sqs")]
        (&Method::GET, ["queues"]) => {
            authorize(state, who, "outpost:ListQueues", &broker)?;
            let queues: Vec<Value> = state
                .queues
                .stats()
                .iter()
                .map(|s| {
                    let dlq_of = state
                        .queues
                        .dead_letter_sources(&s.name)
                        .unwrap_or_default();
                    json!({
                        "name": s.name, "arn": state.queues.arn(&s.name),
                        "visible": s.visible, "inFlight": s.inflight, "delayed": s.delayed,
                        "oldestAgeSeconds": s.oldest_age_seconds,
                        "deadLetterSources": dlq_of,
                    })
                })
                .collect();
            reply(StatusCode::OK, json!({"queues": queues}))
        }
        #[cfg(feature = "sqs")]
        (&Method::GET, ["queues", name, "messages"]) => {
            authorize(state, who, "outpost:PeekMessages", &state.queues.arn(name))?;
            match state.queues.peek(name, number(q, "max", 10, 100)?) {
                Ok(list) => reply(
                    StatusCode::OK,
                    json!({"messages": list.iter().map(|m| json!({
                        "messageId": m.message_id, "sentTimestamp": m.sent_ms,
                        "receiveCount": m.receive_count, "body": m.body,
                    })).collect::<Vec<_>>()}),
                ),
                Err(_) => return Err(error(StatusCode::NOT_FOUND, "NotFound", "No such queue.")),
            }
        }
        (&Method::POST, ["dynsec"]) => {
            authorize(state, who, "outpost:DynamicSecurity", &arn(state, "dynsec"))?;
            // Over HTTP a request that is not `{"commands": […]}` (at most 100) is a 400, not an
            // answer on the topic.
            let parsed = serde_json::from_slice::<Value>(body).ok();
            match parsed
                .as_ref()
                .and_then(|v| v.get("commands"))
                .and_then(Value::as_array)
            {
                Some(list) if !list.iter().all(Value::is_object) => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "Every command must be an object.",
                    ))
                }
                Some(list) if list.len() <= outpost_auth::dynamic::MAX_COMMANDS => {}
                Some(_) => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "Too many commands (at most 100 per request).",
                    ))
                }
                None => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "The body must be {\"commands\": [ … ]}.",
                    ))
                }
            }
            let actor = format!("http/{}", display(who));
            let response = outpost_control::door::run(&state.security, mqtt, &actor, body).await;
            reply(StatusCode::OK, response)
        }
        (&Method::POST, ["live-token"]) => {
            // A one-time MQTT password for this caller's own identity: it grants nothing the
            // identity does not have (its subscriptions are checked by the ACL as its own).
            let live = &state.live_view;
            reply(
                StatusCode::OK,
                json!({
                    "username": &*who.name,
                    "password": state.security.sessions.mqtt_token(who.clone()),
                    "clientIdPrefix": "outpost-console-",
                    "wsPort": live.ws_port, "wssPort": live.wss_port, "path": live.path,
                }),
            )
        }
        _ => {
            return Err(error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "No such admin operation; see /admin/v1/openapi.json.",
            ))
        }
    })
}

/// A session as the list shows it (the detail adds to it).
fn session_json(s: &outpost_mqtt::SessionSummary) -> Value {
    json!({
        "clientId": s.client_id, "connected": s.connected,
        "identity": s.identity, "protocol": s.version.map(version),
        "subscriptions": s.subscriptions, "queued": s.queued,
        "sessionExpiry": s.session_expiry,
    })
}

fn version(v: outpost_codec::Version) -> &'static str {
    match v {
        outpost_codec::Version::V311 => "3.1.1",
        outpost_codec::Version::V5 => "5",
    }
}

/// The broker's figures: every sample of `/metrics` (histogram buckets left out) by name and
/// labels, as the engines' own counters give them; the console turns counters into rates.
fn overview(state: &HttpState) -> Value {
    let text = (state.metrics)();
    let mut samples = serde_json::Map::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if key.contains("_bucket") || key.ends_with("_created") {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            samples.insert(key.to_string(), json!(v));
        }
    }
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": started().elapsed().as_secs(),
        "samples": samples,
    })
}
