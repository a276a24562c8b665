//! Bridge load generator: what a bridging broker forwards to its upstream, counted at the
//! upstream (`benches/bridge-load.sh` runs it against Outpost's bridge and mosquitto's own).
//!
//! Commands:
//! - `live LOCAL UPSTREAM`: a subscriber on the upstream (`gw1/#`), then publishers on the local
//!   broker (QoS 1, a window of 32 each, numbered messages to `sensors/<client>`) for the given
//!   seconds; waits until every acknowledged message arrived upstream (or nothing came for 15 s)
//!   and reports the forwarding rate, end to end, with what was lost and duplicated.
//! - `prepare UPSTREAM`: creates the persistent upstream session `bench-sink` (for `drain`).
//! - `fill LOCAL`: publishes `--count` acknowledged messages (while the upstream is down).
//! - `drain UPSTREAM`: resumes `bench-sink` and reports how fast the `--count` messages arrive.
//!
//! usage: bridge-load live|prepare|fill|drain [--clients N] [--seconds S] [--count N] ADDR...

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Buf as _;
use outpost_benches::mqtt::Conn;
use outpost_codec::{
    decode_from_server, Ack, ConnectProperties, Decoded, List, Packet, Publish, QoS, Subscribe,
    SubscribeFilter, Version,
};
use serde_json::json;
use tokio::io::AsyncReadExt;

