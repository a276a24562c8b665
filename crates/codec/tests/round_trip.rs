//! Round-trip properties: every packet type, both protocol versions, encode → decode gives the same
//! packet; every prefix of an encoded packet is "incomplete", never an error.

mod strategies;

use outpost_codec::*;
use proptest::prelude::*;
use strategies::*;

fn decode_all(buf: &[u8], v: Version) -> Packet<'_> {
    match decode(buf, v, usize::MAX) {
        Ok(Decoded::Packet(p, n)) => {
            assert_eq!(n, buf.len(), "decoder used a different length");
            p
        }
        other => panic!("could not decode {buf:02x?}: {other:?}"),
    }
}

fn round_trip(p: &Packet<'_>, v: Version) {
    let buf = encode(p, v);
    let back = decode_all(&buf, v);
    assert_eq!(&back, p, "bytes: {buf:02x?}");
    // Re-encoding the decoded (wire-backed) packet gives the same bytes.
    assert_eq!(encode(&back, v), buf);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn v5_packets_round_trip(p in packet(Version::V5)) {
        round_trip(&p, Version::V5);
    }

    #[test]
    fn v311_packets_round_trip(p in packet(Version::V311)) {
        round_trip(&p, Version::V311);
    }

    #[test]
    fn every_prefix_is_incomplete(p in packet(Version::V5)) {
        let buf = encode(&p, Version::V5);
        // Fixed header length: type byte plus the remaining-length bytes.
        let header_len = 1 + buf[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
        for cut in 0..buf.len() {
            match decode(&buf[..cut], Version::V5, usize::MAX) {
                Ok(Decoded::Incomplete { needed }) => {
                    prop_assert!(needed >= 1);
                    prop_assert!(cut + needed <= buf.len());
                    if cut >= header_len {
                        // Once the fixed header is complete, `needed` is exact.
                        prop_assert_eq!(cut + needed, buf.len());
                    }
                }
                other => prop_assert!(false, "prefix {} of {:02x?}: {:?}", cut, buf, other),
            }
        }
    }

    #[test]
    fn max_packet_size_is_enforced(p in packet(Version::V5)) {
        let buf = encode(&p, Version::V5);
        let too_small = buf.len() - 1;
        prop_assert_eq!(
            decode(&buf, Version::V5, too_small),
            Err(DecodeError::PacketTooLarge { size: buf.len(), max: too_small })
        );
    }

    #[test]
    fn encode_into_short_buffer_fails_cleanly(p in packet(Version::V5), short in 0usize..8) {
        let len = p.encoded_len(Version::V5).unwrap();
        let mut buf = vec![0u8; len.saturating_sub(short + 1)];
        prop_assert_eq!(p.encode(Version::V5, &mut buf), Err(EncodeError::BufferTooSmall { needed: len }));
    }

    #[test]
    fn two_packets_back_to_back(a in packet(Version::V5), b in packet(Version::V5)) {
        let mut buf = encode(&a, Version::V5);
        let first = buf.len();
        buf.extend(encode(&b, Version::V5));
        match decode(&buf, Version::V5, usize::MAX).unwrap() {
            Decoded::Packet(p, n) => { prop_assert_eq!(n, first); prop_assert_eq!(p, a); }
            other => prop_assert!(false, "{:?}", other),
        }
        prop_assert_eq!(decode_all(&buf[first..], Version::V5), b);
    }
}

#[cfg(feature = "bytes")]
#[test]
fn bytes_feature_encodes_into_bufmut_identically() {
    let p = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        pkid: 7,
        ..Publish::new("a/b", b"hello")
    });
    let mut out = bytes::BytesMut::new();
    let n = p.encode_to(Version::V5, &mut out).unwrap();
    assert_eq!(n, out.len());
    assert_eq!(&out[..], &encode(&p, Version::V5)[..]);
}
