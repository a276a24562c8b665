//! One MQTT connection, from CONNECT to the end: framing, keep-alive, the packet exchanges, and the
//! hand-off of every decision to the engine. Works over any byte stream (TCP, WebSocket adapter).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use outpost_auth::{Identity, LoginError, Security};
use outpost_codec::{
    decode, split_frame, Ack, ConnAck, ConnAckProperties, DecodeError, Decoded,
    Disconnect as DisconnectPacket, List, Packet, Publish, PublishBytes, QoS, ReasonCode, SubAck,
    UnsubAck, UserProperty, Version,
};
use outpost_mqtt::{
    Broker, ConnectionHandle, Delivery, Disconnect, Durable, PersistError, Published,
    Send as Outgoing,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
enum End {
    Close(Disconnect, Option<u32>),
    TakenOver,
}

struct Conn<W> {
    wr: W,
    /// Acknowledgements and control packets, written first.
    out: BytesMut,
    /// PUBLISH/PUBREL packets to the client, written after the acknowledgements of the same round (so a
    /// SUBACK precedes the retained messages of its subscription).
    deliveries: BytesMut,
    version: Version,
    /// Maximum Packet Size the client announced (MQTT 5).
    client_max: Option<u32>,
    peer: SocketAddr,
    /// Topic Alias Maximum the client announced (MQTT 5), and the aliases given out so far: the first
    /// topics sent get an alias, and from the second message on only the alias travels.
    alias_max: u16,
    aliases: std::collections::HashMap<std::sync::Arc<str>, u16>,
    /// Acknowledgements waiting for their message to be durable, in the order the PUBLISH packets
    /// arrived (§4.6: acknowledgements go out in that order).
    pending_acks: Vec<(Durable, Reply)>,
    /// A subscriber of what this connection published is falling behind: let other tasks run
    /// before reading more (a gentle brake on publishers that outrun their subscribers).
    pressure: bool,
    /// Incoming QoS 2 exchanges ended by a failed PUBREC: the engine forgets their identifiers.
    released: Vec<u16>,
    /// Subscribers that got this connection's messages, woken once per batch of packets.
    wakes: outpost_mqtt::Wakes,
    /// Flow control: connected subscribers of this client's messages whose queues are full. While
    /// any holds it back, the client's packets are parked in order (acknowledgements and pings
    /// excepted, so two clients feeding each other never wait on each other), and reading stops
    /// once [`PARK_LIMIT`] bytes wait: its TCP window fills, its messages wait in its own buffers.
    held_by: Vec<std::sync::Arc<str>>,
    parked: std::collections::VecDeque<bytes::Bytes>,
    parked_bytes: usize,
    /// Who the client proved to be, and the rules that apply to it.
    identity: Identity,
    security: Arc<Security>,
    /// ACL refusals so far (the first is logged, the rest counted).
    denials: u64,
    /// The rate limits, and this client's buckets.
    rates: Arc<crate::MqttRates>,
    client_rates: crate::ClientRates,
}

/// Bytes of a held-back client's packets kept before its socket is no longer read.
const PARK_LIMIT: usize = 64 * 1024;

/// Packets that never wait behind parked ones: they only complete exchanges already begun.
fn bypasses_parking(frame: &[u8]) -> bool {
    // PUBACK, PUBREC, PUBREL, PUBCOMP, PINGREQ.
    matches!(frame.first().map(|b| b >> 4), Some(4..=7 | 12))
}

impl<W> Conn<W> {
    fn holding(&self) -> bool {
        !self.held_by.is_empty() || !self.parked.is_empty()
    }
}

/// An acknowledgement that may have to wait for durability.
enum Reply {
    Packet(Box<Packet<'static>>),
    SubAck { pkid: u16, codes: Vec<ReasonCode> },
    UnsubAck { pkid: u16, codes: Vec<ReasonCode> },
}

impl<W: AsyncWrite + Unpin> Conn<W> {
    fn push(&mut self, p: &Packet<'_>) {
        if let Err(e) = p.encode_to(self.version, &mut self.out) {
            tracing::error!(peer = %self.peer, error = %e, "cannot encode an outgoing packet");
        }
    }

    /// Queues an acknowledgement; it waits behind earlier ones still waiting for durability.
    fn ack(&mut self, durable: Durable, reply: Reply) {
        if durable.is_empty() && self.pending_acks.is_empty() {
            self.push_reply(reply);
        } else {
            self.pending_acks.push((durable, reply));
        }
    }

    fn push_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Packet(p) => self.push(&p),
            Reply::SubAck { pkid, codes } => self.push(&Packet::SubAck(SubAck {
                pkid,
                codes: List::new(&codes),
                ..SubAck::default()
            })),
            Reply::UnsubAck { pkid, codes } => self.push(&Packet::UnsubAck(UnsubAck {
                pkid,
                codes: List::new(&codes),
                ..UnsubAck::default()
            })),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let mut failed = None;
        for (durable, reply) in std::mem::take(&mut self.pending_acks) {
            if failed.is_some() {
                // MQTT 3.1.1 after a failed write: nothing later is acknowledged either.
                continue;
            }
            match durable.wait().await {
                Ok(()) => self.push_reply(reply),
                Err(e) => {
                    if !self.push_failure(reply, e) {
                        failed = Some(e);
                    }
                }
            }
        }
        if let Some(e) = failed {
            // Whatever was acknowledged before goes out; then the connection closes without
            // the acknowledgement the store could not back.
            if !self.out.is_empty() {
                let _ = self.wr.write_all(&self.out).await;
                self.out.clear();
            }
            return Err(std::io::Error::other(e));
        }
        if !self.deliveries.is_empty() {
            let d = self.deliveries.split();
            self.out.unsplit(d);
        }
        if !self.out.is_empty() {
            self.wr.write_all(&self.out).await?;
            self.out.clear();
            release_if_empty(&mut self.out);
            release_if_empty(&mut self.deliveries);
        }
        Ok(())
    }

    /// Answers a request whose changes could not be stored. MQTT 5 carries the failure in the
    /// acknowledgement (0x97 when the disk is full, else 0x80); an MQTT 3.1.1 PUBACK/PUBREC has no
    /// way to say it, so `false` asks for the connection to close without it (the client sends
    /// the message again on its next connection).
    fn push_failure(&mut self, reply: Reply, e: PersistError) -> bool {
        match reply {
            Reply::Packet(p) => match (*p, self.version) {
                (Packet::PubAck(mut a), Version::V5) => {
                    a.code = e.reason_code();
                    self.push(&Packet::PubAck(a));
                    true
                }
                (Packet::PubRec(mut a), Version::V5) => {
                    // The exchange ends with a failed PUBREC (§4.3.3): no PUBREL follows.
                    self.released.push(a.pkid);
                    a.code = e.reason_code();
                    self.push(&Packet::PubRec(a));
                    true
                }
                (other, _) if !matches!(other, Packet::PubAck(_) | Packet::PubRec(_)) => {
                    self.push(&other);
                    true
                }
                _ => false,
            },
            Reply::SubAck { pkid, codes } => {
                let failure = match self.version {
                    Version::V5 => e.reason_code(),
                    Version::V311 => ReasonCode::UnspecifiedError,
                };
                let codes: Vec<ReasonCode> = codes
                    .into_iter()
                    .map(|c| if (c as u8) < 0x80 { failure } else { c })
                    .collect();
                self.push_reply(Reply::SubAck { pkid, codes });
                true
            }
            Reply::UnsubAck { pkid, codes } => match self.version {
                // UNSUBACK has no Quota exceeded: Unspecified error for each filter removed.
                Version::V5 => {
                    let codes = codes
                        .into_iter()
                        .map(|c| {
                            if c == ReasonCode::Success {
                                ReasonCode::UnspecifiedError
                            } else {
                                c
                            }
                        })
                        .collect();
                    self.push_reply(Reply::UnsubAck { pkid, codes });
                    true
                }
                // MQTT 3.1.1's UNSUBACK cannot fail: the connection closes without it.
                Version::V311 => false,
            },
        }
    }

    /// Acknowledges a PUBLISH that was not routed (refused, denied) with `code`: PUBACK for QoS 1,
    /// PUBREC for QoS 2 (which ends the exchange when `code` is a failure), nothing for QoS 0.
    fn acknowledge(&mut self, p: &Publish<'_>, code: ReasonCode) {
        let ack = Ack {
            pkid: p.pkid,
            code,
            ..Ack::default()
        };
        let packet = match p.qos {
            QoS::AtMostOnce => return,
            QoS::AtLeastOnce => Packet::PubAck(ack),
            QoS::ExactlyOnce => Packet::PubRec(ack),
        };
        self.ack(Durable::default(), Reply::Packet(Box::new(packet)));
    }

    /// Asks the ACL; the first refusal of a connection is logged, every one is counted.
    fn may(&mut self, h: &ConnectionHandle, action: &str, topic: &str) -> bool {
        if self
            .security
            .mqtt_allows(&self.identity, &h.client_id, action, topic)
        {
            return true;
        }
        self.denials += 1;
        if self.denials == 1 {
            tracing::info!(peer = %self.peer, client = &*h.client_id, user = &*self.identity.name, action, topic = %topic.chars().take(128).collect::<String>(), "denied by the ACL (further denials on this connection are counted, not logged)");
        }
        false
    }

    /// Whether the client may read a message on `topic`: `mqtt:receive`, and no deny of
    /// `mqtt:subscribe` on it whatever wider filter brought it (ADR 0015).
    fn may_read(&mut self, h: &ConnectionHandle, topic: &str) -> bool {
        if self
            .security
            .mqtt_denies(&self.identity, &h.client_id, "mqtt:subscribe", topic)
        {
            self.denials += 1;
            return false;
        }
        self.may(h, "mqtt:receive", topic)
    }

    fn disconnect(&mut self, code: ReasonCode) {
        if self.version == Version::V5 {
            self.push(&Packet::Disconnect(DisconnectPacket::new(code)));
        }
    }

    /// Queues the deliveries and acknowledgements the engine has for this connection.
    fn push_sends(
        &mut self,
        broker: &Broker,
        h: &ConnectionHandle,
        sends: Vec<Outgoing<Delivery>>,
    ) {
        let now = Instant::now();
        let checked = !self.security.mqtt_open();
        for s in sends {
            match s {
                Outgoing::PubRel { pkid } => self.push(&Packet::PubRel(Ack::new(pkid))),
                Outgoing::Publish {
                    pkid,
                    dup,
                    message: d,
                } => {
                    if checked && !self.may_read(h, &d.message.topic) {
                        // Not this client's to read: as if delivered (mosquitto's `read` ACL).
                        if pkid != 0 {
                            broker.discard(h, pkid);
                        }
                        continue;
                    }
                    let users = d.message.user_properties();
                    let mut properties =
                        d.message
                            .publish_properties(now, &d.subscription_ids, &users);
                    let mut topic: &str = &d.message.topic;
                    let mut new_alias = false;
                    match self.aliases.get(&d.message.topic) {
                        Some(&alias) => {
                            properties.topic_alias = Some(alias);
                            topic = "";
                        }
                        None if (self.aliases.len() as u16) < self.alias_max => {
                            let alias = self.aliases.len() as u16 + 1;
                            self.aliases.insert(d.message.topic.clone(), alias);
                            properties.topic_alias = Some(alias);
                            new_alias = true;
                        }
                        None => {}
                    }
                    let publish = Publish {
                        dup,
                        qos: d.qos,
                        retain: d.retain,
                        topic,
                        pkid,
                        properties,
                        payload: &d.message.payload,
                    };
                    let packet = Packet::Publish(publish);
                    // A message MQTT cannot carry (a property over 65,535 bytes that slipped
                    // past the door it came in by) is dropped like an oversized one: one
                    // message never blocks the session behind it.
                    let too_big = match (self.client_max, packet.encoded_len(self.version)) {
                        (Some(max), Ok(len)) => len > max as usize,
                        (_, Err(e)) => {
                            tracing::warn!(peer = %self.peer, client = &*h.client_id, error = %e, "a message cannot be encoded for this client; discarded");
                            true
                        }
                        (None, Ok(_)) => false,
                    };
                    if too_big {
                        if new_alias {
                            // The client never learns this alias.
                            self.aliases.remove(&d.message.topic);
                        }
                        // §3.1.2.11.4: a packet over the client's maximum is not sent, as if delivered.
                        tracing::debug!(peer = %self.peer, "message larger than the client accepts, discarded");
                        if pkid != 0 {
                            broker.discard(h, pkid);
                        }
                        continue;
                    }
                    self.push(&packet);
                }
            }
        }
    }
}

/// Below this much room, the next read gets a large buffer.
const SMALL_READ: usize = 128;
/// A read once data arrives faster than it is handled (a read should then take many packets).
const LARGE_READ: usize = 16 * 1024;
/// Buffers at most this large are given back when they empty: an idle connection holds no
/// buffer at all, a busy one keeps its large buffer between reads.
const KEEP_ABOVE: usize = 4 * 1024;

/// Leaves room for the next read. A connection that holds no buffer gets none until data
/// arrives (reading into an empty `BytesMut` takes 64 bytes); one whose last read filled what
/// there was gets a large one.
fn room_to_read(buf: &mut BytesMut) {
    if buf.is_empty() {
        if buf.capacity() < LARGE_READ / 2 {
            // Nothing pending and no large buffer worth keeping: hold nothing while waiting.
            *buf = BytesMut::new();
        }
    } else if buf.capacity() - buf.len() < SMALL_READ {
        // Part of a packet is here and more is coming: read the rest in large chunks.
        buf.reserve(LARGE_READ);
    }
}

/// Gives an emptied small buffer back (frames split from it keep their own reference).
fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 && buf.capacity() <= KEEP_ABOVE {
        *buf = BytesMut::new();
    }
}

