//! A `no_std`, allocation-free MQTT 3.1.1/5 client for microcontrollers.
//!
//! - **Any byte transport**: blocking over `embedded-io` ([`blocking::Client`]) or async over
//!   `embedded-io-async` ([`asynch::Client`]): a TCP socket of embassy-net or smoltcp, a UART, a
//!   cellular modem's socket. The `std` and `tokio` features add host transports for tests.
//! - **No allocation, no panics on input**: every buffer is lent by the caller ([`Buffers`]) and
//!   sized by the application; the packet codec (`outpost-codec`) decodes in place.
//! - **QoS 0/1/2 both ways**, subscriptions, keep-alive from a caller-supplied millisecond clock,
//!   last will, user name and password, persistent sessions.
//! - **Nothing acknowledged is lost to a dropped link**: QoS 1/2 publishes stay in the outgoing
//!   buffer until the broker acknowledges them and are resent (DUP) after a reconnect; while the
//!   link is down they queue up there (the offline buffer), and when it is full the oldest messages
//!   that were never sent are dropped first ([`blocking::Client::dropped`] counts them).
//!
//! - **Links only what a device uses**: MQTT 5 is the `mqtt5` feature; without it the client speaks
//!   3.1.1 and none of MQTT 5's code is linked (ADR 0013).
//!
//! RAM: the three buffers plus the client struct (232 bytes with `N = 4` on 32-bit targets). A
//! telemetry device with 512-byte messages works with `rx = 512`, `tx = 256`, `outgoing = 512`,
//! `N = 4`: 1,512 bytes in total.
//!
//! # Publishing telemetry
//!
//! ```
//! use embedded_io::{Read, ReadReady, Write};
//! use outpost_client::blocking::Client;
//! use outpost_client::{Buffers, Config, Error, QoS};
//!
//! fn report<T: Read + Write + ReadReady>(link: T, millis: fn() -> u64) -> Result<(), Error<T::Error>> {
//!     let (mut rx, mut tx, mut out) = ([0u8; 256], [0u8; 128], [0u8; 512]);
//!     let mut client: Client<'_, T, fn() -> u64, 4> = Client::new(
//!         Config::new("sensor-1"),
//!         Buffers { rx: &mut rx, tx: &mut tx, outgoing: &mut out },
//!         millis,
//!     );
//!     client.connect(link)?;
//!     client.publish("sensors/1/temp", b"21.5", QoS::AtLeastOnce, false)?;
//!     // Kept (and resent after a reconnect) until the broker acknowledges it.
//!     while client.pending() > 0 {
//!         client.poll(|_| {})?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Receiving commands
//!
//! ```
//! use embedded_io::{Read, ReadReady, Write};
//! use outpost_client::blocking::Client;
//! use outpost_client::{Error, Event, QoS, SubscribeFilter};
//!
//! fn listen<T: Read + Write + ReadReady>(
//!     client: &mut Client<'_, T, fn() -> u64, 4>,
//!     mut act: impl FnMut(&[u8]),
//! ) -> Result<(), Error<T::Error>> {
//!     client.subscribe(&[SubscribeFilter::new("devices/sensor-1/cmd", QoS::AtLeastOnce)])?;
//!     loop {
//!         // Never blocks on an idle link; sends PINGREQ when the keep-alive is due.
//!         client.poll(|e| {
//!             if let Event::Message(m) = e {
//!                 act(m.payload); // acknowledged once this returns
//!             }
//!         })?;
//!     }
//! }
//! ```
//!
//! # Buffering while offline
//!
//! ```
//! use embedded_io::{Read, ReadReady, Write};
//! use outpost_client::blocking::Client;
//! use outpost_client::{Error, QoS};
//!
//! fn after_a_drop<T: Read + Write + ReadReady>(
//!     client: &mut Client<'_, T, fn() -> u64, 4>,
//!     new_link: T,
//!     reading: &[u8],
//! ) -> Result<(), Error<T::Error>> {
//!     // The link is down: QoS 1 messages still go into the outgoing buffer (when it is full,
//!     // the oldest never-sent ones make room and `dropped()` counts them).
//!     client.publish("sensors/1/temp", reading, QoS::AtLeastOnce, false)?;
//!     // Reconnecting resends everything unacknowledged, then what was queued, in order.
//!     client.connect(new_link)?;
//!     assert_eq!(client.dropped(), 0);
//!     Ok(())
//! }
//! ```
#![no_std]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

mod client;
mod config;
mod error;
mod outgoing;
mod session;
#[cfg(feature = "std")]
pub mod transport;

pub use client::{asynch, blocking, Buffers};
pub use config::{Config, LastWill};
pub use error::Error;
pub use outpost_codec::{QoS, SubscribeFilter, Version};
pub use session::{Event, Message, Session};
