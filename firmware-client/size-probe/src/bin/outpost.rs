//! outpost-client: connect, subscribe at QoS 1, publish QoS 1 telemetry, handle messages.
#![no_std]
#![no_main]

use outpost_client::blocking::Client;
use outpost_client::{Buffers, Config, Event, QoS, SubscribeFilter};
use outpost_client_size_probe::{consume, now_ms, Uart};
use panic_halt as _;

#[cortex_m_rt::entry]
fn main() -> ! {
    let (mut rx, mut tx, mut out) = ([0u8; 512], [0u8; 256], [0u8; 512]);
    let mut client: Client<'_, Uart, fn() -> u64, 4> = Client::new(
        Config::new("probe"),
        Buffers { rx: &mut rx, tx: &mut tx, outgoing: &mut out },
        now_ms,
    );
    loop {
        if client.connect(Uart).is_err() {
            continue;
        }
        let _ = client.subscribe(&[SubscribeFilter::new("cmd", QoS::AtLeastOnce)]);
        loop {
            let _ = client.publish("telemetry", b"temp=21.5", QoS::AtLeastOnce, false);
            if client.poll(|e| if let Event::Message(m) = e { consume(m.payload) }).is_err() {
                break;
            }
        }
    }
}
