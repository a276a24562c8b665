//! rust-mqtt 0.3: the same firmware over embedded-io-async (its transport interface), driven by a
//! minimal executor. rust-mqtt's `no_std` mode logs through defmt; a logger that discards
//! everything stands in for defmt-rtt.
#![no_std]
#![no_main]

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use outpost_client_size_probe::{consume, Uart};
use panic_halt as _;
use rust_mqtt::client::client::MqttClient;
use rust_mqtt::client::client_config::{ClientConfig, MqttVersion};
use rust_mqtt::packet::v5::publish_packet::QualityOfService;
use rust_mqtt::utils::rng_generator::CountingRng;

#[defmt::global_logger]
struct NullLogger;
// SAFETY: every method does nothing, so there is no state to race on.
unsafe impl defmt::Logger for NullLogger {
    fn acquire() {}
    unsafe fn flush() {}
    unsafe fn release() {}
    unsafe fn write(_bytes: &[u8]) {}
}
defmt::timestamp!("{=u32}", 0);

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let (mut rx, mut tx) = ([0u8; 512], [0u8; 768]);
    let mut config = ClientConfig::new(MqttVersion::MQTTv5, CountingRng(1));
    config.add_client_id("probe");
    config.add_max_subscribe_qos(QualityOfService::QoS1);
    config.max_packet_size = 512;
    let mut client = MqttClient::<_, 5, _>::new(Uart, &mut tx, 768, &mut rx, 512, config);
    block_on(async {
        loop {
            if client.connect_to_broker().await.is_err() {
                continue;
            }
            let _ = client.subscribe_to_topic("cmd").await;
            loop {
                if client
                    .send_message("telemetry", b"temp=21.5", QualityOfService::QoS1, false)
                    .await
                    .is_err()
                {
                    break;
                }
                match client.receive_message_if_ready().await {
                    Ok(Some((_, payload))) => consume(payload),
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }
    })
}
