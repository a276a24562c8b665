//! The broker's configuration: one struct, twelve-factor style. Defaults, then a TOML file
//! (`--config` / `OUTPOST_CONFIG`), then `OUTPOST_*` environment variables, then command-line flags;
//! each layer overrides the one before.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything the broker can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Folder of the embedded store.
    pub data_dir: PathBuf,
    /// Log filter (`tracing` syntax, e.g. `info` or `outpost=debug,info`).
    pub log: String,
    /// Log lines as `text` (human-readable) or `json` (one JSON object per line, for log
    /// collectors).
    pub log_format: String,
    /// MQTT over TCP.
    pub mqtt: MqttConfig,
    /// MQTT over WebSocket.
    pub websocket: WebSocketConfig,
    /// The HTTP port: SQS and SNS APIs, HTTP publish, `/metrics`, `/health`.
    pub http: HttpConfig,
    /// The message store.
    pub store: StoreSection,
    /// SNS-style topics.
    pub topics: TopicsSection,
    /// Authentication and authorization.
    pub auth: AuthSection,
    /// TLS listeners.
    pub tls: TlsSection,
    /// Bridges to upstream brokers and SQS/SNS (`[[bridges]]`, any number).
    pub bridges: Vec<outpost_bridge::BridgeConfig>,
}

/// TLS listeners: MQTT over TLS, WebSocket over TLS and HTTPS, each beside its plain twin. They
/// run once `cert_file` and `key_file` are set; an empty listen address turns one off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain (leaf first). Empty: no TLS listeners.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
    /// PEM CA certificates client certificates must chain to.
    pub client_ca_file: String,
    /// MQTT over TLS.
    pub mqtt_listen: String,
    /// MQTT over WebSocket over TLS (same path as the plain WebSocket listener).
    pub ws_listen: String,
    /// HTTPS: the same APIs as the HTTP port.
    pub https_listen: String,
    /// Client certificates on the MQTT listener: `none`, `optional` or `required`.
    pub mqtt_client_certs: String,
    /// Client certificates on the WebSocket listener.
    pub ws_client_certs: String,
    /// Client certificates on the HTTPS listener (verified only; HTTP callers are identified
    /// by their SigV4 signature).
    pub https_client_certs: String,
    /// Which certificate name is an MQTT client's identity: `cn` or `san`.
    pub identity_from: String,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            cert_file: String::new(),
            key_file: String::new(),
            client_ca_file: String::new(),
            mqtt_listen: "0.0.0.0:8883".into(),
            ws_listen: "0.0.0.0:8084".into(),
            https_listen: "0.0.0.0:9325".into(),
            mqtt_client_certs: "none".into(),
            ws_client_certs: "none".into(),
            https_client_certs: "none".into(),
            identity_from: "cn".into(),
        }
    }
}

/// One TLS listener's settings, checked.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Its certificate files and client-certificate mode.
    pub files: outpost_net::TlsFiles,
}

impl TlsSection {
    /// The TLS listeners to run (MQTT, WebSocket, HTTPS), each `None` when off.
    #[allow(clippy::type_complexity)]
    pub fn listeners(
        &self,
    ) -> Result<
        (
            Option<TlsListener>,
            Option<TlsListener>,
            Option<TlsListener>,
        ),
        ConfigError,
    > {
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            return Err(ConfigError::Invalid {
                key: "tls.cert_file",
                message: "tls.cert_file and tls.key_file go together".into(),
            });
        }
        let identity_from = match self.identity_from.as_str() {
            "cn" => outpost_net::IdentityFrom::CommonName,
            "san" => outpost_net::IdentityFrom::SubjectAltName,
            other => {
                return Err(ConfigError::Invalid {
                    key: "tls.identity_from",
                    message: format!("{other:?}: expected cn or san"),
                })
            }
        };
        let one = |key: &'static str,
                   listen: &str,
                   mode_key: &'static str,
                   mode: &str|
         -> Result<Option<TlsListener>, ConfigError> {
            let client_certs = match mode {
                "none" => outpost_net::ClientCerts::None,
                "optional" => outpost_net::ClientCerts::Optional,
                "required" => outpost_net::ClientCerts::Required,
                other => {
                    return Err(ConfigError::Invalid {
                        key: mode_key,
                        message: format!("{other:?}: expected none, optional or required"),
                    })
                }
            };
            if client_certs != outpost_net::ClientCerts::None && self.client_ca_file.is_empty() {
                return Err(ConfigError::Invalid {
                    key: mode_key,
                    message: "client certificates need tls.client_ca_file".into(),
                });
            }
            if self.cert_file.is_empty() || listen.is_empty() {
                return Ok(None);
            }
            let listen = listen.parse().map_err(|_| ConfigError::Invalid {
                key,
                message: format!("{listen:?} is not an address such as 0.0.0.0:8883"),
            })?;
            Ok(Some(TlsListener {
                listen,
                files: outpost_net::TlsFiles {
                    cert: PathBuf::from(&self.cert_file),
                    key: PathBuf::from(&self.key_file),
                    client_ca: (!self.client_ca_file.is_empty())
                        .then(|| PathBuf::from(&self.client_ca_file)),
                    client_certs,
                    identity_from,
                },
            }))
        };
        Ok((
            one(
                "tls.mqtt_listen",
                &self.mqtt_listen,
                "tls.mqtt_client_certs",
                &self.mqtt_client_certs,
            )?,
            one(
                "tls.ws_listen",
                &self.ws_listen,
                "tls.ws_client_certs",
                &self.ws_client_certs,
            )?,
            one(
                "tls.https_listen",
                &self.https_listen,
                "tls.https_client_certs",
                &self.https_client_certs,
            )?,
        ))
    }
}

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

