//! The management plane reached over MQTT. mosquitto answered "manage users while the broker
//! runs" with its dynamic-security plugin and `mosquitto_ctrl`; Outpost speaks the same topic and
//! JSON so those tools and scripts work unchanged ([`door`]), and keeps the model in its own
//! store so a restart (or a power cut after the answer) loses no change ([`saved`]). The model and
//! its decisions live in `outpost-auth` (`dynamic`), beside the password and ACL files.

pub mod door;
pub mod saved;

pub use door::DynsecDoor;
