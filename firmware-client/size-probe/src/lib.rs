//! What the three probes share: a UART-like transport on fixed registers (so no I/O is optimized
//! away), the same for every client, and a millisecond counter.
#![no_std]

use core::sync::atomic::{AtomicU32, Ordering};

const DATA: usize = 0x4000_4000;
const STATE: usize = 0x4000_4004;

/// Byte transport over two MMIO registers.
pub struct Uart;

fn state() -> u32 {
    // SAFETY: fixed MMIO register of the board's UART (a read without side effects).
    unsafe { (STATE as *const u32).read_volatile() }
}

impl Uart {
    /// Reads what is there (at least one byte, waiting for it).
    pub fn read_bytes(&mut self, buf: &mut [u8]) -> usize {
        if buf.is_empty() {
            return 0;
        }
        while state() & 2 == 0 {}
        let mut n = 0;
        while n < buf.len() && state() & 2 != 0 {
            // SAFETY: reading DATA pops one received byte.
            buf[n] = unsafe { (DATA as *const u32).read_volatile() } as u8;
            n += 1;
        }
        n
    }
    /// Writes every byte.
    pub fn write_bytes(&mut self, buf: &[u8]) -> usize {
        for &b in buf {
            while state() & 1 != 0 {}
            // SAFETY: writing DATA queues one byte.
            unsafe { (DATA as *mut u32).write_volatile(u32::from(b)) };
        }
        buf.len()
    }
    /// Whether a byte is waiting.
    pub fn ready(&self) -> bool {
        state() & 2 != 0
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = core::convert::Infallible;
}
impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        Ok(self.read_bytes(buf))
    }
}
impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(self.ready())
    }
}
impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(self.write_bytes(buf))
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
impl embedded_io_async::Read for Uart {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        Ok(self.read_bytes(buf))
    }
}
impl embedded_io_async::Write for Uart {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(self.write_bytes(buf))
    }
}

/// Milliseconds (advanced by a timer interrupt in a real firmware).
pub static MILLIS: AtomicU32 = AtomicU32::new(0);

/// The clock.
pub fn now_ms() -> u64 {
    u64::from(MILLIS.load(Ordering::Relaxed))
}

/// Where received payloads go (so their handling is not optimized away).
pub fn consume(payload: &[u8]) {
    // SAFETY: a scratch register write standing in for the application.
    unsafe { (0x4000_5000 as *mut u32).write_volatile(payload.len() as u32) };
}
