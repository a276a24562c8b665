//! One function per scenario; each returns what it measured as a [`Run`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use outpost_benches::mqtt::Conn;
use outpost_codec::{Packet, Publish, QoS};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::traffic::*;

/// The long flood: pairs of publishers and subscribers for `seconds`. Every acknowledged message
/// must be delivered; `extra` reports acknowledged and lost.
pub(crate) async fn flood(t: &Target, pairs: usize, seconds: u64, window: u64, size: usize) -> Run {
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

/// A noisy neighbour: a calm client's QoS 1 round-trip latency alone, then beside a client that
/// floods QoS 0 messages as fast as its socket takes them. The test suite only promises that the
/// calm client keeps being served (tests/flood.rs); how much the flood costs it is measured here,
/// against the peers: `n` round trips alone, then round trips for `seconds` beside the flood.
/// `extra` has the p99 alone, beside the flood, their ratio, and what the flood sent.
pub(crate) async fn neighbour(t: &Target, n: u64, seconds: u64) -> Run {
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
    let (mut done, mut unanswered) = (0, 0);
    while started.elapsed() < Duration::from_secs(seconds) {
        let did = round_trips(&mut calm, 100, &mut beside).await;
        done += did;
        if did < 100 {
            // A publish went unanswered (its PUBACK never came): the calm client was starved.
            unanswered = 1;
            break;
        }
    }
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
        expected: done + unanswered,
        seconds,
        latency: beside,
        peak_rss_kib: rss_kib(t.pid).unwrap_or(0),
        extra,
    }
}

/// Pairs of publishers and subscribers (`subs` subscribers per filter), `per_pub` messages each.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn pubsub(
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

pub(crate) async fn persistent(t: &Target, count: u64) -> Run {
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

/// QoS 1 messages of 1 KiB to `sessions` offline persistent sessions: publish rate and bytes
/// written per message (a message stored once costs about one payload whatever the count).
pub(crate) async fn persistent_fan(t: &Target, sessions: usize, count: u64) -> Run {
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
pub(crate) async fn connect_rate(t: &Target, rate: u64, seconds: u64) -> Run {
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

pub(crate) async fn idle(t: &Target, n: usize) -> Run {
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