/// What a full session queue does to a QoS 1/2 message (see ADR 0008).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueOverflow {
    /// Refused to its publisher when no matching session took it.
    #[default]
    Refuse,
    /// Acknowledged and dropped for the full session (counted).
    Drop,
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
    /// Bytes one session may hold, queued and in flight together.
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
    pub sync: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./outpost-data"),
            log: "info".into(),
            log_format: "text".into(),
            mqtt: MqttConfig::default(),
            websocket: WebSocketConfig::default(),
            http: HttpConfig::default(),
            store: StoreSection::default(),
            topics: TopicsSection::default(),
            auth: AuthSection::default(),
            tls: TlsSection::default(),
            bridges: Vec::new(),
        }
    }
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
            sync: "always".into(),
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this struct (unknown keys included).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (line, column, key).
        message: String,
    },
    /// An environment variable's value does not fit its key.
    #[error("invalid {var} (setting {key}): {message}")]
    Env {
        /// The variable.
        var: String,
        /// The key it sets.
        key: String,
        /// Why.
        message: String,
    },
    /// A setting has a value that does not make sense.
    #[error("invalid setting {key}: {message}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// Why.
        message: String,
    },
}

impl Config {
    /// Defaults, then the TOML file (if any), then every `OUTPOST_<SECTION>_<KEY>` variable in
    /// `env` that names a key (`OUTPOST_MQTT_MAX_INFLIGHT` for `mqtt.max_inflight`,
    /// `OUTPOST_DATA_DIR` for `data_dir`). A variable whose value does not fit its key's type is
    /// an error naming both.
    pub fn load(path: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let (mut table, source) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: p.to_path_buf(),
                    message: e.to_string(),
                })?;
                (table, p.to_path_buf())
            }
            None => (toml::Table::new(), PathBuf::from("the environment")),
        };
        let defaults =
            toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Parse {
                path: PathBuf::from("the defaults"),
                message: e.to_string(),
            })?;
        apply_env(&mut table, &defaults, "OUTPOST", "", env)?;
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: source,
                message: e.to_string(),
            })
    }

    /// The store configuration this asks for.
    pub fn store_config(&self) -> Result<outpost_store::StoreConfig, ConfigError> {
        let sync = parse_sync(&self.store.sync)?;
        if self.store.segment_size < 1024 * 1024 {
            return Err(ConfigError::Invalid {
                key: "store.segment_size",
                message: "must be at least 1 MiB".into(),
            });
        }
        Ok(outpost_store::StoreConfig {
            segment_size: self.store.segment_size,
            sync,
            ..outpost_store::StoreConfig::default()
        })
    }

    /// Checks the limits that have no sensible zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive: [(&'static str, u64); 21] = [
            (
                "mqtt.flow_control_queue",
                self.mqtt.flow_control_queue as u64,
            ),
            ("mqtt.stall_timeout", self.mqtt.stall_timeout),
            ("mqtt.max_topic_levels", self.mqtt.max_topic_levels as u64),
            ("mqtt.max_inflight", u64::from(self.mqtt.max_inflight)),
            ("mqtt.max_connections", self.mqtt.max_connections as u64),
            ("mqtt.connect_timeout", self.mqtt.connect_timeout),
            ("http.max_connections", self.http.max_connections as u64),
            ("http.header_timeout", self.http.header_timeout),
            ("http.body_timeout", self.http.body_timeout),
            (
                "http.max_concurrent_parsing",
                self.http.max_concurrent_parsing as u64,
            ),
            ("http.max_long_polls", self.http.max_long_polls as u64),
            ("http.max_body_bytes", self.http.max_body_bytes as u64),
            ("http.max_queues", self.http.max_queues as u64),
            ("http.max_topics", self.http.max_topics as u64),
            ("http.max_rules_per_bus", self.http.max_rules_per_bus as u64),
            (
                "topics.max_pending_deliveries",
                self.topics.max_pending_deliveries as u64,
            ),
            ("topics.max_pending_bytes", self.topics.max_pending_bytes),
            (
                "topics.max_pending_deliveries_per_host",
                self.topics.max_pending_deliveries_per_host as u64,
            ),
            (
                "topics.max_pending_bytes_per_host",
                self.topics.max_pending_bytes_per_host,
            ),
            (
                "topics.max_filter_policy_bytes_per_principal",
                self.topics.max_filter_policy_bytes_per_principal as u64,
            ),
            (
                "http.max_archives_per_bus",
                self.http.max_archives_per_bus as u64,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        if !(2048..=8192).contains(&self.topics.signing_key_bits) {
            return Err(ConfigError::Invalid {
                key: "topics.signing_key_bits",
                message: "must be between 2048 and 8192 (ring refuses smaller RSA keys)".into(),
            });
        }
        self.tls.listeners()?;
        self.topics.endpoint_networks()?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid {
                key: "log_format",
                message: format!("{:?}: expected text or json", self.log_format),
            });
        }
        let url = &self.topics.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                key: "topics.public_url",
                message: "must start with http:// or https://".into(),
            });
        }
        Ok(())
    }

    /// The effective configuration as TOML (for `--print-config`), bridge secrets hidden.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        for b in &mut shown.bridges {
            for secret in [
                &mut b.password,
                &mut b.secret_access_key,
                &mut b.session_token,
            ] {
                if !secret.is_empty() {
                    *secret = "(hidden)".into();
                }
            }
        }
        toml::to_string(&shown).unwrap_or_default()
    }
}

