//! A TLS server connection as a byte stream, over rustls's unbuffered API, with buffers that exist
//! only while bytes are in them (issue 29).
//!
//! tokio-rustls wraps rustls's buffered connection, which keeps a 4 KiB read buffer for the
//! connection's whole life, and its stream cannot be taken apart and put together again: an idle
//! TLS client kept a task, that buffer and the stream's state, ~10 KB in all. Here the encrypted
//! bytes read, the decrypted bytes not yet taken and the encrypted bytes not yet sent are three
//! vectors of our own; when all three are empty ([`TlsBytes::at_rest`]) the stream comes apart
//! into its socket and rustls's connection state (the keys, the protocol's state: what TLS must
//! remember), which an idle MQTT connection parks without a task, and [`TlsBytes::resume`] puts
//! them together again. rustls still does every part of the protocol (records, handshake, alerts,
//! key updates, close_notify); this file only moves bytes between it and the socket.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// rustls's state of a TLS server connection: what a parked connection keeps of its TLS.
pub type TlsSession = UnbufferedServerConnection;

/// Encrypted bytes queued for the socket past which a write waits for the socket to take some
/// (rustls's own buffered connection stops at the same figure).
const MAX_PENDING: usize = 64 * 1024;

/// The most plaintext one write takes (four full records).
const MAX_WRITE: usize = 64 * 1024;

/// The least read from the socket at a time.
const READ_CHUNK: usize = 4096;

/// The most encrypted bytes held before they make a whole message: a record is at most
/// 16 KiB + 2 KiB, and a handshake message spread over records at most 64 KiB (rustls's own
/// limits); past this the peer is not speaking TLS as anyone does, and the connection ends.
pub const MAX_INCOMING: usize = 64 * 1024 + 18 * 1024 + 5;

/// A TLS server connection over `S`.
pub struct TlsBytes<S> {
    io: S,
    tls: Box<UnbufferedServerConnection>,
    /// Encrypted bytes read; those before `in_at` are processed.
    incoming: Vec<u8>,
    in_at: usize,
    /// Decrypted bytes; those before `plain_at` are taken.
    plain: Vec<u8>,
    plain_at: usize,
    /// Encrypted bytes to send; those before `out_at` are sent.
    outgoing: Vec<u8>,
    out_at: usize,
    /// The peer sent close_notify, or its socket ended: reads give end of stream.
    read_closed: bool,
    /// Our close_notify is queued.
    close_sent: bool,
}

/// Where processing what was read stopped.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Handshaking: more bytes from the peer are needed.
    NeedMore,
    /// Application data may be sent (and a read needs more bytes from the peer).
    Writable,
    /// Both sides sent close_notify.
    Closed,
}

impl<S> std::fmt::Debug for TlsBytes<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsBytes")
            .field("incoming", &(self.incoming.len() - self.in_at))
            .field("plain", &(self.plain.len() - self.plain_at))
            .field("outgoing", &(self.outgoing.len() - self.out_at))
            .finish_non_exhaustive()
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Appends what `encode` writes to `out`, growing it as much as `encode` says it needs.
fn append<E>(
    out: &mut Vec<u8>,
    mut guess: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, E>,
    required: impl Fn(&E) -> Option<usize>,
) -> Result<(), E> {
    let start = out.len();
    loop {
        out.resize(start + guess, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(e) => {
                out.truncate(start);
                match required(&e) {
                    Some(need) if need > guess => guess = need,
                    _ => return Err(e),
                }
            }
        }
    }
}

/// Bytes missing from the last record begun in `held` (records whole so far: 0).
fn record_rest(held: &[u8]) -> usize {
    let mut at = 0;
    while let Some(header) = held.get(at..at + 5) {
        let end = at + 5 + usize::from(u16::from_be_bytes([header[3], header[4]]));
        if end > held.len() {
            return end - held.len();
        }
        at = end;
    }
    0
}

