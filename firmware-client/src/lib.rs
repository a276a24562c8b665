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
//! RAM: the three buffers plus about 40 bytes per outgoing slot (`N`) and the client struct
//! (≈ 150 bytes). A telemetry device with 512-byte messages works with `rx = tx = 600`,
//! `outgoing = 2048`, `N = 8`: under 4 KiB in total.
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
