//! Outpost's MQTT engine: the part of the broker that knows MQTT semantics but no sockets.
//!
//! Listeners decode packets and hand them here; the engine decides who receives what. Work in progress:
//! this crate currently holds the two indexes the router is built on — subscriptions by filter and
//! retained messages by topic — and a connection's incoming and a session's outgoing flow control.

mod inbox;
mod outbox;
mod retained;
mod subscriptions;

pub use inbox::{Inbox, Incoming};
pub use outbox::{AckError, Delivery, InFlight, Offer, Outbox, OutboxLimits, Send};
pub use retained::RetainedTree;
pub use subscriptions::SubscriptionTree;
