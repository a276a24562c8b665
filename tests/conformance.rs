//! What the Eclipse paho MQTT interoperability suite (`eclipse/paho.mqtt.testing`,
//! `interoperability/client_test.py` and `client_test5.py`) checks where Outpost once differed,
//! as tests of our own: CI cannot reach GitHub, and these must not come back.

mod support;

use std::io::Write;
use std::time::Duration;

use outpost_codec::{
    Ack, Packet, QoS, ReasonCode, Subscribe, SubscribeFilter, SubscribeOptions, Version,
};
use support::raw::{Got, Raw};
use support::Outpost;

/// `test_flow_control2`: more QoS 2 messages than the server's Receive Maximum end with
/// DISCONNECT 0x93, and the client can read it while it is still answering PUBRECs (the broker
/// does not reset the connection under it).
#[test]
fn exceeding_receive_maximum_ends_with_a_readable_disconnect_0x93() {
    let broker = Outpost::start();
    let wait = Duration::from_secs(10);
    let mut c = Raw::connect(broker.mqtt, Version::V5, "flow2", true);
    assert_eq!(c.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    let max = c.receive_maximum.unwrap_or(u16::MAX);
    assert!(
        max < 1000,
        "the server announces its Receive Maximum ({max})"
    );
    for i in 1..=max + 1 {
        c.publish(
            "flow/2",
            format!("message {i}").as_bytes(),
            QoS::ExactlyOnce,
            i,
            false,
        );
    }
    // Like the suite's client: answer each PUBREC with PUBREL until the DISCONNECT arrives.
    let reason = loop {
        match c.recv(wait) {
            Some(Got::PubRec(pkid, _)) => {
                let mut out = bytes::BytesMut::new();
                Packet::PubRel(Ack::new(pkid))
                    .encode_to(Version::V5, &mut out)
                    .unwrap();
                c.s.write_all(&out).expect(
                    "the broker does not reset the connection before its DISCONNECT is read",
                );
            }
            Some(Got::Disconnect(code)) => break code,
            Some(_) => {}
            None => panic!("closed without a DISCONNECT"),
        }
    };
    assert_eq!(reason, ReasonCode::ReceiveMaximumExceeded);
}

/// `test_subscribe_options` (noLocal): a client's own messages do not come back to its noLocal
/// subscription, while another client's noLocal subscription to the same topic gets them.
#[test]
fn no_local_skips_only_the_publisher() {
    let broker = Outpost::start();
    let wait = Duration::from_secs(5);
    let no_local = |c: &mut Raw| {
        let f = [SubscribeFilter {
            filter: "TopicA",
            options: SubscribeOptions {
                no_local: true,
                ..SubscribeOptions::qos(QoS::ExactlyOnce)
            },
        }];
        c.send(&Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: outpost_codec::List::new(&f),
            ..Subscribe::default()
        }));
        assert!(matches!(c.recv(wait), Some(Got::SubAck(_))));
    };
    let mut a = Raw::connect(broker.mqtt, Version::V5, "a", true);
    assert_eq!(a.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    let mut b = Raw::connect(broker.mqtt, Version::V5, "b", true);
    assert_eq!(b.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    no_local(&mut a);
    no_local(&mut b);
    a.publish("TopicA", b"noLocal test", QoS::AtLeastOnce, 1, false);
    assert!(matches!(
        a.recv(wait),
        Some(Got::PubAck(1, ReasonCode::Success))
    ));
    assert!(
        matches!(b.recv(wait), Some(Got::Publish { topic, .. }) if topic == "TopicA"),
        "the other client's noLocal subscription gets it"
    );
    a.send(&Packet::PingReq);
    assert_eq!(
        a.recv(wait),
        Some(Got::PingResp),
        "and the publisher gets nothing"
    );
}

/// `test_server_keep_alive` (configuration-dependent: the suite expects `max_keep_alive = 60`): an
/// MQTT 5 client asking for more is told the server's value; a 3.1.1 client is refused.
#[test]
fn max_keep_alive_is_announced_or_refused() {
    let data = tempfile::tempdir().unwrap();
    let broker = Outpost::start_with(data, "[mqtt]\nmax_keep_alive = 60\n", None);
    let wait = Duration::from_secs(5);
    let mut c5 = Raw::connect_with(
        broker.mqtt,
        Version::V5,
        "ka5",
        true,
        Default::default(),
        120,
    );
    assert_eq!(c5.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    assert_eq!(c5.server_keep_alive, Some(60));
    let mut ok = Raw::connect_with(
        broker.mqtt,
        Version::V5,
        "ka5b",
        true,
        Default::default(),
        30,
    );
    assert_eq!(ok.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    assert_eq!(
        ok.server_keep_alive, None,
        "a shorter keep-alive is the client's"
    );
    let mut c3 = Raw::connect_with(
        broker.mqtt,
        Version::V311,
        "ka3",
        true,
        Default::default(),
        120,
    );
    assert_eq!(
        c3.recv(wait),
        Some(Got::ConnAck(ReasonCode::ClientIdentifierNotValid))
    );
}
