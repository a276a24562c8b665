//! AWS IoT's Device Shadow service at the edge: a JSON document per thing (and any number of
//! named shadows) holding the state applications want (`desired`) and the state the device
//! reports (`reported`), kept durable in the store, reached over MQTT's reserved topics
//! (`$aws/things/{thing}/shadow/…`, `mqtt_door`) and the iot-data API (`GetThingShadow`,
//! `UpdateThingShadow`, `DeleteThingShadow`, `ListNamedShadowsForThing`, served by
//! `outpost-http`). Devices written for IoT Core and AWS's SDKs work unchanged while the
//! gateway's uplink is down.

mod document;
mod error;
mod mqtt_door;
mod names;
mod service;

pub use document::{
    parse_update, update_from, Document, Update, MAX_CLIENT_TOKEN, MAX_DEPTH, MAX_STATE_BYTES,
};
pub use error::ShadowError;
pub use mqtt_door::ShadowTopics;
pub use names::{parse as parse_topic, valid_shadow, valid_thing, Op, Topic};
pub use service::{now_s, Shadows, ShadowsConfig};
