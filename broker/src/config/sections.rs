//! The sections of the configuration file, one struct each, with their defaults. Each field's doc
//! is what `docs/configuration.md` says of the setting.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::choices::{QueueOverflow, SyncSetting};
use super::ConfigError;

/// Authentication and authorization: the files are read at start and again on SIGHUP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// Let callers without credentials in on every configured address. When false (the default)
    /// and no credentials are configured, anonymous callers are still served but every listener
    /// binds to loopback only (mosquitto 2's local-only mode); once a password file or access
    /// keys are configured, every caller must authenticate.
    pub allow_anonymous: bool,
    /// MQTT users: `username:argon2id-hash` lines, managed by `outpost passwd`. Empty: none.
    pub password_file: String,
    /// HTTP access key pairs (SigV4, verified) and the identity of each. Empty: none, and
    /// signatures are not checked.
    pub access_keys_file: String,
    /// Allow and deny rules (see docs/security.md). Empty: every identity may do everything.
    pub acl_file: String,
    /// Failed logins (MQTT and HTTP) one address may make in a burst…
    pub login_failure_burst: u32,
    /// …and how many more per minute after it; past that its logins are refused
    /// (MQTT 5 CONNACK 0x9F, HTTP ThrottlingException) until its bucket refills.
    pub login_failures_per_minute: u32,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            allow_anonymous: false,
            password_file: String::new(),
            access_keys_file: String::new(),
            acl_file: String::new(),
            login_failure_burst: 10,
            login_failures_per_minute: 6,
        }
    }
}

/// SNS-style topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsSection {
    /// The HTTP address receivers reach the broker at, for the `SigningCertURL`, `SubscribeURL`
    /// and `UnsubscribeURL` in messages (e.g. `http://gateway.local:9324`). Empty: `http://` and
    /// the HTTP listen address (`localhost` when it listens on every address).
    pub public_url: String,
    /// Size in bits of the RSA key that signs messages, used when the key is first created.
    pub signing_key_bits: usize,
    /// Networks (CIDR blocks, e.g. `["192.168.10.0/24"]`) HTTP/S subscriptions may deliver to
    /// although they are not public. By default loopback, private, link-local and the other
    /// internal addresses are refused (after DNS resolution, on every connection), and the
    /// broker's own listeners always are.
    pub allow_endpoint_networks: Vec<String>,
    /// POSTs per second to one endpoint host (retries included); 0: unpaced.
    pub endpoint_posts_per_second: u64,
    /// Burst of those POSTs (0: one second's worth).
    pub endpoint_posts_burst: u64,
    /// Most HTTP/S and MQTT deliveries one subscription may owe at once (waiting for an answer
    /// or a retry); past it a message goes to the subscription's dead-letter queue, or is
    /// dropped and counted.
    pub max_pending_deliveries: usize,
    /// Most bytes of messages one subscription may owe at once.
    pub max_pending_bytes: u64,
    /// Most HTTP/S deliveries owed to one endpoint host at once, across every subscription
    /// that points there.
    pub max_pending_deliveries_per_host: usize,
    /// Most bytes of messages owed to one endpoint host at once.
    pub max_pending_bytes_per_host: u64,
    /// Most bytes of filter policies one principal's subscriptions hold in all.
    pub max_filter_policy_bytes_per_principal: usize,
}

impl Default for TopicsSection {
    fn default() -> Self {
        TopicsSection {
            public_url: String::new(),
            signing_key_bits: 2048,
            allow_endpoint_networks: Vec::new(),
            endpoint_posts_per_second: 20,
            endpoint_posts_burst: 40,
            max_pending_deliveries: 1000,
            max_pending_bytes: 16 * 1024 * 1024,
            max_pending_deliveries_per_host: 10_000,
            max_pending_bytes_per_host: 128 * 1024 * 1024,
            max_filter_policy_bytes_per_principal: 16 * 1024 * 1024,
        }
    }
}

