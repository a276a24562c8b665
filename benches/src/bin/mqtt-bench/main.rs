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
//!   and bytes written per message (40,000 messages a phase with `--full`);
//! - `flood`: 10 publishers → 10 subscribers (pairs), QoS 1, 64 B, 100 unacknowledged per
//!   publisher, for 10 s (50 s with `--full`): delivered msg/s, and how many acknowledged messages
//!   were never delivered (must be 0);
//! - `idle`: 10,000 idle connections: resident memory per connection;
//! - `connect-rate`: 1,000 new connections a second for 5 s: CONNECT → CONNACK latency;
//! - `neighbour`: a calm client's QoS 1 round trips alone, then for 10 s (50 s with `--full`)
//!   beside a client flooding QoS 0 messages: the slowdown the test suite does not assert
//!   (tests/flood.rs).
//!
//! Every payload carries its send time, so each delivery yields an end-to-end latency
//! (HdrHistogram). Resident memory is sampled from /proc while each scenario runs.
//!
//! usage: mqtt-bench [--full] [--only SCENARIO] [--json FILE] NAME=HOST:PORT@PID...
//!
//! `traffic` holds the clients' side (connections, publishing, receiving, what a run measured),
//! `scenarios` one function per scenario.

mod scenarios;
mod traffic;

use outpost_codec::QoS;
use serde_json::{json, Value};

use scenarios::*;
use traffic::*;

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
        // 40,000 messages a phase with `--full` (4 M deliveries queued at 100 sessions): at
        // 10,000 the one-session phase lasted a tenth of a second, and the ratio of the phases
        // swung with the disk's sync time.
        let fan_count = if full { 40_000 } else { 2_000 };
        for sessions in [1, 10, 100] {
            if !want("persistent-fan") {
                break;
            }
            let r = persistent_fan(t, sessions, fan_count).await;
            record(&format!("persistent-fan-{sessions}"), 1, 1024, r);
        }
        if want("flood") {
            let r = flood(t, 10, 10 * scale, 100, 64).await;
            record("flood", 1, 64, r);
        }
        if want("neighbour") {
            let r = neighbour(t, 2_000 * scale, 10 * scale).await;
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
