//! Every "malformed packet" / "protocol error" rule the codec enforces, each with the typed error it
//! gives and the MQTT 5 reason code a server answers with.

mod strategies;

use outpost_codec::*;
use proptest::prelude::*;
use strategies::*;

fn err(bytes: &[u8], v: Version) -> DecodeError {
    match decode(bytes, v, usize::MAX) {
        Err(e) => e,
        other => panic!("{bytes:02x?} decoded as {other:?}"),
    }
}

/// A packet with the given first byte and body (remaining length computed).
fn raw(first: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    let mut v = vec![first, body.len() as u8];
    v.extend_from_slice(body);
    v
}

fn v5_connect_with_props(props: &[u8]) -> Vec<u8> {
    let mut body = vec![
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        5,
        0x02,
        0,
        60,
        props.len() as u8,
    ];
    body.extend_from_slice(props);
    body.extend_from_slice(&[0, 1, b'c']);
    raw(0x10, &body)
}

#[test]
fn remaining_length_longer_than_four_bytes() {
    let e = err(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], Version::V5);
    assert_eq!(e, DecodeError::MalformedRemainingLength);
    assert_eq!(e.reason_code(), ReasonCode::MalformedPacket);
}

#[test]
fn packet_over_the_maximum_size_is_refused_before_its_body_arrives() {
    // Header announces 1,000,000 bytes; only the header is present.
    let e = decode(&[0x30, 0xc0, 0x84, 0x3d], Version::V5, 1024).unwrap_err();
    assert_eq!(
        e,
        DecodeError::PacketTooLarge {
            size: 1_000_004,
            max: 1024
        }
    );
    assert_eq!(e.reason_code(), ReasonCode::PacketTooLarge);
}

#[test]
fn publish_topic_must_be_utf8_without_nul_or_wildcards() {
    assert_eq!(
        err(&raw(0x30, &[0, 2, 0xc3, 0x28]), Version::V311),
        DecodeError::InvalidUtf8
    );
    assert_eq!(
        err(&raw(0x30, &[0, 3, b'a', 0, b'b']), Version::V311),
        DecodeError::InvalidUtf8
    );
    for t in [&b"a/+"[..], b"#", b"a/#"] {
        let mut body = vec![0, t.len() as u8];
        body.extend_from_slice(t);
        let e = err(&raw(0x30, &body), Version::V311);
        assert_eq!(e, DecodeError::InvalidTopicName);
        assert_eq!(e.reason_code(), ReasonCode::TopicNameInvalid);
    }
    // Empty topic: never in 3.1.1; in 5.0 only with a topic alias.
    assert_eq!(
        err(&raw(0x30, &[0, 0]), Version::V311),
        DecodeError::InvalidTopicName
    );
    assert_eq!(
        err(&raw(0x30, &[0, 0, 0]), Version::V5),
        DecodeError::InvalidTopicName
    );
    assert!(matches!(
        decode(&raw(0x30, &[0, 0, 3, 0x23, 0, 1]), Version::V5, 100),
        Ok(Decoded::Packet(Packet::Publish(_), _))
    ));
}

#[test]
fn reserved_fixed_header_flags() {
    for first in [0x80u8, 0x60, 0xa0, 0xc1, 0xe8, 0x11, 0x21, 0x63] {
        assert!(
            matches!(
                err(&raw(first, &[0, 1]), Version::V5),
                DecodeError::InvalidHeaderFlags { .. }
            ),
            "{first:#x}"
        );
    }
}

#[test]
fn qos_3_and_dup_on_qos_0() {
    assert_eq!(
        err(&raw(0x36, &[0, 1, b'a', 0, 1]), Version::V311),
        DecodeError::InvalidQoS(3)
    );
    assert_eq!(
        err(&raw(0x38, &[0, 1, b'a']), Version::V311),
        DecodeError::DupOnQoS0
    );
}

#[test]
fn protocol_name_and_level() {
    let e = err(
        &raw(
            0x10,
            &[
                0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2, 0, 60, 0, 1, b'c',
            ],
        ),
        Version::V5,
    );
    assert_eq!(e, DecodeError::InvalidProtocolName);
    let e = err(
        &raw(
            0x10,
            &[0, 4, b'M', b'Q', b'T', b'T', 6, 2, 0, 60, 0, 1, b'c'],
        ),
        Version::V5,
    );
    assert_eq!(e, DecodeError::UnsupportedProtocolLevel(6));
    assert_eq!(e.reason_code(), ReasonCode::UnsupportedProtocolVersion);
}

