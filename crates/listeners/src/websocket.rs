//! MQTT over WebSocket (MQTT §6): the HTTP upgrade on a configured path with the `mqtt` subprotocol,
//! then binary frames carrying MQTT bytes — a packet may span frames and a frame may hold several
//! packets, so the frames are joined back into a byte stream ([`WebSocketBytes`]) and served like
//! TCP.

use std::sync::Arc;

use futures_util::future::Either;
use outpost_mqtt::Broker;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use outpost_net::{accept_loop_owning, Gate, Permit};

use crate::websocket_bytes::WebSocketBytes;
use crate::websocket_upgrade::upgrade;
use crate::{serve, ListenerConfig, Peer};

/// Accepts WebSocket connections on `path` forever (within the listener's caps); with `tls`,
/// each connection first completes a TLS handshake (WebSocket over TLS, `wss://`).
pub async fn run_websocket(
    listener: TcpListener,
    gate: Gate,
    path: String,
    broker: Arc<Broker>,
    config: Arc<ListenerConfig>,
    tls: Option<Arc<outpost_net::Tls>>,
) {
    let path: Arc<str> = path.into();
    accept_loop_owning(listener, gate, move |stream, peer, permit| {
        let (broker, config, path, tls) =
            (broker.clone(), config.clone(), path.clone(), tls.clone());
        // Two futures, not one future with both branches: a task is as large as its future, and
        // the TLS branch (rustls's connection state inline) made every plain WebSocket task
        // 11.5 KB (issue 29). The TLS one is boxed; the plain one is the task itself.
        match tls {
            None => Either::Left(async move {
                serve_websocket(stream, Peer::plain(peer), &path, broker, config, permit).await
            }),
            Some(tls) => Either::Right(Box::pin(async move {
                match Box::pin(tls.accept(stream, config.connect_timeout)).await {
                    Ok((stream, certificate)) => {
                        let peer = Peer {
                            addr: peer,
                            certificate,
                        };
                        serve_websocket(stream, peer, &path, broker, config, permit).await
                    }
                    Err(e) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                }
            })),
        }
    })
    .await;
}

async fn serve_websocket<S>(
    mut stream: S,
    peer: Peer,
    path: &str,
    broker: Arc<Broker>,
    config: Arc<ListenerConfig>,
    permit: Permit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Boxed while it runs: the upgrade's state would otherwise stay in the connection's task for
    // its whole life.
    let upgrade = upgrade(&mut stream, path);
    let read = match Box::pin(tokio::time::timeout(config.connect_timeout, upgrade)).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            tracing::info!(peer = %peer.addr, error = %e, "WebSocket handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(peer = %peer.addr, "no WebSocket handshake within the connect timeout; connection closed");
            return;
        }
    };
    // No frame larger than the largest MQTT packet (plus a frame's own header): the WebSocket
    // layer must not buffer what the MQTT layer would refuse anyway.
    let max_frame = websocket_max_frame(config.max_packet_size);
    // The MQTT connection reads and writes bytes; frames are joined and cut in its own task. It
    // sends the close frame when it is done and lingers for the peer's answer a moment.
    serve(
        WebSocketBytes::new(stream, read, max_frame),
        peer,
        broker,
        config,
        permit,
    )
    .await;
}

/// The largest WebSocket frame a listener whose largest MQTT packet is `max_packet` accepts.
pub(crate) fn websocket_max_frame(max_packet: usize) -> usize {
    max_packet.saturating_add(16)
}
