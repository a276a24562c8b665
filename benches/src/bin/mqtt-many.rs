//! Many concurrent MQTT clients on one broker (issue 29): connects `--clients` MQTT 3.1.1
//! clients from several loopback source addresses (one address has ~28k ephemeral ports), each
//! subscribed at QoS 1 to a shared topic and to its own, holds them with keep-alive pings, then
//! measures a QoS 1 fan-out to all of them and a point-to-point load among them. Reports, as one
//! JSON object: connect rate and latency, the broker's RSS and CPU while idle and under each load,
//! and every message expected, delivered and lost.
//!
//! Each client is lean on purpose (a 512-byte buffer, one task): the tool must hold 100,000 of
//! them beside the broker on the same machine. The broker's PID is read for RSS and CPU from
//! /proc. `benches/many-clients.sh` runs it at 1k, 10k and 100k against Outpost and mosquitto.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use clap::Parser;
use hdrhistogram::Histogram;
use outpost_codec::split_frame;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Mutex, Semaphore};

#[derive(Parser, Debug)]
#[command(about = "Many concurrent MQTT clients: connect, idle, fan-out, point-to-point")]
struct Args {
    /// The broker's MQTT address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    addr: SocketAddr,
    /// The broker's process id (RSS and CPU from /proc).
    #[arg(long)]
    pid: u32,
    /// Clients to hold.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Keep-alive of every client, in seconds (each pings at half of it).
    #[arg(long, default_value_t = 30)]
    keep_alive: u16,
    /// Seconds to hold the clients idle (pings only) before the loads.
    #[arg(long, default_value_t = 20)]
    hold: u64,
    /// QoS 1 messages published to the topic every client subscribes to.
    #[arg(long, default_value_t = 3)]
    fanout_messages: u64,
    /// Point-to-point messages per second (QoS 1, each to one random client).
    #[arg(long, default_value_t = 2000)]
    p2p_rate: u64,
    /// Seconds of point-to-point load.
    #[arg(long, default_value_t = 10)]
    p2p_seconds: u64,
    /// Payload size in bytes (at least 8: the send time travels in it).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Prefix of client ids and topics (two runs against one broker differ).
    #[arg(long, default_value = "many")]
    prefix: String,
}

/// What every client task shares.
struct Shared {
    received: AtomicU64,
    /// Which clients are connected and subscribed (point-to-point messages go only to them).
    open: std::sync::Mutex<Vec<usize>>,
    /// Publish-to-receipt latency, microseconds, sharded to keep the lock cold.
    latency: Vec<std::sync::Mutex<Histogram<u64>>>,
    connected: AtomicUsize,
}

impl Shared {
    fn record(&self, shard: usize, micros: u64) {
        if let Ok(mut h) = self.latency[shard % self.latency.len()].lock() {
            let _ = h.record(micros.max(1));
        }
    }

    /// Takes the latencies recorded so far, leaving empty histograms.
    fn take_latency(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.latency {
            if let Ok(mut h) = shard.lock() {
                let _ = all.add(&*h);
                h.reset();
            }
        }
        all
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// RSS (KiB) and CPU time (clock ticks) of a process.
fn proc_figures(pid: u32) -> (u64, u64) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command (which may hold spaces): utime is the 12th, stime the 13th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    (rss, cpu)
}

/// CPU use of `pid` between two readings, in percent of one core.
fn cpu_percent(before: u64, after: u64, seconds: f64) -> f64 {
    const TICKS: f64 = 100.0;
    if seconds <= 0.0 {
        return 0.0;
    }
    (after.saturating_sub(before) as f64 / TICKS) / seconds * 100.0
}

fn summary(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |q: f64| (h.value_at_quantile(q) as f64 / 1000.0 * 100.0).round() / 100.0;
    json!({ "count": h.len(), "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": ms(1.0) })
}

fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn connect_packet(id: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    string("MQTT", &mut body);
    body.push(4); // 3.1.1
    body.push(0x02); // clean session
    body.extend_from_slice(&keep_alive.to_be_bytes());
    string(id, &mut body);
    let mut p = vec![0x10];
    remaining_length(body.len(), &mut p);
    p.extend_from_slice(&body);
    p
}

fn subscribe_packet(pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    for f in filters {
        string(f, &mut body);
        body.push(1);
    }
    let mut p = vec![0x82];
    remaining_length(body.len(), &mut p);
    p.extend_from_slice(&body);
    p
}

fn publish_packet(topic: &str, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + 4 + payload.len());
    string(topic, &mut body);
    body.extend_from_slice(&pkid.to_be_bytes());
    body.extend_from_slice(payload);
    let mut p = vec![0x32];
    remaining_length(body.len(), &mut p);
    p.extend_from_slice(&body);
    p
}

