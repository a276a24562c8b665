//! The `bytes` feature: frames cut from a read buffer and owned PUBLISH packets that share its memory.
#![cfg(feature = "bytes")]

use bytes::{Bytes, BytesMut};
use outpost_codec::*;

fn encoded(p: &Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; p.encoded_len(Version::V5).unwrap()];
    p.encode(Version::V5, &mut buf).unwrap();
    buf
}

#[test]
fn split_frame_cuts_packets_as_they_complete() {
    let a = encoded(&Packet::Publish(Publish::new("a/b", b"one")));
    let b = encoded(&Packet::PingReq);
    let mut stream = a.clone();
    stream.extend(&b);

    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for byte in stream {
        buf.extend_from_slice(&[byte]);
        while let Some(frame) = split_frame(&mut buf, 1024).unwrap() {
            frames.push(frame);
        }
    }
    assert_eq!(frames, [Bytes::from(a), Bytes::from(b)]);
    assert!(buf.is_empty());
}

#[test]
fn publish_bytes_shares_the_frame() {
    let users = [UserProperty::new("k", "v")];
    let payload = vec![42u8; 4096];
    let original = Publish {
        qos: QoS::ExactlyOnce,
        pkid: 77,
        retain: true,
        properties: PublishProperties {
            response_topic: Some("reply/here"),
            user_properties: List::new(&users),
            subscription_identifiers: List::new(&[3, 9]),
            ..PublishProperties::default()
        },
        ..Publish::new("dev/9/telemetry", &payload)
    };
    let frame = Bytes::from(encoded(&Packet::Publish(original)));
    let owned = PublishBytes::decode(&frame, Version::V5)
        .unwrap()
        .expect("a PUBLISH");

    // Same memory, not a copy.
    let start = frame.as_ptr() as usize;
    let inside =
        |b: &Bytes| (b.as_ptr() as usize) >= start && (b.as_ptr() as usize) < start + frame.len();
    assert!(inside(&owned.payload));
    assert!(inside(owned.topic_bytes()));
    assert_eq!(owned.topic(), "dev/9/telemetry");
    assert_eq!(owned.as_publish(), original);

    // Outlives the frame handle and re-encodes for both versions.
    drop(frame);
    let again = encoded(&Packet::Publish(owned.as_publish()));
    assert_eq!(again, encoded(&Packet::Publish(original)));
    let mut v311 = vec![0u8; 8192];
    let n = Packet::Publish(owned.as_publish())
        .encode(Version::V311, &mut v311)
        .unwrap();
    let Decoded::Packet(Packet::Publish(p311), _) =
        decode(&v311[..n], Version::V311, usize::MAX).unwrap()
    else {
        panic!()
    };
    assert_eq!(p311.payload, &payload[..]);
    assert!(p311.properties.is_empty());
}

#[test]
fn publish_bytes_from_parts_and_header_only_encoding() {
    let props = PublishProperties {
        content_type: Some("application/json"),
        ..PublishProperties::default()
    };
    let owned = PublishBytes::new(
        "a/b",
        Bytes::from_static(b"{}"),
        QoS::AtMostOnce,
        false,
        &props,
    );
    assert_eq!(owned.properties().content_type, Some("application/json"));

    // Header + payload written separately equal the whole packet.
    let p = owned.as_publish();
    let mut header = [0u8; 64];
    let h = p.encode_header(Version::V5, &mut header).unwrap();
    let mut joined = header[..h].to_vec();
    joined.extend_from_slice(&owned.payload);
    assert_eq!(joined, encoded(&Packet::Publish(p)));
}