impl TopicsSection {
    /// The allowed networks, parsed.
    pub fn endpoint_networks(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.allow_endpoint_networks
            .iter()
            .map(|n| {
                n.parse::<ipnet::IpNet>()
                    .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| ConfigError::Invalid {
                        key: "topics.allow_endpoint_networks",
                        message: format!("{n:?} is not a CIDR block such as 192.168.10.0/24"),
                    })
            })
            .collect()
    }
}

/// MQTT over TCP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest packet accepted, in bytes (SQS-sized 256 KiB and 1 MiB payloads must always pass).
    pub max_packet_size: usize,
    /// Seconds between `$SYS/broker/...` updates; 0 turns them off.
    pub sys_interval: u64,
    /// Session expiry in seconds for MQTT 3.1.1 clients connecting with Clean Session 0 (their
    /// protocol has no expiry of its own). Default: 7 days; 4294967295 means never (mosquitto's
    /// default).
    pub v311_session_expiry: Option<u32>,
    /// Messages one session may have queued behind its in-flight window.
    pub max_queued_messages: usize,
    /// Bytes one session may hold, queued and in flight together (at most 4 GiB: a larger
    /// value counts as 4 GiB).
    pub max_queued_bytes: usize,
    /// A QoS 1/2 message a matching session's full queue cannot take: `refuse` (the publisher is
    /// refused when no session took it: 0x97, or no PUBACK for MQTT 3.1.1) or `drop`
    /// (mosquitto's behaviour: acknowledged, dropped for that session). Counted per session either way.
    pub queue_overflow: QueueOverflow,
    /// Subscriptions one session may hold.
    pub max_subscriptions: usize,
    /// Most levels in a topic name or filter (`a/b/c` has three).
    pub max_topic_levels: usize,
    /// Most QoS 1/2 messages in flight to one client: an MQTT 5 client's Receive Maximum is
    /// lowered to this; an MQTT 3.1.1 client (which announces no window) gets this one.
    pub max_inflight: u16,
    /// Most retained messages.
    pub max_retained_messages: usize,
    /// Most bytes of retained messages (topics and payloads).
    pub max_retained_bytes: usize,
    /// Most persistent sessions (connected or not).
    pub max_persistent_sessions: usize,
    /// Most open MQTT connections, TCP and WebSocket together (also bounded by the process's
    /// descriptor limit).
    pub max_connections: usize,
    /// Most open MQTT connections from one IP address (0: no cap).
    pub max_connections_per_address: usize,
    /// Seconds a new connection has to send CONNECT (and a WebSocket to finish its handshake).
    pub connect_timeout: u64,
    /// Flow control: QoS 1/2 messages queued for a connected subscriber at which the publishers
    /// feeding it stop being read until it drains to half.
    pub flow_control_queue: usize,
    /// Seconds a connected subscriber may hold its publishers back without draining before it is
    /// disconnected (its persistent session keeps what was queued).
    pub stall_timeout: u64,
    /// AWS IoT Core's lifecycle events under `$aws/events/` (connected, disconnected with AWS's
    /// reasons, connect_failed, subscribed, unsubscribed), published by the broker to subscribers
    /// the ACL allows, the rules and the bridges.
    pub lifecycle_events: bool,
    /// Most device shadows (classic and named); an update that would create one more is
    /// refused (429).
    pub max_shadows: usize,
    /// Longest keep-alive in seconds a client may ask for; 65535 allows any. MQTT 5 clients that ask
    /// for more (or none) get this one in CONNACK; MQTT 3.1.1 clients are refused.
    pub max_keep_alive: u16,
    /// PUBLISH packets per second one client may send (0: no limit); past it (and its burst)
    /// MQTT 5 QoS 1/2 get 0x97, others are disconnected (MQTT 5: 0x96).
    pub max_messages_per_second: u32,
    /// Messages a client may send at once above its rate (0: one second's worth).
    pub message_burst: u32,
    /// Payload bytes per second one client may send (0: no limit).
    pub max_bytes_per_second: u64,
    /// Bytes a client may send at once above its rate (0: one second's worth).
    pub bytes_burst: u64,
    /// PUBLISH packets per second, all clients together (0: no limit).
    pub max_total_messages_per_second: u32,
    /// New connections per second, all addresses together (0: no limit); past it CONNACK 0x9F.
    pub max_connections_per_second: u32,
    /// New connections per second from one address (0: no limit).
    pub max_connections_per_second_per_address: u32,
}

