//! The link to an upstream MQTT broker: one connection that forwards the backlog (QoS 1 with an
//! in-flight window) and brings in what the `in` rules subscribe to.
//!
//! The client is written on our codec rather than taken from a client crate (ADR 0014): store-
//! and-forward needs to own the mapping from packet identifier to backlog record and to decide
//! what is resent after a reconnect, and client crates keep their own in-memory queue and
//! replay it on their own terms, which would hold a second copy of the backlog that dies with
//! the process.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes, BytesMut};
use outpost_codec::{
    Ack, ConnAck, Connect, ConnectProperties, Decoded, Disconnect, List, Packet, Publish, QoS,
    ReasonCode, Subscribe, SubscribeFilter, SubscribeOptions, Version,
};
use outpost_mqtt::{Broker, Message};
use outpost_shutdown::Shutdown;
use outpost_store::RecordId;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;

use crate::backlog::{Backlog, Entry};
use crate::backoff::Backoff;
use crate::config::{map_topic, BridgeConfig};
use crate::status::Status;
use crate::{tls, HOP};

/// How long connecting (TCP, TLS and CONNACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest packet accepted from the upstream.
const MAX_INBOUND_PACKET: usize = 1 << 20;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One MQTT bridge.
pub(crate) struct MqttLink {
    /// Device shadows kept in sync through this link.
    pub sync: Option<Arc<crate::shadow_sync::ShadowSync>>,
    pub config: BridgeConfig,
    pub backlog: Arc<Backlog>,
    pub status: Arc<Status>,
    pub broker: Arc<Broker>,
    pub node: Arc<str>,
    version: Version,
    tls: Option<tls::Client>,
    host: String,
}

impl std::fmt::Debug for MqttLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttLink")
            .field("name", &self.config.name)
            .finish()
    }
}

/// Why a connection ended.
type LinkError = String;

