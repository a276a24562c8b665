//! The broker's configuration: one struct, twelve-factor style (ADR 0016). Defaults, then a TOML
//! file (`--config` / `OUTPOST_CONFIG`), then `OUTPOST_*` environment variables, then command-line
//! flags; each layer overrides the one before. Settings with a fixed set of values are enums,
//! parsed once when the configuration is read.

mod choices;
mod env;
mod error;
mod sections;
#[cfg(test)]
mod tests;
mod tls;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use choices::{LogFormat, QueueOverflow, SyncSetting};
pub use error::ConfigError;
pub use sections::{
    AuthSection, HttpConfig, MqttConfig, StoreSection, TopicsSection, WebSocketConfig,
};
pub use tls::{TlsListener, TlsSection};

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
    pub log_format: LogFormat,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./outpost-data"),
            log: "info".into(),
            log_format: LogFormat::Text,
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
        env::check_retired(env)?;
        env::apply_env(&mut table, &defaults, "OUTPOST", "", env)?;
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: source,
                message: e.to_string(),
            })
    }

    /// The store configuration this asks for.
    pub fn store_config(&self) -> Result<outpost_store::StoreConfig, ConfigError> {
        if self.store.segment_size < 1024 * 1024 {
            return Err(ConfigError::Invalid {
                key: "store.segment_size",
                message: "must be at least 1 MiB".into(),
            });
        }
        Ok(outpost_store::StoreConfig {
            segment_size: self.store.segment_size,
            sync: self.store.sync.policy(),
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
