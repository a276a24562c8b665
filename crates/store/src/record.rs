//! The on-disk record: `length | crc32c | header | payload`, little-endian.
//!
//! ```text
//! 0   u32  length     bytes after this field (crc + header + payload)
//! 4   u32  crc32c     of payload, then header bytes 8..40 (see `header_bytes`)
//! 8   u32  magic      "OPR1", lets recovery find the next record after a damaged one
//! 12  u8   kind       data, tombstone or segment start
//! 13  u8   reserved
//! 14  u16  reserved
//! 16  u64  stream     stream id (data, tombstone)
//! 24  u64  seq        record sequence number; the target's for a tombstone, the base for a segment start
//! 32  u64  timestamp  milliseconds since the Unix epoch
//! 40  ...  payload
//! ```
//!
//! Sequence numbers are global and never reused, so `(stream, seq)` names a record for its whole life,
//! even when compaction moves it to another segment.

/// Bytes before the payload.
pub const HEADER_LEN: usize = 40;
const MAGIC: u32 = u32::from_le_bytes(*b"OPR1");

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// A stored payload.
    Data = 1,
    /// Marks `(stream, seq)` dead.
    Tombstone = 2,
    /// First record of every segment; `seq` is the next sequence number at creation.
    SegmentStart = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Data),
            2 => Some(Kind::Tombstone),
            3 => Some(Kind::SegmentStart),
            _ => None,
        }
    }
}

/// The header fields of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: Kind,
    pub stream: u64,
    pub seq: u64,
    pub timestamp: u64,
}

/// The first [`HEADER_LEN`] bytes of a record, given the CRC of its payload (computed elsewhere, so
/// that callers' threads, not the writer, pay for checksumming payloads).
pub(crate) fn header_bytes(h: &Header, payload_len: usize, payload_crc: u32) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    let len = (HEADER_LEN - 4 + payload_len) as u32;
    b[0..4].copy_from_slice(&len.to_le_bytes());
    b[8..12].copy_from_slice(&MAGIC.to_le_bytes());
    b[12] = h.kind as u8;
    b[16..24].copy_from_slice(&h.stream.to_le_bytes());
    b[24..32].copy_from_slice(&h.seq.to_le_bytes());
    b[32..40].copy_from_slice(&h.timestamp.to_le_bytes());
    // Payload first, then the header: the caller's CRC of the payload is simply extended, which is a
    // few nanoseconds, where combining two CRCs (`crc32c_combine`) cost the writer most of its time.
    let crc = crc32c::crc32c_append(payload_crc, &b[8..]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Appends one encoded record to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, h: &Header, payload: &[u8]) {
    out.extend_from_slice(&header_bytes(h, payload.len(), crc32c::crc32c(payload)));
    out.extend_from_slice(payload);
}

/// Total bytes a record with this payload takes.
#[cfg(test)]
pub(crate) const fn encoded_len(payload: usize) -> usize {
    HEADER_LEN + payload
}

/// What [`parse`] found at an offset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A valid record of `len` bytes.
    Record { header: Header, len: usize },
    /// Zeros: the end of written data.
    End,
    /// Bytes that are not a valid record (torn write, bit flip).
    Corrupt,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Parses the record at the start of `buf`, checking bounds, magic and CRC.
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    if buf.len() < HEADER_LEN {
        return if buf.iter().all(|&b| b == 0) {
            Parsed::End
        } else {
            Parsed::Corrupt
        };
    }
    let len = u32_at(buf, 0) as usize;
    if len == 0 && u32_at(buf, 4) == 0 && u32_at(buf, 8) == 0 {
        return Parsed::End;
    }
    let total = len + 4;
    if total < HEADER_LEN || total > buf.len() || u32_at(buf, 8) != MAGIC {
        return Parsed::Corrupt;
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[HEADER_LEN..total]), &buf[8..HEADER_LEN]);
    if crc != u32_at(buf, 4) {
        return Parsed::Corrupt;
    }
    let Some(kind) = Kind::from_u8(buf[12]) else {
        return Parsed::Corrupt;
    };
    Parsed::Record {
        header: Header {
            kind,
            stream: u64_at(buf, 16),
            seq: u64_at(buf, 24),
            timestamp: u64_at(buf, 32),
        },
        len: total,
    }
}

/// Finds the next offset after `from` where a valid record starts (after damage), if any.
pub(crate) fn resync(buf: &[u8], from: usize) -> Option<usize> {
    let magic = MAGIC.to_le_bytes();
    let mut at = from + 1;
    while at + HEADER_LEN <= buf.len() {
        // The magic sits 8 bytes into a record.
        let window = &buf[at + 8..];
        let pos = window.windows(4).position(|w| w == magic)?;
        let candidate = at + pos;
        if matches!(parse(&buf[candidate..]), Parsed::Record { .. }) {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode(
            &mut v,
            &Header {
                kind: Kind::Data,
                stream: 7,
                seq,
                timestamp: 1,
            },
            payload,
        );
        v
    }

    #[test]
    fn round_trip_and_length() {
        let v = rec(42, b"hello");
        assert_eq!(v.len(), encoded_len(5));
        match parse(&v) {
            Parsed::Record { header, len } => {
                assert_eq!(len, v.len());
                assert_eq!(
                    (header.stream, header.seq, header.kind),
                    (7, 42, Kind::Data)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zeros_end_and_damage_is_corrupt() {
        assert_eq!(parse(&[0u8; 64]), Parsed::End);
        let mut v = rec(1, b"abc");
        let last = v.len() - 1;
        v[last] ^= 1;
        assert_eq!(parse(&v), Parsed::Corrupt);
        assert_eq!(parse(&rec(1, b"abc")[..20]), Parsed::Corrupt);
    }

    #[test]
    fn resync_skips_a_damaged_record() {
        let mut v = rec(1, b"first");
        let second_at = v.len();
        v.extend(rec(2, b"second"));
        v[10] ^= 0xff; // damage the first record's magic
        assert_eq!(parse(&v), Parsed::Corrupt);
        assert_eq!(resync(&v, 0), Some(second_at));
    }
}
