//! Byte-exact tests against traffic captured from mosquitto's clients and broker
//! (see `fixtures/README.md` for how each file was made).

use outpost_codec::*;

/// Splits a captured stream into packets, each with its raw bytes.
fn packets(mut bytes: &'static [u8], version: Version) -> Vec<(Packet<'static>, &'static [u8])> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        match decode(bytes, version, usize::MAX) {
            Ok(Decoded::Packet(p, n)) => {
                out.push((p, &bytes[..n]));
                bytes = &bytes[n..];
            }
            other => panic!("captured stream does not decode: {other:?} at {bytes:02x?}"),
        }
    }
    out
}

/// The encoder writes exactly the captured bytes.
fn assert_reencodes(p: &Packet<'_>, raw: &[u8], version: Version) {
    let mut buf = vec![0u8; raw.len() + 16];
    let n = p.encode(version, &mut buf).expect("encodes");
    assert_eq!(&buf[..n], raw, "re-encoding {p:?}");
}

/// For packets where mosquitto writes properties in another order than ours (order carries no
/// meaning, §2.2.2.2): the same bytes in another order, and our bytes decode to the same packet.
fn assert_reencodes_reordered(p: &Packet<'_>, raw: &[u8], version: Version) {
    let mut buf = vec![0u8; raw.len()];
    let n = p.encode(version, &mut buf).expect("encodes");
    assert_eq!(n, raw.len());
    assert_ne!(buf, raw, "now byte-exact: use assert_reencodes");
    let (mut a, mut b) = (buf.clone(), raw.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    assert_eq!(packets(buf.leak(), version)[0].0, *p);
}

/// mosquitto 2.0.11's CONNACK lists Topic Alias Maximum before Receive Maximum.
fn assert_server_reencodes(server: &[(Packet<'_>, &[u8])], version: Version) {
    for (i, (p, raw)) in server.iter().enumerate() {
        if i == 0 && version == Version::V5 {
            assert_reencodes_reordered(p, raw, version);
        } else {
            assert_reencodes(p, raw, version);
        }
    }
}

fn users(list: &List<'_, UserProperty<'_>>) -> Vec<(String, String)> {
    list.iter()
        .map(|u| (u.name.to_string(), u.value.to_string()))
        .collect()
}

#[test]
fn v311_publisher_with_will_and_credentials() {
    let v = Version::V311;
    let client = packets(include_bytes!("fixtures/v311-pub-qos1-will.client.bin"), v);
    assert_eq!(client.len(), 3);
    let Packet::Connect(c) = &client[0].0 else {
        panic!("first packet is not CONNECT")
    };
    assert_eq!(c.protocol, Version::V311);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 30);
    assert_eq!(c.client_id, "pub-311");
    assert_eq!(c.username, Some("alice"));
    assert_eq!(c.password, Some(&b"secret"[..]));
    let w = c.will.expect("will");
    assert_eq!(
        (w.topic, w.payload, w.qos, w.retain),
        ("dev/1/status", &b"offline"[..], QoS::AtLeastOnce, true)
    );
    let Packet::Publish(p) = &client[1].0 else {
        panic!("second packet is not PUBLISH")
    };
    assert_eq!(
        (p.topic, p.payload, p.qos, p.retain, p.dup),
        (
            "sensors/dev1/temp",
            &b"21.5"[..],
            QoS::AtLeastOnce,
            true,
            false
        )
    );
    assert_eq!(p.pkid, 1);
    assert_eq!(client[2].0, Packet::Disconnect(Disconnect::default()));

    let server = packets(include_bytes!("fixtures/v311-pub-qos1-will.server.bin"), v);
    assert_eq!(server[0].0, Packet::ConnAck(ConnAck::default()));
    assert_eq!(server[1].0, Packet::PubAck(Ack::new(1)));

    for (p, raw) in client.iter().chain(&server) {
        assert_reencodes(p, raw, v);
    }
}

#[test]
fn v5_publisher_with_properties_and_qos2() {
    let v = Version::V5;
    let client = packets(include_bytes!("fixtures/v5-pub-qos2-props.client.bin"), v);
    let Packet::Connect(c) = &client[0].0 else {
        panic!("first packet is not CONNECT")
    };
    assert_eq!(c.protocol, Version::V5);
    assert_eq!(c.properties.session_expiry_interval, Some(120));
    assert_eq!(c.properties.receive_maximum, Some(10));
    assert_eq!(
        users(&c.properties.user_properties),
        [("agent".into(), "capture".into())]
    );
    let Packet::Publish(p) = &client[1].0 else {
        panic!("second packet is not PUBLISH")
    };
    assert_eq!(
        (p.topic, p.payload, p.qos),
        ("sensors/dev2/hum", &br#"{"h":40}"#[..], QoS::ExactlyOnce)
    );
    assert_eq!(p.properties.content_type, Some("application/json"));
    assert_eq!(p.properties.message_expiry_interval, Some(3600));
    assert_eq!(p.properties.response_topic, Some("replies/dev2"));
    assert_eq!(p.properties.correlation_data, Some(&b"req-17"[..]));
    assert_eq!(p.properties.payload_format_indicator, Some(true));
    assert_eq!(
        users(&p.properties.user_properties),
        [("unit".into(), "percent".into())]
    );
    assert!(
        matches!(client[2].0, Packet::PubRel(Ack { pkid, code: ReasonCode::Success, .. }) if pkid == p.pkid)
    );
    assert!(matches!(client[3].0, Packet::Disconnect(_)));

    let server = packets(include_bytes!("fixtures/v5-pub-qos2-props.server.bin"), v);
    let Packet::ConnAck(ack) = &server[0].0 else {
        panic!("not CONNACK")
    };
    assert_eq!(ack.code, ReasonCode::Success);
    assert_eq!(ack.properties.topic_alias_maximum, Some(10));
    assert_eq!(ack.properties.receive_maximum, Some(20));
    assert!(matches!(server[1].0, Packet::PubRec(Ack { pkid, .. }) if pkid == p.pkid));
    assert!(matches!(server[2].0, Packet::PubComp(Ack { pkid, .. }) if pkid == p.pkid));

    for (i, (p, raw)) in client.iter().enumerate() {
        if i == 1 {
            assert_reencodes_reordered(p, raw, v);
        } else {
            assert_reencodes(p, raw, v);
        }
    }
    assert_server_reencodes(&server, v);
}

#[test]
fn v5_subscriber_with_shared_filter_and_subscription_identifier() {
    let v = Version::V5;
    let client = packets(include_bytes!("fixtures/v5-sub-qos1.client.bin"), v);
    let Packet::Subscribe(s) = &client[1].0 else {
        panic!("second packet is not SUBSCRIBE")
    };
    assert_eq!(s.properties.subscription_identifier, Some(42));
    assert_eq!(
        users(&s.properties.user_properties),
        [("who".into(), "capture".into())]
    );
    let filters: Vec<_> = s
        .filters
        .iter()
        .map(|f| (f.filter, f.options.qos))
        .collect();
    assert_eq!(
        filters,
        [
            ("sensors/+/temp", QoS::AtLeastOnce),
            ("$share/grp/cmd/#", QoS::AtLeastOnce)
        ]
    );
    assert_eq!(
        topic::TopicFilter::parse(filters[1].0),
        Ok(topic::TopicFilter::Shared {
            group: "grp",
            filter: "cmd/#"
        })
    );
    let Packet::Unsubscribe(u) = &client[2].0 else {
        panic!("third packet is not UNSUBSCRIBE")
    };
    assert_eq!(u.filters.iter().collect::<Vec<_>>(), ["old/topic"]);

    let server = packets(include_bytes!("fixtures/v5-sub-qos1.server.bin"), v);
    let Packet::SubAck(sa) = &server[1].0 else {
        panic!("not SUBACK")
    };
    assert_eq!(
        sa.codes.iter().collect::<Vec<_>>(),
        [ReasonCode::GrantedQoS1, ReasonCode::GrantedQoS1]
    );
    let Packet::UnsubAck(ua) = &server[3].0 else {
        panic!("not UNSUBACK")
    };
    assert_eq!(
        ua.codes.iter().collect::<Vec<_>>(),
        [ReasonCode::NoSubscriptionExisted]
    );
    let Packet::Publish(p) = &server[2].0 else {
        panic!("not PUBLISH")
    };
    assert!(p.retain, "retained message delivered on subscribe");
    assert!(topic::matches("sensors/+/temp", p.topic));
    assert_eq!(
        p.properties
            .subscription_identifiers
            .iter()
            .collect::<Vec<_>>(),
        [42]
    );
    assert!(matches!(client[3].0, Packet::PubAck(Ack { pkid, .. }) if pkid == p.pkid));

    for (p, raw) in &client {
        assert_reencodes(p, raw, v);
    }
    assert_server_reencodes(&server, v);
}

#[test]
fn v311_persistent_subscriber_receives_qos2() {
    let v = Version::V311;
    let client = packets(include_bytes!("fixtures/v311-sub-qos2.client.bin"), v);
    let Packet::Connect(c) = &client[0].0 else {
        panic!("not CONNECT")
    };
    assert!(!c.clean_start, "-c asks for a persistent session");
    let Packet::Subscribe(s) = &client[1].0 else {
        panic!("not SUBSCRIBE")
    };
    assert_eq!(
        s.filters.iter().next(),
        Some(SubscribeFilter::new("cmd/dev1", QoS::ExactlyOnce))
    );
    let server = packets(include_bytes!("fixtures/v311-sub-qos2.server.bin"), v);
    let Packet::Publish(p) = &server[2].0 else {
        panic!("not PUBLISH")
    };
    assert_eq!(
        (p.topic, p.payload, p.qos),
        ("cmd/dev1", &b"reboot"[..], QoS::ExactlyOnce)
    );
    assert_eq!(client[2].0, Packet::PubRec(Ack::new(p.pkid)));
    assert_eq!(server[3].0, Packet::PubRel(Ack::new(p.pkid)));
    assert_eq!(client[3].0, Packet::PubComp(Ack::new(p.pkid)));
    for (p, raw) in client.iter().chain(&server) {
        assert_reencodes(p, raw, v);
    }
}

#[test]
fn v5_keep_alive_pings_and_disconnect_with_will() {
    let v = Version::V5;
    let client = packets(include_bytes!("fixtures/v5-ping.client.bin"), v);
    assert!(client.iter().any(|(p, _)| *p == Packet::PingReq));
    let last = &client.last().expect("packets").0;
    assert_eq!(
        *last,
        Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage))
    );
    let server = packets(include_bytes!("fixtures/v5-ping.server.bin"), v);
    assert!(server.iter().any(|(p, _)| *p == Packet::PingResp));
    for (p, raw) in &client {
        assert_reencodes(p, raw, v);
    }
    assert_server_reencodes(&server, v);
}
