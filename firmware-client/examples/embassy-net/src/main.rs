//! outpost-client's async client over embassy-net TCP, on a NUCLEO-F767ZI (STM32F767ZI with its
//! on-chip Ethernet MAC and the board's LAN8742A PHY): DHCP, a TCP connection to the broker, then
//! QoS 1 telemetry every five seconds and commands on `devices/<id>/cmd`, reconnecting (with the
//! persistent session and the unacknowledged messages resent) whenever the link or the broker
//! goes away.
//!
//! embassy-net 0.9 speaks embedded-io-async 0.7 and outpost-client 0.6: [`Link`] adapts one to the
//! other in a few lines (the traits are the same, only the crate versions differ).
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, StackResources};
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::peripherals::{ETH, ETH_SMA};
use embassy_stm32::rng::Rng;
use embassy_stm32::{bind_interrupts, eth, peripherals, rng, Config};
use embassy_time::{Duration, Instant, Timer};
use outpost_client::asynch::Client;
use outpost_client::{Buffers, Config as MqttConfig, Event, QoS, SubscribeFilter};
use panic_halt as _;
use static_cell::StaticCell;

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<peripherals::RNG>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

/// The broker (the gateway running `outpost`).
const BROKER: (Ipv4Address, u16) = (Ipv4Address::new(192, 168, 1, 10), 1883);
const CLIENT_ID: &str = "nucleo-7";
const TELEMETRY: &str = "devices/nucleo-7/telemetry";
const COMMANDS: &str = "devices/nucleo-7/cmd";

/// A TCP socket as outpost-client's transport.
struct Link<'a>(TcpSocket<'a>);

/// embassy-net's TCP error as an embedded-io 0.6 error.
#[derive(Debug)]
struct LinkError(#[allow(dead_code)] embassy_net::tcp::Error);

impl embedded_io_async::Error for LinkError {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        embedded_io_async::ErrorKind::ConnectionReset
    }
}

impl embedded_io_async::ErrorType for Link<'_> {
    type Error = LinkError;
}

impl embedded_io_async::Read for Link<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.0.read(buf).await.map_err(LinkError)
    }
}

impl embedded_io_async::Write for Link<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.write(buf).await.map_err(LinkError)
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.flush().await.map_err(LinkError)
    }
}

impl embedded_io_async::ReadReady for Link<'_> {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(self.0.can_recv())
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

fn millis() -> u64 {
    Instant::now().as_millis()
}

#[embassy_executor::main]
async fn main(spawner: Spawner) -> ! {
    let p = embassy_stm32::init(Config::default());
    let mut rng = Rng::new(p.RNG, Irqs);
    let mut seed = [0u8; 8];
    rng.fill_bytes(&mut seed);

    static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    // NUCLEO-F767ZI RMII pins: REF_CLK PA1, CRS_DV PA7, RXD0 PC4, RXD1 PC5, TXD0 PG13, TXD1 PB13,
    // TX_EN PG11; MDIO PA2, MDC PC1.
    let device = Ethernet::new(
        PACKETS.init(PacketQueue::new()),
        p.ETH,
        Irqs,
        p.PA1,
        p.PA7,
        p.PC4,
        p.PC5,
        p.PG13,
        p.PB13,
        p.PG11,
        [0x02, 0x00, 0x5e, 0x10, 0x00, 0x07],
        p.ETH_SMA,
        p.PA2,
        p.PC1,
    );
    static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        u64::from_le_bytes(seed),
    );
    spawner.spawn(net_task(runner).expect("one network task"));
    stack.wait_config_up().await;

    // The client and its buffers live across reconnects: what was not acknowledged is resent.
    let (mut rx, mut tx, mut out) = ([0u8; 512], [0u8; 256], [0u8; 1024]);
    let (mut rx_tcp, mut tx_tcp) = ([0u8; 1024], [0u8; 1024]);
    let mut config = MqttConfig::new(CLIENT_ID);
    config.keep_alive = 30;
    let mut client: Client<'_, Link<'_>, fn() -> u64, 8> = Client::new(
        config,
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
            outgoing: &mut out,
        },
        millis,
    );
    let mut reading = 0u32;
    // One socket for the device's life: after a failure it is closed and connected again.
    let mut socket = TcpSocket::new(stack, &mut rx_tcp, &mut tx_tcp);
    loop {
        socket.abort();
        let _ = socket.flush().await;
        socket.set_timeout(Some(Duration::from_secs(60)));
        if socket.connect(BROKER).await.is_err() {
            Timer::after_secs(2).await;
            continue;
        }
        let connected = client.connect(Link(socket)).await.is_ok()
            && client
                .subscribe(&[SubscribeFilter::new(COMMANDS, QoS::AtLeastOnce)])
                .await
                .is_ok();
        let mut next_reading = Instant::now();
        while connected {
            if Instant::now() >= next_reading {
                reading += 1;
                let mut text: heapless::String<16> = heapless::String::new();
                let _ = core::fmt::write(&mut text, format_args!("reading={reading}"));
                // Stored until the broker acknowledges it, across reconnects.
                let _ = client
                    .publish(TELEMETRY, text.as_bytes(), QoS::AtLeastOnce, false)
                    .await;
                next_reading += Duration::from_secs(5);
            }
            let polled = client
                .poll(|e| {
                    if let Event::Message(m) = e {
                        // A command for the device: act on m.payload here.
                        let _ = m.payload;
                    }
                })
                .await;
            if polled.is_err() {
                break; // link or broker gone: reconnect
            }
            Timer::after_millis(50).await;
        }
        // The client hands the socket back (it keeps it even after a failure).
        let Some(Link(s)) = client.disconnect().await else {
            unreachable!("the client holds the transport it was given")
        };
        socket = s;
        Timer::after_secs(1).await;
    }
}
