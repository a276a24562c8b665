//! A raw MQTT client: nothing between the test and the socket, so a test can send what no
//! well-behaved client library would, and see exactly what the broker answers.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use outpost_codec::{
    decode_from_server, ConnectProperties, Decoded, Packet, QoS, ReasonCode, Subscribe,
    SubscribeFilter, Version,
};

/// What the broker sent, reduced to what the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    ConnAck(ReasonCode),
    SubAck(Vec<ReasonCode>),
    UnsubAck(Vec<ReasonCode>),
    PubAck(u16, ReasonCode),
    PubRec(u16, ReasonCode),
    Publish {
        topic: String,
        pkid: u16,
        payload: Vec<u8>,
    },
    Disconnect(ReasonCode),
    PingResp,
    Other,
}

/// A byte stream a [`Raw`] client talks over: a TCP socket, or a TLS stream over one.
pub trait Wire: Read + Write {
    fn set_read_timeout(&self, limit: Option<Duration>) -> std::io::Result<()>;
}

impl Wire for TcpStream {
    fn set_read_timeout(&self, limit: Option<Duration>) -> std::io::Result<()> {
        TcpStream::set_read_timeout(self, limit)
    }
}

pub struct Raw<S = TcpStream> {
    pub s: S,
    buf: Vec<u8>,
    version: Version,
    /// From the last CONNACK: Server Keep Alive and Receive Maximum (MQTT 5).
    pub server_keep_alive: Option<u16>,
    pub receive_maximum: Option<u16>,
}

impl Raw {
    pub fn connect(addr: SocketAddr, version: Version, client: &str, clean: bool) -> Raw {
        Self::connect_with(
            addr,
            version,
            client,
            clean,
            ConnectProperties::default(),
            60,
        )
    }

    pub fn connect_with(
        addr: SocketAddr,
        version: Version,
        client: &str,
        clean: bool,
        properties: ConnectProperties<'_>,
        keep_alive: u16,
    ) -> Raw {
        let mut raw = Self::open(addr, version);
        raw.send(&Packet::Connect(outpost_codec::Connect {
            protocol: version,
            clean_start: clean,
            keep_alive,
            client_id: client,
            properties,
            ..outpost_codec::Connect::default()
        }));
        raw
    }

    /// CONNECT with a username and password (clean start).
    pub fn login(
        addr: SocketAddr,
        version: Version,
        client: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Raw {
        let mut raw = Self::open(addr, version);
        raw.send(&Packet::Connect(outpost_codec::Connect {
            protocol: version,
            clean_start: true,
            keep_alive: 60,
            client_id: client,
            username,
            password,
            ..outpost_codec::Connect::default()
        }));
        raw
    }

    pub fn open(addr: SocketAddr, version: Version) -> Raw {
        let s = TcpStream::connect(addr).expect("tcp connect");
        s.set_nodelay(true).unwrap();
        Raw::over(s, version)
    }

    /// True when the broker closes the connection within `limit` (whatever it sends first).
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        closed_within(&mut self.s, limit)
    }
}

impl<S: Wire> Raw<S> {
    /// A client over a stream already open.
    pub fn over(s: S, version: Version) -> Raw<S> {
        Raw {
            s,
            buf: Vec::new(),
            version,
            server_keep_alive: None,
            receive_maximum: None,
        }
    }

    pub fn send(&mut self, p: &Packet<'_>) {
        let mut out = BytesMut::new();
        p.encode_to(self.version, &mut out).expect("encodable");
        self.s.write_all(&out).expect("write");
        self.s.flush().expect("flush");
    }

    /// Publishes message number `n` at QoS 1: its first four bytes are the number, padded to
    /// `size` bytes, with a packet identifier derived from it (unique within 60,000 in flight).
    pub fn publish_number(&mut self, topic: &str, n: u32, size: usize) {
        let mut payload = n.to_be_bytes().to_vec();
        payload.resize(size.max(4), b'x');
        self.publish(
            topic,
            &payload,
            QoS::AtLeastOnce,
            (n % 60_000 + 1) as u16,
            false,
        );
    }

    /// Sends, and says whether the connection took it (false once the broker is gone).
    pub fn try_send(&mut self, p: &Packet<'_>) -> bool {
        let mut out = BytesMut::new();
        p.encode_to(self.version, &mut out).expect("encodable");
        self.s.write_all(&out).is_ok() && self.s.flush().is_ok()
    }

