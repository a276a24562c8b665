//! A WebSocket connection seen as the byte stream MQTT needs (MQTT §6: a packet may span binary
//! frames and a frame may hold several packets), in the connection's own task.
//!
//! Why framing of our own (RFC 6455 §5; tungstenite parses and writes the frame headers): with
//! tokio-tungstenite the socket lives inside its stream, with its buffers, for the connection's
//! life; an idle WebSocket connection cost 4.7 KB where a TCP one costs 1.2–1.5 KB (issue 29).
//! Here, between frames with nothing pending ([`WebSocketBytes::at_rest`]), the state is empty
//! and the bare socket can be parked like a TCP one (`connection::parking`); the read buffer is
//! held only while bytes are in it. A read hands out binary frames' payloads unmasked, a write is
//! one binary frame, pings are answered, a close frame is answered and ends the stream, a text
//! frame or a broken rule of the protocol is an error (§6.0: the connection MUST be closed).

use std::io::{self, Cursor, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// How much is read from the socket at once.
const READ_CHUNK: usize = 4096;
/// Control frames (pongs, the close) waiting to go out, past which the peer's frames are read no
/// further until they are sent (a client that pings without reading).
const CONTROL_BACKLOG: usize = 1024;

/// Close status codes (RFC 6455 §7.4.1).
const NORMAL: u16 = 1000;
const PROTOCOL_ERROR: u16 = 1002;
const UNSUPPORTED_DATA: u16 = 1003;
const TOO_BIG: u16 = 1009;

/// MQTT's bytes over a WebSocket: binary frames in, binary frames out.
pub(crate) struct WebSocketBytes<S> {
    io: S,
    /// Bytes read from the peer and not yet taken apart; no allocation while empty.
    raw: BytesMut,
    /// The data frame being read: payload bytes still to come, its mask, where the mask stands.
    frame: Option<(u64, [u8; 4], u8)>,
    /// A binary message goes on in the next data frame.
    fragmented: bool,
    /// Control frames to send (pongs, the close), between data frames.
    control: BytesMut,
    /// The binary frame being written: its header, how much of the header is sent, payload bytes
    /// still to send.
    out: ([u8; 10], u8, u8, usize),
    /// The largest frame accepted.
    max_frame: u64,
    /// The status our close frame carries.
    close_code: u16,
    /// A close frame was read, or the stream ended: reads return end of stream.
    ended: bool,
    /// Our close frame is queued or sent.
    closing: bool,
}

impl<S> WebSocketBytes<S> {
    /// `io` after its opening handshake; `read`: what the client sent after the request.
    pub(crate) fn new(io: S, read: BytesMut, max_frame: usize) -> Self {
        Self {
            io,
            raw: read,
            frame: None,
            fragmented: false,
            control: BytesMut::new(),
            out: ([0; 10], 0, 0, 0),
            max_frame: u64::try_from(max_frame).unwrap_or(u64::MAX),
            close_code: NORMAL,
            ended: false,
            closing: false,
        }
    }

    /// Between frames both ways with nothing read, queued or closing: the state is as
    /// [`WebSocketBytes::new`] makes it, and the socket may wait alone.
    pub(crate) fn at_rest(&self) -> bool {
        self.raw.is_empty()
            && self.frame.is_none()
            && !self.fragmented
            && self.control.is_empty()
            && self.out.1 == self.out.2
            && self.out.3 == 0
            && !self.ended
            && !self.closing
    }

    /// The stream it is carried on.
    pub(crate) fn get_ref(&self) -> &S {
        &self.io
    }

    /// The socket.
    pub(crate) fn into_inner(self) -> S {
        self.io
    }

    /// A broken rule: our close frame will carry `code`, the reader gets the error.
    fn fail(&mut self, code: u16, why: &'static str) -> io::Error {
        self.close_code = code;
        io::Error::new(io::ErrorKind::InvalidData, why)
    }

    /// Queues a control frame (server frames are not masked).
    fn queue_control(&mut self, opcode: u8, payload: &[u8]) {
        // A control frame's payload is at most 125 bytes (checked when read).
        self.control.put_u8(0x80 | opcode);
        self.control.put_u8(payload.len() as u8);
        self.control.put_slice(payload);
    }

    /// Takes the frame header at the start of `raw` apart, or the whole control frame it
    /// begins; false if more bytes are needed.
    fn take_header(&mut self) -> io::Result<bool> {
        let parsed = {
            let mut cursor = Cursor::new(&self.raw[..]);
            FrameHeader::parse(&mut cursor).map(|h| h.map(|(h, l)| (h, l, cursor.position())))
        };
        let (header, length, header_len) = match parsed {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(false),
            Err(_) => return Err(self.fail(PROTOCOL_ERROR, "a malformed WebSocket frame")),
        };
        let header_len = usize::try_from(header_len).unwrap_or(usize::MAX);
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(self.fail(PROTOCOL_ERROR, "a WebSocket frame with reserved bits"));
        }
        let Some(mask) = header.mask else {
            // §5.1: a client masks every frame.
            return Err(self.fail(PROTOCOL_ERROR, "an unmasked WebSocket frame from a client"));
        };
        match header.opcode {
            OpCode::Data(data) => {
                match (data, self.fragmented) {
                    (Data::Binary, false) | (Data::Continue, true) => {}
                    (Data::Text, _) => {
                        return Err(self.fail(UNSUPPORTED_DATA, "a text frame on an MQTT WebSocket"))
                    }
                    _ => {
                        return Err(self.fail(PROTOCOL_ERROR, "a WebSocket data frame out of order"))
                    }
                }
                if length > self.max_frame {
                    return Err(
                        self.fail(TOO_BIG, "a WebSocket frame larger than the largest packet")
                    );
                }
                self.fragmented = !header.is_final;
                self.raw.advance(header_len);
                if length > 0 {
                    self.frame = Some((length, mask, 0));
                }
                Ok(true)
            }
            OpCode::Control(control) => {
                if !header.is_final || length > 125 {
                    return Err(self.fail(
                        PROTOCOL_ERROR,
                        "a fragmented or long WebSocket control frame",
                    ));
                }
                let end = header_len + length as usize;
                if self.raw.len() < end {
                    return Ok(false);
                }
                let mut payload = [0u8; 125];
                let payload = &mut payload[..length as usize];
                payload.copy_from_slice(&self.raw[header_len..end]);
                unmask(payload, mask, 0);
                self.raw.advance(end);
                match control {
                    Control::Ping => self.queue_control(0xA, payload),
                    Control::Pong => {}
                    Control::Close => {
                        // Answered with the peer's own status (§5.5.1), and the stream ends.
                        if !self.closing {
                            let code = payload.get(..2).unwrap_or_default().to_vec();
                            self.queue_control(0x8, &code);
                            self.closing = true;
                        }
                        self.ended = true;
                    }
                    Control::Reserved(_) => {
                        return Err(
                            self.fail(PROTOCOL_ERROR, "a WebSocket frame with a reserved opcode")
                        )
                    }
                }
                Ok(true)
            }
        }
    }
}

