//! What the example firmwares share: the board's UART (the device's only link; QEMU wires it to a
//! TCP socket that a host relay bridges to the broker), a millisecond clock from SysTick, and
//! failure through semihosting.
#![no_std]

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use cortex_m_semihosting::{debug, hprintln};

/// The CMSDK APB UART0 of the MPS2 boards.
pub struct Uart;

const UART0: usize = 0x4000_4000;
const DATA: usize = UART0;
const STATE: usize = UART0 + 0x4;
const CTRL: usize = UART0 + 0x8;
const BAUDDIV: usize = UART0 + 0x10;
const TX_FULL: u32 = 1;
const RX_FULL: u32 = 2;

fn reg(addr: usize) -> *mut u32 {
    addr as *mut u32
}

impl Uart {
    /// Sets the baud rate and enables both directions.
    pub fn init() -> Uart {
        // SAFETY: fixed MMIO registers of the board's UART0, used by this driver only.
        unsafe {
            reg(BAUDDIV).write_volatile(217);
            reg(CTRL).write_volatile(3);
        }
        Uart
    }

    fn state() -> u32 {
        // SAFETY: reading the UART's state register has no side effects.
        unsafe { reg(STATE).read_volatile() }
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        while Uart::state() & RX_FULL == 0 {}
        let mut n = 0;
        while n < buf.len() && Uart::state() & RX_FULL != 0 {
            // SAFETY: reading DATA pops one received byte.
            buf[n] = unsafe { reg(DATA).read_volatile() } as u8;
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(Uart::state() & RX_FULL != 0)
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        for &b in buf {
            while Uart::state() & TX_FULL != 0 {}
            // SAFETY: writing DATA queues one byte for transmission.
            unsafe { reg(DATA).write_volatile(u32::from(b)) };
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

static MILLIS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

/// Milliseconds since [`start_clock`].
pub fn now_ms() -> u64 {
    u64::from(MILLIS.load(Ordering::Relaxed))
}

/// Starts the millisecond clock (SysTick at the board's 25 MHz core clock).
pub fn start_clock() {
    let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| fail("peripherals"));
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(25_000 - 1);
    cp.SYST.clear_current();
    cp.SYST.enable_counter();
    cp.SYST.enable_interrupt();
}

/// Reports a failure and ends the emulation with a failing status.
pub fn fail(what: &str) -> ! {
    hprintln!("FAIL: {}", what);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}
