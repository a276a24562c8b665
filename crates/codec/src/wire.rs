//! The MQTT data representations (spec §1.5): big-endian integers, variable byte integers,
//! length-prefixed UTF-8 strings and binary data, read from and written to byte buffers.
//!
//! Reading never panics: every access is bounds-checked and a short buffer is
//! [`DecodeError::Truncated`]. Writing goes through [`Sink`], whose slice implementation records an
//! overflow instead of panicking; callers check the size first, so overflow means a bug, not bad input.

use crate::{DecodeError, EncodeError};

/// Largest value of a variable byte integer (four bytes).
pub(crate) const MAX_VARINT: u32 = 268_435_455;

/// A cursor over borrowed input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Everything not read yet.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.buf
    }

    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, tail) = self.buf.split_first().ok_or(DecodeError::Truncated)?;
        self.buf = tail;
        Ok(b)
    }

    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A variable byte integer (§1.5.5). Non-minimal encodings are malformed.
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match read_varint(self.buf)? {
            VarInt::Value { value, len } => {
                self.buf = &self.buf[len..];
                Ok(value)
            }
            VarInt::Incomplete => Err(DecodeError::Truncated),
        }
    }

    /// Two-byte length followed by that many bytes (§1.5.6).
    #[inline]
    pub(crate) fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()? as usize;
        self.take(len)
    }

    /// A UTF-8 encoded string (§1.5.4): well-formed UTF-8 without U+0000.
    #[inline]
    pub(crate) fn string(&mut self) -> Result<&'a str, DecodeError> {
        utf8(self.binary()?)
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// True if any byte of `word` equals `b` (the classic SWAR zero-byte test on `word ^ b…b`).
#[inline(always)]
const fn word_has(word: u64, b: u8) -> bool {
    let x = word ^ (ONES * b as u64);
    x.wrapping_sub(ONES) & !x & HIGHS != 0
}

/// True if `bytes` holds any of `needles`. Topics are scanned on every PUBLISH, so this reads eight
/// bytes at a time (SWAR) instead of one.
#[inline(always)]
fn contains_any<const N: usize>(bytes: &[u8], needles: [u8; N]) -> bool {
    let any_in = |chunk: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let word = u64::from_le_bytes(w);
        needles.iter().any(|&n| word_has(word, n))
    };
    if bytes.len() < 8 {
        return bytes.iter().any(|b| needles.contains(b));
    }
    let mut chunks = bytes.chunks_exact(8);
    if chunks.any(any_in) {
        return true;
    }
    // The tail: the last eight bytes, overlapping bytes already seen (no copy, no byte loop).
    !bytes.len().is_multiple_of(8) && any_in(&bytes[bytes.len() - 8..])
}

/// True if `bytes` holds `+` or `#`.
#[inline]
pub(crate) fn has_wildcard(bytes: &[u8]) -> bool {
    contains_any(bytes, [b'+', b'#'])
}

/// True if `bytes` holds U+0000, `+` or `#`.
#[inline]
fn has_nul_or_wildcard(bytes: &[u8]) -> bool {
    contains_any(bytes, [0, b'+', b'#'])
}

/// Reads a PUBLISH topic: a UTF-8 string without wildcards, checked in one pass over the bytes.
/// Emptiness is left to the caller (MQTT 5 allows it with a topic alias).
#[inline]
pub(crate) fn topic<'a>(r: &mut Reader<'a>) -> Result<&'a str, DecodeError> {
    let bytes = r.binary()?;
    if has_nul_or_wildcard(bytes) {
        // Slow path, only to tell an invalid string (NUL) from an invalid topic (wildcard).
        utf8(bytes)?;
        return Err(DecodeError::InvalidTopicName);
    }
    core::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)
}

/// Validates an MQTT UTF-8 string.
#[inline]
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    let s = core::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
    if bytes.contains(&0) {
        return Err(DecodeError::InvalidUtf8);
    }
    Ok(s)
}

/// Result of reading a variable byte integer from a possibly partial buffer.
pub(crate) enum VarInt {
    Value { value: u32, len: usize },
    Incomplete,
}

#[inline]
pub(crate) fn read_varint(buf: &[u8]) -> Result<VarInt, DecodeError> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(i) else {
            return Ok(VarInt::Incomplete);
        };
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A last byte of 0 after a continuation byte means the value fit in fewer bytes.
            if i > 0 && b == 0 {
                return Err(DecodeError::MalformedRemainingLength);
            }
            return Ok(VarInt::Value { value, len: i + 1 });
        }
    }
    Err(DecodeError::MalformedRemainingLength)
}

/// Bytes a variable byte integer takes.
pub(crate) const fn varint_len(v: u32) -> usize {
    if v < 128 {
        1
    } else if v < 16_384 {
        2
    } else if v < 2_097_152 {
        3
    } else {
        4
    }
}

