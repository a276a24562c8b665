//! MQTT over WebSocket (MQTT §6): the HTTP upgrade on a configured path with the `mqtt` subprotocol,
//! then binary frames carrying MQTT bytes — a packet may span frames and a frame may hold several
//! packets, so the frames are joined back into a byte stream ([`WebSocketBytes`]) and served like
//! TCP.

use std::sync::Arc;

use futures_util::future::Either;
use outpost_mqtt::Broker;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

use outpost_net::{accept_loop_owning, Gate, Permit};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::websocket_bytes::WebSocketBytes;
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
    stream: S,
    peer: Peer,
    path: &str,
    broker: Arc<Broker>,
    config: Arc<ListenerConfig>,
    permit: Permit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The error type is tungstenite's callback signature; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() != path {
            let mut e =
                ErrorResponse::new(Some(format!("no MQTT endpoint at {}", req.uri().path())));
            *e.status_mut() = StatusCode::NOT_FOUND;
            return Err(e);
        }
        // Echo the `mqtt` subprotocol when offered (clients such as MQTT.js require it).
        let offered = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == "mqtt");
        if offered {
            resp.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
        }
        Ok(resp)
    };
    // No frame or message larger than the largest MQTT packet (plus a frame's own header): the
    // WebSocket layer must not buffer what the MQTT layer would refuse anyway.
    let limit = config.max_packet_size.saturating_add(16);
    // tungstenite allocates its read buffer up front (128 KiB by default): 1 KiB keeps an idle
    // WebSocket connection small; reads of MQTT traffic are small anyway. Writes are not held
    // back (the connection hands over whole batches).
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        .read_buffer_size(1024)
        .write_buffer_size(0);
    // Boxed while it runs: the upgrade's state would otherwise stay in the connection's task for
    // its whole life.
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(ws_config));
    let ws = match Box::pin(tokio::time::timeout(config.connect_timeout, handshake)).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::info!(peer = %peer.addr, error = %e, "WebSocket handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(peer = %peer.addr, "no WebSocket handshake within the connect timeout; connection closed");
            return;
        }
    };
    // The MQTT connection reads and writes bytes; frames are joined and cut in its own task. It
    // sends the close frame when it is done and lingers for the peer's answer a moment.
    serve(WebSocketBytes::new(ws), peer, broker, config, permit).await;
}
