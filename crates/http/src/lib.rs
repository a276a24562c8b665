//! Outpost's HTTP port: the SQS API, `/health` and `/metrics`.
//!
//! Thin by design: it translates wire formats and calls the engines; every rule lives in
//! `outpost-queues`. One port serves everything, as one gateway box should.

mod metrics;
pub mod sqs;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use outpost_queues::Queues;
use outpost_store::Store;

/// Extra Prometheus text appended to `/metrics` (e.g. the MQTT engine's figures).
pub type ExtraMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The queue engine.
    pub queues: Arc<Queues>,
    /// The store, for its figures.
    pub store: Store,
    /// The listen address, for queue URLs when a request has no `Host`.
    pub local_addr: SocketAddr,
    /// More metrics from the rest of the broker.
    pub extra_metrics: Option<ExtraMetrics>,
}

async fn health() -> impl IntoResponse {
    ([("content-type", "application/json")], r#"{"status":"ok"}"#)
}

async fn sqs(
    State(state): State<HttpState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let host = state.local_addr.to_string();
    sqs::handle(state.queues.clone(), &host, method, uri, headers, body).await
}

/// The router: `/health`, `/metrics`, and the SQS API on every other path.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::metrics))
        .fallback(sqs)
        .with_state(state)
}

/// Serves HTTP on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, state: HttpState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}
