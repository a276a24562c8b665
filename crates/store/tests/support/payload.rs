//! Self-describing payloads shared by the torture binary and the tests that check its output.
#![allow(dead_code)]

/// The payload for (writer, n): writer, number and length (12 bytes), then a pattern derived from them.
pub fn payload(writer: u32, n: u32) -> Vec<u8> {
    let len = 1 + ((writer as usize * 7919 + n as usize * 104_729) % 3000);
    let mut v = Vec::with_capacity(12 + len);
    v.extend_from_slice(&writer.to_le_bytes());
    v.extend_from_slice(&n.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    let mut x = writer.wrapping_mul(2_654_435_761) ^ n;
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    v
}

/// True when `bytes` is exactly the payload its header claims to be.
pub fn is_intact(bytes: &[u8]) -> bool {
    if bytes.len() < 12 {
        return false;
    }
    let w = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let n = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    payload(w, n) == bytes
}

/// What a torture run acknowledged, parsed from its stdout.
#[derive(Debug, Default)]
pub struct Acks {
    /// (stream, seq) → (writer, n)
    pub appended: std::collections::HashMap<(u64, u64), (u32, u32)>,
    /// (stream, seq) of acknowledged deletes.
    pub deleted: std::collections::HashSet<(u64, u64)>,
    /// (stream, seq) of requested deletes (acknowledged or not).
    pub requested: std::collections::HashSet<(u64, u64)>,
    /// The run ended on a full disk.
    pub full: bool,
}

impl Acks {
    /// Adds one line of torture output.
    pub fn line(&mut self, line: &str) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["A", s, q, w, n] => {
                if let (Ok(s), Ok(q), Ok(w), Ok(n)) = (s.parse(), q.parse(), w.parse(), n.parse()) {
                    self.appended.insert((s, q), (w, n));
                }
            }
            ["D", s, q] => {
                if let (Ok(s), Ok(q)) = (s.parse(), q.parse()) {
                    self.deleted.insert((s, q));
                }
            }
            ["d", s, q] => {
                if let (Ok(s), Ok(q)) = (s.parse(), q.parse()) {
                    self.requested.insert((s, q));
                }
            }
            ["FULL"] => self.full = true,
            _ => {}
        }
    }

    /// Checks a reopened store: every acknowledged append present and intact unless its delete was
    /// acknowledged, every acknowledged delete absent, and every record of the stream intact.
    pub fn verify(&self, store: &outpost_store::Store) {
        use outpost_store::{RecordId, StreamId};
        for (&(s, q), &(w, n)) in &self.appended {
            let id = RecordId {
                stream: StreamId(s),
                seq: q,
            };
            let got = store.read(id);
            if self.deleted.contains(&(s, q)) {
                assert!(got.is_none(), "acknowledged delete of {s}/{q} was lost");
            } else if let Some(got) = got {
                assert_eq!(
                    &got.payload[..],
                    &payload(w, n)[..],
                    "record {s}/{q} damaged"
                );
            } else {
                // Gone without an acknowledged delete is fine only if a delete was in flight.
                assert!(
                    self.requested.contains(&(s, q)),
                    "acknowledged append {s}/{q} (writer {w}, #{n}) lost"
                );
            }
        }
        if let Some(&(s, _)) = self.appended.keys().next() {
            for r in store.scan(StreamId(s), 0, usize::MAX) {
                assert!(is_intact(&r.payload), "record {:?} is damaged", r.id);
            }
        }
    }
}