/// Sets every key of `defaults` (recursively) that has an environment variable in `env`.
fn apply_env(
    target: &mut toml::Table,
    defaults: &toml::Table,
    prefix: &str,
    path: &str,
    env: &[(String, String)],
) -> Result<(), ConfigError> {
    for (key, default) in defaults {
        let name = format!("{prefix}_{}", key.to_ascii_uppercase());
        let dotted = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if let toml::Value::Table(sub) = default {
            let entry = target
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                apply_env(t, sub, &name, &dotted, env)?;
            }
            continue;
        }
        let Some((_, raw)) = env.iter().find(|(k, _)| *k == name) else {
            continue;
        };
        let invalid = |expected: &str| ConfigError::Env {
            var: name.clone(),
            key: dotted.clone(),
            message: format!("{raw:?} is not {expected}"),
        };
        let value = match default {
            toml::Value::String(_) => toml::Value::String(raw.clone()),
            toml::Value::Integer(_) => {
                toml::Value::Integer(raw.trim().parse().map_err(|_| invalid("an integer"))?)
            }
            toml::Value::Float(_) => {
                toml::Value::Float(raw.trim().parse().map_err(|_| invalid("a number"))?)
            }
            toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
                "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
                _ => return Err(invalid("true or false")),
            },
            toml::Value::Array(_) => {
                let t: toml::Table = toml::from_str(&format!("v = {raw}"))
                    .map_err(|_| invalid("a TOML array such as [\"a\", \"b\"]"))?;
                t.get("v").cloned().ok_or_else(|| invalid("an array"))?
            }
            _ => continue,
        };
        target.insert(key.clone(), value);
    }
    Ok(())
}

/// A rate of `per_second` with `burst` (0: one second's worth); unlimited when `per_second` is 0.
pub fn rate(per_second: u64, burst: u64) -> outpost_net::Rate {
    if per_second == 0 {
        return outpost_net::Rate::UNLIMITED;
    }
    let burst = if burst == 0 { per_second } else { burst };
    outpost_net::Rate {
        per_second: per_second as f64,
        burst: burst as f64,
    }
}