fn encode_required(e: &EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

fn encrypt_required(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

impl<S> TlsBytes<S> {
    /// A stream over `io` whose connection state is `tls` (a new one, or one taken apart by
    /// [`TlsBytes::into_parts`]).
    pub fn resume(io: S, tls: Box<UnbufferedServerConnection>) -> TlsBytes<S> {
        TlsBytes {
            io,
            tls,
            incoming: Vec::new(),
            in_at: 0,
            plain: Vec::new(),
            plain_at: 0,
            outgoing: Vec::new(),
            out_at: 0,
            read_closed: false,
            close_sent: false,
        }
    }

    /// Nothing read and not yet taken, nothing to send, not closing: the stream can be taken apart
    /// without losing a byte.
    pub fn at_rest(&self) -> bool {
        self.in_at == self.incoming.len()
            && self.plain_at == self.plain.len()
            && self.out_at == self.outgoing.len()
            && !self.read_closed
            && !self.close_sent
    }

    /// The socket and the connection's state (call when [`TlsBytes::at_rest`]: bytes in the
    /// buffers are dropped).
    pub fn into_parts(self) -> (S, Box<UnbufferedServerConnection>) {
        (self.io, self.tls)
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The connection's TLS state (peer certificates, negotiated version).
    pub fn connection(&self) -> &UnbufferedServerConnection {
        &self.tls
    }

    fn pending(&self) -> usize {
        self.outgoing.len() - self.out_at
    }

    /// Runs rustls over the bytes read until it needs more (or may send): decrypted data goes to
    /// `plain`, what it has to send to `outgoing`; `write` is encrypted once it may be, and
    /// `close` queues close_notify. A protocol error queues its alert and is returned.
    fn process(&mut self, mut write: Option<&[u8]>, close: bool) -> io::Result<Step> {
        loop {
            let UnbufferedStatus { mut discard, state } = self
                .tls
                .process_tls_records(&mut self.incoming[self.in_at..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    self.in_at += discard;
                    return Err(self.failed(e));
                }
            };
            let step = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        self.plain.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::ReadEarlyData(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        self.plain.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    append(
                        &mut self.outgoing,
                        READ_CHUNK,
                        |buf| data.encode(buf),
                        encode_required,
                    )
                    .map_err(io::Error::other)?;
                    None
                }
                // What was encoded is in `outgoing`, before anything queued later: it goes out
                // in order, which is all rustls asks.
                ConnectionState::TransmitTlsData(sent) => {
                    sent.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Step::NeedMore),
                ConnectionState::PeerClosed => {
                    self.read_closed = true;
                    None
                }
                ConnectionState::Closed => {
                    self.read_closed = true;
                    Some(Step::Closed)
                }
                ConnectionState::WriteTraffic(mut traffic) => {
                    if let Some(data) = write.take() {
                        let guess = data.len() + 64 * (data.len() / 16_384 + 1);
                        append(
                            &mut self.outgoing,
                            guess,
                            |buf| traffic.encrypt(data, buf),
                            encrypt_required,
                        )
                        .map_err(io::Error::other)?;
                    }
                    if close && !self.close_sent {
                        append(
                            &mut self.outgoing,
                            64,
                            |buf| traffic.queue_close_notify(buf),
                            encrypt_required,
                        )
                        .map_err(io::Error::other)?;
                        self.close_sent = true;
                    }
                    Some(Step::Writable)
                }
                // A state a later rustls adds: nothing to do here but wait for the peer.
                _ => Some(Step::NeedMore),
            };
            self.in_at += discard;
            if let Some(step) = step {
                if self.in_at == self.incoming.len() {
                    self.incoming.clear();
                    self.in_at = 0;
                }
                return Ok(step);
            }
        }
    }

    /// After a protocol error: the alert rustls queued goes to `outgoing` (sent by whoever flushes
    /// next), and the error is what the caller gets.
    fn failed(&mut self, e: rustls::Error) -> io::Error {
        for _ in 0..4 {
            match self.tls.process_tls_records(&mut []).state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    if append(
                        &mut self.outgoing,
                        64,
                        |buf| data.encode(buf),
                        encode_required,
                    )
                    .is_err()
                    {
                        break;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(sent)) => sent.done(),
                _ => break,
            }
        }
        tls_error(e)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsBytes<S> {
    /// A new TLS connection on `io`: the handshake (the caller bounds its time).
    pub async fn accept(io: S, config: Arc<ServerConfig>) -> io::Result<TlsBytes<S>> {
        let tls = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut stream = TlsBytes::resume(io, Box::new(tls));
        std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
        Ok(stream)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let processed = self.process(None, false);
            // The answer (or the alert) goes out before anything else.
            let flushed = self.poll_flush_out(cx)?;
            processed?;
            if !self.tls.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            ready!(flushed);
            if self.read_closed {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            if ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Reads more encrypted bytes: at least [`READ_CHUNK`], or the rest of the record begun.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.in_at > 0 {
            self.incoming.drain(..self.in_at);
            self.in_at = 0;
        }
        let held = self.incoming.len();
        if held >= MAX_INCOMING {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a TLS message larger than any valid one",
            )));
        }
        let want = record_rest(&self.incoming)
            .max(READ_CHUNK)
            .min(MAX_INCOMING - held);
        self.incoming.resize(held + want, 0);
        let mut buf = ReadBuf::new(&mut self.incoming[held..]);
        let read = Pin::new(&mut self.io).poll_read(cx, &mut buf);
        let n = buf.filled().len();
        self.incoming.truncate(held + n);
        ready!(read)?;
        if n == 0 {
            self.read_closed = true;
        }
        Poll::Ready(Ok(n))
    }

    /// Sends what is queued for the socket.
    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_at += n;
        }
        self.outgoing.clear();
        self.out_at = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsBytes<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.plain_at < this.plain.len() {
                let n = buf.remaining().min(this.plain.len() - this.plain_at);
                buf.put_slice(&this.plain[this.plain_at..this.plain_at + n]);
                this.plain_at += n;
                if this.plain_at == this.plain.len() {
                    this.plain.clear();
                    this.plain_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            let processed = this.process(None, false);
            // What rustls answers while reading (a key update, an alert) goes out now if it can;
            // if the socket is full it goes with the next write or flush.
            if this.pending() > 0 {
                if let Poll::Ready(Err(e)) = this.poll_flush_out(cx) {
                    processed?;
                    return Poll::Ready(Err(e));
                }
            }
            processed?;
            if this.plain_at < this.plain.len() || this.read_closed {
                continue;
            }
            ready!(this.poll_fill(cx))?;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsBytes<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.pending() >= MAX_PENDING {
            // Partly flushed is enough to go on; nothing flushed and full waits.
            if let Poll::Ready(Err(e)) = this.poll_flush_out(cx) {
                return Poll::Ready(Err(e));
            }
            if this.pending() >= MAX_PENDING {
                return Poll::Pending;
            }
        }
        if this.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let data = &data[..data.len().min(MAX_WRITE)];
        match this.process(Some(data), false)? {
            Step::Writable => {}
            Step::NeedMore | Step::Closed => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the TLS connection cannot send",
                )))
            }
        }
        if let Poll::Ready(Err(e)) = this.poll_flush_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            // close_notify, then the socket's end: the peer knows the data was all of it.
            // (Whether rustls may still send decides only whether the alert goes out.)
            let _ = this.process(None, true);
            this.close_sent = true;
        }
        ready!(this.poll_flush_out(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
