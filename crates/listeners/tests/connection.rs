//! One connection served over an in-memory duplex pipe: the listener's framing, acknowledgements,
//! keep-alive and error handling against the real engine, with no socket and a virtual clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use outpost_codec::{
    decode_from_server, Connect, Decoded, List, Packet, Publish, QoS, ReasonCode, Subscribe,
    SubscribeFilter, Version,
};
use outpost_listeners::{serve, ListenerConfig};
use outpost_mqtt::{Broker, BrokerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

fn peer() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

struct Client {
    io: DuplexStream,
    buf: BytesMut,
    version: Version,
}

impl Client {
    /// Starts serving one connection of `broker` and returns the client's end.
    fn open(broker: &Arc<Broker>, version: Version) -> Client {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let gate = outpost_net::Gate::new("test", Default::default());
        let permit = gate.admit(peer().ip()).expect("no cap");
        tokio::spawn(serve(
            server,
            outpost_listeners::Peer::plain(peer()),
            broker.clone(),
            Arc::new(ListenerConfig::default()),
            permit,
        ));
        Client {
            io: client,
            buf: BytesMut::new(),
            version,
        }
    }

    async fn send(&mut self, p: Packet<'_>) {
        let mut out = BytesMut::new();
        p.encode_to(self.version, &mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    /// The next packet, in an owned summary: (type, reason or first code, topic).
    async fn recv(&mut self) -> Option<(u8, u8, String)> {
        loop {
            if let Ok(Decoded::Packet(p, used)) =
                decode_from_server(&self.buf, self.version, usize::MAX)
            {
                let got = match &p {
                    Packet::ConnAck(c) => (2, c.code as u8, String::new()),
                    Packet::Publish(p) => (3, p.qos as u8, p.topic.to_string()),
                    Packet::PubAck(a) => (4, a.code as u8, String::new()),
                    Packet::SubAck(s) => (
                        9,
                        s.codes.iter().next().map_or(0, |c| c as u8),
                        String::new(),
                    ),
                    Packet::PingResp => (13, 0, String::new()),
                    Packet::Disconnect(d) => (14, d.code as u8, String::new()),
                    _ => (0, 0, String::new()),
                };
                let _ = self.buf.split_to(used);
                return Some(got);
            }
            let mut chunk = [0u8; 4096];
            match self.io.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

fn connect(id: &str, version: Version, keep_alive: u16) -> Packet<'_> {
    Packet::Connect(Connect {
        protocol: version,
        clean_start: true,
        keep_alive,
        client_id: id,
        ..Connect::default()
    })
}

#[tokio::test]
async fn connect_subscribe_publish_over_a_duplex_pipe() {
    let broker = Arc::new(Broker::new(BrokerConfig::default()));
    let mut sub = Client::open(&broker, Version::V5);
    sub.send(connect("sub", Version::V5, 60)).await;
    assert_eq!(sub.recv().await, Some((2, 0, String::new())));
    let f = [SubscribeFilter::new("t/+", QoS::AtLeastOnce)];
    sub.send(Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: List::new(&f),
        ..Subscribe::default()
    }))
    .await;
    assert_eq!(
        sub.recv().await,
        Some((9, 1, String::new())),
        "granted QoS 1"
    );

    let mut publisher = Client::open(&broker, Version::V311);
    publisher.send(connect("pub", Version::V311, 60)).await;
    assert_eq!(publisher.recv().await, Some((2, 0, String::new())));
    publisher
        .send(Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            pkid: 7,
            ..Publish::new("t/1", b"hello")
        }))
        .await;
    assert_eq!(
        publisher.recv().await,
        Some((4, 0, String::new())),
        "PUBACK"
    );
    assert_eq!(
        sub.recv().await,
        Some((3, 1, "t/1".into())),
        "delivered at QoS 1"
    );
}

#[tokio::test]
async fn malformed_packets_end_only_that_connection() {
    let broker = Arc::new(Broker::new(BrokerConfig::default()));
    let mut bad = Client::open(&broker, Version::V5);
    bad.send(connect("bad", Version::V5, 60)).await;
    assert_eq!(bad.recv().await, Some((2, 0, String::new())));
    // SUBSCRIBE without any filter is malformed.
    bad.io
        .write_all(&[0x82, 0x03, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    let got = bad.recv().await;
    assert!(
        matches!(got, Some((14, code, _)) if code >= 0x80),
        "DISCONNECT with an error reason: {got:?}"
    );
    assert_eq!(bad.recv().await, None, "then closed");
    let mut good = Client::open(&broker, Version::V5);
    good.send(connect("good", Version::V5, 60)).await;
    assert_eq!(good.recv().await, Some((2, 0, String::new())));
    good.send(Packet::PingReq).await;
    assert_eq!(good.recv().await, Some((13, 0, String::new())));
}

#[tokio::test(start_paused = true)]
async fn keep_alive_closes_a_silent_connection_on_the_virtual_clock() {
    let broker = Arc::new(Broker::new(BrokerConfig::default()));
    let mut c = Client::open(&broker, Version::V5);
    c.send(connect("quiet", Version::V5, 10)).await;
    assert_eq!(c.recv().await, Some((2, 0, String::new())));
    // Half a packet keeps nothing alive: only whole packets count.
    c.io.write_all(&[0x30, 0x10, 0x00]).await.unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(
        c.recv().await,
        Some((14, ReasonCode::KeepAliveTimeout as u8, String::new()))
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(15) && waited < Duration::from_secs(16),
        "1.5 × the keep-alive: {waited:?}"
    );
}
