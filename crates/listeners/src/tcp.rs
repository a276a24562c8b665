//! MQTT over plain TCP: accept connections and serve each on its own task.

use std::sync::Arc;

use outpost_mqtt::Broker;
use tokio::net::TcpListener;

use crate::{serve, ListenerConfig};

/// Accepts connections until the listener fails; each connection runs on its own task.
pub async fn run_tcp(listener: TcpListener, broker: Arc<Broker>, config: Arc<ListenerConfig>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let (broker, config) = (broker.clone(), config.clone());
                tokio::spawn(async move { serve(stream, peer, broker, config).await });
            }
            Err(e) => {
                // Out of file descriptors and the like: keep serving the connections we have.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
