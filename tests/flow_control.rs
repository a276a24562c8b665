//! Flow control instead of drops: a QoS 1 message that was acknowledged is delivered. A connected
//! subscriber that falls behind slows the publishers that feed it (they are no longer read) instead
//! of its queue overflowing; one that stops draining altogether is disconnected after the stall
//! timeout, and its persistent session keeps what was queued, while the publishers go on.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use outpost_codec::{Ack, ConnectProperties, Packet, QoS, ReasonCode, Version};
use support::raw::{assert_none_lost, drain_numbers, persistent, Got, Raw};
use support::{metric, Outpost};

/// Publishes `count` numbered QoS 1 messages with up to `window` unacknowledged; returns the
/// numbers acknowledged with Success.
fn flood(addr: SocketAddr, id: &str, topic: &str, count: u32, window: u32) -> BTreeSet<u32> {
    let wait = Duration::from_secs(60);
    let mut p = Raw::connect(addr, Version::V5, id, true);
    assert_eq!(p.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    let mut acked = BTreeSet::new();
    let mut outstanding = std::collections::HashMap::new();
    let mut sent = 0u32;
    while sent < count || !outstanding.is_empty() {
        while sent < count && (outstanding.len() as u32) < window {
            let pkid = (sent % 60_000 + 1) as u16;
            p.publish(topic, &sent.to_be_bytes(), QoS::AtLeastOnce, pkid, false);
            outstanding.insert(pkid, sent);
            sent += 1;
        }
        match p.recv(wait) {
            Some(Got::PubAck(pkid, code)) => {
                let n = outstanding.remove(&pkid).expect("an outstanding message");
                if (code as u8) < 0x80 {
                    acked.insert(n);
                }
            }
            other => panic!("publisher {id}: unexpected {other:?}"),
        }
    }
    acked
}

#[test]
fn a_slow_subscriber_slows_its_publishers_and_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    // A queue limit that two fast publishers would overflow many times over without flow control.
    let config = "[mqtt]\nflow_control_queue = 100\nmax_queued_messages = 400\n";
    let broker = Outpost::start_with(data, config, None);
    let wait = Duration::from_secs(10);
    let mut sub = Raw::connect_with(
        broker.mqtt,
        Version::V5,
        "slow",
        true,
        ConnectProperties {
            receive_maximum: Some(10),
            ..ConnectProperties::default()
        },
        60,
    );
    assert_eq!(sub.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    sub.subscribe(1, &["flow/+"], QoS::AtLeastOnce);
    assert!(matches!(sub.recv(wait), Some(Got::SubAck(_))));
    let addr = broker.mqtt;
    let publishers: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                flood(addr, &format!("fast-{i}"), &format!("flow/{i}"), 3_000, 100)
            })
        })
        .collect();
    // The subscriber reads slowly at first, then at full speed.
    let mut got: [BTreeSet<u32>; 2] = [BTreeSet::new(), BTreeSet::new()];
    let started = Instant::now();
    let mut n = 0u32;
    while got[0].len() + got[1].len() < 6_000 {
        let Some(publish) = sub.recv(Duration::from_secs(15)) else {
            break;
        };
        if let Got::Publish {
            topic,
            pkid,
            payload,
        } = publish
        {
            let which = usize::from(topic.ends_with('1'));
            got[which].insert(u32::from_be_bytes(payload[..4].try_into().unwrap()));
            n += 1;
            if n < 600 {
                std::thread::sleep(Duration::from_millis(2));
            }
            sub.send(&Packet::PubAck(Ack::new(pkid)));
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "drained in time"
        );
    }
    for (i, p) in publishers.into_iter().enumerate() {
        let acked = p.join().unwrap();
        let lost: Vec<&u32> = acked.difference(&got[i]).collect();
        assert!(
            lost.is_empty(),
            "publisher {i}: {} acknowledged and never delivered, first {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        assert_eq!(
            acked.len(),
            3_000,
            "publisher {i}: every message acknowledged"
        );
    }
    assert_eq!(
        metric(&broker, "outpost_mqtt_refused_total{reason=\"queue_full\"}"),
        0
    );
}

