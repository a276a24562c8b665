//! A WebSocket connection seen as the byte stream MQTT needs (MQTT §6: a packet may span binary
//! frames and a frame may hold several packets), in the connection's own task.
//!
//! Why not a pipe: joining frames through an in-memory duplex pipe took a second task, the pipe's
//! two buffers and two split locks per connection — 6.2 KB per idle WebSocket connection where a
//! TCP one costs 2.6 KB (issue 29). Here a read hands out what is left of the last binary message
//! (a `Bytes`, no copy kept while idle) and a write is one binary frame.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// MQTT's bytes over a WebSocket: binary frames in, binary frames out. Pings are answered by
/// tungstenite as frames are read; a close frame, or the peer going away, is the end of the
/// stream; a text frame is an error (§6.0: the connection MUST be closed).
pub(crate) struct WebSocketBytes<S> {
    ws: WebSocketStream<S>,
    /// What the last binary message still holds.
    unread: Bytes,
    /// A close frame was read (or the stream ended): reads return end of stream.
    ended: bool,
}

impl<S> WebSocketBytes<S> {
    pub(crate) fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            unread: Bytes::new(),
            ended: false,
        }
    }
}

/// tungstenite's error as an I/O error (a closed connection is `BrokenPipe`, its I/O errors stay
/// themselves).
fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed")
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other),
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
            if !this.unread.is_empty() {
                let n = this.unread.len().min(buf.remaining());
                buf.put_slice(&this.unread[..n]);
                this.unread.advance(n);
                if this.unread.is_empty() {
                    // An emptied slice still holds tungstenite's read buffer: let it go, so the
                    // buffer is reused instead of a second one allocated.
                    this.unread = Bytes::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.unread = data,
                Some(Ok(Message::Close(_))) | None => this.ended = true,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text frame on an MQTT WebSocket",
                    )))
                }
                // Pings (answered by tungstenite), pongs, raw frames.
                Some(Ok(_)) => {}
                Some(Err(WsError::ConnectionClosed)) => this.ended = true,
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
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
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut ws = Pin::new(&mut self.ws);
        ready!(ws.as_mut().poll_ready(cx)).map_err(io_error)?;
        ws.start_send(Message::Binary(Bytes::copy_from_slice(data)))
            .map_err(io_error)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    /// Sends the close frame; the peer's answer is read by whoever keeps reading (the
    /// connection lingers for it).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}
