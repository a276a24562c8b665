//! A flood from one client does not starve the others: a flooding client beside a well-behaved
//! one is throttled, and the well-behaved one keeps getting every PUBACK promptly. What can be
//! promised on a shared machine is a bound, not a ratio: how much the flood slows the calm client
//! is measured by the `neighbour` scenario of `benches/mqtt-bench.sh`, against the peers. Alone in
//! its test binary: no other test shares the machine while it runs.

mod support;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_codec::{QoS, ReasonCode, Version};
use support::raw::{Got, Raw};
use support::{metric, Outpost};

const WAIT: Duration = Duration::from_secs(10);
/// The calm client's p99 round trip beside the flood stays under this.
const BOUND: Duration = Duration::from_millis(500);

/// QoS 1 round trips of a well-behaved client: publish, wait for PUBACK; the 99th percentile.
fn p99_round_trip(c: &mut Raw, n: usize) -> Duration {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let pkid = (i % 60_000) as u16 + 1;
        let t = Instant::now();
        c.publish("calm/t", b"reading", QoS::AtLeastOnce, pkid, false);
        loop {
            match c.recv(WAIT) {
                Some(Got::PubAck(p, _)) if p == pkid => break,
                Some(_) => {}
                None => panic!("no PUBACK"),
            }
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    samples[n * 99 / 100]
}

/// The median of three p99 figures of `n` round trips each (one noisy round does not decide).
fn p99_median(c: &mut Raw, n: usize) -> Duration {
    let mut rounds: Vec<Duration> = (0..3).map(|_| p99_round_trip(c, n)).collect();
    rounds.sort();
    rounds[1]
}

#[test]
fn a_flooding_client_does_not_slow_a_well_behaved_one() {
    // The flooder is held to its rate; the calm client is far below it.
    let broker = Outpost::start_with(
        tempfile::tempdir().unwrap(),
        "[mqtt]\nmax_messages_per_second = 2000\n[auth]\nallow_anonymous = true\n[store]\nsync = \"never\"\n",
        None,
    );
    let mut calm = Raw::connect(broker.mqtt, Version::V5, "calm", true);
    assert_eq!(calm.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    p99_round_trip(&mut calm, 200);
    let unloaded = p99_median(&mut calm, 2_000);
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = std::thread::spawn({
        let (stop, addr) = (stop.clone(), broker.mqtt);
        move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut f = Raw::connect(addr, Version::V5, "flood", true);
                let _ = f.recv(WAIT);
                let mut pkid = 0u16;
                // QoS 1 as fast as the socket takes it, never reading the answers.
                let mut batch = Vec::new();
                for _ in 0..64 {
                    pkid = pkid % 60_000 + 1;
                    let mut out = bytes::BytesMut::new();
                    outpost_codec::Packet::Publish(outpost_codec::Publish {
                        qos: QoS::AtLeastOnce,
                        pkid,
                        ..outpost_codec::Publish::new("flood/t", &[0u8; 256])
                    })
                    .encode_to(Version::V5, &mut out)
                    .unwrap();
                    batch.extend_from_slice(&out);
                }
                while !stop.load(Ordering::Relaxed) {
                    if f.s.write_all(&batch).is_err() {
                        break;
                    }
                    sent += 64;
                }
            }
            sent
        }
    });
    // The flood is at full speed once the broker throttles it.
    support::eventually("the flooder is throttled", WAIT, || {
        metric(
            &broker,
            "outpost_throttled_total{reason=\"mqtt_message_rate\"}",
        ) > 0
    });
    let loaded = p99_median(&mut calm, 2_000);
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    println!(
        "calm client p99: unloaded {unloaded:?}, beside a flood of {sent} messages {loaded:?}"
    );
    assert!(sent > 0, "the flooder sent");
    // Every round trip above completed (a missing PUBACK fails at once); the slowest hundredth
    // stays far under a keep-alive's worth of waiting.
    assert!(
        loaded < BOUND,
        "p99 {loaded:?} beside the flood ({unloaded:?} without): over {BOUND:?}"
    );
}