#[test]
fn a_stalled_subscriber_is_disconnected_and_its_session_keeps_the_messages() {
    let data = tempfile::tempdir().unwrap();
    let config = "[mqtt]\nflow_control_queue = 50\nstall_timeout = 2\n";
    let broker = Outpost::start_with(data, config, None);
    let wait = Duration::from_secs(10);
    let mut stuck = Raw::connect_with(
        broker.mqtt,
        Version::V5,
        "stuck",
        false,
        ConnectProperties {
            receive_maximum: Some(5),
            ..persistent()
        },
        600,
    );
    assert_eq!(stuck.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    stuck.subscribe(1, &["work"], QoS::AtLeastOnce);
    assert!(matches!(stuck.recv(wait), Some(Got::SubAck(_))));
    // Never acknowledges, never reads again. The publisher must finish anyway.
    let started = Instant::now();
    let acked = flood(broker.mqtt, "producer", "work", 500, 50);
    assert_eq!(acked.len(), 500);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the publisher waited {:?}",
        started.elapsed()
    );
    // The stalled subscriber was told and disconnected.
    let mut disconnected = false;
    while let Some(got) = stuck.recv(wait) {
        if got == Got::Disconnect(ReasonCode::QuotaExceeded) {
            disconnected = true;
        }
    }
    assert!(disconnected, "DISCONNECT 0x97 before the close");
    assert_eq!(
        metric(
            &broker,
            "outpost_mqtt_refused_total{reason=\"stalled_subscriber\"}"
        ),
        1
    );
    // Back, it gets every message: what was in flight again, the rest from its queue.
    let got = drain_numbers(broker.mqtt, "stuck", acked.len());
    assert_none_lost(&acked, &got);
}

#[test]
fn two_clients_feeding_each_other_never_deadlock() {
    let data = tempfile::tempdir().unwrap();
    let config = "[mqtt]\nflow_control_queue = 20\nstall_timeout = 60\nmax_inflight = 5\n";
    let broker = Outpost::start_with(data, config, None);
    let addr = broker.mqtt;
    // A and B each subscribe to the other's topic and publish to it as fast as they can, reading
    // (and acknowledging) what they receive in the same loop.
    let both_subscribed = std::sync::Arc::new(std::sync::Barrier::new(2));
    let run = move |me: &'static str, other: &'static str| {
        let both_subscribed = both_subscribed.clone();
        std::thread::spawn(move || {
            let wait = Duration::from_secs(20);
            let mut c = Raw::connect(addr, Version::V5, me, true);
            assert_eq!(c.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
            c.subscribe(1, &[&format!("to/{me}")], QoS::AtLeastOnce);
            assert!(matches!(c.recv(wait), Some(Got::SubAck(_))));
            both_subscribed.wait();
            let (mut sent, mut acked, mut received) = (0u32, 0u32, 0u32);
            let topic = format!("to/{other}");
            let deadline = Instant::now() + Duration::from_secs(45);
            while acked < 2_000 || received < 2_000 {
                assert!(
                    Instant::now() < deadline,
                    "{me}: stuck at {acked} acked, {received} received"
                );
                while sent < 2_000 && sent - acked < 50 {
                    c.publish(
                        &topic,
                        &sent.to_be_bytes(),
                        QoS::AtLeastOnce,
                        (sent + 1) as u16,
                        false,
                    );
                    sent += 1;
                }
                match c.recv(wait) {
                    Some(Got::PubAck(_, code)) => {
                        assert_eq!(code, ReasonCode::Success, "{me}");
                        acked += 1
                    }
                    Some(Got::Publish { pkid, .. }) => {
                        received += 1;
                        c.send(&Packet::PubAck(Ack::new(pkid)));
                    }
                    Some(other) => panic!("{me}: unexpected {other:?}"),
                    None => panic!(
                        "{me}: nothing for 20 s at sent {sent}, acked {acked}, received {received}"
                    ),
                }
            }
        })
    };
    let a = run("a", "b");
    let b = run("b", "a");
    a.join().unwrap();
    b.join().unwrap();
}
