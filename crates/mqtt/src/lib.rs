//! Outpost's MQTT engine: the part of the broker that knows MQTT semantics but no sockets.
//!
//! Listeners decode packets and hand them here; the engine decides who receives what. Work in progress:
//! this crate currently holds the subscription tree the router is built on.

mod subscriptions;

pub use subscriptions::SubscriptionTree;
