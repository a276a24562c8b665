//! Firmware for the broker-restart run (scripts/qemu-firmware.sh): publishes a numbered QoS 1
//! stream on a persistent session while the host kills the broker with `kill -9` and starts it
//! again. The device notices on its own (an unanswered PINGREQ: its window is full and nothing
//! else is sent), reconnects with its session, and the client resends what was not acknowledged.
//! It never lets the offline buffer drop a number (it publishes only while the window has room),
//! and exits with success once every number is acknowledged.
#![no_std]
#![no_main]

use core::fmt::Write as _;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use outpost_client::blocking::Client;
use outpost_client::{Buffers, Config, Event, QoS};
use outpost_client_qemu_mps2::{fail, now_ms, sleep_ms, start_clock, Uart};
use panic_semihosting as _;

const TOPIC: &str = "devices/qemu-2/seq";
/// Numbers published, one every `PACE_MS`.
const COUNT: u32 = 400;
const PACE_MS: u64 = 25;
/// In-flight window (and offline buffer slots).
const WINDOW: usize = 4;

/// Connects until the broker answers (it may be down for a while), with the persistent session.
fn connect(client: &mut Client<'_, Uart, fn() -> u64, WINDOW>, deadline: u64) -> u32 {
    let mut attempts = 0;
    loop {
        attempts += 1;
        if client.connect(Uart).is_ok() {
            return attempts;
        }
        if now_ms() > deadline {
            fail("no broker to reconnect to");
        }
        sleep_ms(200);
    }
}

#[entry]
fn main() -> ! {
    start_clock();
    let _ = Uart::init();
    let (mut rx, mut tx, mut out) = ([0u8; 256], [0u8; 128], [0u8; 256]);
    let mut config = Config::new("qemu-2");
    config.clean_session = false;
    config.keep_alive = 2;
    config.connect_timeout_ms = 2_000;
    let mut client: Client<'_, Uart, fn() -> u64, WINDOW> = Client::new(
        config,
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
            outgoing: &mut out,
        },
        now_ms,
    );
    let deadline = now_ms() + 150_000;
    connect(&mut client, deadline);
    hprintln!("connected");
    let (mut next, mut acked, mut reconnects) = (1u32, 0u32, 0u32);
    let mut last_publish = 0u64;
    loop {
        if now_ms() > deadline {
            fail("not every number was acknowledged in time");
        }
        if next <= COUNT
            && client.is_connected()
            && client.pending() < WINDOW
            && now_ms() >= last_publish + PACE_MS
        {
            let mut payload: heapless::String<12> = heapless::String::new();
            let _ = write!(payload, "{next}");
            match client.publish(TOPIC, payload.as_bytes(), QoS::AtLeastOnce, false) {
                Ok(_) => {
                    next += 1;
                    last_publish = now_ms();
                }
                // Stored: it goes out again after the reconnect.
                Err(_) if client.pending() > 0 && !client.is_connected() => next += 1,
                Err(_) => {}
            }
        }
        let polled = client.poll(|e| {
            if let Event::Published(_) = e {
                acked += 1;
            }
        });
        if polled.is_err() {
            hprintln!("link down after {} published, {} acknowledged; reconnecting", next - 1, acked);
            let attempts = connect(&mut client, deadline);
            reconnects += 1;
            hprintln!("reconnected after {} attempts, {} to resend", attempts, client.pending());
        }
        if next > COUNT && client.pending() == 0 {
            if client.dropped() != 0 {
                fail("the offline buffer dropped messages");
            }
            hprintln!(
                "PASS: {} numbers acknowledged, {} reconnects",
                COUNT,
                reconnects
            );
            client.disconnect();
            debug::exit(debug::EXIT_SUCCESS);
            loop {}
        }
    }
}