/// Serves one connection until it ends.
pub async fn serve<S>(stream: S, peer: Peer, broker: Arc<Broker>, config: Arc<ListenerConfig>)
where
    S: AsyncRead + AsyncWrite + Unpin + std::marker::Send,
{
    let certificate = peer.certificate;
    let peer = peer.addr;
    let (mut rd, wr) = tokio::io::split(stream);
    let mut buf = BytesMut::new();
    let max = config.max_packet_size;

    let Some((mut conn, h, keep_alive)) =
        handshake(&mut rd, &mut buf, wr, (peer, certificate), &broker, &config).await
    else {
        return;
    };
    let end = run(&mut rd, &mut buf, &mut conn, &broker, &h, keep_alive, max).await;
    let _ = conn.flush().await;
    match end {
        End::Close(how, expiry) => broker.disconnect(&h, how, expiry),
        End::TakenOver => {}
    }
    let _ = conn.wr.shutdown().await;
    linger(&mut rd, &mut buf).await;
    tracing::debug!(%peer, client = &*h.client_id, "connection closed");
}

/// After the broker's side is shut down, what the client still sends is read and dropped until it
/// closes too (or a moment passes): closing a socket with unread data resets it, and the reset can
/// reach the client before the DISCONNECT it should read (MQTT 5 §4.13: the reason must arrive).
async fn linger<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) {
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
const LINGER: Duration = Duration::from_secs(2);

/// CONNECT within the connect timeout, the engine's decision, CONNACK. Its own future, so what
/// it needs (the decoded CONNECT, the first frame) takes no room in the connection's state
/// while the connection lives.
async fn handshake<R, W>(
    rd: &mut R,
    buf: &mut BytesMut,
    wr: W,
    (peer, certificate): (SocketAddr, Option<Arc<str>>),
    broker: &Arc<Broker>,
    config: &ListenerConfig,
) -> Option<(Conn<W>, ConnectionHandle, u16)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let max = config.max_packet_size;
    // CONNECT, within the connect timeout.
    let first = match tokio::time::timeout(config.connect_timeout, read_frame(rd, buf, max)).await {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "bad first packet; connection closed");
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, "no CONNECT within the connect timeout; connection closed");
            return None;
        }
    };
    let mut conn = Conn {
        wr,
        out: BytesMut::new(),
        deliveries: BytesMut::new(),
        version: Version::V311,
        client_max: None,
        peer,
        alias_max: 0,
        aliases: std::collections::HashMap::new(),
        pending_acks: Vec::new(),
        pressure: false,
        released: Vec::new(),
        wakes: outpost_mqtt::Wakes::new(),
        held_by: Vec::new(),
        parked: std::collections::VecDeque::new(),
        parked_bytes: 0,
        identity: Identity::anonymous(config.security.account()),
        security: config.security.clone(),
        denials: 0,
        rates: config.rates.clone(),
        client_rates: config.rates.client(),
    };
    let connect = match decode(&first, Version::V5, max) {
        Ok(Decoded::Packet(Packet::Connect(c), _)) => c,
        Ok(_) => {
            tracing::info!(%peer, "first packet is not CONNECT; connection closed");
            return None;
        }
        Err(e) => {
            tracing::info!(%peer, error = %e, "malformed CONNECT; connection closed");
            if matches!(
                e,
                DecodeError::UnsupportedProtocolLevel(_) | DecodeError::InvalidProtocolName
            ) {
                // Answered in 3.1.1 form, which every version understands (§3.1.2.2).
                conn.push(&Packet::ConnAck(ConnAck {
                    code: ReasonCode::UnsupportedProtocolVersion,
                    ..ConnAck::default()
                }));
                let _ = conn.flush().await;
            }
            return None;
        }
    };
    conn.version = connect.protocol;
    conn.client_max = connect.properties.maximum_packet_size;
    if connect.protocol == Version::V5 {
        conn.alias_max = connect.properties.topic_alias_maximum.unwrap_or(0);
    }
    let mut keep_alive = connect.keep_alive;
    let mut server_keep_alive = None;
    let max_keep_alive = config.max_keep_alive;
    if max_keep_alive < u16::MAX && (keep_alive == 0 || keep_alive > max_keep_alive) {
        if connect.protocol == Version::V311 {
            tracing::info!(%peer, client = connect.client_id, keep_alive, "keep-alive above max_keep_alive; connection refused");
            conn.push(&Packet::ConnAck(ConnAck {
                code: ReasonCode::ClientIdentifierNotValid,
                ..ConnAck::default()
            }));
            let _ = conn.flush().await;
            return None;
        }
        keep_alive = max_keep_alive;
        server_keep_alive = Some(max_keep_alive);
    }
    if connect.properties.authentication_method.is_some() {
        // Enhanced authentication (§4.12) is not offered.
        tracing::info!(%peer, client = connect.client_id, "CONNECT with an authentication method; refused (not supported)");
        conn.push(&Packet::ConnAck(ConnAck {
            code: ReasonCode::BadAuthenticationMethod,
            ..ConnAck::default()
        }));
        let _ = conn.flush().await;
        return None;
    }
    if !config.rates.admit_connection(peer.ip()) {
        config
            .rates
            .refused(crate::rates::Limit::ConnectionRate, connect.client_id);
        let code = match connect.protocol {
            Version::V5 => ReasonCode::ConnectionRateExceeded,
            Version::V311 => ReasonCode::ServerUnavailable,
        };
        conn.push(&Packet::ConnAck(ConnAck {
            code,
            ..ConnAck::default()
        }));
        let _ = conn.flush().await;
        return None;
    }
    let login = config
        .security
        .login_mqtt(
            peer.ip(),
            connect.username,
            connect.password,
            certificate.as_deref(),
        )
        .await;
    conn.identity = match login {
        Ok(identity) => identity,
        Err(e) => {
            let code = match (e, connect.protocol) {
                (LoginError::BadCredentials, _) => ReasonCode::BadUserNameOrPassword,
                (LoginError::NotAuthorized, _) => ReasonCode::NotAuthorized,
                (LoginError::Throttled, Version::V5) => ReasonCode::ConnectionRateExceeded,
                (LoginError::Throttled, Version::V311) => ReasonCode::ServerUnavailable,
            };
            // The username is logged, never the password.
            tracing::warn!(%peer, client = connect.client_id, user = connect.username.unwrap_or(""), ?code, "login refused");
            conn.push(&Packet::ConnAck(ConnAck {
                code,
                ..ConnAck::default()
            }));
            let _ = conn.flush().await;
            return None;
        }
    };
    // The engine checks the will as this identity's publish (ADR 0015).
    let accepted = match broker.connect_as(&connect, conn.identity.clone()).await {
        Ok(a) => a,
        Err(code) => {
            tracing::info!(%peer, client = connect.client_id, ?code, "connection refused");
            let refusal = Packet::ConnAck(ConnAck {
                code,
                ..ConnAck::default()
            });
            // MQTT 3.1.1 has return codes for a few refusals only; for the others (a will topic
            // with too many levels, say) the connection is closed without CONNACK (§3.2.2.3).
            if refusal.encoded_len(conn.version).is_ok() {
                conn.push(&refusal);
                let _ = conn.flush().await;
            }
            return None;
        }
    };
    let h = accepted.handle.clone();
    let bc = broker.config();
    let node = [UserProperty::new("outpost-node", &bc.node_id)];
    conn.push(&Packet::ConnAck(ConnAck {
        session_present: accepted.session_present,
        code: ReasonCode::Success,
        properties: ConnAckProperties {
            receive_maximum: Some(bc.receive_maximum),
            topic_alias_maximum: Some(bc.topic_alias_maximum),
            maximum_packet_size: Some(max.min(u32::MAX as usize) as u32),
            assigned_client_identifier: accepted.assigned_client_id.as_deref(),
            retain_available: Some(true),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(true),
            server_keep_alive,
            user_properties: List::new(if bc.node_id.is_empty() { &[] } else { &node }),
            ..ConnAckProperties::default()
        },
    }));
    conn.push_sends(broker, &h, accepted.resend);
    tracing::debug!(%peer, client = &*h.client_id, version = ?h.version, "connected");
    Some((conn, h, keep_alive))
}

