//! The broker-restart firmware's logic, shared by the Cortex-M (qemu-mps2) and RISC-V
//! (qemu-riscv) boards: publish a numbered QoS 1 stream on a persistent session while the host
//! kills the broker with `kill -9` and starts it again. The device notices on its own (an
//! unanswered PINGREQ: its window is full and nothing else is sent), reconnects with its session,
//! and the client resends what was not acknowledged. It never lets the offline buffer drop a
//! number (it publishes only while the window has room), and ends with success once every number
//! is acknowledged.

use core::fmt::Write as _;

use outpost_client::blocking::Client;
use outpost_client::{Buffers, Config, Event, QoS};

/// What the logic needs from a board.
pub trait Board {
    /// The serial line to the broker.
    type Uart: embedded_io::Read + embedded_io::Write + embedded_io::ReadReady;
    /// The line (callable more than once: each reconnect takes a fresh handle).
    fn uart() -> Self::Uart;
    /// Milliseconds since start.
    fn now_ms() -> u64;
    /// A line of progress for the host, where the board has a way to say it.
    fn log(line: core::fmt::Arguments<'_>);
    /// Ends the run with success.
    fn pass() -> !;
    /// Ends the run with a failure.
    fn fail(why: &str) -> !;
}

/// Topic of the stream.
pub const TOPIC: &str = "devices/qemu-2/seq";
/// Numbers published, one every `PACE_MS`.
pub const COUNT: u32 = 400;
const PACE_MS: u64 = 25;
/// In-flight window (and offline buffer slots).
const WINDOW: usize = 4;

fn sleep_ms<B: Board>(ms: u64) {
    let until = B::now_ms() + ms;
    while B::now_ms() < until {}
}

/// Connects until the broker answers (it may be down for a while), with the persistent session.
fn connect<B: Board>(client: &mut Client<'_, B::Uart, fn() -> u64, WINDOW>, deadline: u64) -> u32 {
    let mut attempts = 0;
    loop {
        attempts += 1;
        if client.connect(B::uart()).is_ok() {
            return attempts;
        }
        if B::now_ms() > deadline {
            B::fail("no broker to reconnect to");
        }
        sleep_ms::<B>(200);
    }
}

/// Runs the stream to the end.
pub fn run<B: Board>(client_id: &str) -> ! {
    let (mut rx, mut tx, mut out) = ([0u8; 256], [0u8; 128], [0u8; 256]);
    let mut config = Config::new(client_id);
    config.clean_session = false;
    config.keep_alive = 2;
    config.connect_timeout_ms = 2_000;
    let mut client: Client<'_, B::Uart, fn() -> u64, WINDOW> = Client::new(
        config,
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
            outgoing: &mut out,
        },
        B::now_ms as fn() -> u64,
    );
    let deadline = B::now_ms() + 150_000;
    connect::<B>(&mut client, deadline);
    B::log(format_args!("connected"));
    let (mut next, mut acked, mut reconnects) = (1u32, 0u32, 0u32);
    let mut last_publish = 0u64;
    loop {
        if B::now_ms() > deadline {
            B::fail("not every number was acknowledged in time");
        }
        if next <= COUNT
            && client.is_connected()
            && client.pending() < WINDOW
            && B::now_ms() >= last_publish + PACE_MS
        {
            let mut payload: heapless::String<12> = heapless::String::new();
            let _ = write!(payload, "{next}");
            match client.publish(TOPIC, payload.as_bytes(), QoS::AtLeastOnce, false) {
                Ok(_) => {
                    next += 1;
                    last_publish = B::now_ms();
                }
                // Stored before the link failed: it goes out again after the reconnect.
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
            B::log(format_args!(
                "link down after {} published, {} acknowledged; reconnecting",
                next - 1,
                acked
            ));
            let attempts = connect::<B>(&mut client, deadline);
            reconnects += 1;
            B::log(format_args!(
                "reconnected after {} attempts, {} to resend",
                attempts,
                client.pending()
            ));
        }
        if next > COUNT && client.pending() == 0 {
            if client.dropped() != 0 {
                B::fail("the offline buffer dropped messages");
            }
            B::log(format_args!(
                "PASS: {} numbers acknowledged, {} reconnects",
                COUNT, reconnects
            ));
            client.disconnect();
            B::pass();
        }
    }
}
