//! Framing and read buffers: an idle connection holds no buffer, a busy one reads in large
//! chunks, and a frame is split off without copying.

use bytes::BytesMut;
use outpost_codec::split_frame;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Below this much room, the next read gets a large buffer.
pub(super) const SMALL_READ: usize = 128;
/// A read once data arrives faster than it is handled (a read should then take many packets).
pub(super) const LARGE_READ: usize = 16 * 1024;
/// Buffers at most this large are given back when they empty: an idle connection holds no
/// buffer at all, a busy one keeps its large buffer between reads.
pub(super) const KEEP_ABOVE: usize = 4 * 1024;

/// Leaves room for the next read. A connection that holds no buffer gets none until data
/// arrives (reading into an empty `BytesMut` takes 64 bytes); one whose last read filled what
/// there was gets a large one.
pub(super) fn room_to_read(buf: &mut BytesMut) {
    if buf.is_empty() {
        if buf.capacity() < LARGE_READ / 2 {
            // Nothing pending and no large buffer worth keeping: hold nothing while waiting.
            *buf = BytesMut::new();
        }
    } else if buf.capacity() - buf.len() < SMALL_READ {
        // Part of a packet is here and more is coming: read the rest in large chunks.
        buf.reserve(LARGE_READ);
    }
}

/// Gives an emptied small buffer back (frames split from it keep their own reference).
pub(super) fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 && buf.capacity() <= KEEP_ABOVE {
        *buf = BytesMut::new();
    }
}

/// Reads until one whole packet is buffered; `None` at end of stream.
pub(super) async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> std::io::Result<Option<bytes::Bytes>> {
    loop {
        match split_frame(buf, max) {
            Ok(Some(f)) => return Ok(Some(f)),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        room_to_read(buf);
        if rd.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}