/// The connection's main loop; returns how it ended.
async fn run<R, W>(
    rd: &mut R,
    buf: &mut BytesMut,
    conn: &mut Conn<W>,
    broker: &Broker,
    h: &ConnectionHandle,
    keep_alive: u16,
    max: usize,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // §3.1.2.10: the server closes a connection silent for one and a half keep-alive periods.
    let grace = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    let far = Duration::from_secs(365 * 24 * 3600);
    let deadline = tokio::time::sleep(grace.unwrap_or(far));
    tokio::pin!(deadline);
    let mut shutdown = broker.shutdown_watch();
    // Packets that arrived together with CONNECT, then whatever a resumed session has queued.
    if let Err(end) = handle_buffered(buf, conn, broker, h, max) {
        return end;
    }
    loop {
        conn.wakes.wake_all();
        let flushed = conn.flush().await;
        for pkid in std::mem::take(&mut conn.released) {
            broker.pubrel(h, pkid);
        }
        if flushed.is_err() {
            return End::Close(Disconnect::Abrupt, None);
        }
        if std::mem::take(&mut conn.pressure) {
            tokio::task::yield_now().await;
        }
        // Far behind on disk: stop reading until the store catches up (the client's TCP window
        // fills; nothing is dropped).
        broker.wait_for_persistence().await;
        let hold = if conn.held_by.is_empty() {
            None
        } else {
            broker.holding_back(&mut conn.held_by)
        };
        if conn.held_by.is_empty() && !conn.parked.is_empty() {
            // Released: what waited is handled now, in order, until something holds it again.
            while let Some(frame) = conn.parked.pop_front() {
                conn.parked_bytes -= frame.len();
                if let Some(end) = handle(&frame, conn, broker, h) {
                    return end;
                }
                if !conn.held_by.is_empty() {
                    break;
                }
            }
            let sends = broker.sendable(h);
            conn.push_sends(broker, h, sends);
            continue;
        }
        let may_read = conn.parked_bytes + buf.len() < PARK_LIMIT || !conn.holding();
        if !may_read {
            // The broker stopped reading this client, not the other way round: its keep-alive
            // starts again when reading does.
            if let Some(g) = grace {
                deadline.as_mut().reset(tokio::time::Instant::now() + g);
            }
        }
        tokio::select! {
            biased;
            _ = h.kick.notified() => {
                if h.stalled.load(std::sync::atomic::Ordering::Relaxed) {
                    tracing::info!(peer = %conn.peer, client = &*h.client_id, "subscriber held its publishers back past the stall timeout; connection closed");
                    conn.disconnect(ReasonCode::QuotaExceeded);
                    return End::Close(Disconnect::Abrupt, None);
                }
                if h.admin.load(std::sync::atomic::Ordering::Relaxed) {
                    tracing::info!(peer = %conn.peer, client = &*h.client_id, "connection closed by an operator (DeleteConnection)");
                    conn.disconnect(ReasonCode::AdministrativeAction);
                    return End::Close(Disconnect::Abrupt, None);
                }
                conn.disconnect(ReasonCode::SessionTakenOver);
                return End::TakenOver;
            }
            // (The watch's guard is dropped at once: it must not live across the awaits below.)
            _ = async { drop(shutdown.wait_for(|down| *down).await) } => {
                if let Some(end) = handle_received(rd, buf, conn, broker, h, max).await {
                    return end;
                }
                conn.disconnect(ReasonCode::ServerShuttingDown);
                return End::Close(Disconnect::Abrupt, None);
            }
            _ = &mut deadline => {
                tracing::info!(peer = %conn.peer, client = &*h.client_id, "keep-alive expired; connection closed");
                conn.disconnect(ReasonCode::KeepAliveTimeout);
                return End::Close(Disconnect::Abrupt, None);
            }
            _ = async {
                if let Some(drained) = hold {
                    // Also wakes now and then, so a stalled subscriber is noticed.
                    let _ = tokio::time::timeout(Duration::from_millis(250), drained).await;
                }
            }, if !conn.held_by.is_empty() => {}
            read = { room_to_read(buf); rd.read_buf(buf) }, if may_read => {
                let got = match read {
                    Ok(0) | Err(_) => return End::Close(Disconnect::Abrupt, None),
                    Ok(n) => n,
                };
                let packets = match handle_buffered(buf, conn, broker, h, max) {
                    Ok(n) => n,
                    Err(end) => return end,
                };
                // §3.1.2.10: keep-alive counts whole control packets, not bytes (a packet dribbled
                // a byte per period does not keep a connection open).
                if let (Some(g), true) = (grace, packets > 0) {
                    deadline.as_mut().reset(tokio::time::Instant::now() + g);
                }
                // A quiet connection holds no read buffer between packets; a busy one (whose
                // reads are large) keeps its buffer.
                if buf.is_empty() && got < KEEP_ABOVE {
                    *buf = BytesMut::new();
                }
            }
            _ = h.wake.notified() => {
                let sends = broker.sendable(h);
                conn.push_sends(broker, h, sends);
            }
        }
    }
}

