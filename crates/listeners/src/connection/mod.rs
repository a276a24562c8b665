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
mod parking;
mod session;

pub use parking::parked_connections;

use std::any::{Any, TypeId};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use outpost_auth::Security;
use outpost_mqtt::{Broker, ConnectionHandle, Disconnect, DisconnectReason};
use outpost_net::{Permit, TlsBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use conn::Conn;
use parking::{NewTask, Parked};

use crate::websocket::websocket_max_frame;
use crate::websocket_bytes::WebSocketBytes;

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
    /// Idle: to be parked without its task, its keep-alive running out at this instant.
    Park(Option<tokio::time::Instant>),
}

/// Serves one connection: its handshake here, then the connection on a task of its own, which
/// holds the gate's `permit` until the connection ends. A TCP connection (bare, TLS, WebSocket)
/// that falls idle is parked without its task ([`parking`]); the permit goes with it.
pub fn serve<S>(
    stream: S,
    peer: Peer,
    broker: Arc<Broker>,
    config: Arc<ListenerConfig>,
    permit: Permit,
) -> impl std::future::Future<Output = ()> + std::marker::Send
where
    S: AsyncRead + AsyncWrite + Unpin + std::marker::Send + 'static,
{
    // An async fn keeps its arguments for as long as it runs, beside the locals made of them:
    // they travel in one box, emptied at once, so an idle connection's future keeps 8 bytes of
    // them instead of ~100.
    served(Box::new(Start {
        stream,
        peer,
        broker,
        config,
        permit,
    }))
}

/// What a connection starts with.
struct Start<S> {
    stream: S,
    peer: Peer,
    broker: Arc<Broker>,
    config: Arc<ListenerConfig>,
    permit: Permit,
}

/// The handshake, then the connection on a new task: that task holds only what a connected
/// client needs (the handshake's state, and a door's own, such as a WebSocket upgrade, end with
/// this one; issue 29).
#[allow(clippy::manual_async_fn)]
fn served<S>(start: Box<Start<S>>) -> impl std::future::Future<Output = ()> + std::marker::Send
where
    S: AsyncRead + AsyncWrite + Unpin + std::marker::Send + 'static,
{
    async move {
        if let Some(c) = Box::pin(handshaken(start)).await {
            // The task of a connection over TCP (bare or carrying TLS, a WebSocket or both) is
            // made by the parking lot's thread (see `parking::Lot::start_task`).
            let Some(lot) = parking::lot() else {
                tokio::spawn(connected(c));
                return;
            };
            let c: Box<dyn Any + Send> = c;
            let c = match c.downcast::<Connected<TcpStream>>() {
                Ok(c) => return lot.start_task(NewTask::Tcp(c)),
                Err(c) => c,
            };
            let c = match c.downcast::<Connected<WebSocketBytes<TcpStream>>>() {
                Ok(c) => return lot.start_task(NewTask::WebSocket(c)),
                Err(c) => c,
            };
            let c = match c.downcast::<Connected<TlsBytes<TcpStream>>>() {
                Ok(c) => return lot.start_task(NewTask::Tls(c)),
                Err(c) => c,
            };
            let c = match c.downcast::<Connected<WebSocketBytes<TlsBytes<TcpStream>>>>() {
                Ok(c) => return lot.start_task(NewTask::WebSocketTls(c)),
                Err(c) => c,
            };
            if let Ok(c) = c.downcast::<Connected<S>>() {
                tokio::spawn(connected(c));
            }
        }
    }
}

