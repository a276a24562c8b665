//! MQTT over plain TCP: accept connections (within the listener's caps) and serve each on its own
//! task.

use std::sync::Arc;

use outpost_mqtt::Broker;
use outpost_net::{accept_loop, Gate};
use tokio::net::TcpListener;

use crate::{serve, ListenerConfig, Peer};

/// Accepts connections forever; each connection runs on its own task.
pub async fn run_tcp(
    listener: TcpListener,
    gate: Gate,
    broker: Arc<Broker>,
    config: Arc<ListenerConfig>,
) {
    accept_loop(listener, gate, move |stream, peer| {
        let (broker, config) = (broker.clone(), config.clone());
        async move { serve(stream, Peer::plain(peer), broker, config).await }
    })
    .await;
}
