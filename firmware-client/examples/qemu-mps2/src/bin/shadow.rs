//! A device that keeps its state in its Device Shadow (issue 30), on the emulated Cortex-M4 board:
//! it reports its LED's state, subscribes to its shadow's `update/delta`, and when an application
//! sets `desired` (the host script does it with the iot-data API) it applies the change and
//! reports the new state, which clears the delta. No heap, no JSON library: the delta is read for
//! the one key the device knows.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use outpost_client::blocking::Client;
use outpost_client::{Buffers, Config, Event, QoS, SubscribeFilter};
use outpost_client_qemu_mps2::{fail, now_ms, start_clock, Uart};
use panic_semihosting as _;

const UPDATE: &str = "$aws/things/qemu-3/shadow/update";
const DELTA: &str = "$aws/things/qemu-3/shadow/update/delta";

/// The value of `"led"` in a delta document, if it is one the device knows.
fn desired_led(doc: &[u8]) -> Option<bool> {
    let key = b"\"led\":\"";
    let at = doc.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = doc.get(at..)?;
    if rest.starts_with(b"on\"") {
        Some(true)
    } else if rest.starts_with(b"off\"") {
        Some(false)
    } else {
        None
    }
}

fn report(on: bool) -> &'static [u8] {
    if on {
        br#"{"state":{"reported":{"led":"on"}},"clientToken":"qemu-3"}"#
    } else {
        br#"{"state":{"reported":{"led":"off"}},"clientToken":"qemu-3"}"#
    }
}

#[entry]
fn main() -> ! {
    start_clock();
    let mut rx = [0u8; 512];
    let mut tx = [0u8; 256];
    let mut out = [0u8; 512];
    let mut config = Config::new("qemu-3");
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
    let sub = client
        .subscribe(&[SubscribeFilter::new(DELTA, QoS::AtLeastOnce)])
        .unwrap_or_else(|_| fail("subscribe"));
    let mut subscribed = false;
    let mut led = false;
    let mut reported = None;
    let mut applied = false;
    let mut delta = None;
    let deadline = now_ms() + 60_000;
    loop {
        if now_ms() > deadline {
            fail("timed out");
        }
        let mut acked = None;
        let result = client.poll(|e| match e {
            Event::Subscribed { pkid, granted } if pkid == sub => subscribed = granted,
            Event::Published(id) => acked = Some(id),
            Event::Message(m) if m.topic == DELTA => delta = desired_led(m.payload),
            _ => {}
        });
        if result.is_err() {
            fail("link");
        }
        if subscribed && reported.is_none() && !applied {
            // The first report: the shadow now exists with the LED off.
            reported = Some(
                client
                    .publish(UPDATE, report(led), QoS::AtLeastOnce, false)
                    .unwrap_or_else(|_| fail("report"))
                    .unwrap_or(0),
            );
            hprintln!("reported led=off");
        }
        if let Some(want) = delta.take() {
            led = want;
            applied = true;
            hprintln!("delta: led={}", if led { "on" } else { "off" });
            reported = Some(
                client
                    .publish(UPDATE, report(led), QoS::AtLeastOnce, false)
                    .unwrap_or_else(|_| fail("report"))
                    .unwrap_or(0),
            );
        }
        if applied && acked.is_some() && acked == reported {
            hprintln!("PASS: the delta was applied and reported");
            client.disconnect();
            debug::exit(debug::EXIT_SUCCESS);
            loop {}
        }
    }
}