impl MqttLink {
    pub fn new(
        config: BridgeConfig,
        (backlog, status): (Arc<Backlog>, Arc<Status>),
        broker: Arc<Broker>,
        node: Arc<str>,
        sync: Option<Arc<crate::shadow_sync::ShadowSync>>,
    ) -> Result<MqttLink, String> {
        let version = match config.version.as_str() {
            "3.1.1" | "4" => Version::V311,
            _ => Version::V5,
        };
        let host = config
            .address
            .rsplit_once(':')
            .map_or(config.address.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = match &config.tls {
            Some(t) => Some(tls::client(t, &host)?),
            None => None,
        };
        Ok(MqttLink {
            sync,
            config,
            backlog,
            status,
            broker,
            node,
            version,
            tls,
            host,
        })
    }

    /// Connects, forwards and reconnects until the broker shuts down.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut backoff = Backoff::new(
            Duration::from_millis(self.config.backoff_min_ms),
            Duration::from_millis(self.config.backoff_max_ms),
        );
        loop {
            if shutdown.is_shutdown() {
                return;
            }
            let started = Instant::now();
            let mut acked = Acked::default();
            let result = self.session(&mut shutdown, &mut acked).await;
            acked.flush(&self.backlog);
            self.backlog.link(false);
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(bridge = %self.config.name, host = %self.host, error = %e, "bridge link down; reconnecting");
                    self.status.failed(&e);
                }
            }
            // A link that stayed up a while starts over with short delays.
            if started.elapsed() > Duration::from_secs(30) {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.recv() => return,
            }
        }
    }

    async fn connect(&self) -> Result<Box<dyn Io>, LinkError> {
        let tcp = tokio::net::TcpStream::connect(&self.config.address)
            .await
            .map_err(|e| format!("connect {}: {e}", self.config.address))?;
        let _ = tcp.set_nodelay(true);
        Ok(match &self.tls {
            None => Box::new(tcp),
            Some(t) => Box::new(
                t.connect(tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.host))?,
            ),
        })
    }

    /// One connection, from CONNECT to its end. `Ok` only when the broker shuts down.
    async fn session(&self, shutdown: &mut Shutdown, done: &mut Acked) -> Result<(), LinkError> {
        let c = &self.config;
        let (mut io, session_present, limits, mut input) =
            tokio::time::timeout(CONNECT_TIMEOUT, self.handshake())
                .await
                .map_err(|_| format!("no CONNACK within {CONNECT_TIMEOUT:?}"))??;
        tracing::info!(bridge = %c.name, host = %self.host, session_present, window = limits.window, "bridge connected");
        let shadow_filters = self.sync.as_ref().map(|s| s.filters()).unwrap_or_default();
        // With in rules (or shadows coming down) the link counts as up once the upstream
        // answered the SUBSCRIBE.
        if c.inbound.is_empty() && shadow_filters.is_empty() {
            self.backlog.link(true);
        }

        let mut out = BytesMut::with_capacity(64 * 1024);
        let mut pkids = PacketIds::default();
        // Sent and not yet acknowledged: packet id → record.
        let mut inflight: HashMap<u16, RecordId> = HashMap::new();
        let mut cursor = 0u64;
        // Inbound QoS 2 messages published locally, waiting for PUBREL.
        let mut released: HashSet<u16> = HashSet::new();
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(u16, bool)>();

        if !c.inbound.is_empty() || !shadow_filters.is_empty() {
            let mut filters: Vec<SubscribeFilter<'_>> = c
                .inbound
                .iter()
                .map(|r| SubscribeFilter {
                    filter: &r.filter,
                    options: SubscribeOptions {
                        qos: QoS::from_u8(r.qos).unwrap_or(QoS::AtLeastOnce),
                        // The upstream does not send our own forwards back (loop prevention).
                        no_local: true,
                        retain_as_published: true,
                        ..SubscribeOptions::default()
                    },
                })
                .collect();
            // The cloud's shadow answers (the upstream's shadow service publishes them, so No
            // Local does not apply).
            filters.extend(shadow_filters.iter().map(|f| SubscribeFilter {
                filter: f,
                options: SubscribeOptions {
                    qos: QoS::AtLeastOnce,
                    ..SubscribeOptions::default()
                },
            }));
            let sub = Packet::Subscribe(Subscribe {
                pkid: pkids.next(&inflight),
                properties: Default::default(),
                filters: List::new(&filters),
            });
            sub.encode_to(self.version, &mut out)
                .map_err(|e| format!("SUBSCRIBE: {e}"))?;
        }

        if !input.is_empty() {
            // Messages the upstream sent right behind its CONNACK.
            let mut acked = Vec::new();
            self.on_input(
                &mut input,
                &mut inflight,
                &mut released,
                &ack_tx,
                &mut acked,
                &mut out,
            )?;
        }
        let keep_alive = Duration::from_secs(u64::from(limits.keep_alive.max(1)));
        let mut last_sent = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        let mut tick = tokio::time::interval(Acked::EVERY.min(keep_alive));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // The window is refilled from the backlog in groups (a quarter of the window, at
            // most 8) rather than one message per acknowledgement: fewer, larger writes.
            let group = (limits.window / 4).clamp(1, 8);
            if limits.window - inflight.len() >= group || inflight.is_empty() {
                let room = limits.window - inflight.len();
                for entry in self.backlog.read(cursor, room) {
                    cursor = entry.id.seq + 1;
                    match self.encode_forward(&entry, &limits, &mut pkids, &inflight, &mut out) {
                        Forward::Sent(Some(pkid)) => {
                            inflight.insert(pkid, entry.id);
                        }
                        Forward::Sent(None) => {
                            // QoS 0: done once written.
                            self.backlog.done(&[entry.id]);
                            Status::add(&self.status.forwarded, 1);
                        }
                        Forward::Skipped => self.backlog.done(&[entry.id]),
                        Forward::Dropped(why) => {
                            tracing::warn!(bridge = %c.name, seq = entry.id.seq, reason = %why, "bridge message dropped");
                            self.backlog.done(&[entry.id]);
                            Status::add(&self.status.dropped, 1);
                        }
                    }
                }
            }
            if !out.is_empty() {
                io.write_all(&out)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                out.clear();
                last_sent = Instant::now();
            }
            tokio::select! {
                n = io.read(&mut buf) => {
                    let n = n.map_err(|e| format!("read: {e}"))?;
                    if n == 0 {
                        return Err("the upstream closed the connection".into());
                    }
                    input.extend_from_slice(&buf[..n]);
                    ping_sent = None;
                    let mut acked = Vec::new();
                    self.on_input(&mut input, &mut inflight, &mut released, &ack_tx, &mut acked, &mut out)?;
                    if !acked.is_empty() {
                        Status::add(&self.status.forwarded, acked.len() as u64);
                        done.add(&self.backlog, acked);
                    }
                }
                _ = self.backlog.appended.notified(), if inflight.len() < limits.window => {}
                Some((pkid, qos2)) = ack_rx.recv() => {
                    let ack = Ack::new(pkid);
                    let p = if qos2 { Packet::PubRec(ack) } else { Packet::PubAck(ack) };
                    p.encode_to(self.version, &mut out).map_err(|e| format!("ack: {e}"))?;
                }
                _ = tick.tick() => {
                    done.flush(&self.backlog);
                    if let Some(at) = ping_sent {
                        if at.elapsed() > keep_alive {
                            return Err("the upstream did not answer PINGREQ".into());
                        }
                    } else if last_sent.elapsed() >= keep_alive / 2 {
                        Packet::PingReq.encode_to(self.version, &mut out).map_err(|e| format!("ping: {e}"))?;
                        ping_sent = Some(Instant::now());
                    }
                }
                _ = shutdown.recv() => {
                    let mut bye = BytesMut::new();
                    let _ = Packet::Disconnect(Disconnect::new(ReasonCode::Success)).encode_to(self.version, &mut bye);
                    let _ = tokio::time::timeout(Duration::from_secs(1), io.write_all(&bye)).await;
                    return Ok(());
                }
            }
        }
    }

    /// CONNECT and CONNACK.
    /// Also returns what arrived after the CONNACK: a resumed upstream session may send its
    /// queued messages in the same read.
    async fn handshake(&self) -> Result<(Box<dyn Io>, bool, Limits, BytesMut), LinkError> {
        let c = &self.config;
        let mut io = self.connect().await?;
        let client_id = c.client_id();
        let connect = Packet::Connect(Connect {
            protocol: self.version,
            clean_start: c.clean_start,
            keep_alive: c.keep_alive,
            properties: ConnectProperties {
                session_expiry_interval: (!c.clean_start).then_some(c.session_expiry),
                receive_maximum: Some(1024),
                maximum_packet_size: Some(MAX_INBOUND_PACKET as u32),
                ..Default::default()
            },
            client_id: &client_id,
            will: None,
            username: (!c.username.is_empty()).then_some(c.username.as_str()),
            password: (!c.password.is_empty()).then_some(c.password.as_bytes()),
        });
        let mut out = BytesMut::new();
        connect
            .encode_to(self.version, &mut out)
            .map_err(|e| format!("CONNECT: {e}"))?;
        io.write_all(&out)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut input = BytesMut::with_capacity(1024);
        loop {
            if io
                .read_buf(&mut input)
                .await
                .map_err(|e| format!("read: {e}"))?
                == 0
            {
                return Err("the upstream closed the connection before CONNACK".into());
            }
            match outpost_codec::decode_from_server(&input, self.version, MAX_INBOUND_PACKET) {
                Ok(Decoded::Incomplete { .. }) => continue,
                Ok(Decoded::Packet(Packet::ConnAck(ack), used)) => {
                    let limits = self.limits(&ack)?;
                    let session_present = ack.session_present;
                    input.advance(used);
                    return Ok((io, session_present, limits, input));
                }
                Ok(Decoded::Packet(other, _)) => {
                    return Err(format!(
                        "the upstream sent {:?} instead of CONNACK",
                        other.packet_type()
                    ))
                }
                Err(e) => return Err(format!("malformed CONNACK: {e}")),
            }
        }
    }

    fn limits(&self, ack: &ConnAck<'_>) -> Result<Limits, LinkError> {
        if ack.code.is_error() {
            let why = ack.properties.reason_string.unwrap_or("");
            return Err(format!(
                "the upstream refused the connection: {:?} {why}",
                ack.code
            ));
        }
        let p = &ack.properties;
        let window = usize::from(self.config.window.max(1))
            .min(usize::from(p.receive_maximum.unwrap_or(u16::MAX)));
        Ok(Limits {
            window,
            max_qos: p.maximum_qos.unwrap_or(QoS::ExactlyOnce),
            max_packet: p.maximum_packet_size.map_or(usize::MAX, |m| m as usize),
            retain: p.retain_available.unwrap_or(true),
            keep_alive: p.server_keep_alive.unwrap_or(self.config.keep_alive),
            upstream_node: p
                .user_properties
                .iter()
                .find(|u| u.name == "outpost-node")
                .map(|u| u.value.to_string()),
        })
    }

    /// Encodes one backlog entry as the PUBLISH the upstream gets.
    fn encode_forward(
        &self,
        entry: &Entry,
        limits: &Limits,
        pkids: &mut PacketIds,
        inflight: &HashMap<u16, RecordId>,
        out: &mut BytesMut,
    ) -> Forward {
        if let Some(sent) = self.forward_as_stored(entry, limits, pkids, inflight, out) {
            return sent;
        }
        let Ok(Decoded::Packet(Packet::Publish(p), _)) =
            outpost_codec::decode(&entry.publish, Version::V5, usize::MAX)
        else {
            return Forward::Dropped("unreadable backlog record");
        };
        if let Some(up) = &limits.upstream_node {
            if p.properties
                .user_properties
                .iter()
                .any(|u| u.name == HOP && u.value == up)
            {
                return Forward::Skipped;
            }
        }
        let qos = p.qos.min(limits.max_qos).min(QoS::AtLeastOnce);
        let mut properties = p.properties;
        if let Some(expiry) = properties.message_expiry_interval {
            // The upstream gets what is left of the message's lifetime (MQTT 5 §3.3.2.3.3).
            let waited = outpost_store::now_ms().saturating_sub(entry.timestamp) / 1000;
            let left = u64::from(expiry).saturating_sub(waited);
            if left == 0 {
                return Forward::Dropped("expired while waiting for the upstream");
            }
            properties.message_expiry_interval = Some(left as u32);
        }
        let pkid = (qos != QoS::AtMostOnce).then(|| pkids.next(inflight));
        let publish = Packet::Publish(Publish {
            dup: false,
            qos,
            retain: p.retain && limits.retain,
            topic: p.topic,
            pkid: pkid.unwrap_or(0),
            properties,
            payload: p.payload,
        });
        match publish.encoded_len(self.version) {
            Ok(n) if n > limits.max_packet => {
                return Forward::Dropped("larger than the upstream's maximum packet size")
            }
            Ok(_) => {}
            Err(_) => return Forward::Dropped("cannot be encoded"),
        }
        match publish.encode_to(self.version, out) {
            Ok(_) => Forward::Sent(pkid),
            Err(_) => Forward::Dropped("cannot be encoded"),
        }
    }

    /// The common case without decoding: an MQTT 5 upstream that takes the stored PUBLISH as it
    /// is (QoS, retain, size; no expiry to adjust, no upstream Outpost to check hops against)
    /// gets its bytes with the packet identifier filled in. `None`: take the general path.
    fn forward_as_stored(
        &self,
        entry: &Entry,
        limits: &Limits,
        pkids: &mut PacketIds,
        inflight: &HashMap<u16, RecordId>,
        out: &mut BytesMut,
    ) -> Option<Forward> {
        let b = &entry.publish;
        let first = *b.first()?;
        let qos = QoS::from_u8((first >> 1) & 3)?;
        let retain = first & 1 == 1;
        if !self.version.is_v5()
            || entry.flags & crate::backlog::EXPIRES != 0
            || limits.upstream_node.is_some()
            || qos > limits.max_qos
            || qos > QoS::AtLeastOnce
            || (retain && !limits.retain)
            || b.len() > limits.max_packet
        {
            return None;
        }
        // Fixed header: one byte and the remaining length (1 to 4 bytes).
        let mut at = 1;
        while *b.get(at)? & 0x80 != 0 {
            at += 1;
        }
        at += 1;
        let topic_len = usize::from(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]));
        at += 2 + topic_len;
        if qos == QoS::AtMostOnce {
            out.extend_from_slice(b);
            return Some(Forward::Sent(None));
        }
        b.get(at + 2)?;
        let pkid = pkids.next(inflight);
        out.extend_from_slice(&b[..at]);
        out.extend_from_slice(&pkid.to_be_bytes());
        out.extend_from_slice(&b[at + 2..]);
        Some(Forward::Sent(Some(pkid)))
    }

    /// Handles every complete packet in `input`.
    fn on_input(
        &self,
        input: &mut BytesMut,
        inflight: &mut HashMap<u16, RecordId>,
        released: &mut HashSet<u16>,
        ack_tx: &mpsc::UnboundedSender<(u16, bool)>,
        acked: &mut Vec<RecordId>,
        out: &mut BytesMut,
    ) -> Result<(), LinkError> {
        loop {
            let used = match outpost_codec::decode_from_server(
                input,
                self.version,
                MAX_INBOUND_PACKET,
            ) {
                Ok(Decoded::Incomplete { .. }) => return Ok(()),
                Err(e) => return Err(format!("malformed packet from the upstream: {e}")),
                Ok(Decoded::Packet(packet, used)) => {
                    match packet {
                        Packet::PubAck(ack) => {
                            if let Some(id) = inflight.remove(&ack.pkid) {
                                if ack.code.is_error() {
                                    // The upstream will not take it (not authorized, quota...):
                                    // sending it again would fail the same way.
                                    tracing::warn!(bridge = %self.config.name, code = ?ack.code, "the upstream refused a forwarded message; dropped");
                                    self.status.failed(format!("PUBACK {:?}", ack.code));
                                    Status::add(&self.status.dropped, 1);
                                    self.backlog.done(&[id]);
                                } else {
                                    acked.push(id);
                                }
                            }
                        }
                        Packet::Publish(p)
                            if self.sync.as_ref().is_some_and(|s| s.handles(p.topic)) =>
                        {
                            self.shadow_answer(&p, ack_tx)
                        }
                        Packet::Publish(p) => self.inbound(&p, released, ack_tx, out)?,
                        Packet::PubRel(rel) => {
                            released.remove(&rel.pkid);
                            Packet::PubComp(Ack::new(rel.pkid))
                                .encode_to(self.version, out)
                                .map_err(|e| format!("PUBCOMP: {e}"))?;
                        }
                        Packet::SubAck(s) => {
                            self.backlog.link(true);
                            for (rule, code) in self.config.inbound.iter().zip(s.codes.iter()) {
                                if code.is_error() {
                                    tracing::warn!(bridge = %self.config.name, filter = %rule.filter, ?code, "the upstream refused an in-rule subscription");
                                    self.status
                                        .failed(format!("SUBACK {:?} for {}", code, rule.filter));
                                }
                            }
                        }
                        Packet::Disconnect(d) => {
                            return Err(format!("the upstream disconnected: {:?}", d.code))
                        }
                        // PINGRESP, PUBREC/PUBCOMP (never asked for), UNSUBACK: nothing to do.
                        _ => {}
                    }
                    used
                }
            };
            input.advance(used);
        }
    }

    /// A message from the upstream: published locally, acknowledged once durable here.
    /// A shadow answer from the upstream: applied here (see `shadow_sync`), acknowledged once
    /// stored, so a change that could not be stored comes again.
    fn shadow_answer(&self, p: &Publish<'_>, ack_tx: &mpsc::UnboundedSender<(u16, bool)>) {
        let apply = self.sync.as_ref().and_then(|s| s.down(p.topic, p.payload));
        if p.qos == QoS::AtMostOnce {
            if let Some(apply) = apply {
                tokio::spawn(apply);
            }
            return;
        }
        let (pkid, qos2, tx) = (p.pkid, p.qos == QoS::ExactlyOnce, ack_tx.clone());
        match apply {
            None => {
                let _ = tx.send((pkid, qos2));
            }
            Some(apply) => {
                Status::add(&self.status.received, 1);
                tokio::spawn(async move {
                    if apply.await {
                        let _ = tx.send((pkid, qos2));
                    }
                });
            }
        }
    }

    fn inbound(
        &self,
        p: &Publish<'_>,
        released: &mut HashSet<u16>,
        ack_tx: &mpsc::UnboundedSender<(u16, bool)>,
        out: &mut BytesMut,
    ) -> Result<(), LinkError> {
        let qos2 = p.qos == QoS::ExactlyOnce;
        if qos2 && released.contains(&p.pkid) {
            // A resend of a message already published here: acknowledge, do not publish twice.
            return Packet::PubRec(Ack::new(p.pkid))
                .encode_to(self.version, out)
                .map(|_| ())
                .map_err(|e| format!("PUBREC: {e}"));
        }
        let echo = p
            .properties
            .user_properties
            .iter()
            .any(|u| u.name == HOP && u.value == &*self.node);
        let rule = self
            .config
            .inbound
            .iter()
            .find(|r| outpost_codec::topic::matches(&r.filter, p.topic));
        let local = rule.map(|r| map_topic(&r.topic, &r.strip_prefix, p.topic, ""));
        let valid = local
            .as_deref()
            .is_some_and(outpost_codec::topic::is_valid_topic_name);
        let wait = if echo || !valid {
            if !echo {
                tracing::debug!(bridge = %self.config.name, topic = p.topic, "an inbound message matches no in rule; ignored");
            }
            None
        } else {
            let topic = local.unwrap_or_default();
            let message = Message::from_publish(&topic, p, Bytes::copy_from_slice(p.payload));
            Status::add(&self.status.received, 1);
            // Published as the bridge's identity, checked where it enters (ADR 0015); no publish
            // tap sees it, so no bridge forwards it back out.
            match self
                .broker
                .publish_as(&self.config.principal(), message, false)
            {
                Ok((_, durable)) => Some(durable),
                Err(ReasonCode::QuotaExceeded) if p.qos != QoS::AtMostOnce => {
                    // Every matching session's queue is full (or the retained quota): like a
                    // failed write, not acknowledged, so the upstream still holds it and sends
                    // it again on the next connection (ADR 0008).
                    tracing::info!(bridge = %self.config.name, topic = %topic.chars().take(128).collect::<String>(), "an inbound message was refused here (quota exceeded); not acknowledged upstream");
                    return Ok(());
                }
                Err(code) => {
                    tracing::info!(bridge = %self.config.name, topic = %topic.chars().take(128).collect::<String>(), ?code, "an inbound message was refused here; acknowledged upstream and dropped");
                    None
                }
            }
        };
        if p.qos == QoS::AtMostOnce {
            return Ok(());
        }
        if qos2 {
            released.insert(p.pkid);
        }
        let pkid = p.pkid;
        let tx = ack_tx.clone();
        match wait {
            None => {
                let _ = tx.send((pkid, qos2));
            }
            Some(durable) => {
                tokio::spawn(async move {
                    // Not acknowledged when it could not be stored: the upstream sends it again.
                    if durable.wait().await.is_ok() {
                        let _ = tx.send((pkid, qos2));
                    }
                });
            }
        }
        Ok(())
    }
}

