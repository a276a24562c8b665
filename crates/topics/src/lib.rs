//! Outpost's topics: SNS semantics on the store and the queue engine, with no sockets in it.
//!
//! The engine ([`Topics`]) takes typed requests and returns typed results or [`TopicError`]s
//! that name the SNS error each one is; the HTTP front end only translates the query protocol.
//! A publish fans out to queue subscriptions (copies written into the queues), HTTP/S endpoints
//! and MQTT topics (through the [`HttpSender`] and [`MqttPublisher`] the binary plugs in), each
//! subscription filtered by its policy (`outpost-patterns`). It answers once every copy it owes
//! is durable.

mod delivery_policy;
mod endpoints;
mod engine;
mod error;
pub mod message;
mod signing;
mod subscription;
mod topic;

pub use delivery_policy::{Backoff, DeliveryPolicy, RetryPolicy, TopicDeliveryPolicy};
pub use endpoints::{BoxFuture, HttpRequest, HttpSender, MqttMessage, MqttPublisher, MqttRefusal};
pub use engine::{
    now_ms, BatchFailure, DeliveryStats, PublishEntry, PublishRequest, PublishResult,
    SubscriptionSummary, TopicSummary, Topics, TopicsConfig,
};
pub use error::{Result, TopicError};
pub use signing::{SignatureVersion, Signer};
pub use subscription::{Protocol, Subscription};
pub use topic::Topic;
