//! Example firmware for an emulated Cortex-M4 board (QEMU `mps2-an386`): the device connects to an
//! Outpost broker through its UART (QEMU wires the UART to a TCP socket, a host relay forwards the
//! bytes to the broker's MQTT port), subscribes to its command topic, publishes QoS 1 telemetry,
//! waits for a command published by another client, acknowledges it, and reports the outcome
//! through the semihosting exit code.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use outpost_client::blocking::Client;
use outpost_client::{Buffers, Config, Event, QoS, SubscribeFilter};
use outpost_client_qemu_mps2::{fail, now_ms, start_clock, Uart};
use panic_semihosting as _;

const TELEMETRY: &str = "devices/qemu-1/telemetry";
const COMMANDS: &str = "devices/qemu-1/cmd";
const ACKS: &str = "devices/qemu-1/ack";

#[entry]
fn main() -> ! {
    start_clock();

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
    // RAM: the three buffers above and the client itself, nothing else (no statics, no heap).
    hprintln!(
        "RAM: buffers {} bytes, client {} bytes",
        512 + 256 + 512,
        core::mem::size_of::<Client<'_, Uart, fn() -> u64, 4>>()
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
