//! Example firmware for an emulated Cortex-M4 board (QEMU `mps2-an386`): the device connects to an
//! Outpost broker through its UART (QEMU wires the UART to a TCP socket, a host relay forwards the
//! bytes to the broker's MQTT port), subscribes to its command topic, publishes QoS 1 telemetry,
//! waits for a command published by another client, acknowledges it, and reports the outcome
//! through the semihosting exit code.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use outpost_client::blocking::Client;
use outpost_client::{Buffers, Config, Event, QoS, SubscribeFilter};
use panic_semihosting as _;

/// The CMSDK APB UART0 of the MPS2 boards.
struct Uart;

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
    fn init() -> Uart {
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

fn now_ms() -> u64 {
    u64::from(MILLIS.load(Ordering::Relaxed))
}

const TELEMETRY: &str = "devices/qemu-1/telemetry";
const COMMANDS: &str = "devices/qemu-1/cmd";
const ACKS: &str = "devices/qemu-1/ack";

fn fail(what: &str) -> ! {
    hprintln!("FAIL: {}", what);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| fail("peripherals"));
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(25_000 - 1); // 25 MHz core clock: 1 ms
    cp.SYST.clear_current();
    cp.SYST.enable_counter();
    cp.SYST.enable_interrupt();

    let mut rx = [0u8; 512];
    let mut tx = [0u8; 256];
    let mut out = [0u8; 512];
    let mut config = Config::new("qemu-1");
    config.keep_alive = 30;
    config.clean_session = true;
    let mut client: Client<'_, Uart, fn() -> u64, 4> = Client::new(
        config,
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
            outgoing: &mut out,
        },
        now_ms,
    );
    if client.connect(Uart::init()).is_err() {
        fail("connect");
    }
    hprintln!("connected");
    let sub = client
        .subscribe(&[SubscribeFilter::new(COMMANDS, QoS::AtLeastOnce)])
        .unwrap_or_else(|_| fail("subscribe"));

    let mut subscribed = false;
    let mut acked = 0u32;
    let mut command = [0u8; 64];
    let mut command_len = None;
    let mut sent_telemetry = false;
    let mut ack_id = None;
    let deadline = now_ms() + 30_000;
    loop {
        if now_ms() > deadline {
            fail("timed out");
        }
        let result = client.poll(|e| match e {
            Event::Subscribed { pkid, granted } if pkid == sub => subscribed = granted,
            Event::Published(id) => {
                acked += 1;
                if Some(id) == ack_id {
                    ack_id = None;
                }
            }
            Event::Message(m) if m.topic == COMMANDS => {
                let n = m.payload.len().min(command.len());
                command[..n].copy_from_slice(&m.payload[..n]);
                command_len = Some(n);
            }
            _ => {}
        });
        if result.is_err() {
            fail("link");
        }
        if subscribed && !sent_telemetry {
            for reading in [b"temp=21.5".as_slice(), b"temp=21.6", b"temp=21.7"] {
                if client
                    .publish(TELEMETRY, reading, QoS::AtLeastOnce, false)
                    .is_err()
                {
                    fail("publish telemetry");
                }
            }
            sent_telemetry = true;
            hprintln!("telemetry sent");
        }
        if let Some(n) = command_len.take() {
            hprintln!("command received ({} bytes)", n);
            match client.publish(ACKS, &command[..n], QoS::AtLeastOnce, false) {
                Ok(id) => ack_id = id,
                Err(_) => fail("publish ack"),
            }
        }
        if sent_telemetry && acked >= 4 && ack_id.is_none() {
            hprintln!("PASS: 3 telemetry messages and the command acknowledged");
            client.disconnect();
            debug::exit(debug::EXIT_SUCCESS);
            loop {}
        }
    }
}
