//! An acknowledgement is never a silent drop (ADR 0008): a QoS 1/2 message that no matching
//! session could take (its queue full, its write refused for lack of space) is refused to its
//! publisher — MQTT 5 hears Quota exceeded (0x97), MQTT 3.1.1 loses its connection without the
//! PUBACK — and a message some session took is acknowledged, the full session's loss counted
//! under its client id in `$SYS` and `/metrics`. `queue_overflow = "drop"` keeps mosquitto's
//! behaviour (acknowledged, counted). What was acknowledged is delivered after a restart.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use outpost_codec::{Packet, QoS, ReasonCode, Version};
use support::raw::{assert_none_lost, drain_until, offline_subscriber, Got, Raw};
use support::tmpfs::Tmpfs;
use support::{eventually, metric, Outpost};

const WAIT: Duration = Duration::from_secs(10);

/// Publishes `count` numbered QoS 1 messages to `topic` one at a time (MQTT 5); the numbers
/// acknowledged with Success, and how many were refused with Quota exceeded.
fn publish_v5(
    p: &mut Raw,
    topic: &str,
    from: u32,
    count: u32,
    size: usize,
) -> (BTreeSet<u32>, u32) {
    let mut acked = BTreeSet::new();
    let mut refused = 0;
    for n in from..from + count {
        p.publish_number(topic, n, size);
        match p.recv(WAIT) {
            Some(Got::PubAck(_, ReasonCode::Success)) => {
                acked.insert(n);
            }
            Some(Got::PubAck(_, ReasonCode::QuotaExceeded)) => refused += 1,
            other => panic!("message {n}: unexpected {other:?}"),
        }
    }
    (acked, refused)
}

fn start(queue: usize, overflow: &str) -> Outpost {
    let data = tempfile::tempdir().expect("temp dir");
    let toml = format!(
        "[mqtt]\nmax_queued_messages = {queue}\nqueue_overflow = \"{overflow}\"\nsys_interval = 1\n"
    );
    Outpost::start_with(data, &toml, None)
}