/// An MQTT 5 connection (the shared client) with a persistent session when not `clean`, a
/// Receive Maximum of 1,000.
async fn open(addr: &str, id: &str, clean: bool) -> Conn {
    let properties = ConnectProperties {
        session_expiry_interval: (!clean).then_some(3600),
        receive_maximum: Some(1000),
        ..ConnectProperties::default()
    };
    match Conn::connect(addr, id, Version::V5, clean, properties).await {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// Writes one packet; the run cannot go on without it.
async fn send(c: &mut Conn, p: &Packet<'_>) {
    if let Err(e) = c.send(p).await {
        panic!("write: {e}");
    }
}

/// The next packet within `limit`; `None` when the connection closed or went silent.
async fn next_packet(c: &mut Conn, limit: Duration) -> Option<Got> {
    loop {
        if let Ok(Decoded::Packet(p, used)) = decode_from_server(&c.buf, Version::V5, usize::MAX) {
            let got = match p {
                Packet::PubAck(a) => Got::PubAck(a.code.is_error()),
                Packet::Publish(p) => Got::Publish(
                    p.pkid,
                    u64::from_be_bytes(p.payload.get(..8)?.try_into().ok()?),
                ),
                _ => Got::Other,
            };
            c.buf.advance(used);
            return Some(got);
        }
        match tokio::time::timeout(limit, c.s.read_buf(&mut c.buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}

#[derive(Debug)]
enum Got {
    PubAck(bool),
    Publish(u16, u64),
    Other,
}

/// bridge-load: one phase of a bridge benchmark (see `benches/bridge-load.sh`).
#[derive(Debug, clap::Parser)]
struct Options {
    /// live LOCAL UPSTREAM | prepare UPSTREAM | fill LOCAL | drain UPSTREAM
    #[arg(value_parser = ["live", "prepare", "fill", "drain"])]
    command: String,
    /// Concurrent publishers.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds the live phase publishes.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Messages to fill, or to expect when draining.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// The MQTT addresses the command names (HOST:PORT).
    addrs: Vec<String>,
}

/// Publishes numbered QoS 1 messages (8-byte big-endian number, padded to 64 bytes) with a
/// window of 32 until `stop` says so or `count` were acknowledged; returns acknowledged.
async fn publisher(addr: String, id: String, first: u64, count: u64, stop: Arc<AtomicU64>) -> u64 {
    let mut c = open(&addr, &id, true).await;
    let topic = format!("sensors/{id}");
    let (mut next, mut acked, mut outstanding) = (0u64, 0u64, 0u64);
    loop {
        let stopping = stop.load(Ordering::Relaxed) != 0;
        while !stopping && next < count && outstanding < 32 {
            let mut payload = (first + next).to_be_bytes().to_vec();
            payload.resize(64, b'x');
            let publish = Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                pkid: (next % 60_000 + 1) as u16,
                ..Publish::new(&topic, &payload)
            });
            send(&mut c, &publish).await;
            next += 1;
            outstanding += 1;
        }
        if outstanding == 0 {
            return acked;
        }
        match next_packet(&mut c, Duration::from_secs(30)).await {
            Some(Got::PubAck(false)) => {
                acked += 1;
                outstanding -= 1;
            }
            Some(Got::PubAck(true)) => outstanding -= 1,
            Some(_) => {}
            None => return acked,
        }
    }
}

/// Receives on `client`, acknowledging each message, until `want` distinct numbers came or
/// nothing came for `idle`; returns (distinct, total, time of the last new arrival).
async fn sink(mut c: Conn, want: Arc<AtomicU64>, idle: Duration) -> (HashSet<u64>, u64, Instant) {
    let mut seen = HashSet::new();
    let (mut total, mut last) = (0u64, Instant::now());
    while (seen.len() as u64) < want.load(Ordering::Relaxed) {
        match next_packet(&mut c, idle).await {
            Some(Got::Publish(pkid, n)) => {
                if pkid != 0 {
                    send(&mut c, &Packet::PubAck(Ack::new(pkid))).await;
                }
                total += 1;
                if seen.insert(n) {
                    last = Instant::now();
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    (seen, total, last)
}

async fn subscribe(c: &mut Conn) {
    let f = [SubscribeFilter::new("gw1/#", QoS::AtLeastOnce)];
    send(
        c,
        &Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: List::new(&f),
            ..Subscribe::default()
        }),
    )
    .await;
    while !matches!(
        next_packet(c, Duration::from_secs(10)).await,
        Some(Got::Other) | None
    ) {}
}

#[tokio::main]
async fn main() {
    let Options {
        command,
        clients,
        seconds,
        count,
        addrs,
    } = <Options as clap::Parser>::parse();
    let result = match (command.as_str(), addrs.as_slice()) {
        ("live", [local, upstream]) => {
            let mut c = open(upstream, "bench-live-sink", true).await;
            subscribe(&mut c).await;
            // Until the publishers are done, the sink waits for "everything".
            let want = Arc::new(AtomicU64::new(u64::MAX));
            let sinker = tokio::spawn(sink(c, want.clone(), Duration::from_secs(15)));
            let stop = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let pubs: Vec<_> = (0..clients as u64)
                .map(|i| {
                    tokio::spawn(publisher(
                        local.clone(),
                        format!("p{i}"),
                        i << 40,
                        u64::MAX,
                        stop.clone(),
                    ))
                })
                .collect();
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop.store(1, Ordering::Relaxed);
            let mut acked = 0;
            for p in pubs {
                acked += p.await.unwrap_or(0);
            }
            let published_in = started.elapsed().as_secs_f64();
            want.store(acked, Ordering::Relaxed);
            let (seen, total, last) = sinker.await.expect("sink");
            let forwarded_in = last.duration_since(started).as_secs_f64().max(published_in);
            json!({
                "acked": acked,
                "acked_per_sec": acked as f64 / published_in,
                "forwarded": seen.len(),
                "forwarded_per_sec": seen.len() as f64 / forwarded_in,
                "lost": acked.saturating_sub(seen.len() as u64),
                "duplicates": total - seen.len() as u64,
                "seconds": forwarded_in,
            })
        }
        ("prepare", [upstream]) => {
            let mut c = open(upstream, "bench-sink", false).await;
            subscribe(&mut c).await;
            json!({"prepared": true})
        }
        ("fill", [local]) => {
            let started = Instant::now();
            let per = count / clients as u64;
            let pubs: Vec<_> = (0..clients as u64)
                .map(|i| {
                    tokio::spawn(publisher(
                        local.clone(),
                        format!("f{i}"),
                        i << 40,
                        per,
                        Arc::new(AtomicU64::new(0)),
                    ))
                })
                .collect();
            let mut acked = 0;
            for p in pubs {
                acked += p.await.unwrap_or(0);
            }
            json!({"acked": acked, "acked_per_sec": acked as f64 / started.elapsed().as_secs_f64()})
        }
        ("drain", [upstream]) => {
            let started = Instant::now();
            let c = open(upstream, "bench-sink", false).await;
            let (seen, total, last) =
                sink(c, Arc::new(AtomicU64::new(count)), Duration::from_secs(15)).await;
            let secs = last.duration_since(started).as_secs_f64();
            json!({
                "expected": count,
                "drained": seen.len(),
                "lost": count.saturating_sub(seen.len() as u64),
                "duplicates": total - seen.len() as u64,
                "seconds": secs,
                "drained_per_sec": seen.len() as f64 / secs.max(1e-9),
            })
        }
        _ => panic!("usage: bridge-load live LOCAL UPSTREAM | prepare UPSTREAM | fill LOCAL | drain UPSTREAM"),
    };
    println!("{result}");
}