/// At shutdown: what the client sent before it is handled rather than dropped unread, above all
/// acknowledgements (a delivery the client acknowledged while this connection waited for the store
/// must not be sent again after the restart). Reads only what has already arrived, a bounded
/// amount; `Some` when the client's own packets end the connection (its DISCONNECT).
async fn handle_received<R, W>(
    rd: &mut R,
    buf: &mut BytesMut,
    conn: &mut Conn<W>,
    broker: &Broker,
    h: &ConnectionHandle,
    max: usize,
) -> Option<End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use futures_util::FutureExt;
    for _ in 0..SHUTDOWN_READS {
        room_to_read(buf);
        match rd.read_buf(buf).now_or_never() {
            Some(Ok(n)) if n > 0 => {}
            _ => break,
        }
        if let Err(end) = handle_buffered(buf, conn, broker, h, max) {
            return Some(end);
        }
    }
    // Acknowledgements of what was just handled wait for the store, as at any other time.
    let _ = conn.flush().await;
    None
}

/// Reads of already-received data a connection makes while the broker shuts down.
const SHUTDOWN_READS: usize = 16;

/// Handles every complete packet in `buf`, then queues what the engine has to send. Returns how
/// many packets it handled, or how the connection ends.
fn handle_buffered<W: AsyncWrite + Unpin>(
    buf: &mut BytesMut,
    conn: &mut Conn<W>,
    broker: &Broker,
    h: &ConnectionHandle,
    max: usize,
) -> Result<usize, End> {
    let mut packets = 0;
    loop {
        let frame = match split_frame(buf, max) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::info!(peer = %conn.peer, client = &*h.client_id, error = %e, "bad packet; connection closed");
                conn.disconnect(e.reason_code());
                return Err(End::Close(Disconnect::Abrupt, None));
            }
        };
        packets += 1;
        if conn.holding() && !bypasses_parking(&frame) {
            conn.parked_bytes += frame.len();
            conn.parked.push_back(frame);
            continue;
        }
        if let Some(end) = handle(&frame, conn, broker, h) {
            return Err(end);
        }
    }
    // Everyone this batch's messages went to, once.
    conn.wakes.wake_all();
    let sends = broker.sendable(h);
    conn.push_sends(broker, h, sends);
    Ok(packets)
}

