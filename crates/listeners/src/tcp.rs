//! MQTT over TCP, plain or TLS: accept connections (within the listener's caps) and serve each on
//! its own task.

use std::sync::Arc;

use outpost_mqtt::Broker;
use outpost_net::{accept_loop_owning, Gate};
use tokio::net::TcpListener;

use crate::{serve, ListenerConfig, Peer};

/// Accepts connections forever; each connection runs on its own task.
pub async fn run_tcp(
    listener: TcpListener,
    gate: Gate,
    broker: Arc<Broker>,
    config: Arc<ListenerConfig>,
) {
    accept_loop_owning(listener, gate, move |stream, peer, permit| {
        let (broker, config) = (broker.clone(), config.clone());
        // The connection's own future, with nothing wrapped around it (issue 29); it holds its
        // permit, which goes with it when it is parked idle.
        serve(stream, Peer::plain(peer), broker, config, permit)
    })
    .await;
}

/// MQTT over TLS (8883): each connection completes its TLS handshake (within the connect
/// timeout), then is served like plain TCP; a verified client certificate's name comes along as
/// the peer's identity.
pub async fn run_tls(
    listener: TcpListener,
    gate: Gate,
    tls: Arc<outpost_net::Tls>,
    broker: Arc<Broker>,
    config: Arc<ListenerConfig>,
) {
    accept_loop_owning(listener, gate, move |stream, addr, permit| {
        let (broker, config, tls) = (broker.clone(), config.clone(), tls.clone());
        async move {
            // The TLS handshake's state boxed while it runs, not kept in the connection's task
            // for its whole life (issue 29: 2,944 B tasks, 1,024 B without it).
            match Box::pin(tls.accept(stream, config.connect_timeout)).await {
                Ok((stream, certificate)) => {
                    serve(stream, Peer { addr, certificate }, broker, config, permit).await
                }
                Err(e) => tracing::info!(peer = %addr, error = %e, "TLS handshake failed"),
            }
        }
    })
    .await;
}