fn parse_sync(s: &str) -> Result<outpost_store::SyncPolicy, ConfigError> {
    use outpost_store::SyncPolicy;
    let invalid = || ConfigError::Invalid {
        key: "store.sync",
        message: format!("{s:?}: expected always, never or interval:<milliseconds>"),
    };
    match s {
        "always" => Ok(SyncPolicy::Always),
        "never" => Ok(SyncPolicy::Never),
        other => {
            let ms = other.strip_prefix("interval:").ok_or_else(invalid)?;
            let ms: u64 = ms.trim_end_matches("ms").parse().map_err(|_| invalid())?;
            if ms == 0 {
                return Err(invalid());
            }
            Ok(SyncPolicy::Interval(Duration::from_millis(ms)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridges_are_read_and_their_secrets_not_printed() {
        let c: Config = toml::from_str(
            "[[bridges]]\nname = \"cloud\"\naddress = \"h:8883\"\npassword = \"p4ss\"\n\
             [[bridges.out]]\nfilter = \"a/#\"\n\
             [[bridges]]\nname = \"aws\"\nkind = \"aws\"\nsecret_access_key = \"s3cret\"\n",
        )
        .unwrap();
        assert_eq!(c.bridges.len(), 2);
        assert_eq!(c.bridges[0].out[0].filter, "a/#");
        assert_eq!(c.bridges[0].keep_alive, 30, "defaults fill the rest");
        let printed = c.to_toml();
        assert!(
            !printed.contains("p4ss") && !printed.contains("s3cret"),
            "{printed}"
        );
        assert!(printed.contains("(hidden)"));
        assert!(toml::from_str::<Config>("[[bridges]]\nname = \"x\"\nbogus = 1\n").is_err());
    }

    #[test]
    fn file_overrides_defaults_and_keeps_the_rest() {
        let c: Config = toml::from_str(
            "data_dir = \"/var/lib/outpost\"\n[mqtt]\nlisten = \"127.0.0.1:2883\"\n",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/outpost"));
        assert_eq!(c.mqtt.listen, "127.0.0.1:2883".parse().unwrap());
        assert_eq!(c.mqtt.max_packet_size, 16 * 1024 * 1024);
        assert_eq!(c.websocket.path, "/mqtt");
        assert_eq!(c.http.listen.port(), 9324);
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_key_has_an_environment_variable() {
        let c = Config::load(
            None,
            &env(&[
                ("OUTPOST_MQTT_MAX_INFLIGHT", "32"),
                ("OUTPOST_AUTH_ALLOW_ANONYMOUS", "true"),
                ("OUTPOST_HTTP_REGION", "eu-west-1"),
                ("OUTPOST_DATA_DIR", "/tmp/x"),
                ("OUTPOST_MQTT_V311_SESSION_EXPIRY", "60"),
                ("OUTPOST_UNRELATED", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.mqtt.max_inflight, 32);
        assert!(c.auth.allow_anonymous);
        assert_eq!(c.http.region, "eu-west-1");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.mqtt.v311_session_expiry, Some(60));
        let e = Config::load(None, &env(&[("OUTPOST_MQTT_MAX_INFLIGHT", "many")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("OUTPOST_MQTT_MAX_INFLIGHT") && e.contains("mqtt.max_inflight"),
            "{e}"
        );
        let e = Config::load(None, &env(&[("OUTPOST_MQTT_MAX_INFLIGHT", "70000")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_inflight"), "{e}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("outpost-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[mqtt]\nmax_inflight = 10\nmax_subscriptions = 7\n").unwrap();
        let c = Config::load(Some(&file), &env(&[("OUTPOST_MQTT_MAX_INFLIGHT", "20")])).unwrap();
        assert_eq!((c.mqtt.max_inflight, c.mqtt.max_subscriptions), (20, 7));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<Config>("[mqtt]\nlisten_port = 1\n").is_err());
    }

    #[test]
    fn sync_policies() {
        use outpost_store::SyncPolicy;
        assert_eq!(parse_sync("always").unwrap(), SyncPolicy::Always);
        assert_eq!(parse_sync("never").unwrap(), SyncPolicy::Never);
        assert_eq!(
            parse_sync("interval:50").unwrap(),
            SyncPolicy::Interval(Duration::from_millis(50))
        );
        assert_eq!(
            parse_sync("interval:50ms").unwrap(),
            SyncPolicy::Interval(Duration::from_millis(50))
        );
        assert!(parse_sync("interval:0").is_err());
        assert!(parse_sync("sometimes").is_err());
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let example: Config = toml::from_str(include_str!("../../outpost.example.toml")).unwrap();
        assert_eq!(example, Config::default());
        assert!(example.validate().is_ok());
    }

    #[test]
    fn zero_limits_are_refused_by_name() {
        let c: Config = toml::from_str("[mqtt]\nmax_topic_levels = 0\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("mqtt.max_topic_levels"), "{e}");
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = Config::default();
        assert_eq!(toml::from_str::<Config>(&c.to_toml()).unwrap(), c);
    }
}