/// Handles one packet; `Some` ends the connection.
fn handle<W: AsyncWrite + Unpin>(
    frame: &bytes::Bytes,
    conn: &mut Conn<W>,
    broker: &Broker,
    h: &ConnectionHandle,
) -> Option<End> {
    let packet = match decode(frame, h.version, usize::MAX) {
        Ok(Decoded::Packet(p, _)) => p,
        Ok(Decoded::Incomplete { .. }) => return None,
        Err(e) => {
            tracing::info!(peer = %conn.peer, client = &*h.client_id, error = %e, "malformed packet; connection closed");
            conn.disconnect(e.reason_code());
            return Some(End::Close(Disconnect::Abrupt, None));
        }
    };
    match packet {
        Packet::Publish(p) => {
            if !p.properties.subscription_identifiers.is_empty() {
                // §3.3.4: a client must not send subscription identifiers.
                conn.disconnect(ReasonCode::ProtocolError);
                return Some(End::Close(Disconnect::Abrupt, None));
            }
            let payload = PublishBytes::from_publish(frame, &p).payload;
            if let Err(limit) = conn.rates.charge(&mut conn.client_rates, payload.len()) {
                conn.rates.refused(limit, &h.client_id);
                if h.version == Version::V5 && p.qos != QoS::AtMostOnce {
                    conn.acknowledge(&p, ReasonCode::QuotaExceeded);
                    return None;
                }
                conn.disconnect(ReasonCode::MessageRateTooHigh);
                return Some(End::Close(Disconnect::Abrupt, None));
            }
            let checked = !conn.security.mqtt_open();
            let denied_topic = std::cell::RefCell::new(None);
            let may_publish = |topic: &str| {
                let ok = !checked
                    || conn.security.mqtt_allows(
                        &conn.identity,
                        &h.client_id,
                        "mqtt:publish",
                        topic,
                    );
                if !ok {
                    *denied_topic.borrow_mut() = Some(topic.chars().take(128).collect::<String>());
                }
                ok
            };
            let published = broker.publish(h, &p, payload, &mut conn.wakes, &may_publish);
            if let Some(topic) = denied_topic.into_inner() {
                conn.denials += 1;
                if conn.denials == 1 {
                    tracing::info!(peer = %conn.peer, client = &*h.client_id, user = &*conn.identity.name, %topic, "PUBLISH denied by the ACL (further denials on this connection are counted, not logged)");
                }
            }
            match published {
                Ok((Published::Denied, _)) => {
                    // MQTT 5 hears "not authorized"; MQTT 3.1.1 gets its acknowledgement and the
                    // message goes nowhere (mosquitto's behavior).
                    let code = match h.version {
                        Version::V5 => ReasonCode::NotAuthorized,
                        Version::V311 => ReasonCode::Success,
                    };
                    conn.acknowledge(&p, code);
                }
                Ok((Published::Refused(code), _)) => {
                    // MQTT 5 QoS 1/2: the refusal travels in the acknowledgement; otherwise the
                    // only way to say no is to close the connection.
                    if h.version == Version::V5 && p.qos != QoS::AtMostOnce {
                        conn.acknowledge(&p, code);
                    } else {
                        conn.disconnect(code);
                        return Some(End::Close(Disconnect::Abrupt, None));
                    }
                }
                Ok((outcome, mut durable)) => {
                    conn.pressure |= durable.under_pressure();
                    for client in durable.take_held_by() {
                        if !conn.held_by.contains(&client) {
                            conn.held_by.push(client);
                        }
                    }
                    let code = match (outcome, h.version) {
                        (Published::Routed(0), Version::V5) => ReasonCode::NoMatchingSubscribers,
                        _ => ReasonCode::Success,
                    };
                    let ack = Ack {
                        pkid: p.pkid,
                        code,
                        ..Ack::default()
                    };
                    match p.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => {
                            conn.ack(durable, Reply::Packet(Box::new(Packet::PubAck(ack))))
                        }
                        QoS::ExactlyOnce => {
                            conn.ack(durable, Reply::Packet(Box::new(Packet::PubRec(ack))))
                        }
                    }
                }
                Err(code) => {
                    tracing::info!(peer = %conn.peer, client = &*h.client_id, ?code, "PUBLISH refused; connection closed");
                    conn.disconnect(code);
                    return Some(End::Close(Disconnect::Abrupt, None));
                }
            }
        }
        Packet::PubAck(a) => {
            let _ = broker.puback(h, a.pkid);
        }
        Packet::PubRec(a) => {
            if let Ok(Outgoing::PubRel { pkid }) = broker.pubrec(h, a.pkid) {
                conn.push(&Packet::PubRel(Ack::new(pkid)));
            }
        }
        Packet::PubComp(a) => {
            let _ = broker.pubcomp(h, a.pkid);
        }
        Packet::PubRel(a) => {
            let code = broker.pubrel(h, a.pkid);
            let code = if h.version == Version::V5 {
                code
            } else {
                ReasonCode::Success
            };
            conn.push(&Packet::PubComp(Ack {
                pkid: a.pkid,
                code,
                ..Ack::default()
            }));
        }
        Packet::Subscribe(s) => {
            // Filters the ACL refuses get 0x87 (MQTT 5) or 0x80 (3.1.1) in their place; the
            // others are subscribed as asked.
            let mut allowed = Vec::new();
            let mut denied = Vec::new();
            let checked = !conn.security.mqtt_open();
            for (i, f) in s.filters.iter().enumerate() {
                if checked && !conn.may(h, "mqtt:subscribe", f.filter) {
                    denied.push(i);
                } else {
                    allowed.push(f);
                }
            }
            let (codes, durable) = if denied.is_empty() {
                broker.subscribe(h, &s)
            } else {
                let (mut granted, durable) = if allowed.is_empty() {
                    (Vec::new(), Durable::default())
                } else {
                    broker.subscribe(
                        h,
                        &outpost_codec::Subscribe {
                            filters: List::new(&allowed),
                            ..s
                        },
                    )
                };
                let refusal = match h.version {
                    Version::V5 => ReasonCode::NotAuthorized,
                    Version::V311 => ReasonCode::UnspecifiedError,
                };
                for i in denied {
                    granted.insert(i, refusal);
                }
                (granted, durable)
            };
            conn.ack(
                durable,
                Reply::SubAck {
                    pkid: s.pkid,
                    codes,
                },
            );
        }
        Packet::Unsubscribe(u) => {
            let (codes, durable) = broker.unsubscribe(h, &u);
            conn.ack(
                durable,
                Reply::UnsubAck {
                    pkid: u.pkid,
                    codes,
                },
            );
        }
        Packet::PingReq => conn.push(&Packet::PingResp),
        Packet::Disconnect(d) => {
            let how = if d.code == ReasonCode::DisconnectWithWillMessage {
                Disconnect::WithWill
            } else {
                Disconnect::Normal
            };
            return Some(End::Close(how, d.properties.session_expiry_interval));
        }
        Packet::Connect(_) => {
            // §3.1.0: a second CONNECT is a protocol error.
            conn.disconnect(ReasonCode::ProtocolError);
            return Some(End::Close(Disconnect::Abrupt, None));
        }
        Packet::Auth(_) => {
            conn.disconnect(ReasonCode::BadAuthenticationMethod);
            return Some(End::Close(Disconnect::Abrupt, None));
        }
        Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
            // Server-to-client packets from a client: protocol error.
            conn.disconnect(ReasonCode::ProtocolError);
            return Some(End::Close(Disconnect::Abrupt, None));
        }
    }
    None
}

/// Reads until one whole packet is buffered; `None` at end of stream.
async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> std::io::Result<Option<bytes::Bytes>> {
    loop {
        match split_frame(buf, max) {
            Ok(Some(f)) => return Ok(Some(f)),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        room_to_read(buf);
        if rd.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}
