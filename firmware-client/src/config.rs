//! What a device says when it connects.

use outpost_codec::{QoS, Version};

/// The last will: published by the broker if the device drops off without a DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastWill<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
}

/// Connection settings. Borrowed strings, so a configuration can live in flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config<'a> {
    /// MQTT 3.1.1 or 5.
    pub version: Version,
    /// Client identifier (must be non-empty for a persistent session).
    pub client_id: &'a str,
    /// Keep-alive in seconds (0: off). PINGREQ goes out when nothing was sent for this long.
    pub keep_alive: u16,
    /// Start a clean session (true) or resume the stored one (false).
    pub clean_session: bool,
    /// MQTT 5 session expiry in seconds for a persistent session (`u32::MAX`: never).
    pub session_expiry: u32,
    /// User name.
    pub username: Option<&'a str>,
    /// Password.
    pub password: Option<&'a [u8]>,
    /// Last will.
    pub will: Option<LastWill<'a>>,
    /// How long `connect` waits for CONNACK, in milliseconds.
    pub connect_timeout_ms: u64,
}

impl<'a> Config<'a> {
    /// MQTT 3.1.1, a persistent session, 60 s keep-alive.
    pub const fn new(client_id: &'a str) -> Self {
        Config {
            version: Version::V311,
            client_id,
            keep_alive: 60,
            clean_session: false,
            session_expiry: u32::MAX,
            username: None,
            password: None,
            will: None,
            connect_timeout_ms: 10_000,
        }
    }
}