#[test]
fn connect_flags() {
    let connect = |flags: u8| {
        raw(
            0x10,
            &[0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60, 0, 1, b'c'],
        )
    };
    // reserved bit
    assert_eq!(
        err(&connect(0x03), Version::V311),
        DecodeError::InvalidConnectFlags(0x03)
    );
    // will QoS / will retain without will flag
    assert_eq!(
        err(&connect(0x0a), Version::V311),
        DecodeError::InvalidConnectFlags(0x0a)
    );
    assert_eq!(
        err(&connect(0x22), Version::V311),
        DecodeError::InvalidConnectFlags(0x22)
    );
    // will QoS 3
    assert_eq!(
        err(&connect(0x1e), Version::V311),
        DecodeError::InvalidConnectFlags(0x1e)
    );
    // 3.1.1: password without user name
    assert_eq!(
        err(&connect(0x42), Version::V311),
        DecodeError::InvalidConnectFlags(0x42)
    );
}

#[test]
fn properties_unknown_duplicate_not_allowed_or_out_of_range() {
    assert_eq!(
        err(&v5_connect_with_props(&[0x7f, 0]), Version::V5),
        DecodeError::UnknownProperty(0x7f)
    );
    // Topic Alias belongs to PUBLISH, not CONNECT.
    let e = err(&v5_connect_with_props(&[0x23, 0, 1]), Version::V5);
    assert_eq!(e, DecodeError::PropertyNotAllowed(0x23));
    assert_eq!(e.reason_code(), ReasonCode::ProtocolError);
    let e = err(
        &v5_connect_with_props(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]),
        Version::V5,
    );
    assert_eq!(e, DecodeError::DuplicateProperty(0x11));
    // Receive Maximum 0, Maximum Packet Size 0, Request Problem Information 2.
    assert_eq!(
        err(&v5_connect_with_props(&[0x21, 0, 0]), Version::V5),
        DecodeError::InvalidPropertyValue(0x21)
    );
    assert_eq!(
        err(&v5_connect_with_props(&[0x27, 0, 0, 0, 0]), Version::V5),
        DecodeError::InvalidPropertyValue(0x27)
    );
    assert_eq!(
        err(&v5_connect_with_props(&[0x17, 2]), Version::V5),
        DecodeError::InvalidPropertyValue(0x17)
    );
    // A property block longer than the packet.
    assert_eq!(
        err(&v5_connect_with_props(&[0x11, 0, 0]), Version::V5),
        DecodeError::Truncated
    );
    // User properties may repeat.
    let ok = v5_connect_with_props(&[0x26, 0, 1, b'a', 0, 1, b'b', 0x26, 0, 1, b'a', 0, 1, b'c']);
    let Ok(Decoded::Packet(Packet::Connect(c), _)) = decode(&ok, Version::V5, 100) else {
        panic!()
    };
    assert_eq!(c.properties.user_properties.len(), 2);
}

#[test]
fn packet_identifier_zero() {
    assert_eq!(
        err(&raw(0x32, &[0, 1, b'a', 0, 0]), Version::V311),
        DecodeError::ZeroPacketId
    );
    assert_eq!(
        err(&raw(0x40, &[0, 0]), Version::V311),
        DecodeError::ZeroPacketId
    );
    assert_eq!(
        err(&raw(0x82, &[0, 0, 0, 1, b'a', 0]), Version::V311),
        DecodeError::ZeroPacketId
    );
}

#[test]
fn subscribe_rules() {
    assert_eq!(
        err(&raw(0x82, &[0, 1]), Version::V311),
        DecodeError::NoTopicFilter
    );
    assert_eq!(
        err(&raw(0xa2, &[0, 1, 0]), Version::V5),
        DecodeError::NoTopicFilter
    );
    // 3.1.1: upper six bits reserved.
    assert_eq!(
        err(&raw(0x82, &[0, 1, 0, 1, b'a', 0x04]), Version::V311),
        DecodeError::InvalidSubscriptionOptions(0x04)
    );
    // 5.0: retain handling 3, reserved bits 6-7, QoS 3.
    for o in [0x30u8, 0x40, 0x03] {
        assert_eq!(
            err(&raw(0x82, &[0, 1, 0, 0, 1, b'a', o]), Version::V5),
            DecodeError::InvalidSubscriptionOptions(o)
        );
    }
    // No Local on a shared subscription.
    let mut body = vec![0, 1, 0, 0, 10];
    body.extend_from_slice(b"$share/g/a");
    body.push(0x04);
    assert_eq!(
        err(&raw(0x82, &body), Version::V5),
        DecodeError::InvalidSubscriptionOptions(0x04)
    );
}

