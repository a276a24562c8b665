//! The broker-restart firmware (examples/common/stream.rs) on the emulated Cortex-M4 board.
#![no_std]
#![no_main]

#[path = "../../../common/stream.rs"]
mod stream;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use outpost_client_qemu_mps2::{fail, now_ms, start_clock, Uart};
use panic_semihosting as _;

struct Mps2;

impl stream::Board for Mps2 {
    type Uart = Uart;
    fn uart() -> Uart {
        Uart
    }
    fn now_ms() -> u64 {
        now_ms()
    }
    fn log(line: core::fmt::Arguments<'_>) {
        hprintln!("{}", line);
    }
    fn pass() -> ! {
        debug::exit(debug::EXIT_SUCCESS);
        loop {}
    }
    fn fail(why: &str) -> ! {
        fail(why)
    }
}

#[entry]
fn main() -> ! {
    start_clock();
    let _ = Uart::init();
    stream::run::<Mps2>("qemu-2")
}
