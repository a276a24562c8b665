//! The MQTT doors: TCP, TLS and WebSocket front ends. They turn bytes into decoded packets and
//! back, and decide what belongs to a door rather than to the broker:
//!
//! - limits of the connection: packet size, the connect timeout, keep-alive, read buffers;
//! - who the client is (login through `outpost-auth`) and what that identity may do: the ACL on
//!   each PUBLISH topic, SUBSCRIBE filter and delivered message, asked here because the door
//!   knows the identity;
//! - the client's rates (connections, messages, bytes; `rates`), and flow control: a publisher
//!   whose subscribers are full is read no further.
//!
//! The engine (`outpost-mqtt`) decides everything about messages and sessions: routing,
//! retained messages, session state and expiry, wills (checked as the client's publish),
//! quotas and durability. A door only waits for the engine's answers and writes them.

mod connection;
pub mod rates;
mod tcp;
mod websocket;
mod websocket_bytes;
mod websocket_upgrade;

pub use connection::{parked_connections, serve, ListenerConfig, Peer};
pub use rates::{ClientRates, MqttRates};
pub use tcp::{run_tcp, run_tls};
pub use websocket::run_websocket;