/// Not an `async fn`, which would keep `start` twice (see [`session::run`]'s note).
#[allow(clippy::manual_async_fn)]
fn handshaken<S>(
    start: Box<Start<S>>,
) -> impl std::future::Future<Output = Option<Box<Connected<S>>>> + std::marker::Send
where
    S: AsyncRead + AsyncWrite + Unpin + std::marker::Send + 'static,
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
            permit,
        } = {
            let start = start;
            *start
        };
        let (mut rd, wr) = tokio::io::split(stream);
        let mut buf = BytesMut::new();
        let max = config.max_packet_size;

        // CONNECT, login, the engine's answer.
        let (conn, h, keep_alive) =
            handshake(&mut rd, &mut buf, wr, (peer, certificate), &broker, config).await?;
        Some(Box::new(Connected {
            rd,
            buf,
            conn,
            broker,
            h,
            limits: (keep_alive, u32::try_from(max).unwrap_or(u32::MAX)),
            expires: None,
            permit,
        }))
    }
}

/// A connection past its handshake: what it runs with, and what a parked one keeps.
struct Connected<S> {
    rd: ReadHalf<S>,
    buf: BytesMut,
    conn: Conn<WriteHalf<S>>,
    broker: Arc<Broker>,
    h: ConnectionHandle,
    /// Keep-alive (seconds) and the largest packet.
    /// (u32: a packet's size limit fits, and the connection's task is 8 bytes smaller.)
    limits: (u16, u32),
    /// When its keep-alive runs out (a resumed connection's; a new one's is counted from now).
    expires: Option<tokio::time::Instant>,
    permit: Permit,
}

/// Runs a connected client until it ends (or is parked), then ends its session's connection.
#[allow(clippy::manual_async_fn)]
fn connected<S>(c: Box<Connected<S>>) -> impl std::future::Future<Output = ()> + std::marker::Send
where
    S: AsyncRead + AsyncWrite + Unpin + std::marker::Send + 'static,
{
    async move {
        let Connected {
            mut rd,
            mut buf,
            mut conn,
            broker,
            h,
            limits,
            expires,
            permit,
        } = {
            // Boxed on the way in, as `serve`'s arguments are: the future keeps 8 bytes of them.
            let c = c;
            *c
        };
        // A TCP connection, bare or carrying TLS, a WebSocket or both, can wait without its
        // task (the streams over it come apart at rest: `into_socket`).
        let parks = [
            TypeId::of::<TcpStream>(),
            TypeId::of::<WebSocketBytes<TcpStream>>(),
            TypeId::of::<TlsBytes<TcpStream>>(),
            TypeId::of::<WebSocketBytes<TlsBytes<TcpStream>>>(),
        ]
        .contains(&TypeId::of::<S>())
            && parking::lot().is_some();
        let mut expires = expires;
        let end = loop {
            let end = run(
                &mut rd,
                &mut buf,
                &mut conn,
                &broker,
                &h,
                limits,
                (parks, expires),
            )
            .await;
            let (End::Park(at), Some(lot)) = (&end, parking::lot()) else {
                break end;
            };
            let (wr, kept) = conn.into_idle();
            match into_socket(rd.unsplit(wr)) {
                Idle::Socket(socket, websocket, tls) => {
                    let parked = Parked {
                        socket,
                        conn: kept,
                        h,
                        broker,
                        keep_alive: limits.0,
                        max: limits.1,
                        websocket,
                        tls,
                        permit,
                    };
                    return lot.park(Box::new(parked), *at);
                }
                // A WebSocket in the middle of a frame, or TLS in the middle of a record (its
                // MQTT bytes are whole): not yet.
                Idle::Busy(stream) => {
                    let (r, w) = tokio::io::split(stream);
                    rd = r;
                    conn = kept.resume(w);
                    expires = *at;
                }
                Idle::Lost => {
                    tracing::warn!(peer = %kept.peer, client = &*h.client_id, "an idle connection's socket could not be parked; connection closed");
                    broker.disconnect(&h, Disconnect::Abrupt, None);
                    broker.announce_disconnected(&h, DisconnectReason::ConnectionLost);
                    return;
                }
            }
        };
        let _ = conn.flush().await;
        let reason = match (&end, conn.kept.closing) {
            (End::TakenOver, _) => DisconnectReason::DuplicateClientId,
            (End::Close(Disconnect::Normal | Disconnect::WithWill, _), _) => {
                DisconnectReason::ClientInitiatedDisconnect
            }
            (End::Close(Disconnect::Abrupt, _) | End::Park(_), Some(code)) => {
                DisconnectReason::closed_by_server(code)
            }
            (End::Close(Disconnect::Abrupt, _) | End::Park(_), None) => {
                DisconnectReason::ConnectionLost
            }
        };
        match end {
            End::Close(how, expiry) => broker.disconnect(&h, how, expiry),
            End::Park(_) => broker.disconnect(&h, Disconnect::Abrupt, None),
            End::TakenOver => {}
        }
        broker.announce_disconnected(&h, reason);
        let _ = conn.wr.shutdown().await;
        linger(&mut rd, &mut buf).await;
        tracing::debug!(peer = %conn.kept.peer, client = &*h.client_id, "connection closed");
    }
}