/// The next whole packet (fixed header included).
async fn frame(s: &mut TcpStream, buf: &mut BytesMut) -> Result<bytes::Bytes, String> {
    loop {
        if let Some(f) = split_frame(buf, usize::MAX).map_err(|e| format!("{e:?}"))? {
            return Ok(f);
        }
        match s.read_buf(buf).await {
            Ok(n) if n > 0 => {}
            _ => return Err("closed".into()),
        }
    }
}

/// Skips the fixed header of a whole packet: what follows it.
fn body(f: &[u8]) -> &[u8] {
    let mut i = 1;
    while i < f.len() && f[i] & 0x80 != 0 {
        i += 1;
    }
    f.get(i + 1..).unwrap_or(&[])
}

/// Opens one client from `source`: CONNECT, CONNACK, SUBSCRIBE to both topics, SUBACK.
async fn open(
    addr: SocketAddr,
    source: IpAddr,
    id: &str,
    filters: &[&str],
    keep_alive: u16,
) -> Result<(TcpStream, BytesMut), String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let mut s = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).ok();
    let mut buf = BytesMut::with_capacity(512);
    s.write_all(&connect_packet(id, keep_alive))
        .await
        .map_err(|e| e.to_string())?;
    let f = frame(&mut s, &mut buf).await?;
    if f.first() != Some(&0x20) || f.get(3) != Some(&0) {
        return Err(format!("CONNACK refused: {f:?}"));
    }
    if !filters.is_empty() {
        s.write_all(&subscribe_packet(1, filters))
            .await
            .map_err(|e| e.to_string())?;
        let f = frame(&mut s, &mut buf).await?;
        if f.first() != Some(&0x90) || f.iter().skip(4).any(|&c| c >= 0x80) {
            return Err(format!("SUBACK refused: {f:?}"));
        }
    }
    Ok((s, buf))
}