    /// The next packet within `limit`; `None` when the connection closed or nothing came.
    pub fn recv(&mut self, limit: Duration) -> Option<Got> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Decoded::Packet(p, used)) =
                decode_from_server(&self.buf, self.version, usize::MAX)
            {
                let got = match p {
                    Packet::ConnAck(c) => {
                        self.server_keep_alive = c.properties.server_keep_alive;
                        self.receive_maximum = c.properties.receive_maximum;
                        Got::ConnAck(c.code)
                    }
                    Packet::SubAck(s) => Got::SubAck(s.codes.iter().collect()),
                    Packet::UnsubAck(u) => Got::UnsubAck(u.codes.iter().collect()),
                    Packet::PubAck(a) => Got::PubAck(a.pkid, a.code),
                    Packet::PubRec(a) => Got::PubRec(a.pkid, a.code),
                    Packet::Publish(p) => Got::Publish {
                        topic: p.topic.to_string(),
                        pkid: p.pkid,
                        payload: p.payload.to_vec(),
                    },
                    Packet::Disconnect(d) => Got::Disconnect(d.code),
                    Packet::PingResp => Got::PingResp,
                    _ => Got::Other,
                };
                self.buf.drain(..used);
                return Some(got);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.s
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 64 * 1024];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next PUBLISH within `limit` as (packet identifier, payload), skipping anything else.
    pub fn recv_publish(&mut self, limit: Duration) -> Option<(u16, Vec<u8>)> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if let Got::Publish { pkid, payload, .. } = self.recv(left)? {
                return Some((pkid, payload));
            }
        }
    }

    pub fn subscribe(&mut self, pkid: u16, filters: &[&str], qos: QoS) {
        let f: Vec<SubscribeFilter<'_>> = filters
            .iter()
            .map(|f| SubscribeFilter::new(f, qos))
            .collect();
        self.send(&Packet::Subscribe(Subscribe {
            pkid,
            filters: outpost_codec::List::new(&f),
            ..Subscribe::default()
        }));
    }

    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, pkid: u16, retain: bool) {
        self.send(&Packet::Publish(outpost_codec::Publish {
            qos,
            pkid,
            retain,
            ..outpost_codec::Publish::new(topic, payload)
        }));
    }
}

/// True when the peer closes `s` within `limit` (whatever it sends first; a reset counts).
pub fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut chunk = [0u8; 4096];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Connects `client` with a persistent session, subscribes it to `filter` at QoS 1 and leaves:
/// from now on everything published to `filter` is stored for it.
pub fn offline_subscriber(addr: SocketAddr, client: &str, filter: &str) {
    let wait = Duration::from_secs(10);
    let mut s = Raw::connect_with(addr, Version::V5, client, false, persistent(), 60);
    assert_eq!(s.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    s.subscribe(1, &[filter], QoS::AtLeastOnce);
    assert!(matches!(s.recv(wait), Some(Got::SubAck(_))));
    s.send(&Packet::Disconnect(outpost_codec::Disconnect::new(
        ReasonCode::Success,
    )));
    // The broker closes its side once the session is offline: until then a publish could still
    // go to this connection (in flight) instead of the session's queue.
    assert!(
        s.closed_within(wait),
        "the broker did not close {client}'s connection after its DISCONNECT"
    );
}

/// Resumes `client`'s persistent session (MQTT 5): its connection, past a successful CONNACK.
pub fn resume(addr: SocketAddr, client: &str) -> Raw {
    let mut s = Raw::connect_with(addr, Version::V5, client, false, persistent(), 60);
    assert_eq!(
        s.recv(Duration::from_secs(10)),
        Some(Got::ConnAck(ReasonCode::Success)),
        "{client} resumed"
    );
    s
}

/// Resumes `client`'s persistent session and collects the numbers (first four payload bytes) of
/// the messages it gets, acknowledging each, until `count` arrived or nothing came for 10 s.
pub fn drain_numbers(addr: SocketAddr, client: &str, count: usize) -> BTreeSet<u32> {
    drain_until(addr, client, |got| got.len() >= count)
}

/// [`drain_numbers`] until `done` says so (or nothing came for 10 s).
pub fn drain_until(
    addr: SocketAddr,
    client: &str,
    mut done: impl FnMut(&BTreeSet<u32>) -> bool,
) -> BTreeSet<u32> {
    let wait = Duration::from_secs(10);
    let mut s = resume(addr, client);
    let mut got = BTreeSet::new();
    while !done(&got) {
        let Some((pkid, payload)) = s.recv_publish(wait) else {
            break;
        };
        got.insert(u32::from_be_bytes(payload[..4].try_into().unwrap()));
        s.send(&Packet::PubAck(outpost_codec::Ack::new(pkid)));
    }
    got
}

/// Fails naming what was acknowledged and not delivered.
pub fn assert_none_lost(acked: &BTreeSet<u32>, got: &BTreeSet<u32>) {
    let lost: Vec<&u32> = acked.difference(got).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged and lost, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}

/// CONNECT properties of a session that outlives its connection.
pub fn persistent() -> ConnectProperties<'static> {
    ConnectProperties {
        session_expiry_interval: Some(3600),
        ..ConnectProperties::default()
    }
}