/// An idle connection's stream, taken apart for parking.
enum Idle<S> {
    /// The socket, out of tokio's reactor, whether it carries a WebSocket, and its TLS state if
    /// it is over TLS.
    Socket(
        std::net::TcpStream,
        bool,
        Option<Box<outpost_net::TlsSession>>,
    ),
    /// A WebSocket between two parts of a frame, TLS between two parts of a record, or a stream
    /// that cannot be parked: as it was.
    Busy(S),
    /// The socket could not leave tokio's reactor.
    Lost,
}

/// The socket out of tokio's reactor, with what it carries.
fn socket<S>(
    tcp: TcpStream,
    websocket: bool,
    tls: Option<Box<outpost_net::TlsSession>>,
) -> Idle<S> {
    tcp.into_std()
        .map_or(Idle::Lost, |s| Idle::Socket(s, websocket, tls))
}

fn into_socket<S: 'static>(stream: S) -> Idle<S> {
    let any: Box<dyn Any> = Box::new(stream);
    let any = match any.downcast::<TcpStream>() {
        Ok(tcp) => return socket(*tcp, false, None),
        Err(any) => any,
    };
    let any: Box<dyn Any> = match any.downcast::<WebSocketBytes<TcpStream>>() {
        Ok(ws) if ws.at_rest() => return socket(ws.into_inner(), true, None),
        Ok(ws) => ws,
        Err(any) => any,
    };
    let any: Box<dyn Any> = match any.downcast::<TlsBytes<TcpStream>>() {
        Ok(tls) if tls.at_rest() => {
            let (tcp, tls) = tls.into_parts();
            return socket(tcp, false, Some(tls));
        }
        Ok(tls) => tls,
        Err(any) => any,
    };
    let any: Box<dyn Any> = match any.downcast::<WebSocketBytes<TlsBytes<TcpStream>>>() {
        Ok(ws) if ws.at_rest() && ws.get_ref().at_rest() => {
            let (tcp, tls) = ws.into_inner().into_parts();
            return socket(tcp, true, Some(tls));
        }
        Ok(ws) => ws,
        Err(any) => any,
    };
    any.downcast::<S>().map_or(Idle::Lost, |s| Idle::Busy(*s))
}

