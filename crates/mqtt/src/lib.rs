//! Outpost's MQTT engine: the part of the broker that knows MQTT semantics but no sockets.
//!
//! Listeners decode packets and hand them here; the engine decides who receives what. Work in progress:
//! this crate currently holds the router (who gets a message, with which QoS, flags and subscription
//! identifiers) and its two indexes — subscriptions by filter, retained messages by topic — and a
//! connection's incoming and a session's outgoing flow control. Sessions, wills and the listeners come
//! next.

mod broker;
mod inbox;
mod message;
mod outbox;
mod persistence;
mod queue_door;
mod retained;
mod router;
mod subscriptions;
mod tap;
mod wakes;

pub use broker::{
    Accepted, Broker, BrokerConfig, BrokerStats, BrokerStatus, ConnectionHandle, ConnectionInfo,
    Delivery, Disconnect, OverflowPolicy, Published, RetainedSummary,
};
pub use inbox::{Inbox, Incoming};
pub use message::{Message, MessageProperties};
pub use outbox::{AckError, InFlight, Offer, Outbox, OutboxLimits, Outgoing, Send};
pub use persistence::{Durable, PersistError};
pub use queue_door::{queue_name, QueueDoor, QueueReceipt, QUEUE_PREFIX};
pub use retained::RetainedTree;
pub use router::{retained_matching, Retained, Router, Subscribed, Subscription, Target};
pub use subscriptions::SubscriptionTree;
pub use tap::{all_of, PublishTap, TapChain, TapWait};
pub use wakes::Wakes;
