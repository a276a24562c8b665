//! Outpost's queues: SQS semantics on the persistent store, with no HTTP in it.
//!
//! The engine ([`Queues`]) takes typed requests and returns typed results or [`QueueError`]s that
//! name the SQS error each one is; the HTTP front end only translates wire formats. Each queue owns
//! two streams in the store: message records (written once at send, read back zero-copy at
//! receive) and delivery records (receive count, visibility deadline and receipt of the latest
//! delivery). Queue definitions live in the metadata store. Recovery replays both streams, so sent
//! messages, in-flight deadlines, receive counts and deletes all survive `kill -9`.

mod attributes;
mod delivery;
mod engine;
mod error;
pub mod message;
mod movetask;
#[cfg(feature = "mqtt")]
mod mqtt_door;
mod queue;
mod receipt;
mod requests;
mod state;

pub use attributes::{DEFAULT_MESSAGE_SIZE, MAX_MESSAGE_SIZE};
pub use engine::{now_ms, Peeked, QueueStats, Queues, QueuesConfig};
pub use error::{QueueError, Result};
#[cfg(feature = "mqtt")]
pub use mqtt_door::{MqttQueues, DEDUP_PROPERTY, GROUP_PROPERTY};
pub use requests::{MoveTaskInfo, ReceiveRequest, ReceivedMessage, SendRequest, SendResult};
