//! A TLS server connection as a byte stream, over rustls's unbuffered API, with buffers of our own
//! that are gone whenever it rests (issue 29).
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
//!
//! Buffers are freed when emptied (a flow's large ones are kept while it runs: [`emptied`]), a
//! handshake's as soon as it is done: kept until the connection rested, a handshake's buffers
//! were freed seconds later among other connections' long-lived allocations, and the holes they
//! left (a few KiB each, not whole pages) stayed resident: 2,000 idle TLS clients cost 10 KB each
//! with 4.6 KB of it in use.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    AppDataRecord, ConnectionState, EncodeError, EncryptError, ReadEarlyData, ReadTraffic,
    UnbufferedStatus,
};
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
    /// rustls failed (a protocol error, its alert queued; or a record it could not seal): it is
    /// not asked again, which could only repeat the error (and trips its own assertions).
    broken: bool,
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

/// Decrypted records, of the connection's data or of early data.
trait Records {
    fn next(&mut self) -> Option<Result<AppDataRecord<'_>, rustls::Error>>;
}

impl Records for ReadTraffic<'_, '_, ServerConnectionData> {
    fn next(&mut self) -> Option<Result<AppDataRecord<'_>, rustls::Error>> {
        self.next_record()
    }
}

impl Records for ReadEarlyData<'_, '_, ServerConnectionData> {
    fn next(&mut self) -> Option<Result<AppDataRecord<'_>, rustls::Error>> {
        self.next_record()
    }
}

/// Appends every record's plaintext to `plain`, counting what the records say to discard.
fn take(
    records: &mut impl Records,
    plain: &mut Vec<u8>,
    discard: &mut usize,
) -> Result<(), rustls::Error> {
    while let Some(record) = records.next() {
        let record = record?;
        *discard += record.discard;
        plain.extend_from_slice(record.payload);
    }
    Ok(())
}

/// Buffers at least this large are kept, emptied, while the connection runs; smaller ones are
/// freed when emptied.
const KEEP_FROM: usize = 8 * 1024;