/// Records the upstream acknowledged, marked dead in batches: one tombstone write per batch
/// instead of one per PUBACK packet (the store writer's work, not the link's, limited the
/// forwarding rate). Until a batch is written a crash only sends its messages again.
#[derive(Debug, Default)]
struct Acked {
    ids: Vec<RecordId>,
    since: Option<Instant>,
}

impl Acked {
    /// Most records held back.
    const BATCH: usize = 512;
    /// Longest a record is held back.
    const EVERY: Duration = Duration::from_millis(100);

    fn add(&mut self, backlog: &Backlog, ids: Vec<RecordId>) {
        backlog.acknowledged(ids.len());
        if self.ids.is_empty() {
            self.ids = ids;
            self.since = Some(Instant::now());
        } else {
            self.ids.extend(ids);
        }
        if self.ids.len() >= Self::BATCH || self.since.is_some_and(|t| t.elapsed() >= Self::EVERY) {
            self.flush(backlog);
        }
    }

    fn flush(&mut self, backlog: &Backlog) {
        if !self.ids.is_empty() {
            backlog.forget(&self.ids);
            self.ids.clear();
        }
        self.since = None;
    }
}

/// What the upstream's CONNACK allows.
#[derive(Debug, Clone)]
struct Limits {
    window: usize,
    max_qos: QoS,
    max_packet: usize,
    retain: bool,
    keep_alive: u16,
    /// The upstream's node id when it is an Outpost: what passed through it is not sent back.
    upstream_node: Option<String>,
}

enum Forward {
    /// Came from the upstream (through another bridge): sending it back would loop.
    Skipped,
    /// Written; with the packet id to wait for (QoS 1).
    Sent(Option<u16>),
    /// Cannot ever be sent.
    Dropped(&'static str),
}

/// Packet identifiers for PUBLISH and SUBSCRIBE, skipping those in flight.
#[derive(Debug, Default)]
struct PacketIds(u16);

impl PacketIds {
    fn next(&mut self, inflight: &HashMap<u16, RecordId>) -> u16 {
        loop {
            self.0 = self.0.wrapping_add(1);
            if self.0 != 0 && !inflight.contains_key(&self.0) {
                return self.0;
            }
        }
    }
}
