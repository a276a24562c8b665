//! The end-to-end MQTT benchmark: the same scenarios, with the same client settings, against each
//! broker given on the command line, one after the other (`benches/mqtt-bench.sh` starts Outpost,
//! mosquitto and rumqttd and passes their addresses and pids).
//!
//! Scenarios (modelled on the open MQTT benchmark suite's basic set):
//! - `p2p`: 8 publishers → 8 subscribers on distinct topics, as fast as the broker allows
//!   (QoS 0 and 1, 16 B and 1 KiB);
//! - `p2p-rate`: the same at a fixed offered load (4 × 5,000 msg/s, QoS 1), for latency;
//! - `fanout`: 1 publisher → 1,000 subscribers of one topic (QoS 0 and 1);
//! - `fanin-shared`: 8 publishers → 4 members of a shared subscription (QoS 1);
//! - `persistent`: QoS 1 to an offline persistent session, then the drain on reconnect;
//! - `persistent-fan`: QoS 1, 1 KiB, to 1, 10 and 100 offline persistent sessions: publish rate
//!   and bytes written per message;
//! - `flood`: 10 publishers → 10 subscribers (pairs), QoS 1, 64 B, 100 unacknowledged per
//!   publisher, for 10 s (50 s with `--full`): delivered msg/s, and how many acknowledged messages
//!   were never delivered (must be 0);
//! - `idle`: 10,000 idle connections: resident memory per connection;
//! - `connect-rate`: 1,000 new connections a second for 5 s: CONNECT → CONNACK latency.
//!
//! Every payload carries its send time, so each delivery yields an end-to-end latency
//! (HdrHistogram). Resident memory is sampled from /proc while each scenario runs.
//!
//! usage: mqtt-bench [--full] [--only SCENARIO] [--json FILE] NAME=HOST:PORT@PID...

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use outpost_benches::mqtt::Conn;
use outpost_codec::{decode, split_frame, Ack, Decoded, Packet, Publish, QoS, Version};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

fn encode(p: &Packet<'_>, out: &mut BytesMut) {
    p.encode_to(Version::V311, out).expect("encodable");
}

async fn connect(addr: &str, id: &str, clean: bool) -> Option<Conn> {
    Conn::v311(addr, id, clean).await.ok()
}

async fn subscribe(c: &mut Conn, filter: &str, qos: QoS) -> bool {
    c.subscribe(filter, qos).await.is_ok()
}

/// What one subscriber saw.
struct Seen {
    got: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    latency: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram")
}

