//! The broker-restart firmware (examples/common/stream.rs) on QEMU's RISC-V `virt` board
//! (riscv32imc): its NS16550A UART is the device's link (QEMU wires it to a TCP socket that the
//! host relay bridges to the broker), the CLINT's `mtime` is the clock, and the SiFive test device
//! ends the emulation with the outcome. The board has no console besides the UART, so progress
//! is seen from the host (the stream at a subscriber) and the exit status.
#![no_std]
#![no_main]

#[path = "../../common/stream.rs"]
mod stream;

use panic_halt as _;

const UART: usize = 0x1000_0000;
const RBR_THR: usize = UART;
const LSR: usize = UART + 5;
const LSR_DATA_READY: u8 = 1;
const LSR_THR_EMPTY: u8 = 1 << 5;
/// The CLINT's free-running timer (10 MHz on `virt`).
const MTIME_LO: usize = 0x0200_bff8;
const MTIME_HI: usize = 0x0200_bffc;
/// The SiFive test device: 0x5555 ends the emulation with status 0, `code << 16 | 0x3333` with
/// `code`.
const TEST_DEVICE: usize = 0x0010_0000;

fn read8(addr: usize) -> u8 {
    // SAFETY: a fixed MMIO register of the `virt` board, read without side effects other than
    // the UART's own (popping a received byte, which this driver wants).
    unsafe { (addr as *const u8).read_volatile() }
}

fn write8(addr: usize, v: u8) {
    // SAFETY: a fixed MMIO register of the `virt` board's UART.
    unsafe { (addr as *mut u8).write_volatile(v) }
}

fn read32(addr: usize) -> u32 {
    // SAFETY: the CLINT's timer registers are read-only to this firmware.
    unsafe { (addr as *const u32).read_volatile() }
}

fn exit(code: u32) -> ! {
    // SAFETY: writing the test device ends the emulation.
    unsafe { (TEST_DEVICE as *mut u32).write_volatile(code) };
    loop {}
}

/// The board's NS16550A UART.
struct Uart;

impl embedded_io::ErrorType for Uart {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        while read8(LSR) & LSR_DATA_READY == 0 {}
        let mut n = 0;
        while n < buf.len() && read8(LSR) & LSR_DATA_READY != 0 {
            buf[n] = read8(RBR_THR);
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(read8(LSR) & LSR_DATA_READY != 0)
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        for &b in buf {
            while read8(LSR) & LSR_THR_EMPTY == 0 {}
            write8(RBR_THR, b);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

struct Virt;

impl stream::Board for Virt {
    type Uart = Uart;
    fn uart() -> Uart {
        Uart
    }
    fn now_ms() -> u64 {
        // The 64-bit counter read as two halves, again if the high half moved meanwhile.
        loop {
            let hi = read32(MTIME_HI);
            let lo = read32(MTIME_LO);
            if read32(MTIME_HI) == hi {
                return ((u64::from(hi) << 32) | u64::from(lo)) / 10_000;
            }
        }
    }
    fn log(_: core::fmt::Arguments<'_>) {}
    fn pass() -> ! {
        exit(0x5555)
    }
    fn fail(_: &str) -> ! {
        exit((1 << 16) | 0x3333)
    }
}

#[riscv_rt::entry]
fn main() -> ! {
    stream::run::<Virt>("qemu-riscv")
}
