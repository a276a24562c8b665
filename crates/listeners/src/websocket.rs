//! MQTT over WebSocket (MQTT §6): the HTTP upgrade on a configured path with the `mqtt` subprotocol,
//! then binary frames carrying MQTT bytes — a packet may span frames and a frame may hold several
//! packets, so the frames are joined back into a byte stream and served like TCP.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::Either;
use futures_util::{SinkExt, StreamExt};
use outpost_mqtt::Broker;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::Message;

use outpost_net::{accept_loop, Gate};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

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
    accept_loop(listener, gate, move |stream, peer| {
        let (broker, config, path, tls) =
            (broker.clone(), config.clone(), path.clone(), tls.clone());
        // Two futures, not one future with both branches: a task is as large as its future, and
        // the TLS branch (rustls's connection state inline) made every plain WebSocket task
        // 11.5 KB (issue 29). The TLS one is boxed; the plain one is the task itself.
        match tls {
            None => Either::Left(async move {
                serve_websocket(stream, Peer::plain(peer), &path, broker, config).await
            }),
            Some(tls) => Either::Right(Box::pin(async move {
                match Box::pin(tls.accept(stream, config.connect_timeout)).await {
                    Ok((stream, certificate)) => {
                        let peer = Peer {
                            addr: peer,
                            certificate,
                        };
                        serve_websocket(stream, peer, &path, broker, config).await
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
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let certificate = peer.certificate;
    let peer: SocketAddr = peer.addr;
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
    // back (the bridge below already hands over whole batches).
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
            tracing::info!(%peer, error = %e, "WebSocket handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "no WebSocket handshake within the connect timeout; connection closed");
            return;
        }
    };
    // Bridge frames <-> bytes through an in-memory pipe; the MQTT connection reads and writes bytes.
    // The pipe's buffers grow as data flows (nothing is allocated for an idle connection); 64 KiB
    // bounds how much either side may have written ahead of the other.
    let (mqtt_side, bridge) = tokio::io::duplex(64 * 1024);
    let (mut bridge_rd, mut bridge_wr) = tokio::io::split(bridge);
    let (mut ws_tx, mut ws_rx) = ws.split();
    let inbound = async move {
        while let Some(msg) = ws_rx.next().await {
            match msg {
                Ok(Message::Binary(data)) => {
                    if bridge_wr.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                // Text frames are not MQTT (§6.0: "MUST close the connection"); pings are answered by
                // the library.
                Ok(Message::Text(_)) => break,
                Ok(_) => {}
            }
        }
        let _ = bridge_wr.shutdown().await;
    };
    let outbound = async move {
        // No buffer while idle: what the MQTT side wrote is read into a buffer allocated when it
        // arrives, and handed to the frame without a copy.
        let mut buf = bytes::BytesMut::new();
        let mut busy = false;
        loop {
            // Nothing held while idle: `read_buf` on an empty buffer takes 64 bytes; a read that
            // filled what there was asks for a large buffer next time.
            if busy && buf.capacity() - buf.len() < 1024 {
                buf.reserve(16 * 1024);
            }
            match bridge_rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    busy = buf.len() == buf.capacity();
                    let chunk = buf.split().freeze();
                    if !busy {
                        buf = bytes::BytesMut::new();
                    }
                    if ws_tx.send(Message::Binary(chunk)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.close().await;
    };
    let close_timeout = config.connect_timeout;
    let mqtt = serve(
        mqtt_side,
        Peer {
            addr: peer,
            certificate,
        },
        broker,
        config,
    );
    // When the MQTT side is done and the close frame sent, the peer has a short while to answer
    // it; then the TCP connection is dropped whatever the peer does.
    let inbound = tokio::spawn(inbound);
    let abort = inbound.abort_handle();
    tokio::join!(outbound, mqtt);
    if tokio::time::timeout(close_timeout, inbound).await.is_err() {
        abort.abort();
    }
}