#[test]
fn auth_does_not_exist_in_v311_and_type_0_nowhere() {
    assert_eq!(
        err(&raw(0xf0, &[]), Version::V311),
        DecodeError::InvalidPacketType(15)
    );
    assert!(matches!(
        decode(&raw(0xf0, &[]), Version::V5, 10),
        Ok(Decoded::Packet(Packet::Auth(_), 2))
    ));
    assert_eq!(
        err(&raw(0x00, &[]), Version::V5),
        DecodeError::InvalidPacketType(0)
    );
}

#[test]
fn trailing_bytes_and_short_bodies() {
    assert_eq!(
        err(&raw(0xc0, &[0]), Version::V5),
        DecodeError::TrailingBytes
    );
    assert_eq!(
        err(&raw(0x40, &[0, 1, 0]), Version::V311),
        DecodeError::TrailingBytes
    );
    assert_eq!(err(&raw(0x40, &[0]), Version::V311), DecodeError::Truncated);
    assert_eq!(
        err(&raw(0x10, &[0, 4, b'M', b'Q']), Version::V5),
        DecodeError::Truncated
    );
}

#[test]
fn reason_codes_outside_the_packets_table() {
    // PUBACK may not carry 0x8F (topic filter invalid); SUBACK 3.1.1 may not carry 0x87.
    assert_eq!(
        err(&raw(0x40, &[0, 1, 0x8f]), Version::V5),
        DecodeError::InvalidReasonCode(0x8f)
    );
    assert_eq!(
        err(&raw(0x90, &[0, 1, 0x87]), Version::V311),
        DecodeError::InvalidReasonCode(0x87)
    );
    assert_eq!(
        err(&raw(0x20, &[0, 6]), Version::V311),
        DecodeError::InvalidReasonCode(6)
    );
}

#[test]
fn encoder_refuses_what_the_decoder_would_refuse() {
    let mut buf = [0u8; 64];
    let empty = Packet::Publish(Publish::new("", b""));
    assert_eq!(
        empty.encode(Version::V311, &mut buf),
        Err(EncodeError::InvalidTopicName)
    );
    assert_eq!(
        empty.encode(Version::V5, &mut buf),
        Err(EncodeError::InvalidTopicName)
    );
    let zero = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        ..Publish::new("a", b"")
    });
    assert_eq!(
        zero.encode(Version::V5, &mut buf),
        Err(EncodeError::ZeroPacketId)
    );
    let auth = Packet::Auth(Auth::default());
    assert_eq!(
        auth.encode(Version::V311, &mut buf),
        Err(EncodeError::NotInVersion)
    );
    let bad_code = Packet::PubRel(Ack {
        code: ReasonCode::NotAuthorized,
        ..Ack::new(1)
    });
    assert_eq!(
        bad_code.encode(Version::V5, &mut buf),
        Err(EncodeError::InvalidReasonCode(0x87))
    );
    let no_filters = Packet::Subscribe(Subscribe {
        pkid: 1,
        ..Subscribe::default()
    });
    assert_eq!(
        no_filters.encode(Version::V5, &mut buf),
        Err(EncodeError::NoTopicFilter)
    );
    let long = "x".repeat(70_000);
    let mut big = vec![0u8; 80_000];
    assert_eq!(
        Packet::Publish(Publish::new(&long, b"")).encode(Version::V5, &mut big),
        Err(EncodeError::FieldTooLong)
    );
}

/// Decoded packets re-encode to something that decodes to the same packet.
fn check_stable(bytes: &[u8], v: Version) {
    if let Ok(Decoded::Packet(p, n)) = decode(bytes, v, usize::MAX) {
        assert!(n <= bytes.len());
        let len = p.encoded_len(v).expect("a decoded packet is encodable");
        let mut out = vec![0u8; len];
        p.encode(v, &mut out).expect("encodes");
        match decode(&out, v, usize::MAX) {
            Ok(Decoded::Packet(q, m)) => {
                assert_eq!(m, out.len());
                assert_eq!(q, p);
            }
            other => panic!("re-encoded packet does not decode: {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// The always-on stand-in for the fuzzer: arbitrary bytes never panic the decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), v in version()) {
        check_stable(&bytes, v);
    }

    /// Mutations of valid packets (where bugs hide: almost-right input) never panic either.
    #[test]
    fn mutated_packets_never_panic(
        p in packet(Version::V5),
        v in version(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..4),
    ) {
        let mut bytes = encode(&p, Version::V5);
        for (at, val, kind) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = val,
                1 => bytes[i] ^= 1 << (val % 8),
                2 => bytes.truncate(i),
                _ => bytes.insert(i, val),
            }
        }
        check_stable(&bytes, v);
    }
}
