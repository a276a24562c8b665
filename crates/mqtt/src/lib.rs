//! Outpost's MQTT engine: the part of the broker that knows MQTT semantics but no sockets.
//!
//! Listeners (`outpost-listeners`) decode packets and hand them here; the engine decides who
//! receives what and what is kept: sessions (clean and persistent, with their expiry), wills,
//! subscriptions and retained messages (indexed by filter and by topic), each connection's incoming
//! and each session's outgoing flow control, and persistence in the store (ADR 0008: a message is
//! acknowledged once every persistent session that took it holds it durably). Other doors reach
//! MQTT through it as a principal (`Broker::publish_as`, ADR 0015), and `$queue/` topics through
//! the queue door.

mod broker;
mod inbox;
mod message;
mod moment;
mod offline;
mod outbox;
mod persistence;
mod queue_door;
mod recipients;
mod retained;
mod signals;
mod small_map;
mod subscriptions;
mod tap;
mod wakes;

pub use broker::{
    Accepted, Broker, BrokerConfig, BrokerStats, BrokerStatus, ConnectionHandle, ConnectionInfo,
    Delivery, Disconnect, DisconnectReason, HeldMessage, OverflowPolicy, Published,
    RetainedSummary, SessionSummary, CONTROL_PREFIX, EVENTS_PREFIX,
};
pub use inbox::{Inbox, Incoming};
pub use message::{Message, MessageProperties};
pub use outbox::{AckError, InFlight, Offer, Outbox, OutboxLimits, Outgoing, Send};
pub use persistence::{Durable, PersistError};
pub use queue_door::{queue_name, QueueDoor, QueueReceipt, QUEUE_PREFIX};
pub use recipients::{
    retained_matching, Recipient, Retained, Router, Subscribed, Subscription, Target,
};
pub use retained::RetainedTree;
pub use signals::{set_unparker, Close, Signals};
pub use subscriptions::SubscriptionTree;
pub use tap::{all_of, PublishTap, TapChain, TapWait};
pub use wakes::Wakes;