/// Unmasks (or masks) `bytes`, the mask standing at `at`.
fn unmask(bytes: &mut [u8], mask: [u8; 4], at: u8) {
    for (i, b) in bytes.iter_mut().enumerate() {
        *b ^= mask[(usize::from(at) + i) & 3];
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketBytes<S> {
    /// Sends the queued control frames unless a data frame is half written.
    fn poll_send_control(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.out.1 != self.out.2 || self.out.3 != 0 {
            return Poll::Ready(Ok(()));
        }
        while !self.control.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.control))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.control.advance(n);
        }
        self.control = BytesMut::new();
        Poll::Ready(Ok(()))
    }

    /// Reads more bytes into `raw`; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let had = self.raw.len();
        self.raw.resize(had + READ_CHUNK, 0);
        let mut buf = ReadBuf::new(&mut self.raw[had..]);
        let read = Pin::new(&mut self.io).poll_read(cx, &mut buf);
        let n = match &read {
            Poll::Ready(Ok(())) => buf.filled().len(),
            _ => 0,
        };
        self.raw.truncate(had + n);
        if self.raw.is_empty() {
            self.raw = BytesMut::new();
        }
        ready!(read)?;
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WebSocketBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            // Pongs and the close answer go out as soon as they can; past a backlog, the peer's
            // frames wait for them.
            match this.poll_send_control(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending if this.control.len() >= CONTROL_BACKLOG => return Poll::Pending,
                Poll::Pending => {}
            }
            match this.frame {
                Some((left, mask, at)) if !this.raw.is_empty() => {
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(this.raw.len())
                        .min(buf.remaining());
                    if n == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    unmask(&mut this.raw[..n], mask, at);
                    buf.put_slice(&this.raw[..n]);
                    this.raw.advance(n);
                    let left = left - n as u64;
                    this.frame =
                        (left > 0).then_some((left, mask, ((usize::from(at) + n) & 3) as u8));
                    if this.raw.is_empty() {
                        this.raw = BytesMut::new();
                    }
                    return Poll::Ready(Ok(()));
                }
                Some(_) => {}
                None if this.ended => return Poll::Ready(Ok(())),
                None => {
                    if this.take_header()? {
                        continue;
                    }
                }
            }
            if ready!(this.poll_fill(cx))? == 0 {
                // The peer went away (mid-frame or not): end of stream.
                this.ended = true;
                this.frame = None;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WebSocketBytes<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.poll_send_control(cx))?;
        if this.out.1 == this.out.2 && this.out.3 == 0 {
            // A new binary frame for these bytes (a caller finishing a partial write passes the
            // rest of the same bytes, which the frame's length already counts).
            let mut header = Cursor::new(&mut this.out.0[..]);
            let frame = FrameHeader {
                opcode: OpCode::Data(Data::Binary),
                ..FrameHeader::default()
            };
            frame
                .format(data.len() as u64, &mut header)
                .map_err(io::Error::other)?;
            this.out.1 = header.position() as u8;
            this.out.2 = 0;
            this.out.3 = data.len();
        }
        loop {
            let payload = &data[..data.len().min(this.out.3)];
            let (sent, len) = (usize::from(this.out.2), usize::from(this.out.1));
            if sent < len {
                let parts = [IoSlice::new(&this.out.0[sent..len]), IoSlice::new(payload)];
                let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &parts))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                let header = n.min(len - sent);
                this.out.2 += header as u8;
                if n > header {
                    this.out.3 -= n - header;
                    return Poll::Ready(Ok(n - header));
                }
                continue;
            }
            let n = ready!(Pin::new(&mut this.io).poll_write(cx, payload))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.out.3 -= n;
            return Poll::Ready(Ok(n));
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_control(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Sends our close frame; the peer's answer is read by whoever keeps reading (the connection
    /// lingers for it).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closing {
            self.closing = true;
            let code = self.close_code.to_be_bytes();
            self.queue_control(0x8, &code);
        }
        ready!(self.poll_send_control(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::WebSocketBytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client's frame: masked with `mask`.
    fn frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    #[tokio::test]
    async fn frames_become_bytes_and_bytes_frames() {
        let (ours, mut client) = tokio::io::duplex(1 << 16);
        let mut ws = WebSocketBytes::new(ours, Default::default(), 1 << 16);
        assert!(ws.at_rest());
        let mask = [1, 2, 3, 4];
        let big: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut sent = frame(0x02, b"hello ", mask); // binary, not final
        sent.extend(frame(0x89, b"ping!", mask)); // a ping between fragments
        sent.extend(frame(0x80, b"world", [9, 8, 7, 6])); // continuation, final
        sent.extend(frame(0x82, &big, mask));
        client.write_all(&sent).await.unwrap();
        let mut got = vec![0u8; 11 + big.len()];
        ws.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..11], b"hello world");
        assert_eq!(&got[11..], &big[..]);
        assert!(
            ws.at_rest(),
            "between frames once all is read and the pong sent"
        );
        // The pong, then our bytes as one binary frame.
        ws.write_all(b"\xD0\x00").await.unwrap();
        ws.flush().await.unwrap();
        let mut answer = [0u8; 11];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer[..7], b"\x8A\x05ping!");
        assert_eq!(&answer[7..], b"\x82\x02\xD0\x00");
        // A 300-byte write is one frame with a 16-bit length.
        ws.write_all(&[7u8; 300]).await.unwrap();
        let mut head = [0u8; 4];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(head, [0x82, 126, 1, 44]);
        let mut body = [0u8; 300];
        client.read_exact(&mut body).await.unwrap();
        // A close frame: answered with its code, then the end of the stream.
        client
            .write_all(&frame(0x88, &1001u16.to_be_bytes(), mask))
            .await
            .unwrap();
        let mut rest = Vec::new();
        assert_eq!(ws.read_to_end(&mut rest).await.unwrap(), 0);
        ws.shutdown().await.unwrap();
        let mut close = [0u8; 4];
        client.read_exact(&mut close).await.unwrap();
        assert_eq!(close, [0x88, 0x02, 0x03, 0xE9]);
    }

    proptest::proptest! {
        /// Any byte stream, cut into messages of frames of any sizes with any masks, with pings
        /// between frames and the bytes arriving in pieces of any size, reads back as it was
        /// sent, and each ping is answered, in order, with its payload.
        #[test]
        fn any_framing_reads_back_the_bytes(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
            cuts in proptest::collection::vec(1usize..400, 1..40),
            masks in proptest::collection::vec(proptest::array::uniform4(proptest::num::u8::ANY), 1..8),
            finals in proptest::collection::vec(proptest::bool::ANY, 1..8),
            pings in proptest::collection::vec(proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..126)), 1..8),
            pieces in proptest::collection::vec(1usize..64, 1..16),
        ) {
            // The client's bytes: frames cut where `cuts` says, a message ending where `finals`
            // says, a ping after a frame where `pings` says.
            let mut sent = Vec::new();
            let mut expected_pongs = Vec::new();
            let (mut at, mut i, mut continuing) = (0, 0, false);
            while at < data.len() {
                let end = (at + cuts[i % cuts.len()]).min(data.len());
                let last = end == data.len() || finals[i % finals.len()];
                let opcode = if continuing { 0x0 } else { 0x2 };
                sent.extend(frame(opcode | if last { 0x80 } else { 0 }, &data[at..end], masks[i % masks.len()]));
                if let Some(p) = &pings[i % pings.len()] {
                    sent.extend(frame(0x89, p, masks[(i + 1) % masks.len()]));
                    expected_pongs.push(p.clone());
                }
                continuing = !last;
                at = end;
                i += 1;
            }
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let (read, pongs) = runtime.block_on(async {
                let (ours, client) = tokio::io::duplex(1 << 20);
                let (mut client_rd, mut client_wr) = tokio::io::split(client);
                let writer = tokio::spawn(async move {
                    let mut rest = &sent[..];
                    let mut n = 0;
                    while !rest.is_empty() {
                        let take = pieces[n % pieces.len()].min(rest.len());
                        client_wr.write_all(&rest[..take]).await.expect("written");
                        rest = &rest[take..];
                        n += 1;
                        tokio::task::yield_now().await;
                    }
                    client_wr.shutdown().await.expect("closed");
                });
                let mut ws = WebSocketBytes::new(ours, Default::default(), 1 << 16);
                let mut read = vec![0u8; data.len()];
                ws.read_exact(&mut read).await.expect("read");
                // To the end of the stream: the pings after the last data are read too.
                let mut rest = Vec::new();
                ws.read_to_end(&mut rest).await.expect("read to the end");
                assert!(rest.is_empty(), "more bytes than were sent");
                writer.await.expect("writer");
                // Every frame was read: the pongs went out with the reads.
                ws.flush().await.expect("flushed");
                let mut pongs = Vec::new();
                for p in &expected_pongs {
                    let mut head = [0u8; 2];
                    client_rd.read_exact(&mut head).await.expect("a pong");
                    let mut payload = vec![0u8; usize::from(head[1])];
                    client_rd.read_exact(&mut payload).await.expect("its payload");
                    assert_eq!(head[0], 0x8A);
                    assert_eq!(payload.len(), p.len());
                    pongs.push(payload);
                }
                (read, pongs)
            });
            proptest::prop_assert_eq!(read, data);
            proptest::prop_assert_eq!(pongs, expected_pongs);
        }
    }

    /// A client that pings without reading the pongs: past a backlog of unsent pongs, its frames
    /// are read no further (what is queued for it stays bounded), and reading goes on once it
    /// reads again.
    #[tokio::test]
    async fn a_client_that_pings_without_reading_is_read_no_further() {
        // A pipe of 256 bytes each way: the pongs cannot all go out.
        let (ours, client) = tokio::io::duplex(256);
        let (mut client_rd, mut client_wr) = tokio::io::split(client);
        let mut ws = WebSocketBytes::new(ours, Default::default(), 1 << 16);
        let pings = 100;
        let writer = tokio::spawn(async move {
            for _ in 0..pings {
                client_wr
                    .write_all(&frame(0x89, &[7u8; 100], [1, 2, 3, 4]))
                    .await
                    .expect("a ping");
            }
            client_wr
                .write_all(&frame(0x82, b"data", [1, 2, 3, 4]))
                .await
                .expect("data");
            client_wr
        });
        let mut got = [0u8; 4];
        let stalled = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            ws.read_exact(&mut got),
        )
        .await;
        assert!(stalled.is_err(), "read on while the pongs piled up");
        assert!(
            ws.control.len() < super::CONTROL_BACKLOG + 128,
            "{} bytes of pongs queued",
            ws.control.len()
        );
        // The client reads its pongs: everything goes on.
        let reader = tokio::spawn(async move {
            let mut pong = [0u8; 102];
            for _ in 0..pings {
                client_rd.read_exact(&mut pong).await.expect("a pong");
                assert_eq!(pong[..2], [0x8A, 100]);
            }
        });
        ws.read_exact(&mut got).await.expect("the data");
        assert_eq!(&got, b"data");
        ws.flush().await.expect("flushed");
        reader.await.expect("every pong");
        let _client_wr = writer.await.expect("writer");
    }

    #[tokio::test]
    async fn broken_rules_are_errors_and_close_with_their_code() {
        for (bytes, code) in [
            (frame(0x81, b"{}", [1, 1, 1, 1]), 1003u16),    // text
            (vec![0x82, 0x02, 0xC0, 0x00], 1002),           // unmasked
            (frame(0x80, b"x", [1, 1, 1, 1]), 1002),        // a continuation with nothing to go on
            (frame(0xC2, b"x", [1, 1, 1, 1]), 1002),        // a reserved bit
            (frame(0x82, &[0u8; 200], [1, 1, 1, 1]), 1009), // larger than the largest frame
        ] {
            let (ours, mut client) = tokio::io::duplex(1 << 16);
            let mut ws = WebSocketBytes::new(ours, Default::default(), 100);
            client.write_all(&bytes).await.unwrap();
            let mut got = [0u8; 8];
            assert!(ws.read(&mut got).await.is_err(), "{bytes:02x?}");
            ws.shutdown().await.unwrap();
            let mut close = [0u8; 4];
            client.read_exact(&mut close).await.unwrap();
            assert_eq!(close[..2], [0x88, 0x02]);
            assert_eq!(u16::from_be_bytes([close[2], close[3]]), code);
        }
    }
}
