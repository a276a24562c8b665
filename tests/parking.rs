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

/// A WebSocket connection over plain TCP is parked too, between frames: its pings (a PINGREQ in
/// a masked frame) are answered by the lot, a WebSocket ping frame and deliveries wake it, a
/// frame cut in the middle keeps it on its task until the rest comes, and its close frame is
/// answered.
#[test]
fn websocket_connections_park_between_frames() {
    use std::io::Write;
    use support::websocket;
    let broker = Outpost::start();
    let mask = [0x5A, 0xA5, 0x0F, 0xF0];
    let mut ws = websocket::upgraded(&broker.ws);
    let packet = |p: &Packet<'_>| {
        let mut bytes = bytes::BytesMut::new();
        p.encode_to(Version::V311, &mut bytes).unwrap();
        websocket::masked(&bytes, mask)
    };
    ws.write_all(&packet(&Packet::Connect(outpost_codec::Connect {
        protocol: Version::V311,
        clean_start: true,
        keep_alive: 60,
        client_id: "ws-parked",
        ..outpost_codec::Connect::default()
    })))
    .unwrap();
    assert_eq!(websocket::read_frame(&mut ws), (2, vec![0x20, 0x02, 0, 0]));
    let filter = [outpost_codec::SubscribeFilter::new(
        "ws/#",
        QoS::AtLeastOnce,
    )];
    ws.write_all(&packet(&Packet::Subscribe(outpost_codec::Subscribe {
        pkid: 1,
        filters: outpost_codec::List::new(&filter),
        ..outpost_codec::Subscribe::default()
    })))
    .unwrap();
    assert_eq!(
        websocket::read_frame(&mut ws),
        (2, vec![0x90, 0x03, 0, 1, 1])
    );
    eventually("the WebSocket connection parked", WAIT, || {
        parked(&broker) == 1
    });

    // A PINGREQ is answered by the lot: one unmasked frame, and it stays parked.
    for _ in 0..3 {
        ws.write_all(&packet(&Packet::PingReq)).unwrap();
        assert_eq!(websocket::read_frame(&mut ws), (2, vec![0xD0, 0x00]));
        assert_eq!(parked(&broker), 1, "answered without waking it");
    }
    // A WebSocket ping wakes it (its pong carries the payload), and it parks again.
    ws.write_all(&websocket::control(0x9, b"there?")).unwrap();
    assert_eq!(websocket::read_frame(&mut ws), (0xA, b"there?".to_vec()));
    eventually("parked after the pong", WAIT, || parked(&broker) == 1);

    // A delivery wakes it.
    let mut publisher = connected(&broker, "ws-publisher", 60, None);
    publisher.publish("ws/x", b"to the websocket", QoS::AtLeastOnce, 1, false);
    assert_eq!(
        publisher.recv(WAIT),
        Some(Got::PubAck(1, ReasonCode::Success))
    );
    let (opcode, publish) = websocket::read_frame(&mut ws);
    assert_eq!(opcode, 2);
    assert!(publish.ends_with(b"to the websocket"), "{publish:02x?}");
    let pkid = [publish[publish.len() - 18], publish[publish.len() - 17]];
    ws.write_all(&websocket::masked(&[0x40, 0x02, pkid[0], pkid[1]], mask))
        .unwrap();
    eventually("both parked again", WAIT, || parked(&broker) == 2);

    // Half a frame: the connection waits for the rest on its task, then answers.
    let ping = packet(&Packet::PingReq);
    ws.write_all(&ping[..3]).unwrap();
    eventually("woken by half a frame", WAIT, || parked(&broker) == 1);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(parked(&broker), 1, "not parked in the middle of a frame");
    ws.write_all(&ping[3..]).unwrap();
    assert_eq!(websocket::read_frame(&mut ws), (2, vec![0xD0, 0x00]));
    eventually("parked once the frame is whole", WAIT, || {
        parked(&broker) == 2
    });

    // A close frame is answered with its status, and the connection ends.
    ws.write_all(&websocket::control(0x8, &1000u16.to_be_bytes()))
        .unwrap();
    assert_eq!(websocket::read_frame(&mut ws), (0x8, vec![0x03, 0xE8]));
    eventually("the closed connection left the lot", WAIT, || {
        parked(&broker) == 1
    });
}
