//! The clients' side of every scenario: raw connections, publishing at a rate or a window,
//! receiving with latencies, and what one run measured.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use outpost_benches::mqtt::Conn;
use outpost_codec::{decode, split_frame, Ack, Decoded, Packet, Publish, QoS, Version};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

pub(crate) fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

pub(crate) fn encode(p: &Packet<'_>, out: &mut BytesMut) {
    p.encode_to(Version::V311, out).expect("encodable");
}

pub(crate) async fn connect(addr: &str, id: &str, clean: bool) -> Option<Conn> {
    match Conn::v311(addr, id, clean).await {
        Ok(c) => Some(c),
        Err(e) => {
            // Said once: a run whose clients cannot connect reports 0 of 0 otherwise.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("mqtt-bench: {id} cannot connect: {e}"));
            None
        }
    }
}

pub(crate) async fn subscribe(c: &mut Conn, filter: &str, qos: QoS) -> bool {
    c.subscribe(filter, qos).await.is_ok()
}

/// What one subscriber saw.
pub(crate) struct Seen {
    pub(crate) got: u64,
    pub(crate) first: Option<Instant>,
    pub(crate) last: Option<Instant>,
    pub(crate) latency: Histogram<u64>,
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram")
}

/// Receives until `expected` messages arrived, or `idle` passed without any.
pub(crate) async fn receive(mut c: Conn, expected: u64, idle: Duration) -> Seen {
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
pub(crate) async fn publish(
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
pub(crate) async fn publish_until(
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

/// QoS 1 round trips (publish, wait for the PUBACK) of one calm client, `n` of them, into `h`.
pub(crate) async fn round_trips(c: &mut Conn, n: u64, h: &mut Histogram<u64>) -> u64 {
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

/// Samples a process's resident memory (KiB) until stopped; returns the peak.
pub(crate) fn sample_rss(
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

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
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
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) addr: String,
    pub(crate) pid: u32,
}

pub(crate) struct Run {
    pub(crate) delivered: u64,
    pub(crate) expected: u64,
    pub(crate) seconds: f64,
    pub(crate) latency: Histogram<u64>,
    pub(crate) peak_rss_kib: u64,
    pub(crate) extra: Value,
}

impl Run {
    /// A scenario that could not start (its first connection was refused).
    pub(crate) fn failed(expected: u64) -> Run {
        Run {
            delivered: 0,
            expected,
            seconds: 0.0,
            latency: histogram(),
            peak_rss_kib: 0,
            extra: json!({}),
        }
    }

    pub(crate) fn rate(&self) -> f64 {
        self.delivered as f64 / self.seconds.max(1e-9)
    }
    pub(crate) fn p(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            return f64::NAN;
        }
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Bytes the process has caused to be written to storage (Linux `/proc/PID/io`).
pub(crate) fn written_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}
