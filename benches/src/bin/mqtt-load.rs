//! A small MQTT load generator (point-to-point): N publisher connections each publish M messages to
//! their own topic; N subscriber connections each receive one topic. Reports messages per second from
//! the first publish to the last delivery. Runs against any broker, so Outpost and a peer can be
//! measured in the same run (`benches/mqtt-load.sh`).
//!
//! usage: mqtt-load HOST:PORT PAIRS MESSAGES QOS PAYLOAD_BYTES

use std::time::{Duration, Instant};

use bytes::BytesMut;
use outpost_codec::{
    decode, split_frame, Ack, Connect, Decoded, List, Packet, Publish, QoS, Subscribe,
    SubscribeFilter, Version,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn encode(p: &Packet<'_>, out: &mut BytesMut) {
    p.encode_to(Version::V311, out).expect("encodable");
}

async fn connect(addr: &str, id: &str) -> (TcpStream, BytesMut) {
    let mut s = TcpStream::connect(addr).await.expect("broker reachable");
    s.set_nodelay(true).ok();
    let mut out = BytesMut::new();
    encode(
        &Packet::Connect(Connect {
            protocol: Version::V311,
            clean_start: true,
            keep_alive: 60,
            client_id: id,
            ..Connect::default()
        }),
        &mut out,
    );
    s.write_all(&out).await.expect("write");
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        if let Some(f) = split_frame(&mut buf, usize::MAX).expect("valid") {
            assert_eq!(f[0], 0x20, "CONNACK");
            break;
        }
        assert!(s.read_buf(&mut buf).await.expect("read") > 0, "closed");
    }
    (s, buf)
}

/// Receives up to `count` PUBLISH packets, acknowledging QoS 1; stops after 2 s without any (QoS 0
/// may be dropped under overload). Returns the time of the last delivery and how many arrived.
async fn subscriber(
    addr: String,
    i: usize,
    count: usize,
    qos: QoS,
    ready: tokio::sync::mpsc::Sender<()>,
) -> (Instant, usize) {
    let (mut s, mut buf) = connect(&addr, &format!("load-sub-{i}")).await;
    let topic = format!("load/{i}");
    let filters = [SubscribeFilter::new(&topic, qos)];
    let mut out = BytesMut::new();
    encode(
        &Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: List::new(&filters),
            ..Subscribe::default()
        }),
        &mut out,
    );
    s.write_all(&out).await.expect("write");
    let mut got = 0;
    let mut last = Instant::now();
    let mut subscribed = false;
    loop {
        while let Some(f) = split_frame(&mut buf, usize::MAX).expect("valid") {
            match decode(&f, Version::V311, usize::MAX).expect("decodes") {
                Decoded::Packet(Packet::SubAck(_), _) => {
                    subscribed = true;
                    ready.send(()).await.ok();
                }
                Decoded::Packet(Packet::Publish(p), _) => {
                    got += 1;
                    if p.qos == QoS::AtLeastOnce {
                        out.clear();
                        encode(&Packet::PubAck(Ack::new(p.pkid)), &mut out);
                        s.write_all(&out).await.expect("write");
                    }
                    last = Instant::now();
                    if got == count {
                        return (last, got);
                    }
                }
                _ => {}
            }
        }
        let _ = subscribed;
        match tokio::time::timeout(Duration::from_secs(2), s.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return (last, got),
        }
    }
}

/// Publishes `count` messages, keeping at most `window` QoS 1 messages unacknowledged.
async fn publisher(addr: String, i: usize, count: usize, qos: QoS, payload: Vec<u8>) {
    let (mut s, mut buf) = connect(&addr, &format!("load-pub-{i}")).await;
    let topic = format!("load/{i}");
    let window = 32;
    let mut in_flight = 0usize;
    let mut sent = 0usize;
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut pkid: u16 = 0;
    while sent < count || in_flight > 0 {
        out.clear();
        while sent < count
            && (qos == QoS::AtMostOnce || in_flight < window)
            && out.len() < 32 * 1024
        {
            pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
            let p = Publish {
                qos,
                pkid: if qos == QoS::AtMostOnce { 0 } else { pkid },
                ..Publish::new(&topic, &payload)
            };
            encode(&Packet::Publish(p), &mut out);
            sent += 1;
            if qos != QoS::AtMostOnce {
                in_flight += 1;
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await.expect("write");
        }
        if qos == QoS::AtMostOnce {
            if sent == count {
                break;
            }
            continue;
        }
        if in_flight > 0 && (in_flight >= window || sent == count) {
            assert!(s.read_buf(&mut buf).await.expect("read") > 0, "closed");
            while let Some(f) = split_frame(&mut buf, usize::MAX).expect("valid") {
                if f[0] >> 4 == 4 {
                    in_flight -= 1;
                }
            }
        }
    }
    // Keep the connection open until the subscribers are done (QoS 0 would otherwise be cut short).
    tokio::time::sleep(Duration::from_secs(2)).await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 {
        eprintln!("usage: mqtt-load HOST:PORT PAIRS MESSAGES QOS PAYLOAD_BYTES");
        std::process::exit(2);
    }
    let (addr, pairs, messages): (String, usize, usize) = (
        a[1].clone(),
        a[2].parse().unwrap_or(4),
        a[3].parse().unwrap_or(10_000),
    );
    let qos = QoS::from_u8(a[4].parse().unwrap_or(0)).unwrap_or(QoS::AtMostOnce);
    let payload = vec![0x42u8; a[5].parse().unwrap_or(16)];
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(pairs);
    let subs: Vec<_> = (0..pairs)
        .map(|i| tokio::spawn(subscriber(addr.clone(), i, messages, qos, ready_tx.clone())))
        .collect();
    for _ in 0..pairs {
        ready_rx.recv().await;
    }
    let start = Instant::now();
    let pubs: Vec<_> = (0..pairs)
        .map(|i| tokio::spawn(publisher(addr.clone(), i, messages, qos, payload.clone())))
        .collect();
    let mut last = start;
    let mut received = 0;
    for s in subs {
        let (done, got) = s.await.expect("subscriber task");
        last = last.max(done);
        received += got;
    }
    let secs = (last - start).as_secs_f64();
    let total = pairs * messages;
    println!(
        "{:.0} msg/s delivered ({received} of {total} messages, {pairs} pairs, QoS {}, {} B) in {secs:.2} s",
        received as f64 / secs,
        qos as u8,
        payload.len()
    );
    for p in pubs {
        p.abort();
    }
}
