//! minimq 0.9: the same firmware over embedded-nal (its transport interface).
#![no_std]
#![no_main]

use embedded_nal::{IpAddr, Ipv4Addr, SocketAddr, TcpClientStack, TcpError, TcpErrorKind};
use embedded_time::{clock, fraction::Fraction, Instant};
use minimq::{broker::IpBroker, ConfigBuilder, Minimq, Publication, QoS};
use outpost_client_size_probe::{consume, now_ms, Uart};
use panic_halt as _;

#[derive(Debug)]
struct NetError;
impl TcpError for NetError {
    fn kind(&self) -> TcpErrorKind {
        TcpErrorKind::Other
    }
}

struct Stack(Uart);
impl TcpClientStack for Stack {
    type TcpSocket = ();
    type Error = NetError;
    fn socket(&mut self) -> Result<(), NetError> {
        Ok(())
    }
    fn connect(&mut self, _: &mut (), _: SocketAddr) -> nb::Result<(), NetError> {
        Ok(())
    }
    fn send(&mut self, _: &mut (), buffer: &[u8]) -> nb::Result<usize, NetError> {
        Ok(self.0.write_bytes(buffer))
    }
    fn receive(&mut self, _: &mut (), buffer: &mut [u8]) -> nb::Result<usize, NetError> {
        if !self.0.ready() {
            return Err(nb::Error::WouldBlock);
        }
        Ok(self.0.read_bytes(buffer))
    }
    fn close(&mut self, _: ()) -> Result<(), NetError> {
        Ok(())
    }
}

struct Clock;
impl clock::Clock for Clock {
    type T = u32;
    const SCALING_FACTOR: Fraction = Fraction::new(1, 1000);
    fn try_now(&self) -> Result<Instant<Self>, clock::Error> {
        Ok(Instant::new(now_ms() as u32))
    }
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let mut buffer = [0u8; 1280];
    let broker = IpBroker::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    let mut mqtt: Minimq<'_, Stack, Clock, IpBroker> = Minimq::new(
        Stack(Uart),
        Clock,
        ConfigBuilder::new(broker, &mut buffer).client_id("probe").unwrap(),
    );
    let mut subscribed = false;
    loop {
        if mqtt.client().is_connected() {
            if !subscribed {
                subscribed = mqtt.client().subscribe(&["cmd".into()], &[]).is_ok();
            }
            if let Ok(p) = Publication::new(b"temp=21.5".as_slice())
                .topic("telemetry")
                .qos(QoS::AtLeastOnce)
                .finish()
            {
                let _ = mqtt.client().publish(p);
            }
        }
        let _ = mqtt.poll(|_client, _topic, payload, _props| consume(payload));
    }
}
