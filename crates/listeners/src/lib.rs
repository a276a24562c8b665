//! Network front ends. They turn bytes into decoded packets and back, enforce size and time limits,
//! and leave every decision to the engine (`outpost-mqtt`).

mod connection;
pub mod rates;
mod tcp;
mod websocket;

pub use connection::{serve, ListenerConfig, Peer};
pub use rates::{ClientRates, MqttRates};
pub use tcp::{run_tcp, run_tls};
pub use websocket::run_websocket;
