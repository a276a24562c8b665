//! One MQTT connection, from CONNECT to the end, over any byte stream (TCP, the WebSocket
//! adapter). The files follow the life of a connection: `handshake` (CONNECT to CONNACK), `session`
//! (the loop that reads, waits and writes), `packets/` (one file per packet family), `conn` (the
//! connection's state and what it sends back), `deliveries` (the engine's messages on their way
//! out), `access` (the ACL questions this door asks), `buffers` (framing and read buffers).

mod access;
mod buffers;
mod conn;
mod deliveries;
mod handshake;
mod packets;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use outpost_auth::Security;
use outpost_mqtt::{Broker, Disconnect, DisconnectReason};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use handshake::handshake;
use session::run;

/// Limits of a listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Largest packet accepted from clients.
    pub max_packet_size: usize,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// Longest keep-alive a client may ask for (65,535: any). An MQTT 5 client asking for more,
    /// or for none, is told this one (CONNACK Server Keep Alive); an MQTT 3.1.1 client, which
    /// cannot be told, is refused (identifier rejected), as mosquitto's `max_keepalive` does.
    pub max_keep_alive: u16,
    /// Who may connect, and what each may publish, subscribe to and receive.
    pub security: Arc<Security>,
    /// Message, byte and connection rates.
    pub rates: Arc<crate::MqttRates>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            max_packet_size: 16 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_keep_alive: u16::MAX,
            security: Security::open_to_all("000000000000"),
            rates: Arc::new(crate::MqttRates::default()),
        }
    }
}

/// Who is on the other end of a connection, before CONNECT says more.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The address it connects from.
    pub addr: SocketAddr,
    /// The name in its client certificate, when a TLS listener verified one.
    pub certificate: Option<Arc<str>>,
}

impl Peer {
    /// A peer without a certificate.
    pub fn plain(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            certificate: None,
        }
    }
}

/// Why the read side stopped.
pub(crate) enum End {
    Close(Disconnect, Option<u32>),
    TakenOver,
}

/// Serves one connection until it ends.
pub fn serve<S>(
    stream: S,
    peer: Peer,
    broker: Arc<Broker>,
    config: Arc<ListenerConfig>,
) -> impl std::future::Future<Output = ()> + std::marker::Send
where
    S: AsyncRead + AsyncWrite + Unpin + std::marker::Send,
{
    // An async fn keeps its arguments for as long as it runs, beside the locals made of them:
    // they travel in one box, emptied at once, so an idle connection's future keeps 8 bytes of
    // them instead of ~100.
    served(Box::new(Start {
        stream,
        peer,
        broker,
        config,
    }))
}

/// What a connection starts with.
struct Start<S> {
    stream: S,
    peer: Peer,
    broker: Arc<Broker>,
    config: Arc<ListenerConfig>,
}

/// Not an `async fn`, which would keep `start` twice (see [`session::run`]'s note).
#[allow(clippy::manual_async_fn)]
fn served<S>(start: Box<Start<S>>) -> impl std::future::Future<Output = ()> + std::marker::Send
where
    S: AsyncRead + AsyncWrite + Unpin + std::marker::Send,
{
    async move {
        let Start {
            stream,
            peer: Peer {
                addr: peer,
                certificate,
            },
            broker,
            config,
        } = {
            let start = start;
            *start
        };
        let (mut rd, wr) = tokio::io::split(stream);
        let mut buf = BytesMut::new();
        let max = config.max_packet_size;

        // The handshake's future (CONNECT, login, the engine's answer: ~1.8 KB) lives on the heap
        // while it runs, so the connection's task stays small for as long as it is idle.
        let handshaking = Box::pin(handshake(
            &mut rd,
            &mut buf,
            wr,
            (peer, certificate),
            &broker,
            // Moved into the handshake: not kept across the connection's waits.
            config,
        ));
        let Some((mut conn, h, keep_alive)) = handshaking.await else {
            return;
        };
        let end = run(&mut rd, &mut buf, &mut conn, &broker, &h, keep_alive, max).await;
        let _ = conn.flush().await;
        let reason = match (&end, conn.closing) {
            (End::TakenOver, _) => DisconnectReason::DuplicateClientId,
            (End::Close(Disconnect::Normal | Disconnect::WithWill, _), _) => {
                DisconnectReason::ClientInitiatedDisconnect
            }
            (End::Close(Disconnect::Abrupt, _), Some(code)) => {
                DisconnectReason::closed_by_server(code)
            }
            (End::Close(Disconnect::Abrupt, _), None) => DisconnectReason::ConnectionLost,
        };
        match end {
            End::Close(how, expiry) => broker.disconnect(&h, how, expiry),
            End::TakenOver => {}
        }
        broker.announce_disconnected(&h, reason);
        let _ = conn.wr.shutdown().await;
        linger(&mut rd, &mut buf).await;
        tracing::debug!(peer = %conn.peer, client = &*h.client_id, "connection closed");
    }
}

/// After the broker's side is shut down, what the client still sends is read and dropped until it
/// closes too (or a moment passes): closing a socket with unread data resets it, and the reset can
/// reach the client before the DISCONNECT it should read (MQTT 5 §4.13: the reason must arrive).
pub(super) async fn linger<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) {
    let drain = async {
        loop {
            buf.clear();
            if buf.capacity() < 1024 {
                buf.reserve(1024);
            }
            match rd.read_buf(buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// How long a closed connection waits for the client to close its side.
pub(super) const LINGER: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    /// What an idle connection's task holds is its `serve` future (issue 29: 6.9 KB of memory per
    /// idle connection, 5.5 KB of it the task). The handshake, the waits an idle connection is
    /// not in (the store, a held-back publisher, the shutdown's reads) run boxed, every reason to
    /// wake shares one notification, arguments are kept once (no async fn copies them), and the
    /// accept loop adds nothing around the future (outpost_net's `Admitted`), a held-back
    /// publisher's state is boxed, the identity is the handle's and the subscribers to wake are
    /// a batch's local: 1,576 B became 736 (with the workspace's features). tokio
    /// lays a task out in 128-byte steps (header, the future with its gate permit, trailer): up to
    /// 760 B the task is 896 B, past it 1,024. A change that widens it fails here.
    /// Measured over an in-memory stream, the same shape as a TCP connection's halves.
    #[test]
    fn an_idle_connections_future_stays_small() {
        let broker = std::sync::Arc::new(outpost_mqtt::Broker::new(Default::default()));
        let config = std::sync::Arc::new(super::ListenerConfig::default());
        let (stream, _other_end) = tokio::io::duplex(64);
        let peer = super::Peer::plain(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
        let serving = super::serve(stream, peer, broker, config);
        let size = std::mem::size_of_val(&serving);
        assert!(size <= 760, "the connection future is {size} B");
    }
}