/// Bytes a length-prefixed string or binary field takes; fails above 65,535 bytes.
pub(crate) fn field_len(bytes: &[u8]) -> Result<usize, EncodeError> {
    if bytes.len() > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong);
    }
    Ok(2 + bytes.len())
}

/// Where encoded bytes go.
pub(crate) trait Sink {
    fn put_slice(&mut self, src: &[u8]);

    #[inline]
    fn put_u8(&mut self, b: u8) {
        self.put_slice(&[b]);
    }

    #[inline]
    fn put_u16(&mut self, v: u16) {
        self.put_slice(&v.to_be_bytes());
    }

    #[inline]
    fn put_u32(&mut self, v: u32) {
        self.put_slice(&v.to_be_bytes());
    }

    #[inline]
    fn put_varint(&mut self, mut v: u32) {
        // Byte by byte: a 1–4 byte copy through `put_slice` would cost a `memmove` call.
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.put_u8(byte);
                return;
            }
            self.put_u8(byte | 0x80);
        }
    }

    /// A length-prefixed field; its length was checked by [`field_len`] before.
    #[inline]
    fn put_field(&mut self, bytes: &[u8]) {
        self.put_u16(bytes.len() as u16);
        self.put_slice(bytes);
    }
}

/// Writes into a caller's slice.
pub(crate) struct SliceSink<'b> {
    buf: &'b mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'b> SliceSink<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            overflow: false,
        }
    }

    /// Bytes the slice can take.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes written, or `None` if something did not fit.
    pub(crate) fn finish(self) -> Option<usize> {
        (!self.overflow).then_some(self.pos)
    }
}

impl Sink for SliceSink<'_> {
    #[inline]
    fn put_u8(&mut self, b: u8) {
        match self.buf.get_mut(self.pos) {
            Some(dst) => {
                *dst = b;
                self.pos += 1;
            }
            None => self.overflow = true,
        }
    }

    #[inline]
    fn put_slice(&mut self, src: &[u8]) {
        let end = self.pos + src.len();
        match self.buf.get_mut(self.pos..end) {
            Some(dst) => {
                dst.copy_from_slice(src);
                self.pos = end;
            }
            None => self.overflow = true,
        }
    }
}

#[cfg(feature = "bytes")]
pub(crate) struct BufSink<'b, B: bytes::BufMut>(pub(crate) &'b mut B);

#[cfg(feature = "bytes")]
impl<B: bytes::BufMut> Sink for BufSink<'_, B> {
    #[inline]
    fn put_slice(&mut self, src: &[u8]) {
        self.0.put_slice(src);
    }

    #[inline]
    fn put_u8(&mut self, b: u8) {
        self.0.put_u8(b);
    }

    #[inline]
    fn put_u16(&mut self, v: u16) {
        self.0.put_u16(v);
    }

    #[inline]
    fn put_u32(&mut self, v: u32) {
        self.0.put_u32(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vec4 {
        buf: [u8; 4],
        n: usize,
    }
    impl Sink for Vec4 {
        fn put_slice(&mut self, src: &[u8]) {
            self.buf[self.n..self.n + src.len()].copy_from_slice(src);
            self.n += src.len();
        }
    }

    #[test]
    fn varint_boundaries_round_trip() {
        for v in [
            0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, MAX_VARINT,
        ] {
            let mut s = Vec4 { buf: [0; 4], n: 0 };
            s.put_varint(v);
            assert_eq!(s.n, varint_len(v));
            match read_varint(&s.buf[..s.n]).unwrap() {
                VarInt::Value { value, len } => {
                    assert_eq!((value, len), (v, s.n));
                }
                VarInt::Incomplete => panic!("incomplete"),
            }
        }
    }

    #[test]
    fn varint_rejects_five_bytes_and_non_minimal() {
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert!(read_varint(&[0x80, 0x00]).is_err());
        assert!(matches!(read_varint(&[0x80]), Ok(VarInt::Incomplete)));
    }

    #[test]
    fn wildcard_scan_finds_every_position() {
        for len in 0..40 {
            let clean = [b'a'; 40];
            let clean = &clean[..len];
            assert!(!has_wildcard(clean));
            assert!(!has_nul_or_wildcard(clean));
            for i in 0..len {
                for (needle, wild) in [
                    (b'+', true),
                    (b'#', true),
                    (0u8, false),
                    (b'*', false),
                    (0xab, false),
                ] {
                    let mut v = [b'a'; 40];
                    let v = &mut v[..len];
                    v[i] = needle;
                    assert_eq!(has_wildcard(v), wild, "{needle} at {i} of {len}");
                    assert_eq!(has_nul_or_wildcard(v), wild || needle == 0);
                }
            }
        }
    }

    #[test]
    fn strings_reject_nul_and_bad_utf8() {
        assert_eq!(utf8(b"a\0b"), Err(DecodeError::InvalidUtf8));
        assert_eq!(utf8(&[0xc3, 0x28]), Err(DecodeError::InvalidUtf8));
        assert_eq!(utf8("héllo".as_bytes()), Ok("héllo"));
    }
}
