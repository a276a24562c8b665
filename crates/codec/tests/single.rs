//! The per-packet encoders and the client-side decoder agree with the general ones.

use outpost_codec::{
    decode, decode_from_server, Ack, Connect, DecodeError, Decoded, Disconnect, List, Packet,
    PacketType, Publish, QoS, Subscribe, SubscribeFilter, Unsubscribe, Version,
};

fn both(p: &Packet<'_>, version: Version, single: impl Fn(&mut [u8]) -> usize) {
    let mut a = [0u8; 256];
    let mut b = [0u8; 256];
    let n = p.encode(version, &mut a).unwrap();
    let m = single(&mut b);
    assert_eq!(&a[..n], &b[..m], "{p:?} in {version:?}");
}

#[test]
fn per_packet_encoders_match_packet_encode() {
    for v in [Version::V311, Version::V5] {
        let c = Connect {
            protocol: v,
            client_id: "dev",
            keep_alive: 30,
            username: Some("u"),
            ..Connect::default()
        };
        both(&Packet::Connect(c), v, |b| c.encode(b).unwrap());
        let mut p = Publish::new("t/1", b"payload");
        p.qos = QoS::ExactlyOnce;
        p.pkid = 7;
        both(&Packet::Publish(p), v, |b| p.encode(v, b).unwrap());
        let filters = [SubscribeFilter::new("a/#", QoS::AtLeastOnce)];
        let s = Subscribe {
            pkid: 3,
            properties: Default::default(),
            filters: List::new(&filters),
        };
        both(&Packet::Subscribe(s), v, |b| s.encode(v, b).unwrap());
        let names = ["a/#"];
        let u = Unsubscribe {
            pkid: 4,
            properties: Default::default(),
            filters: List::new(&names),
        };
        both(&Packet::Unsubscribe(u), v, |b| u.encode(v, b).unwrap());
        let d = Disconnect::default();
        both(&Packet::Disconnect(d), v, |b| d.encode(v, b).unwrap());
        let a = Ack::new(9);
        both(&Packet::PubAck(a), v, |b| {
            a.encode(PacketType::PubAck, v, b).unwrap()
        });
        both(&Packet::PubRec(a), v, |b| {
            a.encode(PacketType::PubRec, v, b).unwrap()
        });
        both(&Packet::PubRel(a), v, |b| {
            a.encode(PacketType::PubRel, v, b).unwrap()
        });
        both(&Packet::PubComp(a), v, |b| {
            a.encode(PacketType::PubComp, v, b).unwrap()
        });
        assert!(a.encode(PacketType::Connect, v, &mut [0u8; 8]).is_err());
    }
}

#[test]
fn client_decoder_takes_server_packets_only() {
    let mut buf = [0u8; 64];
    let n = Packet::PubAck(Ack::new(5))
        .encode(Version::V311, &mut buf)
        .unwrap();
    assert_eq!(
        decode_from_server(&buf[..n], Version::V311, 64).unwrap(),
        decode(&buf[..n], Version::V311, 64).unwrap()
    );
    let n = Packet::PingReq.encode(Version::V311, &mut buf).unwrap();
    assert_eq!(
        decode_from_server(&buf[..n], Version::V311, 64),
        Err(DecodeError::InvalidPacketType(12))
    );
    let n = Packet::Auth(Default::default())
        .encode(Version::V5, &mut buf)
        .unwrap();
    assert_eq!(
        decode_from_server(&buf[..n], Version::V5, 64),
        Err(DecodeError::InvalidPacketType(15))
    );
    let n = Connect::default().encode(&mut buf).unwrap();
    assert!(decode_from_server(&buf[..n], Version::V311, 64).is_err());
    assert!(matches!(
        decode_from_server(&buf[..1], Version::V311, 64),
        Ok(Decoded::Incomplete { .. })
    ));
}