/// A parked connection back on a task of its own (the caller is inside the runtime): the task is
/// the connection's `connected` future itself, as it was before it was parked.
fn resume(p: Box<Parked>, expires: Option<tokio::time::Instant>) {
    let Parked {
        socket,
        conn,
        h,
        broker,
        keep_alive,
        max,
        websocket,
        tls,
        permit,
    } = *p;
    let peer = conn.peer;
    let stream = match TcpStream::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, client = &*h.client_id, error = %e, "a parked connection could not be resumed; connection closed");
            broker.disconnect(&h, Disconnect::Abrupt, None);
            broker.announce_disconnected(&h, DisconnectReason::ConnectionLost);
            return;
        }
    };
    let limits = (keep_alive, max);
    let kept = (conn, h, broker, permit);
    let max_frame = websocket_max_frame(usize::try_from(max).unwrap_or(usize::MAX));
    match (websocket, tls) {
        (false, None) => spawn_resumed(stream, kept, limits, expires),
        (true, None) => {
            let ws = WebSocketBytes::new(stream, BytesMut::new(), max_frame);
            spawn_resumed(ws, kept, limits, expires);
        }
        (false, Some(tls)) => spawn_resumed(TlsBytes::resume(stream, tls), kept, limits, expires),
        (true, Some(tls)) => {
            let ws = WebSocketBytes::new(TlsBytes::resume(stream, tls), BytesMut::new(), max_frame);
            spawn_resumed(ws, kept, limits, expires);
        }
    }
}

/// [`resume`]'s task, over the stream the socket carries.
fn spawn_resumed<S>(
    stream: S,
    (conn, h, broker, permit): (conn::Kept, ConnectionHandle, Arc<Broker>, Permit),
    limits: (u16, u32),
    expires: Option<tokio::time::Instant>,
) where
    S: AsyncRead + AsyncWrite + Unpin + std::marker::Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    tokio::spawn(connected(Box::new(Connected {
        rd,
        buf: BytesMut::new(),
        conn: conn.resume(wr),
        broker,
        h,
        limits,
        expires,
        permit,
    })));
}

/// After the broker's side is shut down, what the client still sends is read and dropped until it
/// closes too (or a moment passes): closing a socket with unread data resets it, and the reset can
/// reach the client before the DISCONNECT it should read (MQTT 5 §4.13: the reason must arrive).
pub(crate) async fn linger<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) {
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
    /// What an idle connection's task holds is its `connected` future (issue 29: 6.9 KB of
    /// memory per idle connection, 5.5 KB of it the task). The handshake and a door's own
    /// upgrade run before it on a task of their own; the waits an idle connection is not in (the
    /// store, a held-back publisher, the shutdown's reads) run boxed, every reason to wake
    /// shares one notification, arguments are kept once (no async fn copies them), a held-back
    /// publisher's state is boxed, the identity is the handle's and the subscribers to wake are
    /// a batch's local. tokio lays a task out in 128-byte steps (header 32 B, the future and
    /// its stage, 16 B of ids, a 48 B trailer): up to 792 B of future (its gate permit inside)
    /// the task is 896 B, past it 1,024. A change that widens it fails here. (A TCP
    /// connection idle for two seconds then leaves even that: `parking`.)
    /// Measured over an in-memory stream, the same shape as a TCP connection's halves.
    #[tokio::test]
    async fn an_idle_connections_future_stays_small() {
        use tokio::io::AsyncWriteExt as _;
        let broker = std::sync::Arc::new(outpost_mqtt::Broker::new(Default::default()));
        let config = std::sync::Arc::new(super::ListenerConfig::default());
        let (stream, mut client) = tokio::io::duplex(1024);
        let mut connect = bytes::BytesMut::new();
        outpost_codec::Packet::Connect(outpost_codec::Connect {
            protocol: outpost_codec::Version::V311,
            clean_start: true,
            keep_alive: 60,
            client_id: "idle",
            ..Default::default()
        })
        .encode_to(outpost_codec::Version::V311, &mut connect)
        .expect("encodes");
        client.write_all(&connect).await.expect("written");
        let gate = outpost_net::Gate::new("test", Default::default());
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let start = Box::new(super::Start {
            stream,
            peer: super::Peer::plain(addr),
            broker,
            config,
            permit: gate.admit(addr.ip()).expect("admitted"),
        });
        let c = super::handshaken(start).await.expect("connected");
        let serving = super::connected(c);
        let size = std::mem::size_of_val(&serving);
        assert!(size <= 792, "the connection future is {size} B");
    }
}
