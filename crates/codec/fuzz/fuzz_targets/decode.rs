//! Fuzzes the decoder with both protocol versions: it must never panic, and whatever it accepts must
//! re-encode into bytes that decode to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_codec::{decode, Decoded, Version};

fuzz_target!(|data: &[u8]| {
    for v in [Version::V311, Version::V5] {
        let mut rest = data;
        // Walk the input as a stream of packets, like a listener would.
        while let Ok(Decoded::Packet(p, n)) = decode(rest, v, 1 << 20) {
            let len = p.encoded_len(v).expect("a decoded packet is encodable");
            let mut out = vec![0u8; len];
            p.encode(v, &mut out).expect("encodes into a buffer of encoded_len");
            match decode(&out, v, usize::MAX) {
                Ok(Decoded::Packet(q, m)) => {
                    assert_eq!(m, len);
                    assert_eq!(q, p);
                }
                other => panic!("re-encoded packet does not decode: {other:?}"),
            }
            rest = &rest[n..];
        }
    }
});
