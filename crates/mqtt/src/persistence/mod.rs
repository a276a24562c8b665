//! What survives a restart: retained messages, persistent sessions (their subscriptions and expiry) and
//! the QoS 1/2 messages queued or in flight for them.
//!
//! - Messages are records in the store, encoded as MQTT 5 PUBLISH packets (our own codec, so nothing
//!   new to parse): retained messages in one stream; a message for persistent sessions once, in the
//!   messages stream, with its QoS 1 deliveries as a set of members in its own record (ADR 0023),
//!   and each session's stream holding a cursor (which of its set deliveries are complete) and a
//!   reference per QoS 2 delivery. A message whose deliveries are all complete is marked dead.
//! - Session definitions live in the metadata store.
//! - The engine never waits for disk under its lock: it hands jobs, in order, to one persistence task;
//!   a PUBACK waits for the jobs of its message (`Durable`), so an acknowledged message survives
//!   `kill -9`.

mod batch;
mod durable;
mod jobs;
mod keys;
mod records;
mod retained;
mod stored;
mod task;
#[cfg(test)]
mod tests;

pub use durable::{Durable, PersistError};
pub(crate) use jobs::{Job, Persister, RefSpec, SubChange};
pub(crate) use keys::*;
pub(crate) use records::*;
pub(crate) use retained::{run_retained, stored_retained};
pub(crate) use stored::Stored;
pub(crate) use task::{run, spawn_thread};
