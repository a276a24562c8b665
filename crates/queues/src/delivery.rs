//! Delivery records: the mutable half of a message (receive count, first receive, visibility
//! deadline, current receipt nonce), appended to the queue's state stream at every receive and
//! visibility change. The latest record per message wins at recovery; older ones are marked dead
//! without waiting, since a surviving older record loses to the newer one anyway.

use bytes::{BufMut, Bytes, BytesMut};

/// The state of one message after a receive or visibility change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The message record's sequence number.
    pub seq: u64,
    /// Times received.
    pub receive_count: u32,
    /// First receive, ms since the epoch.
    pub first_receive_ms: u64,
    /// When the message becomes visible again, ms since the epoch.
    pub visible_at_ms: u64,
    /// The current receipt's nonce.
    pub nonce: u64,
}

const LEN: usize = 8 + 4 + 8 + 8 + 8;

impl Delivery {
    /// Record bytes.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(LEN);
        out.put_u64(self.seq);
        out.put_u32(self.receive_count);
        out.put_u64(self.first_receive_ms);
        out.put_u64(self.visible_at_ms);
        out.put_u64(self.nonce);
        out.freeze()
    }

    /// Parses record bytes.
    pub fn decode(buf: &[u8]) -> Option<Delivery> {
        if buf.len() != LEN {
            return None;
        }
        let u64_at = |i: usize| u64::from_be_bytes(buf[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(Delivery {
            seq: u64_at(0),
            receive_count: u32::from_be_bytes(buf[8..12].try_into().unwrap_or([0; 4])),
            first_receive_ms: u64_at(12),
            visible_at_ms: u64_at(20),
            nonce: u64_at(28),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = Delivery {
            seq: 1,
            receive_count: 2,
            first_receive_ms: 3,
            visible_at_ms: 4,
            nonce: 5,
        };
        assert_eq!(Delivery::decode(&d.encode()), Some(d));
        assert_eq!(Delivery::decode(&d.encode()[1..]), None);
    }
}
