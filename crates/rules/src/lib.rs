//! The rules engine: what joins Outpost's three worlds. A message that enters by one door (an
//! MQTT PUBLISH, an HTTP publish, an EventBridge `PutEvents`) becomes an *event*; *rules* on an
//! *event bus* match events with EventBridge's pattern grammar (the matcher shared with SNS
//! filter policies, `outpost-patterns`) and hand them to *targets*: SQS queues, SNS topics and
//! MQTT topics of this broker.
//!
//! The API is EventBridge's, because users already have its clients (boto3 `events`, the aws
//! CLI) and its rule language. The engine has no sockets and no HTTP types: `outpost-http`
//! speaks the wire protocol, the binary plugs in the MQTT engine.
//!
//! Durability: an event is accepted (PUBACK, `PutEvents` 200) only when every matched target
//! holds its copy, or when a pending record a crash won't lose says which targets still owe it
//! (see `docs/adr/0011-routing.md`).

mod engine;
mod error;
mod event;
mod index;
mod json_path;
mod rule;
mod schedule;
mod target;

pub use engine::{
    ArchiveSummary, BusSummary, Clock, Events, EventsConfig, PutEntry, PutResult, ReplaySummary,
    RoutingStats, DEFAULT_BUS,
};
pub use error::{EventsError, Result};
pub use event::{event_time, mqtt_event, MqttEventSource};
pub use outpost_topics::{BoxFuture, MqttMessage, MqttPublisher};
pub use rule::RuleSummary;