/// Receives until `expected` messages arrived, or `idle` passed without any.
async fn receive(mut c: Conn, expected: u64, idle: Duration) -> Seen {
    let mut seen = Seen {
        got: 0,
        first: None,
        last: None,
        latency: histogram(),
    };
    let mut out = BytesMut::new();
    while seen.got < expected {
        let mut acks = false;
        loop {
            let f = match split_frame(&mut c.buf, usize::MAX) {
                Ok(Some(f)) => f,
                _ => break,
            };
            if let Ok(Decoded::Packet(Packet::Publish(p), _)) =
                decode(&f, Version::V311, usize::MAX)
            {
                let now = Instant::now();
                seen.first.get_or_insert(now);
                seen.last = Some(now);
                seen.got += 1;
                if let Some(ts) = p.payload.get(..8) {
                    let sent = u64::from_le_bytes(ts.try_into().unwrap_or([0; 8]));
                    let _ = seen
                        .latency
                        .record((now_ns().saturating_sub(sent) / 1000).max(1));
                }
                if p.qos != QoS::AtMostOnce {
                    encode(&Packet::PubAck(Ack::new(p.pkid)), &mut out);
                    acks = true;
                }
            }
        }
        if acks {
            if c.s.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if seen.got >= expected {
            break;
        }
        match tokio::time::timeout(idle, c.s.read_buf(&mut c.buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    seen
}

/// Publishes `count` messages of `size` bytes to `topic`, at most 32 QoS 1 unacknowledged, at
/// `rate` messages per second if given. Keeps the connection open for `linger`.
async fn publish(
    mut c: Conn,
    topic: String,
    count: u64,
    qos: QoS,
    size: usize,
    rate: Option<u64>,
    linger: Duration,
) -> bool {
    let window = 32;
    let mut in_flight = 0u64;
    let mut sent = 0u64;
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut payload = vec![0x42u8; size.max(16)];
    let mut pkid: u16 = 0;
    let start = Instant::now();
    while sent < count || in_flight > 0 {
        out.clear();
        let allowed = match rate {
            Some(r) => ((start.elapsed().as_secs_f64() * r as f64) as u64 + 1).min(count),
            None => count,
        };
        while sent < allowed
            && (qos == QoS::AtMostOnce || in_flight < window)
            && out.len() < 32 * 1024
        {
            pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
            payload[..8].copy_from_slice(&now_ns().to_le_bytes());
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
        if !out.is_empty() && c.s.write_all(&out).await.is_err() {
            return false;
        }
        if qos == QoS::AtMostOnce {
            if sent == count {
                break;
            }
            if rate.is_some() && sent >= allowed {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            continue;
        }
        let must_wait = in_flight >= window || (sent == count && in_flight > 0);
        let has_data = !c.buf.is_empty();
        if must_wait || has_data {
            match tokio::time::timeout(Duration::from_secs(20), c.s.read_buf(&mut c.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return false,
            }
        } else if rate.is_some() && sent >= allowed {
            // Pick up acknowledgements without blocking the pacing.
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_micros(200), c.s.read_buf(&mut c.buf)).await
            {
                return false;
            }
        }
        while let Ok(Some(f)) = split_frame(&mut c.buf, usize::MAX) {
            if f[0] >> 4 == 4 {
                in_flight = in_flight.saturating_sub(1);
            }
        }
    }
    tokio::time::sleep(linger).await;
    true
}

/// Publishes QoS 1 messages of `size` bytes to `topic` until `until`, with up to `window`
/// unacknowledged; returns how many were acknowledged.
async fn publish_until(
    mut c: Conn,
    topic: String,
    until: Instant,
    window: u64,
    size: usize,
) -> u64 {
    let mut in_flight = 0u64;
    let mut acked = 0u64;
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut payload = vec![0x42u8; size.max(16)];
    let mut pkid: u16 = 0;
    loop {
        let sending = Instant::now() < until;
        if !sending && in_flight == 0 {
            return acked;
        }
        out.clear();
        while sending && in_flight < window && out.len() < 32 * 1024 {
            pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
            payload[..8].copy_from_slice(&now_ns().to_le_bytes());
            let p = Publish {
                qos: QoS::AtLeastOnce,
                pkid,
                ..Publish::new(&topic, &payload)
            };
            encode(&Packet::Publish(p), &mut out);
            in_flight += 1;
        }
        if !out.is_empty() && c.s.write_all(&out).await.is_err() {
            return acked;
        }
        match tokio::time::timeout(Duration::from_secs(30), c.s.read_buf(&mut c.buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return acked,
        }
        while let Ok(Some(f)) = split_frame(&mut c.buf, usize::MAX) {
            if f[0] >> 4 == 4 {
                in_flight = in_flight.saturating_sub(1);
                acked += 1;
            }
        }
    }
}

/// The long flood: pairs of publishers and subscribers for `seconds`. Every acknowledged message
/// must be delivered; `extra` reports acknowledged and lost.
async fn flood(t: &Target, pairs: usize, seconds: u64, window: u64, size: usize) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = sample_rss(t.pid, stop.clone(), peak.clone());
    let mut subs = Vec::new();
    for i in 0..pairs {
        if let Some(mut c) = connect(&t.addr, &format!("flood-s{i}"), true).await {
            if subscribe(&mut c, &format!("flood/{i}"), QoS::AtLeastOnce).await {
                subs.push((i, c));
            }
        }
    }
    let receivers: Vec<_> = subs
        .into_iter()
        .map(|(i, c)| {
            (
                i,
                tokio::spawn(receive(c, u64::MAX, Duration::from_secs(5))),
            )
        })
        .collect();
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut pubs = Vec::new();
    for i in 0..pairs {
        if let Some(c) = connect(&t.addr, &format!("flood-p{i}"), true).await {
            pubs.push(tokio::spawn(publish_until(
                c,
                format!("flood/{i}"),
                until,
                window,
                size,
            )));
        }
    }
    let mut acked = 0;
    for p in pubs {
        acked += p.await.unwrap_or(0);
    }
    let mut latency = histogram();
    let mut delivered = 0;
    let mut last = start;
    for (_, r) in receivers {
        if let Ok(seen) = r.await {
            delivered += seen.got;
            latency.add(&seen.latency).ok();
            if let Some(l) = seen.last {
                last = last.max(l);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    tokio::time::sleep(Duration::from_secs(2)).await;
    Run {
        delivered,
        expected: acked,
        seconds: (last - start).as_secs_f64(),
        latency,
        peak_rss_kib: peak.load(Ordering::Relaxed),
        extra: json!({"acknowledged": acked, "lost": acked.saturating_sub(delivered)}),
    }
}

/// QoS 1 round trips (publish, wait for the PUBACK) of one calm client, `n` of them, into `h`.
async fn round_trips(c: &mut Conn, n: u64, h: &mut Histogram<u64>) -> u64 {
    let mut done = 0;
    for _ in 0..n {
        let t = Instant::now();
        if c.publish_acked("calm/t", b"reading").await.is_err() {
            break;
        }
        let _ = h.record(t.elapsed().as_micros() as u64);
        done += 1;
    }
    done
}

/// A noisy neighbour: a calm client's QoS 1 round-trip latency alone, then beside a client that
/// floods QoS 0 messages as fast as its socket takes them. The test suite only promises that the
/// calm client keeps being served (tests/flood.rs); how much the flood costs it is measured here,
/// against the peers. `extra` has the p99 alone and the ratio.
async fn neighbour(t: &Target, n: u64) -> Run {
    let Ok(mut calm) = Conn::v311(&t.addr, "calm", true).await else {
        return Run::failed(n);
    };
    let mut alone = histogram();
    round_trips(&mut calm, n / 10, &mut alone).await;
    alone.reset();
    round_trips(&mut calm, n, &mut alone).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (addr, stop, sent) = (t.addr.clone(), stop.clone(), sent.clone());
        tokio::spawn(async move {
            let Ok(mut f) = Conn::v311(&addr, "flooder", true).await else {
                stop.store(true, Ordering::Relaxed);
                return;
            };
            let mut batch = BytesMut::new();
            for _ in 0..64 {
                encode(
                    &Packet::Publish(Publish::new("flood/t", &[0u8; 256])),
                    &mut batch,
                );
            }
            while !stop.load(Ordering::Relaxed) {
                if f.s.write_all(&batch).await.is_err() {
                    break;
                }
                sent.fetch_add(64, Ordering::Relaxed);
                // Whatever the broker answers is read and dropped, so its writes never block.
                f.buf.clear();
                let _ = tokio::time::timeout(Duration::ZERO, f.s.read_buf(&mut f.buf)).await;
            }
        })
    };
    // The calm client measures again once the flood is in full swing (100,000 messages sent).
    while sent.load(Ordering::Relaxed) < 100_000 && !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let mut beside = histogram();
    let done = round_trips(&mut calm, n, &mut beside).await;
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = flooder.await;
    let flooded = sent.load(Ordering::Relaxed);
    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
    let extra = json!({
        "p99_alone_ms": p99(&alone),
        "p99_beside_flood_ms": p99(&beside),
        "ratio": p99(&beside) / p99(&alone).max(1e-3),
        "flood_messages": flooded,
    });
    Run {
        delivered: done,
        expected: n,
        seconds,
        latency: beside,
        peak_rss_kib: rss_kib(t.pid).unwrap_or(0),
        extra,
    }
}

/// Samples a process's resident memory (KiB) until stopped; returns the peak.
fn sample_rss(
    pid: u32,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Some(kib) = rss_kib(pid) {
                peak.fetch_max(kib, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[derive(Debug, Clone)]
struct Target {
    name: String,
    addr: String,
    pid: u32,
}

struct Run {
    delivered: u64,
    expected: u64,
    seconds: f64,
    latency: Histogram<u64>,
    peak_rss_kib: u64,
    extra: Value,
}

impl Run {
    /// A scenario that could not start (its first connection was refused).
    fn failed(expected: u64) -> Run {
        Run {
            delivered: 0,
            expected,
            seconds: 0.0,
            latency: histogram(),
            peak_rss_kib: 0,
            extra: json!({}),
        }
    }

    fn rate(&self) -> f64 {
        self.delivered as f64 / self.seconds.max(1e-9)
    }
    fn p(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            return f64::NAN;
        }
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Pairs of publishers and subscribers (`subs` subscribers per filter), `per_pub` messages each.
#[allow(clippy::too_many_arguments)]
async fn pubsub(
    t: &Target,
    tag: &str,
    publishers: usize,
    subscribers: usize,
    filter: impl Fn(usize) -> String,
    topic: impl Fn(usize) -> String,
    per_pub: u64,
    expected_per_sub: u64,
    qos: QoS,
    size: usize,
    rate: Option<u64>,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = sample_rss(t.pid, stop.clone(), peak.clone());
    let mut subs = Vec::new();
    for i in 0..subscribers {
        let Some(mut c) = connect(&t.addr, &format!("{tag}-s{i}"), true).await else {
            continue;
        };
        if subscribe(&mut c, &filter(i), qos).await {
            subs.push(c);
        }
    }
    let expected = expected_per_sub * subs.len() as u64;
    let receivers: Vec<_> = subs
        .into_iter()
        .map(|c| tokio::spawn(receive(c, expected_per_sub, Duration::from_secs(3))))
        .collect();
    let start = Instant::now();
    let mut pubs = Vec::new();
    for i in 0..publishers {
        if let Some(c) = connect(&t.addr, &format!("{tag}-p{i}"), true).await {
            pubs.push(tokio::spawn(publish(
                c,
                topic(i),
                per_pub,
                qos,
                size,
                rate,
                Duration::from_secs(4),
            )));
        }
    }
    let mut latency = histogram();
    let mut delivered = 0;
    let mut last = start;
    for r in receivers {
        if let Ok(seen) = r.await {
            delivered += seen.got;
            latency.add(&seen.latency).ok();
            if let Some(l) = seen.last {
                last = last.max(l);
            }
        }
    }
    for p in pubs {
        p.abort();
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    // The clients are gone; give the broker a moment to clean up before the next scenario.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Run {
        delivered,
        expected,
        seconds: (last - start).as_secs_f64(),
        latency,
        peak_rss_kib: peak.load(Ordering::Relaxed),
        extra: Value::Null,
    }
}

async fn persistent(t: &Target, count: u64) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = sample_rss(t.pid, stop.clone(), peak.clone());
    let id = format!("persist-{}", std::process::id());
    let mut ok = false;
    if let Some(mut c) = connect(&t.addr, &id, false).await {
        ok = subscribe(&mut c, "persist/t", QoS::AtLeastOnce).await;
        let mut out = BytesMut::new();
        encode(&Packet::Disconnect(Default::default()), &mut out);
        let _ = c.s.write_all(&out).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let published = match connect(&t.addr, "persist-pub", true).await {
        Some(c) if ok => {
            publish(
                c,
                "persist/t".into(),
                count,
                QoS::AtLeastOnce,
                16,
                None,
                Duration::ZERO,
            )
            .await
        }
        _ => false,
    };
    let publish_secs = start.elapsed().as_secs_f64();
    let drain_start = Instant::now();
    let seen = match connect(&t.addr, &id, false).await {
        Some(c) if published => Some(receive(c, count, Duration::from_secs(3)).await),
        _ => None,
    };
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let (got, last) = seen
        .as_ref()
        .map_or((0, drain_start), |s| (s.got, s.last.unwrap_or(drain_start)));
    let drain_secs = (last - drain_start).as_secs_f64();
    Run {
        delivered: if published { count } else { 0 },
        expected: count,
        seconds: publish_secs,
        latency: histogram(),
        peak_rss_kib: peak.load(Ordering::Relaxed),
        extra: json!({
            "publish_msgs_per_s": if published { count as f64 / publish_secs } else { 0.0 },
            "drained": got,
            "drain_msgs_per_s": got as f64 / drain_secs.max(1e-9),
        }),
    }
}

/// Bytes the process has caused to be written to storage (Linux `/proc/PID/io`).
fn written_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// QoS 1 messages of 1 KiB to `sessions` offline persistent sessions: publish rate and bytes
/// written per message (a message stored once costs about one payload whatever the count).
async fn persistent_fan(t: &Target, sessions: usize, count: u64) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = sample_rss(t.pid, stop.clone(), peak.clone());
    let run = std::process::id();
    let mut ok = 0;
    for i in 0..sessions {
        let Some(mut c) = connect(&t.addr, &format!("pfan-{run}-{sessions}-{i}"), false).await
        else {
            // A broker that refuses one refuses the rest; waiting for each would take minutes.
            break;
        };
        if subscribe(&mut c, &format!("pfan/{sessions}"), QoS::AtLeastOnce).await {
            ok += 1;
        }
        let mut out = BytesMut::new();
        encode(&Packet::Disconnect(Default::default()), &mut out);
        let _ = c.s.write_all(&out).await;
        if ok <= i {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = written_bytes(t.pid);
    let start = Instant::now();
    let published = match connect(&t.addr, &format!("pfan-pub-{sessions}"), true).await {
        Some(c) if ok == sessions => {
            publish(
                c,
                format!("pfan/{sessions}"),
                count,
                QoS::AtLeastOnce,
                1024,
                None,
                Duration::ZERO,
            )
            .await
        }
        _ => false,
    };
    let secs = start.elapsed().as_secs_f64();
    let written = written_bytes(t.pid).saturating_sub(before);
    // Clean up: each session once more with Clean Start, so the broker drops what it holds.
    for i in 0..ok {
        let _ = connect(&t.addr, &format!("pfan-{run}-{sessions}-{i}"), true).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    tokio::time::sleep(Duration::from_secs(1)).await;
    Run {
        delivered: if published { count } else { 0 },
        expected: count,
        seconds: secs,
        latency: histogram(),
        peak_rss_kib: peak.load(Ordering::Relaxed),
        extra: json!({
            "sessions": sessions,
            "publish_msgs_per_s": if published { count as f64 / secs } else { 0.0 },
            "bytes_written_per_message": written as f64 / count as f64,
        }),
    }
}

/// New connections at `rate` per second for `seconds`: CONNECT → CONNACK latency of each (all
/// stay open until the end, as a gateway's devices do).
async fn connect_rate(t: &Target, rate: u64, seconds: u64) -> Run {
    let start = Instant::now();
    let total = rate * seconds;
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        let addr = t.addr.clone();
        tasks.push(tokio::spawn(async move {
            let began = Instant::now();
            let c = connect(&addr, &format!("rate-{i}"), true).await?;
            Some((began.elapsed(), c))
        }));
    }
    let mut latency = histogram();
    let mut open = Vec::new();
    for task in tasks {
        if let Ok(Some((took, c))) = task.await {
            let _ = latency.record((took.as_micros() as u64).max(1));
            open.push(c);
        }
    }
    let delivered = open.len() as u64;
    drop(open);
    tokio::time::sleep(Duration::from_secs(2)).await;
    Run {
        delivered,
        expected: total,
        seconds: start.elapsed().as_secs_f64(),
        latency,
        peak_rss_kib: rss_kib(t.pid).unwrap_or(0),
        extra: Value::Null,
    }
}

async fn idle(t: &Target, n: usize) -> Run {
    let before = rss_kib(t.pid).unwrap_or(0);
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    // Small batches: a burst beyond the listen backlog would stall on SYN retries.
    for chunk in 0..n.div_ceil(50) {
        let batch: Vec<_> = (0..50.min(n - chunk * 50))
            .map(|i| {
                let addr = t.addr.clone();
                tokio::spawn(
                    async move { connect(&addr, &format!("idle-{chunk}-{i}"), true).await },
                )
            })
            .collect();
        for b in batch {
            if let Ok(Some(c)) = b.await {
                conns.push(c);
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(t.pid).unwrap_or(0);
    let open = conns.len();
    let secs = start.elapsed().as_secs_f64();
    drop(conns);
    // Let the broker notice ten thousand closed sockets before the next scenario.
    tokio::time::sleep(Duration::from_secs(8)).await;
    Run {
        delivered: open as u64,
        expected: n as u64,
        seconds: secs,
        latency: histogram(),
        peak_rss_kib: after,
        extra: json!({
            "rss_before_kib": before,
            "rss_after_kib": after,
            "bytes_per_connection": if open > 0 { (after.saturating_sub(before) * 1024) as f64 / open as f64 } else { 0.0 },
        }),
    }
}

/// mqtt-bench: the same MQTT scenarios against each broker, in one run.
#[derive(Debug, clap::Parser)]
struct Options {
    /// Five times the messages and the long floods.
    #[arg(long)]
    full: bool,
    /// Only this scenario.
    #[arg(long)]
    only: Option<String>,
    /// Where to write the figures as JSON.
    #[arg(long)]
    json: Option<String>,
    /// The brokers: NAME=HOST:PORT@PID (the pid is sampled for memory).
    #[arg(required = true)]
    targets: Vec<Target>,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(t: &str) -> Result<Self, Self::Err> {
        let parsed = t
            .split_once('=')
            .and_then(|(name, rest)| Some((name, rest.split_once('@')?)))
            .and_then(|(name, (addr, pid))| Some((name, addr, pid.parse().ok()?)));
        let (name, addr, pid) =
            parsed.ok_or_else(|| format!("{t:?}: expected NAME=HOST:PORT@PID"))?;
        Ok(Target {
            name: name.into(),
            addr: addr.into(),
            pid,
        })
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    epoch();
    let Options {
        full,
        only,
        json: json_path,
        targets,
    } = <Options as clap::Parser>::parse();
    let scale = if full { 5 } else { 1 };
    let want = |s: &str| only.as_deref().is_none_or(|o| o == s);
    let mut results: Vec<Value> = Vec::new();
    for t in &targets {
        let idle_rss = rss_kib(t.pid).unwrap_or(0);
        results.push(json!({"broker": t.name, "scenario": "idle-rss", "rss_kib": idle_rss}));
        let mut record = |scenario: &str, qos: u8, size: usize, r: Run| {
            eprintln!(
                "{:<9} {scenario:<13} QoS {qos} {size:>4} B: {:>9.0} msg/s  p50 {:>8.2} ms  p99 {:>8.2} ms  ({} of {})  peak RSS {} KiB",
                t.name, r.rate(), r.p(0.5), r.p(0.99), r.delivered, r.expected, r.peak_rss_kib
            );
            results.push(json!({
                "broker": t.name, "scenario": scenario, "qos": qos, "payload": size,
                "delivered": r.delivered, "expected": r.expected, "seconds": r.seconds,
                "msgs_per_s": r.rate(), "p50_ms": r.p(0.5), "p99_ms": r.p(0.99), "p999_ms": r.p(0.999),
                "peak_rss_kib": r.peak_rss_kib, "extra": r.extra,
            }));
        };
        // First, on a fresh broker: later scenarios leave freed memory in the allocator that new
        // connections would reuse, hiding their cost.
        if want("idle-10k") {
            let r = idle(t, 10_000).await;
            record("idle-10k", 0, 0, r);
        }
        if want("connect-rate") {
            let r = connect_rate(t, 1_000, 5).await;
            record("connect-rate", 0, 0, r);
        }
        for (qos, size) in [
            (QoS::AtMostOnce, 16),
            (QoS::AtLeastOnce, 16),
            (QoS::AtMostOnce, 1024),
            (QoS::AtLeastOnce, 1024),
        ] {
            if !want("p2p") {
                break;
            }
            let n = 20_000 * scale;
            let r = pubsub(
                t,
                "p2p",
                8,
                8,
                |i| format!("p2p/{i}"),
                |i| format!("p2p/{i}"),
                n,
                n,
                qos,
                size,
                None,
            )
            .await;
            record("p2p", qos as u8, size, r);
        }
        if want("p2p-rate") {
            let n = 15_000 * scale;
            let r = pubsub(
                t,
                "rate",
                4,
                4,
                |i| format!("rate/{i}"),
                |i| format!("rate/{i}"),
                n,
                n,
                QoS::AtLeastOnce,
                16,
                Some(5_000),
            )
            .await;
            record("p2p-rate", 1, 16, r);
        }
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            if !want("fanout") {
                break;
            }
            let n = 100 * scale;
            let r = pubsub(
                t,
                "fan",
                1,
                1000,
                |_| "fan/out".into(),
                |_| "fan/out".into(),
                n,
                n,
                qos,
                16,
                None,
            )
            .await;
            record("fanout", qos as u8, 16, r);
        }
        if want("fanin-shared") {
            let per_pub = 5_000 * scale;
            let r = pubsub(
                t,
                "share",
                8,
                4,
                |_| "$share/g/fanin/+".into(),
                |i| format!("fanin/{i}"),
                per_pub,
                per_pub * 8,
                QoS::AtLeastOnce,
                16,
                None,
            )
            .await;
            // A shared group splits the stream: each member reads until the stream stops, and the
            // total is what counts.
            let r = Run {
                expected: per_pub * 8,
                ..r
            };
            record("fanin-shared", 1, 16, r);
        }
        if want("persistent") {
            let r = persistent(t, 5_000 * scale).await;
            record("persistent", 1, 16, r);
        }
        for sessions in [1, 10, 100] {
            if !want("persistent-fan") {
                break;
            }
            let r = persistent_fan(t, sessions, 2_000 * scale).await;
            record(&format!("persistent-fan-{sessions}"), 1, 1024, r);
        }
        if want("flood") {
            let r = flood(t, 10, 10 * scale, 100, 64).await;
            record("flood", 1, 64, r);
        }
        if want("neighbour") {
            let r = neighbour(t, 2_000 * scale).await;
            record("neighbour", 1, 7, r);
        }
    }
    let out = serde_json::to_string_pretty(&results).expect("json");
    if let Some(p) = json_path {
        std::fs::write(p, &out).expect("write JSON");
    } else {
        println!("{out}");
    }
}
