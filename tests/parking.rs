//! Idle MQTT connections parked without a task (issue 29): a plain TCP connection idle for two
//! seconds waits in the broker's parking lot, and everything that can happen to a connection
//! still happens to a parked one: deliveries, its own packets, its keep-alive running out, its
//! socket closing (the will), a takeover, an operator's kick and the shutdown.

mod support;

use std::time::{Duration, Instant};

use outpost_codec::{
    Ack, ConnectProperties, Packet, QoS, ReasonCode, Version, Will, WillProperties,
};
use support::raw::{Got, Raw};
use support::{eventually, metric, Outpost};

const WAIT: Duration = Duration::from_secs(10);
const PARKED: &str = "outpost_mqtt_clients_parked ";

fn parked(broker: &Outpost) -> u64 {
    metric(broker, PARKED)
}

fn connected(broker: &Outpost, client: &str, keep_alive: u16, will: Option<&str>) -> Raw {
    let mut c = Raw::open(broker.mqtt, Version::V5);
    c.send(&Packet::Connect(outpost_codec::Connect {
        protocol: Version::V5,
        clean_start: true,
        keep_alive,
        client_id: client,
        properties: ConnectProperties::default(),
        will: will.map(|topic| Will {
            topic,
            payload: b"gone",
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties::default(),
        }),
        ..outpost_codec::Connect::default()
    }));
    assert_eq!(c.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    c
}

fn next_publish(c: &mut Raw) -> (String, u16, Vec<u8>) {
    loop {
        match c.recv(WAIT) {
            Some(Got::Publish {
                topic,
                pkid,
                payload,
            }) => return (topic, pkid, payload),
            Some(_) => {}
            None => panic!("no PUBLISH"),
        }
    }
}

/// Deliveries wake a parked subscriber, its acknowledgements and pings are read from the lot,
/// and it parks again once idle.
#[test]
fn parked_connections_receive_and_answer() {
    let broker = Outpost::start();
    let mut sub = connected(&broker, "parked-sub", 60, None);
    sub.subscribe(1, &["p/#"], QoS::AtLeastOnce);
    assert!(matches!(sub.recv(WAIT), Some(Got::SubAck(_))));
    let mut publisher = connected(&broker, "parked-pub", 60, None);
    eventually("both idle connections parked", WAIT, || {
        parked(&broker) == 2
    });

    for n in 1..=3u16 {
        // The publisher is parked too: its PUBLISH is read from the lot.
        publisher.publish(
            "p/x",
            format!("m{n}").as_bytes(),
            QoS::AtLeastOnce,
            n,
            false,
        );
        assert_eq!(
            publisher.recv(WAIT),
            Some(Got::PubAck(n, ReasonCode::Success))
        );
        let (topic, pkid, payload) = next_publish(&mut sub);
        assert_eq!(
            (topic.as_str(), payload),
            ("p/x", format!("m{n}").into_bytes())
        );
        sub.send(&Packet::PubAck(Ack {
            pkid,
            ..Ack::default()
        }));
        eventually("both parked again", WAIT, || parked(&broker) == 2);
    }
    sub.send(&Packet::PingReq);
    assert_eq!(sub.recv(WAIT), Some(Got::PingResp));
    // Nothing was delivered twice: the acknowledged messages are gone from the session.
    assert!(sub.recv(Duration::from_millis(300)).is_none());
    eventually("parked after the ping", WAIT, || parked(&broker) == 2);
}

/// A parked connection's keep-alive still runs out (one and a half periods, not before), and
/// its will is published; a parked client that closes its socket leaves its will too.
#[test]
fn parked_connections_keep_alive_and_will() {
    let broker = Outpost::start();
    let mut watcher = connected(&broker, "watcher", 60, None);
    watcher.subscribe(1, &["will/#"], QoS::AtLeastOnce);
    assert!(matches!(watcher.recv(WAIT), Some(Got::SubAck(_))));

    let mut silent = connected(&broker, "silent", 4, Some("will/silent"));
    let started = Instant::now();
    eventually("the silent client parked", WAIT, || parked(&broker) >= 1);
    assert_eq!(
        silent.recv(WAIT),
        Some(Got::Disconnect(ReasonCode::KeepAliveTimeout))
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(5900) && waited < Duration::from_secs(8),
        "closed after {waited:?} of silence (keep-alive 4 s)"
    );
    let (topic, _, payload) = next_publish(&mut watcher);
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("will/silent", &b"gone"[..])
    );

    let leaving = connected(&broker, "leaving", 60, Some("will/leaving"));
    eventually("the leaving client parked", WAIT, || parked(&broker) >= 2);
    drop(leaving);
    let (topic, _, _) = next_publish(&mut watcher);
    assert_eq!(topic, "will/leaving");
}

/// The broker's reasons to close reach a parked connection: a takeover, an operator's kick
/// (the IoT data API's DeleteConnection) and the shutdown, each told to the MQTT 5 client with its reason code.
#[test]
fn parked_connections_are_taken_over_kicked_and_told_of_shutdown() {
    let broker = Outpost::start();
    let mut first = connected(&broker, "twin", 60, None);
    eventually("the first twin parked", WAIT, || parked(&broker) == 1);
    let mut second = connected(&broker, "twin", 60, None);
    assert_eq!(
        first.recv(WAIT),
        Some(Got::Disconnect(ReasonCode::SessionTakenOver))
    );
    assert!(first.closed_within(WAIT));

    let mut kicked = connected(&broker, "kicked", 60, None);
    eventually("both parked", WAIT, || parked(&broker) == 2);
    // The IoT data API's DeleteConnection, as the aws CLI sends it.
    support::aws_cli(
        &broker,
        &["iot-data", "delete-connection", "--client-id", "kicked"],
    );
    assert_eq!(
        kicked.recv(WAIT),
        Some(Got::Disconnect(ReasonCode::AdministrativeAction))
    );

    eventually("the second twin parked", WAIT, || parked(&broker) == 1);
    broker.stop();
    assert_eq!(
        second.recv(WAIT),
        Some(Got::Disconnect(ReasonCode::ServerShuttingDown))
    );
}

/// A parked client's pings are answered while it stays parked, and each renews its keep-alive:
/// pinging every 2 s with a keep-alive of 2 s (closed after 3 s of silence), it stays connected
/// for 9 s; when it stops, it is closed for its silence.
#[test]
fn pings_keep_a_parked_connection_alive() {
    let broker = Outpost::start();
    let mut c = connected(&broker, "pinger", 2, None);
    eventually("the pinger parked", WAIT, || parked(&broker) == 1);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(9) {
        c.send(&Packet::PingReq);
        assert_eq!(c.recv(WAIT), Some(Got::PingResp), "answered while parked");
        std::thread::sleep(Duration::from_secs(2));
    }
    // Answered without waking it: still parked.
    assert_eq!(parked(&broker), 1);
    let quiet = Instant::now();
    assert_eq!(
        c.recv(WAIT),
        Some(Got::Disconnect(ReasonCode::KeepAliveTimeout))
    );
    let waited = quiet.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed {waited:?} after the last ping's answer was read (3 s after the ping)"
    );
}