/// One held client: answers PUBLISH with PUBACK, records latency, pings at half its keep-alive.
async fn hold(
    n: usize,
    mut s: TcpStream,
    mut buf: BytesMut,
    keep_alive: u16,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let period = Duration::from_secs(u64::from(keep_alive.max(2)) / 2);
    // Spread the pings: not every client on the same tick.
    let first = tokio::time::Instant::now() + period.mul_f64((n % 1000) as f64 / 1000.0 + 0.01);
    let mut ping = tokio::time::interval_at(first, period);
    loop {
        tokio::select! {
            read = s.read_buf(&mut buf) => {
                if !matches!(read, Ok(k) if k > 0) {
                    return;
                }
                while let Ok(Some(f)) = split_frame(&mut buf, usize::MAX) {
                    if f[0] >> 4 != 3 {
                        continue;
                    }
                    let qos = (f[0] >> 1) & 3;
                    let b = body(&f);
                    if b.len() < 2 {
                        continue;
                    }
                    let tlen = u16::from_be_bytes([b[0], b[1]]) as usize;
                    let mut rest = b.get(2 + tlen..).unwrap_or(&[]);
                    if qos > 0 && rest.len() >= 2 {
                        let ack = [0x40, 2, rest[0], rest[1]];
                        rest = &rest[2..];
                        if s.write_all(&ack).await.is_err() {
                            return;
                        }
                    }
                    if rest.len() >= 8 {
                        let sent = rest.get_u64();
                        shared.record(n, now_micros().saturating_sub(sent));
                    }
                    shared.received.fetch_add(1, Relaxed);
                }
            }
            _ = ping.tick() => {
                if s.write_all(&[0xC0, 0]).await.is_err() {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// A publisher: QoS 1, a window of PUBACKs outstanding, its own reader counting them.
struct Publisher {
    s: TcpStream,
    buf: BytesMut,
    pkid: u16,
}

impl Publisher {
    /// Connects a publisher from 127.0.0.1 (no subscriptions); the run cannot go on without it.
    async fn open(addr: SocketAddr, id: &str) -> Publisher {
        match open(addr, IpAddr::V4(Ipv4Addr::LOCALHOST), id, &[], 600).await {
            Ok((s, buf)) => Publisher { s, buf, pkid: 0 },
            Err(e) => panic!("publisher {id} could not connect: {e}"),
        }
    }

    async fn publish_acked(&mut self, topic: &str, payload: &[u8]) -> Result<(), String> {
        self.pkid = self.pkid % 60_000 + 1;
        self.s
            .write_all(&publish_packet(topic, self.pkid, payload))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let f =
                tokio::time::timeout(Duration::from_secs(60), frame(&mut self.s, &mut self.buf))
                    .await
                    .map_err(|_| "no PUBACK within 60 s".to_string())??;
            if f[0] == 0x40 && f.len() >= 4 && u16::from_be_bytes([f[2], f[3]]) == self.pkid {
                return Ok(());
            }
        }
    }
}

fn payload(size: usize) -> Vec<u8> {
    let mut p = now_micros().to_be_bytes().to_vec();
    p.resize(size.max(8), b'x');
    p
}

/// Waits until `received` reaches `target` or nothing arrived for `quiet`.
async fn wait_for(shared: &Shared, target: u64, quiet: Duration, deadline: Duration) {
    let start = Instant::now();
    let mut last = shared.received.load(Relaxed);
    let mut last_change = Instant::now();
    while shared.received.load(Relaxed) < target && start.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = shared.received.load(Relaxed);
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() > quiet {
            break;
        }
    }
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let shared = Arc::new(Shared {
        received: AtomicU64::new(0),
        open: std::sync::Mutex::new(Vec::with_capacity(a.clients)),
        latency: (0..64)
            .map(|_| std::sync::Mutex::new(histogram()))
            .collect(),
        connected: AtomicUsize::new(0),
    });
    // ~28k ephemeral ports per source address, some still in TIME_WAIT from an earlier run: one
    // address per 5,000 clients, from 127.0.0.2.
    // Each run takes fresh source addresses (127.B.x.y, B from the process id): the ports of the
    // previous run's connections wait in TIME_WAIT for a minute, and binding beside tens of
    // thousands of them made connects stall for ~200 ms, for every broker alike.
    let base = 1 + (std::process::id() % 250) as u8;
    let sources: Vec<IpAddr> = (0..a.clients.div_ceil(5_000).max(1))
        .map(|k| {
            IpAddr::V4(Ipv4Addr::new(
                127,
                base,
                (k / 250) as u8,
                (k % 250) as u8 + 2,
            ))
        })
        .collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (rss_start, _) = proc_figures(a.pid);

    // 1. Connect, a bounded number at a time.
    let all_topic = format!("{}/all", a.prefix);
    let gate = Arc::new(Semaphore::new(a.concurrency));
    let connect_latency = Arc::new(Mutex::new(histogram()));
    let failures = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let (_, cpu0) = proc_figures(a.pid);
    let t0 = Instant::now();
    let mut opening = Vec::with_capacity(a.clients);
    for n in 0..a.clients {
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let (shared, stop, lat, fails, err) = (
            shared.clone(),
            stop_rx.clone(),
            connect_latency.clone(),
            failures.clone(),
            first_error.clone(),
        );
        let source = sources[n % sources.len()];
        let (id, own, all) = (
            format!("{}-{n}", a.prefix),
            format!("{}/c/{n}", a.prefix),
            all_topic.clone(),
        );
        let (addr, ka) = (a.addr, a.keep_alive);
        opening.push(tokio::spawn(async move {
            let began = Instant::now();
            let r = tokio::time::timeout(
                Duration::from_secs(60),
                open(addr, source, &id, &[&all, &own], ka),
            )
            .await;
            drop(permit);
            match r {
                Ok(Ok((s, buf))) => {
                    let _ = lat
                        .lock()
                        .await
                        .record((began.elapsed().as_micros() as u64).max(1));
                    shared.connected.fetch_add(1, Relaxed);
                    if let Ok(mut open) = shared.open.lock() {
                        open.push(n);
                    }
                    tokio::spawn(hold(n, s, buf, ka, shared, stop));
                }
                Ok(Err(e)) => {
                    fails.fetch_add(1, Relaxed);
                    err.lock().await.get_or_insert(e);
                }
                Err(_) => {
                    fails.fetch_add(1, Relaxed);
                    err.lock()
                        .await
                        .get_or_insert("no CONNACK/SUBACK within 60 s".into());
                }
            }
        }));
    }
    for t in opening {
        let _ = t.await;
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    let (rss_connected, cpu1) = proc_figures(a.pid);
    let connected = shared.connected.load(Relaxed);
    eprintln!(
        "mqtt-many: {connected} of {} connected in {connect_secs:.1} s ({} failed{})",
        a.clients,
        failures.load(Relaxed),
        first_error
            .lock()
            .await
            .as_ref()
            .map_or(String::new(), |e| format!(", first: {e}"))
    );

    // 2. Idle: pings only.
    let t1 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.hold)).await;
    let (rss_idle, cpu2) = proc_figures(a.pid);
    let idle_secs = t1.elapsed().as_secs_f64();
    let stray = shared.received.swap(0, Relaxed);

    // 3. QoS 1 fan-out: each message to every client.
    let mut publisher = Publisher::open(a.addr, &format!("{}-publisher", a.prefix)).await;
    shared.take_latency();
    let mut rss_peak = rss_idle;
    let t2 = Instant::now();
    let mut published = 0;
    for _ in 0..a.fanout_messages {
        if publisher
            .publish_acked(&all_topic, &payload(a.payload))
            .await
            .is_ok()
        {
            published += 1;
        }
        rss_peak = rss_peak.max(proc_figures(a.pid).0);
    }
    let expected_fan = published * connected as u64;
    let fan_deadline = Duration::from_secs(120 + connected as u64 / 500);
    let waiter = wait_for(&shared, expected_fan, Duration::from_secs(20), fan_deadline);
    tokio::pin!(waiter);
    loop {
        tokio::select! {
            _ = &mut waiter => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                rss_peak = rss_peak.max(proc_figures(a.pid).0);
            }
        }
    }
    let fan_secs = t2.elapsed().as_secs_f64();
    let (_, cpu3) = proc_figures(a.pid);
    let fan_delivered = shared.received.swap(0, Relaxed);
    let fan_latency = shared.take_latency();

    // 4. Point-to-point: QoS 1 to one random client each, from 16 publishers at a fixed rate.
    let senders = 16usize;
    let targets: Arc<Vec<usize>> =
        Arc::new(shared.open.lock().map(|o| o.clone()).unwrap_or_default());
    let sent = Arc::new(AtomicU64::new(0));
    let t3 = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..senders {
        let mut p = Publisher::open(a.addr, &format!("{}-p2p-{k}", a.prefix)).await;
        let (sent, prefix, rate, secs, size, targets) = (
            sent.clone(),
            a.prefix.clone(),
            a.p2p_rate.max(1),
            a.p2p_seconds,
            a.payload,
            targets.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let per = rate.div_ceil(senders as u64).max(1);
            let total = per * secs;
            let start = Instant::now();
            let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (k as u64 + 1);
            for i in 0..total {
                let due = start + Duration::from_nanos(i * 1_000_000_000 / per);
                tokio::time::sleep_until(due.into()).await;
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let Some(&to) = targets.get((seed % targets.len().max(1) as u64) as usize) else {
                    break;
                };
                if p.publish_acked(&format!("{prefix}/c/{to}"), &payload(size))
                    .await
                    .is_ok()
                {
                    sent.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    let mut rss_p2p = rss_idle;
    for t in tasks {
        while !t.is_finished() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            rss_p2p = rss_p2p.max(proc_figures(a.pid).0);
        }
        let _ = t.await;
    }
    let p2p_sent = sent.load(Relaxed);
    wait_for(
        &shared,
        p2p_sent,
        Duration::from_secs(10),
        Duration::from_secs(60),
    )
    .await;
    let p2p_secs = t3.elapsed().as_secs_f64();
    let (_, cpu4) = proc_figures(a.pid);
    let p2p_delivered = shared.received.swap(0, Relaxed);
    let p2p_latency = shared.take_latency();
    let _ = stop_tx.send(true);
    let connect_latency = connect_latency.lock().await.clone();

    let per_conn = |rss: u64| {
        if connected > 0 {
            (rss.saturating_sub(rss_start) * 1024) as f64 / connected as f64
        } else {
            0.0
        }
    };
    let report = json!({
        "clients": a.clients,
        "connected": connected,
        "connect_failures": failures.load(Relaxed),
        "sources": sources.len(),
        "connect": {
            "seconds": connect_secs,
            "per_second": connected as f64 / connect_secs.max(1e-9),
            "latency": summary(&connect_latency),
            "cpu_percent": cpu_percent(cpu0, cpu1, connect_secs),
        },
        "rss_kib": { "start": rss_start, "connected": rss_connected, "idle": rss_idle,
                     "fanout_peak": rss_peak, "p2p_peak": rss_p2p },
        "bytes_per_connection_idle": per_conn(rss_idle),
        "idle": { "seconds": idle_secs, "cpu_percent": cpu_percent(cpu1, cpu2, idle_secs),
                  "stray_messages": stray },
        "fanout": {
            "messages": published, "expected": expected_fan, "delivered": fan_delivered,
            "lost": expected_fan.saturating_sub(fan_delivered), "seconds": fan_secs,
            "deliveries_per_second": fan_delivered as f64 / fan_secs.max(1e-9),
            "latency": summary(&fan_latency), "cpu_percent": cpu_percent(cpu2, cpu3, fan_secs),
        },
        "p2p": {
            "rate": a.p2p_rate, "seconds": a.p2p_seconds, "expected": p2p_sent,
            "delivered": p2p_delivered, "lost": p2p_sent.saturating_sub(p2p_delivered),
            "latency": summary(&p2p_latency), "cpu_percent": cpu_percent(cpu3, cpu4, p2p_secs),
        },
    });
    println!("{report}");
}