/// MQTT over WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Whether the listener runs.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// URL path of the endpoint.
    pub path: String,
}

/// The HTTP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Region in queue URLs and ARNs.
    pub region: String,
    /// Account id in queue URLs and ARNs.
    pub account: String,
    /// Most open HTTP connections (also bounded by the process's descriptor limit).
    pub max_connections: usize,
    /// Most open HTTP connections from one IP address (0: no cap).
    pub max_connections_per_address: usize,
    /// Seconds a request's headers may take to arrive; also how long an idle keep-alive
    /// connection stays open.
    pub header_timeout: u64,
    /// Seconds a request's body may take to arrive.
    pub body_timeout: u64,
    /// Requests whose bodies are read and parsed at the same time; more wait their turn.
    pub max_concurrent_parsing: usize,
    /// Largest request body in bytes (413 past it).
    pub max_body_bytes: usize,
    /// Requests per second from one address (0: no limit); past it (and its burst) the API's
    /// throttling error (SQS `RequestThrottled`, SNS `Throttled`, `ThrottlingException`).
    pub max_requests_per_second_per_address: u32,
    /// Requests per second, all callers together (0: no limit).
    pub max_requests_per_second: u32,
    /// Requests a caller may make at once above its rate (0: one second's worth).
    pub request_burst: u32,
    /// `ReceiveMessage` calls (long polls) running at once; more are refused as throttled.
    pub max_long_polls: usize,
    /// Most queues.
    pub max_queues: usize,
    /// Most SNS topics.
    pub max_topics: usize,
    /// Most EventBridge rules on one bus.
    pub max_rules_per_bus: usize,
    /// Most EventBridge archives on one bus (each stores its own copy of every event it keeps).
    pub max_archives_per_bus: usize,
}

/// The message store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Segment file size in bytes.
    pub segment_size: u64,
    /// `always` (fsync before acknowledging; the default), `interval:<ms>` or `never`.
    pub sync: SyncSetting,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            max_packet_size: 16 * 1024 * 1024,
            sys_interval: 10,
            v311_session_expiry: Some(7 * 24 * 3600),
            max_queued_messages: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            queue_overflow: QueueOverflow::Refuse,
            max_subscriptions: 10_000,
            max_topic_levels: 128,
            max_inflight: 256,
            max_retained_messages: 100_000,
            max_retained_bytes: 64 * 1024 * 1024,
            max_persistent_sessions: 100_000,
            max_connections: 100_000,
            max_connections_per_address: 0,
            connect_timeout: 10,
            flow_control_queue: 1_000,
            stall_timeout: 30,
            lifecycle_events: true,
            max_shadows: 100_000,
            max_keep_alive: 65_535,
            max_messages_per_second: 0,
            message_burst: 0,
            max_bytes_per_second: 0,
            bytes_burst: 0,
            max_total_messages_per_second: 0,
            max_connections_per_second: 0,
            max_connections_per_second_per_address: 0,
        }
    }
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 8083)),
            path: "/mqtt".into(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9324)),
            region: "us-east-1".into(),
            account: "000000000000".into(),
            max_connections: 4_096,
            max_connections_per_address: 0,
            header_timeout: 10,
            body_timeout: 30,
            max_concurrent_parsing: 64,
            max_body_bytes: 4 * 1024 * 1024,
            max_requests_per_second_per_address: 0,
            max_requests_per_second: 0,
            request_burst: 0,
            max_long_polls: 4_096,
            max_queues: 100_000,
            max_topics: 100_000,
            max_rules_per_bus: 10_000,
            max_archives_per_bus: 10,
        }
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            segment_size: outpost_store::StoreConfig::default().segment_size,
            sync: SyncSetting::Always,
        }
    }
}