/// An emptied buffer: a small one is freed (the allocator's per-thread cache makes the next one
/// cheap, and none is left behind among long-lived allocations when the connection rests); a large
/// one, a flow's, is kept for the next bytes (freed and taken again on every read and write, a
/// flood of 1 KiB messages ran a fifth slower).
fn emptied(buf: &mut Vec<u8>) {
    if buf.capacity() < KEEP_FROM {
        *buf = Vec::new();
    } else {
        buf.clear();
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
            broken: false,
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

    /// Frees the buffers that hold nothing: once the handshake is done, its buffers (a flight of
    /// certificates, a ClientHello) go at once rather than when the connection next rests.
    fn release(&mut self) {
        if self.in_at == self.incoming.len() {
            self.incoming = Vec::new();
            self.in_at = 0;
        }
        if self.plain_at == self.plain.len() {
            self.plain = Vec::new();
            self.plain_at = 0;
        }
        if self.out_at == self.outgoing.len() {
            self.outgoing = Vec::new();
            self.out_at = 0;
        }
    }

    fn pending(&self) -> usize {
        self.outgoing.len() - self.out_at
    }

    /// Runs rustls over the bytes read until it needs more (or may send): decrypted data goes to
    /// `plain`, what it has to send to `outgoing`; `write` is encrypted once it may be, and
    /// `close` queues close_notify. A protocol error queues its alert and is returned.
    fn process(&mut self, mut write: Option<&[u8]>, close: bool) -> io::Result<Step> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the TLS connection failed",
            ));
        }
        loop {
            // rustls's handshake joining keeps offsets into these bytes: each call must see them
            // exactly as the last one left them (its `discard` removed from the front), error or
            // not, or rustls panics on the next call.
            let UnbufferedStatus { mut discard, state } = self
                .tls
                .process_tls_records(&mut self.incoming[self.in_at..]);
            let step = match state {
                Err(e) => Err(e),
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    take(&mut records, &mut self.plain, &mut discard).map(|()| None)
                }
                Ok(ConnectionState::ReadEarlyData(mut records)) => {
                    take(&mut records, &mut self.plain, &mut discard).map(|()| None)
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    match append(
                        &mut self.outgoing,
                        READ_CHUNK,
                        |buf| data.encode(buf),
                        encode_required,
                    ) {
                        Ok(()) => Ok(None),
                        Err(e) => {
                            self.in_at += discard;
                            self.broken = true;
                            return Err(io::Error::other(e));
                        }
                    }
                }
                // What was encoded is in `outgoing`, before anything queued later: it goes out
                // in order, which is all rustls asks.
                Ok(ConnectionState::TransmitTlsData(sent)) => {
                    sent.done();
                    Ok(None)
                }
                Ok(ConnectionState::BlockedHandshake) => Ok(Some(Step::NeedMore)),
                Ok(ConnectionState::PeerClosed) => {
                    self.read_closed = true;
                    Ok(None)
                }
                Ok(ConnectionState::Closed) => {
                    self.read_closed = true;
                    Ok(Some(Step::Closed))
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let mut sealed = Ok(());
                    if let Some(data) = write.take() {
                        let guess = data.len() + 64 * (data.len() / 16_384 + 1);
                        sealed = append(
                            &mut self.outgoing,
                            guess,
                            |buf| traffic.encrypt(data, buf),
                            encrypt_required,
                        );
                    }
                    if sealed.is_ok() && close && !self.close_sent {
                        sealed = append(
                            &mut self.outgoing,
                            64,
                            |buf| traffic.queue_close_notify(buf),
                            encrypt_required,
                        );
                        self.close_sent = true;
                    }
                    if let Err(e) = sealed {
                        self.in_at += discard;
                        self.broken = true;
                        return Err(io::Error::other(e));
                    }
                    Ok(Some(Step::Writable))
                }
                // A state a later rustls adds: nothing to do here but wait for the peer.
                Ok(_) => Ok(Some(Step::NeedMore)),
            };
            self.in_at += discard;
            match step {
                Err(e) => return Err(self.failed(e)),
                Ok(None) => {}
                Ok(Some(step)) => {
                    if self.in_at == self.incoming.len() {
                        emptied(&mut self.incoming);
                        self.in_at = 0;
                    }
                    return Ok(step);
                }
            }
        }
    }

    /// After a protocol error: the alert rustls queued goes to `outgoing` (sent by whoever flushes
    /// next), and the error is what the caller gets.
    fn failed(&mut self, e: rustls::Error) -> io::Error {
        self.broken = true;
        // The alert, if rustls queued one, is the first thing it gives (before it looks at the
        // bytes again); anything else, and it is not asked again.
        let status = self
            .tls
            .process_tls_records(&mut self.incoming[self.in_at..]);
        let discard = status.discard;
        if let Ok(ConnectionState::EncodeTlsData(mut data)) = status.state {
            let _ = append(
                &mut self.outgoing,
                64,
                |buf| data.encode(buf),
                encode_required,
            );
        }
        self.in_at += discard;
        tls_error(e)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsBytes<S> {
    /// A new TLS connection on `io`: the handshake (the caller bounds its time).
    pub async fn accept(io: S, config: Arc<ServerConfig>) -> io::Result<TlsBytes<S>> {
        let tls = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut stream = TlsBytes::resume(io, Box::new(tls));
        std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
        stream.release();
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
        let n = if held == 0 && want == READ_CHUNK {
            // Nothing held: read onto the stack, so a read that finds nothing allocates nothing.
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            self.incoming.extend_from_slice(buf.filled());
            buf.filled().len()
        } else {
            self.incoming.resize(held + want, 0);
            let mut buf = ReadBuf::new(&mut self.incoming[held..]);
            let read = Pin::new(&mut self.io).poll_read(cx, &mut buf);
            let n = buf.filled().len();
            self.incoming.truncate(held + n);
            ready!(read)?;
            n
        };
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
        emptied(&mut self.outgoing);
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
                    emptied(&mut this.plain);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::TlsBytes;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A server configuration with a fresh certificate for `localhost`, and a client trusting it
    /// that offers only `version`.
    fn configs(
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (Arc<rustls::ServerConfig>, tokio_rustls::TlsConnector) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let der = CertificateDer::from(cert.der().to_vec());
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).expect("root");
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        (
            Arc::new(server),
            tokio_rustls::TlsConnector::from(Arc::new(client)),
        )
    }

    async fn pair(
        version: &'static rustls::SupportedProtocolVersion,
        pipe: usize,
    ) -> (
        TlsBytes<DuplexStream>,
        tokio_rustls::client::TlsStream<DuplexStream>,
    ) {
        let (server, client) = configs(version);
        let (a, b) = tokio::io::duplex(pipe);
        let name = ServerName::try_from("localhost").expect("name");
        let (s, c) = tokio::join!(TlsBytes::accept(a, server), client.connect(name, b));
        (s.expect("server handshake"), c.expect("client handshake"))
    }

    /// Messages of every size both ways (one byte, a record, a record and a byte, many records),
    /// under TLS 1.3 and 1.2, through a roomy pipe and through one that takes 61 bytes at a time
    /// (every record arrives in pieces, every write is partial); after each exchange the server's stream is at rest, taken apart
    /// into its socket and state, and put together again, and the next exchange goes on with
    /// the same keys. Every byte arrives in order.
    #[tokio::test]
    async fn bytes_cross_both_ways_and_survive_being_taken_apart_at_rest() {
        for (version, pipe) in [
            (&rustls::version::TLS13, 8 * 1024),
            (&rustls::version::TLS12, 8 * 1024),
            (&rustls::version::TLS13, 61),
            (&rustls::version::TLS12, 61),
        ] {
            let (mut server, mut client) = pair(version, pipe).await;
            for (i, size) in [1usize, 100, 16_384, 16_385, 70_000, 200_000]
                .into_iter()
                .enumerate()
            {
                let sent: Vec<u8> = (0..size).map(|b| (b * 7 + i) as u8).collect();
                let echo = async {
                    let mut got = vec![0u8; size];
                    server.read_exact(&mut got).await.expect("server reads");
                    server.write_all(&got).await.expect("server writes");
                    server.flush().await.expect("server flushes");
                };
                let talk = async {
                    client.write_all(&sent).await.expect("client writes");
                    client.flush().await.expect("client flushes");
                    let mut back = vec![0u8; size];
                    client.read_exact(&mut back).await.expect("client reads");
                    back
                };
                let ((), back) = tokio::join!(echo, talk);
                assert!(back == sent, "{size} bytes under {version:?}");
                assert!(server.at_rest(), "at rest after {size} bytes");
                let (io, tls) = server.into_parts();
                server = TlsBytes::resume(io, tls);
            }
            // Both ends close: close_notify each way, the reader sees a clean end.
            client.shutdown().await.expect("client closes");
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).await.expect("clean end");
            assert!(rest.is_empty());
            server.shutdown().await.expect("server closes");
            let mut rest = Vec::new();
            client
                .read_to_end(&mut rest)
                .await
                .expect("close_notify, not a cut");
        }
    }

    /// What is not TLS ends the handshake with an error (and an alert where TLS has one); a
    /// handshake message larger than any valid one is refused before it is buffered whole.
    #[tokio::test]
    async fn what_is_not_tls_is_refused() {
        let (config, _) = configs(&rustls::version::TLS13);
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let accept = tokio::spawn(TlsBytes::accept(a, config.clone()));
        b.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("written");
        let err = accept.await.expect("joined").expect_err("not TLS");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let mut answer = [0u8; 1];
        if b.read(&mut answer).await.expect("read") == 1 {
            assert_eq!(answer[0], 0x15, "an alert record");
        }

        // A ClientHello that says it is 16 MiB long, sent as full handshake records.
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let accept = tokio::spawn(TlsBytes::accept(a, config));
        let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xFF, 0xFF, 0xFF];
        record.resize(5 + 16_384, 0);
        let flood = async {
            let mut sent = 0usize;
            while b.write_all(&record).await.is_ok() && sent < 32 * 1024 * 1024 {
                sent += record.len();
                record[5..9].fill(0);
            }
            sent
        };
        let (result, sent) = tokio::join!(accept, flood);
        let err = result.expect("joined").expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(
            sent <= super::MAX_INCOMING + 64 * 1024,
            "{sent} bytes taken before the refusal"
        );
    }
}
