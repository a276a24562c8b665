//! Shadow updates against plain QoS 1 publishes, same broker, same run (issue 30): each of
//! `--clients` MQTT clients does request → answer round trips for `--seconds`, one at a time:
//! - `shadow`: PUBLISH (QoS 1) `{"state":{"reported":{...}}}` to its thing's
//!   `$aws/things/{thing}/shadow/update`, and waits for `…/update/accepted` (the change stored);
//! - `publish`: PUBLISH (QoS 1) to a topic it subscribes to itself, and waits for the message.
//!
//! Prints JSON: round trips per second, p50/p99 latency, and what was lost (a shadow update
//! acknowledged whose version never came back, a publish never delivered).
//!
//! usage: shadow-load --addr 127.0.0.1:1883 [--clients 8] [--seconds 10]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::Parser;
use hdrhistogram::Histogram;
use outpost_codec::{
    decode_from_server, Ack, Connect, Decoded, List, Packet, Publish, QoS, Subscribe,
    SubscribeFilter, SubscribeOptions, Version,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:1883")]
    addr: SocketAddr,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

struct Client {
    s: TcpStream,
    buf: BytesMut,
}

impl Client {
    async fn open(addr: SocketAddr, id: &str, filter: &str) -> Client {
        let s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).ok();
        let mut c = Client {
            s,
            buf: BytesMut::new(),
        };
        c.send(&Packet::Connect(Connect {
            protocol: Version::V311,
            clean_start: true,
            keep_alive: 60,
            client_id: id,
            ..Connect::default()
        }))
        .await;
        assert!(matches!(c.next().await, Got::ConnAck), "CONNACK");
        let filters = [SubscribeFilter {
            filter,
            options: SubscribeOptions {
                qos: QoS::AtLeastOnce,
                ..SubscribeOptions::default()
            },
        }];
        c.send(&Packet::Subscribe(Subscribe {
            pkid: 1,
            properties: Default::default(),
            filters: List::new(&filters),
        }))
        .await;
        assert!(matches!(c.next().await, Got::SubAck), "SUBACK");
        c
    }

    async fn send(&mut self, p: &Packet<'_>) {
        let mut out = BytesMut::new();
        p.encode_to(Version::V311, &mut out).expect("encodes");
        self.s.write_all(&out).await.expect("write");
    }

    /// The next packet, as far as the loop reads it.
    async fn next(&mut self) -> Got {
        loop {
            let got = match decode_from_server(&self.buf, Version::V311, usize::MAX) {
                Ok(Decoded::Packet(p, used)) => Some((got(&p), used)),
                Ok(Decoded::Incomplete { .. }) => None,
                Err(e) => panic!("bad packet from the broker: {e}"),
            };
            if let Some((g, used)) = got {
                let _ = self.buf.split_to(used);
                return g;
            }
            if self.s.read_buf(&mut self.buf).await.expect("read") == 0 {
                panic!("the broker closed the connection");
            }
        }
    }
}

/// What a packet from the broker says, owned.
enum Got {
    ConnAck,
    SubAck,
    PubAck(u16),
    Publish {
        pkid: u16,
        qos: QoS,
        payload: Vec<u8>,
    },
    Other,
}

fn got(p: &Packet<'_>) -> Got {
    match p {
        Packet::ConnAck(_) => Got::ConnAck,
        Packet::SubAck(_) => Got::SubAck,
        Packet::PubAck(a) => Got::PubAck(a.pkid),
        Packet::Publish(p) => Got::Publish {
            pkid: p.pkid,
            qos: p.qos,
            payload: p.payload.to_vec(),
        },
        _ => Got::Other,
    }
}

#[derive(Default)]
struct Totals {
    latency: Option<Histogram<u64>>,
    round_trips: u64,
    lost: u64,
}

async fn worker(
    addr: SocketAddr,
    n: usize,
    shadow: bool,
    until: Instant,
    totals: Arc<Mutex<Totals>>,
) {
    let run = std::process::id();
    let (request, answer) = if shadow {
        let thing = format!("bench-{run}-{n}");
        (
            format!("$aws/things/{thing}/shadow/update"),
            format!("$aws/things/{thing}/shadow/update/accepted"),
        )
    } else {
        let t = format!("bench/{run}/{n}");
        (t.clone(), t)
    };
    let mut c = Client::open(addr, &format!("load-{run}-{n}-{shadow}"), &answer).await;
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let (mut sent, mut answered, mut last_version) = (0u64, 0u64, 0u64);
    while Instant::now() < until {
        sent += 1;
        let pkid = (sent % 60_000 + 1) as u16;
        let body =
            json!({"state": {"reported": {"n": sent, "temp": 20.5, "ok": true}}}).to_string();
        let began = Instant::now();
        c.send(&Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            pkid,
            ..Publish::new(&request, body.as_bytes())
        }))
        .await;
        let (mut acked, mut got) = (false, false);
        while !(acked && got) {
            match tokio::time::timeout(Duration::from_secs(10), c.next()).await {
                Ok(Got::PubAck(p)) if p == pkid => acked = true,
                Ok(Got::Publish {
                    pkid: p,
                    qos,
                    payload,
                }) => {
                    if qos != QoS::AtMostOnce {
                        c.send(&Packet::PubAck(Ack::new(p))).await;
                    }
                    if shadow {
                        let v: serde_json::Value =
                            serde_json::from_slice(&payload).unwrap_or_default();
                        last_version = v["version"].as_u64().unwrap_or(last_version);
                    }
                    got = true;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if !(acked && got) {
            break;
        }
        answered += 1;
        let _ = h.record(began.elapsed().as_micros() as u64);
    }
    let mut t = totals.lock().await;
    t.round_trips += answered;
    // A shadow's version counts its accepted updates: every acknowledged one must be there.
    t.lost += if shadow {
        answered.saturating_sub(last_version)
    } else {
        sent - answered
    };
    match &mut t.latency {
        Some(all) => {
            let _ = all.add(&h);
        }
        None => t.latency = Some(h),
    }
}

async fn measure(a: &Args, shadow: bool) -> serde_json::Value {
    let totals = Arc::new(Mutex::new(Totals::default()));
    let start = Instant::now();
    let until = start + Duration::from_secs(a.seconds);
    let tasks: Vec<_> = (0..a.clients)
        .map(|n| tokio::spawn(worker(a.addr, n, shadow, until, totals.clone())))
        .collect();
    for t in tasks {
        t.await.expect("worker");
    }
    let secs = start.elapsed().as_secs_f64();
    let t = totals.lock().await;
    let h = t
        .latency
        .clone()
        .unwrap_or_else(|| Histogram::new(3).expect("histogram"));
    let ms = |q: f64| (h.value_at_quantile(q) as f64 / 10.0).round() / 100.0;
    json!({
        "round_trips": t.round_trips,
        "per_second": t.round_trips as f64 / secs,
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "lost": t.lost,
    })
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let publish = measure(&a, false).await;
    let shadow = measure(&a, true).await;
    println!(
        "{}",
        json!({"clients": a.clients, "seconds": a.seconds, "publish": publish, "shadow": shadow})
    );
}
