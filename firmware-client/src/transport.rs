//! Host transports (feature `std`, and `tokio` for the async one), for tests and tools that run the
//! client on a PC. Devices bring their own (embassy-net, smoltcp, a UART driver).

use std::io;
use std::net::TcpStream;

/// A blocking `std::net::TcpStream` with readiness (a non-blocking peek).
pub struct TcpTransport(pub TcpStream);

impl TcpTransport {
    /// Connects to `addr`.
    pub fn connect(addr: impl std::net::ToSocketAddrs) -> io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(TcpTransport(s))
    }
}

impl embedded_io::ErrorType for TcpTransport {
    type Error = io::Error;
}

impl embedded_io::Read for TcpTransport {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, io::Error> {
        io::Read::read(&mut self.0, buf)
    }
}

impl embedded_io::Write for TcpTransport {
    fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        io::Write::write(&mut self.0, buf)
    }
    fn flush(&mut self) -> Result<(), io::Error> {
        io::Write::flush(&mut self.0)
    }
}

impl embedded_io::ReadReady for TcpTransport {
    fn read_ready(&mut self) -> Result<bool, io::Error> {
        self.0.set_nonblocking(true)?;
        let mut b = [0u8; 1];
        let r = self.0.peek(&mut b);
        self.0.set_nonblocking(false)?;
        match r {
            // 0 bytes: the peer closed; report ready so the read sees the end.
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// tokio's `TcpStream` for the async client.
#[cfg(feature = "tokio")]
pub struct TokioTransport(pub tokio::net::TcpStream);

#[cfg(feature = "tokio")]
impl TokioTransport {
    /// Connects to `addr`.
    pub async fn connect(addr: impl tokio::net::ToSocketAddrs) -> io::Result<Self> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(TokioTransport(s))
    }
}

#[cfg(feature = "tokio")]
impl embedded_io_async::ErrorType for TokioTransport {
    type Error = io::Error;
}

#[cfg(feature = "tokio")]
impl embedded_io_async::Read for TokioTransport {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, io::Error> {
        loop {
            self.0.readable().await?;
            match self.0.try_read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(feature = "tokio")]
impl embedded_io_async::Write for TokioTransport {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        loop {
            self.0.writable().await?;
            match self.0.try_write(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(feature = "tokio")]
impl embedded_io_async::ReadReady for TokioTransport {
    fn read_ready(&mut self) -> Result<bool, io::Error> {
        let mut b = [0u8; 1];
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut rb = tokio::io::ReadBuf::new(&mut b);
        match self.0.poll_peek(&mut cx, &mut rb) {
            std::task::Poll::Ready(Ok(_)) => Ok(true),
            std::task::Poll::Ready(Err(e)) => Err(e),
            std::task::Poll::Pending => Ok(false),
        }
    }
}
