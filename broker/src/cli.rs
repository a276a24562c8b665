//! The command line: flags and subcommands, and how they overlay the configuration (flags win
//! over the environment, which wins over the file; see ADR 0016).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::config::{self, Config};
use crate::passwd;

/// One persistent message broker for the edge.
///
/// Every setting can also be given in the TOML file or as an `OUTPOST_*` environment variable
/// (docs/configuration.md lists them); a flag wins over both.
#[derive(Debug, Parser)]
#[command(name = "outpost", version, about)]
pub(crate) struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "OUTPOST_CONFIG")]
    config: Option<PathBuf>,
    /// Folder for the embedded store.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `outpost=debug,info`.
    #[arg(long)]
    log: Option<String>,
    /// MQTT over TCP listen address.
    #[arg(long)]
    mqtt_listen: Option<SocketAddr>,
    /// MQTT over WebSocket listen address.
    #[arg(long)]
    ws_listen: Option<SocketAddr>,
    /// HTTP (SQS, SNS, publish, metrics) listen address.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Seconds between `$SYS` updates (0: off).
    #[arg(long)]
    sys_interval: Option<u64>,
    /// How receivers reach the HTTP port (URLs in SNS messages), e.g. http://gateway:9324.
    #[arg(long)]
    public_url: Option<String>,
    /// Store sync policy: always, never or interval:<ms>.
    #[arg(long)]
    store_sync: Option<config::SyncSetting>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<config::LogFormat>,
    /// Serve callers without credentials on the configured addresses (not only on loopback).
    #[arg(long)]
    allow_anonymous: bool,
    /// MQTT password file (`outpost passwd`).
    #[arg(long)]
    password_file: Option<String>,
    /// HTTP access keys file (SigV4).
    #[arg(long)]
    access_keys_file: Option<String>,
    /// ACL file.
    #[arg(long)]
    acl_file: Option<String>,
    /// TLS certificate chain (PEM); with --tls-key, turns the TLS listeners on.
    #[arg(long)]
    tls_cert: Option<String>,
    /// TLS private key (PEM).
    #[arg(long)]
    tls_key: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Exit 0 when an `http://host:port/path` answers 200 within 3 s (container health checks,
    /// e.g. `outpost probe http://127.0.0.1:9324/ready`).
    Probe {
        /// The URL (plain HTTP).
        url: String,
    },
    /// Manage the password file of MQTT users (argon2id hashes).
    Passwd {
        #[command(subcommand)]
        action: passwd::Passwd,
    },
}

impl Cli {
    /// Defaults, then the file, then environment and flags (clap already gave flags precedence).
    pub(crate) fn config(&self) -> Result<Config, config::ConfigError> {
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("OUTPOST_"))
            .collect();
        let mut c = Config::load(self.config.as_deref(), &env)?;
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &self.log {
            c.log = v.clone();
        }
        if let Some(v) = self.mqtt_listen {
            c.mqtt.listen = v;
        }
        if let Some(v) = self.ws_listen {
            c.websocket.listen = v;
        }
        if let Some(v) = self.http_listen {
            c.http.listen = v;
        }
        if let Some(v) = self.sys_interval {
            c.mqtt.sys_interval = v;
        }
        if let Some(v) = &self.public_url {
            c.topics.public_url = v.clone();
        }
        if let Some(v) = self.store_sync {
            c.store.sync = v;
        }
        if let Some(v) = self.log_format {
            c.log_format = v;
        }
        if self.allow_anonymous {
            c.auth.allow_anonymous = true;
        }
        for (flag, key) in [
            (&self.password_file, &mut c.auth.password_file),
            (&self.access_keys_file, &mut c.auth.access_keys_file),
            (&self.acl_file, &mut c.auth.acl_file),
            (&self.tls_cert, &mut c.tls.cert_file),
            (&self.tls_key, &mut c.tls.key_file),
        ] {
            if let Some(v) = flag {
                *key = v.clone();
            }
        }
        Ok(c)
    }
}
