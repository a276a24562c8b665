//! Outpost's HTTP port: the SQS, SNS, EventBridge and IoT data APIs, `/health`, `/ready` and
//! `/metrics`.
//!
//! Thin by design: it translates wire formats and calls the engines; every rule lives in
//! `outpost-queues`, `outpost-topics`, `outpost-rules` (EventBridge) and `outpost-mqtt` (the IoT
//! data API). One port serves everything, as one gateway box should.
//!
//! Each API is a cargo feature (`sqs`, `sns`, `events`, `iot-data`, all on by default) so that a
//! small gateway can be built without what it does not use; without any, the port still answers
//! `/health`, `/ready` and `/metrics`, and a request for a left-out API gets a clear refusal in its
//! own protocol.

// A build without some API leaves parts of the shared plumbing (its checks, its long-poll slots)
// unused; the full build is the one held to every lint.
#![cfg_attr(
    not(all(
        feature = "sqs",
        feature = "sns",
        feature = "events",
        feature = "iot-data"
    )),
    allow(unused)
)]

mod access;
mod admin;
mod api;
pub mod body_budget;
mod dispatch;
#[cfg(feature = "events")]
pub mod events;
#[cfg(feature = "iot-data")]
pub mod iotdata;
pub mod query;
#[cfg(feature = "iot-data")]
mod shadow_api;
#[cfg(feature = "sns")]
pub mod sns;
#[cfg(feature = "sqs")]
pub mod sqs;
pub mod throttle;
mod wire;

pub use wire::MAX_BODY;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use outpost_net::{accept_loop, Gate};
#[cfg(feature = "sqs")]
use outpost_queues::Queues;
#[cfg(feature = "events")]
use outpost_rules::Events;
#[cfg(feature = "sns")]
use outpost_topics::Topics;
use tokio::sync::Semaphore;

/// The text of `/metrics` (OpenMetrics), made by the binary's collector at each scrape.
pub type MetricsText = Arc<dyn Fn() -> String + Send + Sync>;

/// Whether the broker is ready to serve (`/ready`): the store is open and every listener bound.
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// Time and concurrency limits of the HTTP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's headers must arrive within this time, and an idle keep-alive connection is
    /// closed after it (slowloris, idle sockets).
    pub header_timeout: Duration,
    /// A request's body must arrive within this time.
    pub body_timeout: Duration,
    /// Requests whose bodies are read and parsed at once; more wait their turn (each may hold up
    /// to a few times its body size while it is parsed).
    pub max_parsing: usize,
    /// Largest request body (413 past it).
    pub max_body: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_parsing: 64,
            max_body: MAX_BODY,
        }
    }
}

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The queue engine.
    #[cfg(feature = "sqs")]
    pub queues: Arc<Queues>,
    /// The topic engine.
    #[cfg(feature = "sns")]
    pub topics: Arc<Topics>,
    /// The routing engine (EventBridge).
    #[cfg(feature = "events")]
    pub events: Arc<Events>,
    /// The MQTT engine, for the `iot-data` API (HTTP publish, retained messages, connections).
    pub mqtt: Arc<outpost_mqtt::Broker>,
    /// Device shadows.
    pub shadows: Arc<outpost_shadows::Shadows>,
    /// The region in this broker's ARNs (its account is the security configuration's).
    pub region: String,
    /// The listen address, for queue URLs when a request has no `Host`.
    pub local_addr: SocketAddr,
    /// The `/metrics` text.
    pub metrics: MetricsText,
    /// The `/ready` answer.
    pub ready: Readiness,
    /// Time and concurrency limits.
    pub limits: HttpLimits,
    /// Permits to parse a request body (`limits.max_parsing` of them), taken once it is read.
    pub parsing: Arc<Semaphore>,
    /// Bytes of bodies being read: `max_parsing` bodies' worth in all, an eighth per address.
    pub bodies: Arc<body_budget::BodyBudget>,
    /// Who may call what.
    pub security: Arc<outpost_auth::Security>,
    /// Request rates and concurrent long polls.
    pub rates: Arc<throttle::HttpRates>,
    /// Where the web console's live view connects.
    pub live_view: LiveView,
}

/// Where the web console's live message view connects: the broker's MQTT over WebSocket
/// listeners (the browser uses the host it loaded the console from).
#[derive(Debug, Clone, Default)]
pub struct LiveView {
    /// The port of MQTT over WebSocket, if it listens.
    pub ws_port: Option<u16>,
    /// The port of MQTT over WebSocket over TLS, if it listens.
    pub wss_port: Option<u16>,
    /// The WebSocket path (`/mqtt`).
    pub path: String,
}

/// The engines the HTTP port serves.
pub struct Engines {
    /// Queues (SQS).
    #[cfg(feature = "sqs")]
    pub queues: Arc<Queues>,
    /// Topics (SNS).
    #[cfg(feature = "sns")]
    pub topics: Arc<Topics>,
    /// Rules (EventBridge).
    #[cfg(feature = "events")]
    pub events: Arc<Events>,
    /// The MQTT engine (`iot-data`).
    pub mqtt: Arc<outpost_mqtt::Broker>,
    /// Device shadows (`iot-data`'s shadow operations).
    pub shadows: Arc<outpost_shadows::Shadows>,
    /// Identities and rules.
    pub security: Arc<outpost_auth::Security>,
    /// Request rates and concurrent long polls.
    pub rates: Arc<throttle::HttpRates>,
    /// The region in ARNs.
    pub region: String,
}