/// The `$SYS` value of `topic`, read by subscribing (retained) within the deadline.
fn sys_value(broker: &Outpost, topic: &str) -> Option<String> {
    let mut s = Raw::connect(broker.mqtt, Version::V5, "sys-reader", true);
    assert_eq!(s.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    s.subscribe(1, &[topic], QoS::AtMostOnce);
    loop {
        match s.recv(Duration::from_secs(2))? {
            Got::Publish { payload, .. } => return Some(String::from_utf8_lossy(&payload).into()),
            _ => continue,
        }
    }
}

#[test]
fn a_full_offline_session_refuses_what_it_cannot_take_mqtt5() {
    let broker = start(100, "refuse");
    offline_subscriber(broker.mqtt, "cap-sub", "cap/#");
    let mut p = Raw::connect(broker.mqtt, Version::V5, "cap-pub", true);
    assert_eq!(p.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    let (acked, refused) = publish_v5(&mut p, "cap/x", 0, 150, 16);
    assert_eq!(acked.len(), 100, "the queue's 100 places were acknowledged");
    assert_eq!(
        refused, 50,
        "the 50 the full queue could not take were refused with 0x97"
    );

    // QoS 2: the refusal is in the PUBREC, and the exchange ends there.
    p.publish("cap/x", &9_999u32.to_be_bytes(), QoS::ExactlyOnce, 7, false);
    assert_eq!(
        p.recv(WAIT),
        Some(Got::PubRec(7, ReasonCode::QuotaExceeded))
    );

    // The loss is the session's, and shows under its name.
    eventually("the per-session counter in /metrics", WAIT, || {
        metric(
            &broker,
            "outpost_mqtt_session_dropped_total{client_id=\"cap-sub\"}",
        ) == 51
    });
    eventually("the per-session counter in $SYS", WAIT, || {
        sys_value(&broker, "$SYS/broker/sessions/cap-sub/messages/dropped").as_deref() == Some("51")
    });

    // After a restart, exactly what was acknowledged is delivered.
    let data = broker.kill();
    let broker = Outpost::start_in(data);
    let got = drain_until(broker.mqtt, "cap-sub", |g| g.len() >= acked.len());
    assert_none_lost(&acked, &got);
    assert_eq!(got, acked, "nothing refused was delivered");
}

#[test]
fn a_full_offline_session_closes_an_mqtt311_publisher_without_a_puback() {
    let broker = start(100, "refuse");
    offline_subscriber(broker.mqtt, "cap-sub", "cap/#");
    let mut acked = BTreeSet::new();
    let mut p = Raw::connect(broker.mqtt, Version::V311, "cap-pub", true);
    assert_eq!(p.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    let mut closed_at = None;
    for n in 0..150u32 {
        p.publish_number("cap/x", n, 16);
        match p.recv(WAIT) {
            Some(Got::PubAck(_, ReasonCode::Success)) => {
                acked.insert(n);
            }
            None => {
                closed_at = Some(n);
                break;
            }
            other => panic!("message {n}: unexpected {other:?}"),
        }
    }
    assert_eq!(
        closed_at,
        Some(100),
        "the 101st message closes the connection, unacknowledged"
    );
    let got = drain_until(broker.mqtt, "cap-sub", |g| g.len() >= acked.len());
    assert_eq!(got, acked);
}

#[test]
fn a_message_another_session_took_is_acknowledged_and_the_full_ones_loss_counted() {
    let broker = start(100, "refuse");
    offline_subscriber(broker.mqtt, "slow", "cap/#");
    offline_subscriber(broker.mqtt, "fast", "cap/#");
    // "fast" drains as it goes; "slow" stays away.
    let mut fast = Raw::connect_with(
        broker.mqtt,
        Version::V5,
        "fast",
        false,
        support::raw::persistent(),
        60,
    );
    assert_eq!(fast.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    let mut p = Raw::connect(broker.mqtt, Version::V5, "cap-pub", true);
    assert_eq!(p.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    let mut got_fast = BTreeSet::new();
    let mut acked = BTreeSet::new();
    for n in 0..150u32 {
        let (a, refused) = publish_v5(&mut p, "cap/x", n, 1, 16);
        assert_eq!(refused, 0, "message {n}: a session took it, no refusal");
        acked.extend(a);
        let (pkid, payload) = fast.recv_publish(WAIT).expect("fast gets it");
        got_fast.insert(u32::from_be_bytes(payload[..4].try_into().unwrap()));
        fast.send(&Packet::PubAck(outpost_codec::Ack::new(pkid)));
    }
    assert_eq!(acked.len(), 150);
    assert_eq!(got_fast, acked);
    eventually("the slow session's loss under its name", WAIT, || {
        metric(
            &broker,
            "outpost_mqtt_session_dropped_total{client_id=\"slow\"}",
        ) == 50
    });
    assert_eq!(
        metric(
            &broker,
            "outpost_mqtt_session_dropped_total{client_id=\"fast\"}"
        ),
        0,
        "no loss is counted for the session that took everything"
    );
    let slow = drain_until(broker.mqtt, "slow", |g| g.len() >= 100);
    assert_eq!(
        slow,
        (0..100).collect(),
        "the slow session kept its first 100"
    );
}

#[test]
fn the_drop_policy_acknowledges_and_counts() {
    let broker = start(100, "drop");
    offline_subscriber(broker.mqtt, "cap-sub", "cap/#");
    let mut p = Raw::connect(broker.mqtt, Version::V5, "cap-pub", true);
    assert_eq!(p.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    let (acked, refused) = publish_v5(&mut p, "cap/x", 0, 150, 16);
    assert_eq!(
        (acked.len(), refused),
        (150, 0),
        "mosquitto's behaviour: all acknowledged"
    );
    eventually("the drops counted under the session's name", WAIT, || {
        metric(
            &broker,
            "outpost_mqtt_session_dropped_total{client_id=\"cap-sub\"}",
        ) == 50
    });
}

/// Other doors into a full session: an iot-data Publish at QoS 1 is refused (429), not a 200.
#[test]
fn an_http_publish_into_a_full_session_is_refused() {
    let broker = start(5, "refuse");
    offline_subscriber(broker.mqtt, "cap-sub", "cap/#");
    let publish = || {
        support::http::http(
            &broker.http,
            b"POST /topics/cap/x?qos=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        )
    };
    for i in 0..5 {
        let (status, body) = publish();
        assert_eq!(status, 200, "publish {i}: {body}");
    }
    let (status, body) = publish();
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("queue of every session"), "{body}");
}

/// The compounding case: on a full disk, messages the store refused used to keep their places
/// in the session's queue, so later ones overflowed it and were acknowledged with success and
/// dropped. Now a refused message keeps no place, and every acknowledged one survives kill -9.
#[test]
fn refused_writes_keep_no_place_in_a_queue() {
    let data = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(data.path(), "6m")
        .expect("this test needs to mount a tmpfs (root, as in CI and ./scripts/test.sh)");
    let config = "[store]\nsegment_size = 1048576\n[mqtt]\nmax_queued_messages = 300\n";
    let broker = Outpost::start_with(data, config, None);
    offline_subscriber(broker.mqtt, "keeper", "fill");
    let mut p = Raw::connect(broker.mqtt, Version::V5, "filler", true);
    assert_eq!(p.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    // 16 KiB each: the disk fills after a few hundred; keep publishing well past it.
    let (acked, refused) = publish_v5(&mut p, "fill", 0, 1_000, 16 * 1024);
    assert!(
        refused > 0,
        "the full disk refused some ({} acknowledged)",
        acked.len()
    );
    assert!(acked.len() > 20, "only {} fitted", acked.len());
    let data = broker.kill();
    assert!(disk.grow("64m"), "the tmpfs can grow again");
    let broker = Outpost::start_with(data, config, None);
    let got = drain_until(broker.mqtt, "keeper", |g| g.len() >= acked.len());
    assert_none_lost(&acked, &got);
}

/// A connection reads on while its acknowledgements wait for the store (ADR 0008, issue 29),
/// up to 1,024 waiting: an MQTT 3.1.1 publisher (no Receive Maximum) that sends 3,000 stored
/// QoS 1 messages in one burst, reading nothing meanwhile, gets every PUBACK, in the order it
/// sent them, and every acknowledged message reaches each offline session.
#[test]
fn a_burst_past_the_waiting_acknowledgements_limit_is_acknowledged_in_order() {
    const BURST: u32 = 3_000;
    let broker = start(10_000, "refuse");
    for s in ["burst-a", "burst-b", "burst-c"] {
        offline_subscriber(broker.mqtt, s, "burst/#");
    }
    let mut p = Raw::connect(broker.mqtt, Version::V311, "burst-pub", true);
    assert_eq!(p.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    let mut bytes = bytes::BytesMut::new();
    for n in 0..BURST {
        let mut payload = n.to_be_bytes().to_vec();
        payload.resize(64, b'x');
        Packet::Publish(outpost_codec::Publish {
            qos: QoS::AtLeastOnce,
            pkid: (n + 1) as u16,
            ..outpost_codec::Publish::new("burst/x", &payload)
        })
        .encode_to(Version::V311, &mut bytes)
        .expect("encodes");
    }
    // Written by another thread: the broker stops reading once 1,024 wait, and only this
    // thread's reading of the PUBACKs lets it go on.
    let mut writer = p.s.try_clone().expect("clone");
    let sent = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(&bytes).expect("burst written");
    });
    for n in 0..BURST {
        match p.recv(WAIT) {
            Some(Got::PubAck(pkid, ReasonCode::Success)) => {
                assert_eq!(pkid, (n + 1) as u16, "PUBACK {n} out of order")
            }
            other => panic!("message {n}: unexpected {other:?}"),
        }
    }
    sent.join().expect("writer");
    let acked: BTreeSet<u32> = (0..BURST).collect();
    for s in ["burst-a", "burst-b", "burst-c"] {
        let got = drain_until(broker.mqtt, s, |g| g.len() >= acked.len());
        assert_none_lost(&acked, &got);
    }
}