impl HttpState {
    /// The shared state of the HTTP handlers.
    pub fn new(
        engines: Engines,
        local_addr: SocketAddr,
        (metrics, ready): (MetricsText, Readiness),
        limits: HttpLimits,
    ) -> HttpState {
        let Engines {
            #[cfg(feature = "sqs")]
            queues,
            #[cfg(feature = "sns")]
            topics,
            #[cfg(feature = "events")]
            events,
            mqtt,
            shadows,
            security,
            rates,
            region,
        } = engines;
        HttpState {
            #[cfg(feature = "sqs")]
            queues,
            #[cfg(feature = "sns")]
            topics,
            #[cfg(feature = "events")]
            events,
            mqtt,
            shadows,
            region,
            local_addr,
            metrics,
            ready,
            limits,
            parsing: Arc::new(Semaphore::new(limits.max_parsing.max(1))),
            bodies: body_budget::BodyBudget::new(
                (limits.max_parsing.max(1) * limits.max_body) as u64,
                ((limits.max_parsing.max(8) / 8) * limits.max_body) as u64,
            ),
            security,
            rates,
            live_view: LiveView::default(),
        }
    }
}

/// Alive: the process answers.
async fn health() -> impl IntoResponse {
    ([("content-type", "application/json")], r#"{"status":"ok"}"#)
}

/// Ready: the store is open and every listener bound (503 until then, and while shutting down).
async fn ready(State(state): State<HttpState>) -> Response {
    if (state.ready)() {
        (
            [("content-type", "application/json")],
            r#"{"status":"ready"}"#,
        )
            .into_response()
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/json")],
            r#"{"status":"not ready"}"#,
        )
            .into_response()
    }
}

/// Every figure of the broker, in the OpenMetrics text format.
async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        (state.metrics)(),
    )
}

/// The APIs (which one is decided once the request is read, see `api`), and the SNS signing
/// certificate.
async fn api(
    State(state): State<HttpState>,
    peer: Option<axum::Extension<access::PeerAddr>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    #[cfg(feature = "sns")]
    if method == Method::GET {
        if let Some(cert) = sns::certificate(&state, uri.path()) {
            return cert;
        }
    }
    let host = state.local_addr.to_string();
    let peer = peer.map(|axum::Extension(p)| p);
    dispatch::handle(&state, &host, peer, method, uri, headers, body).await
}

/// Every answer carries a request id (`x-amzn-RequestId`), errors of the router itself (a wrong
/// method on `/health`, say) included: the id an operator asks a caller for.
async fn request_id(mut resp: Response) -> Response {
    if !resp.headers().contains_key("x-amzn-requestid") {
        if let Ok(v) = axum::http::HeaderValue::from_str(&wire::request_id()) {
            resp.headers_mut().insert("x-amzn-RequestId", v);
        }
    }
    resp
}

/// The router: `/health`, `/ready`, `/metrics`, and the APIs on every other path.
pub fn router(state: HttpState) -> Router {
    admin::started();
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/admin/{*rest}", axum::routing::any(admin::handle))
        .route("/console", get(admin::console::page))
        .route("/console/{file}", get(admin::console::asset))
        .fallback(api)
        .layer(axum::middleware::map_response(request_id))
        .with_state(state)
}

/// Serves HTTP on `listener` until the future is dropped: each connection admitted through `gate`,
/// with the header, idle and body timeouts of `state.limits`; with `tls`, HTTPS (the TLS
/// handshake must finish within the header timeout). When `shutdown` fires, every
/// connection finishes the request it is serving and closes (drop this future to stop accepting).
pub async fn serve(
    listener: tokio::net::TcpListener,
    gate: Gate,
    state: HttpState,
    shutdown: outpost_shutdown::Shutdown,
    tls: Option<Arc<outpost_net::Tls>>,
) {
    let header_timeout = state.limits.header_timeout;
    let router = router(state);
    accept_loop(listener, gate, move |stream, peer| {
        // Each request carries the address it came from (throttles, logs).
        use tower::ServiceExt as _;
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(access::PeerAddr(peer));
                req
            },
        ));
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        async move {
            match tls {
                None => serve_connection(stream, peer, service, header_timeout, shutdown).await,
                Some(tls) => match tls.accept(stream, header_timeout).await {
                    Ok((stream, _)) => {
                        serve_connection(stream, peer, service, header_timeout, shutdown).await
                    }
                    Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                },
            }
        }
    })
    .await;
}

async fn serve_connection<S, Svc>(
    stream: S,
    peer: SocketAddr,
    service: Svc,
    header_timeout: Duration,
    mut shutdown: outpost_shutdown::Shutdown,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    Svc: hyper::service::Service<axum::http::Request<hyper::body::Incoming>, Response = Response>
        + Send
        + 'static,
    Svc::Future: Send + 'static,
    Svc::Error: std::error::Error + Send + Sync + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Also bounds how long a keep-alive connection may sit idle between requests.
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.recv() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}
