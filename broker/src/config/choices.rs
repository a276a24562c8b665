//! Settings with a fixed set of values, as enums: parsed once when the configuration is read
//! (file, environment or flag), so an unknown value is refused there with the values it could
//! have had, and nothing later compares strings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
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

/// When the store syncs to disk: `always` (before every acknowledgement), `never`, or
/// `interval:<ms>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SyncSetting {
    /// fsync before acknowledging (the default).
    #[default]
    Always,
    /// Leave it to the operating system.
    Never,
    /// At most this many milliseconds apart.
    Interval(u64),
}

impl SyncSetting {
    /// The store's policy.
    pub fn policy(self) -> outpost_store::SyncPolicy {
        use outpost_store::SyncPolicy;
        match self {
            SyncSetting::Always => SyncPolicy::Always,
            SyncSetting::Never => SyncPolicy::Never,
            SyncSetting::Interval(ms) => SyncPolicy::Interval(Duration::from_millis(ms)),
        }
    }
}

impl std::str::FromStr for SyncSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid =
            || format!("{s:?}: store.sync expects always, never or interval:<milliseconds>");
        match s {
            "always" => Ok(SyncSetting::Always),
            "never" => Ok(SyncSetting::Never),
            other => {
                let ms = other.strip_prefix("interval:").ok_or_else(invalid)?;
                let ms: u64 = ms.trim_end_matches("ms").parse().map_err(|_| invalid())?;
                if ms == 0 {
                    return Err(invalid());
                }
                Ok(SyncSetting::Interval(ms))
            }
        }
    }
}

impl TryFrom<String> for SyncSetting {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SyncSetting> for String {
    fn from(s: SyncSetting) -> String {
        match s {
            SyncSetting::Always => "always".into(),
            SyncSetting::Never => "never".into(),
            SyncSetting::Interval(ms) => format!("interval:{ms}"),
        }
    }
}

/// Client certificates on a TLS listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertsSetting {
    /// Not asked for.
    #[default]
    None,
    /// Asked for, verified when given.
    Optional,
    /// Every caller must present one.
    Required,
}

impl From<ClientCertsSetting> for outpost_net::ClientCerts {
    fn from(c: ClientCertsSetting) -> Self {
        match c {
            ClientCertsSetting::None => outpost_net::ClientCerts::None,
            ClientCertsSetting::Optional => outpost_net::ClientCerts::Optional,
            ClientCertsSetting::Required => outpost_net::ClientCerts::Required,
        }
    }
}

/// Which certificate name is an MQTT client's identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentitySetting {
    /// The subject's common name.
    #[default]
    #[serde(rename = "cn")]
    CommonName,
    /// The first DNS name, e-mail address or URI among the subject alternative names.
    #[serde(rename = "san")]
    SubjectAltName,
}

impl From<IdentitySetting> for outpost_net::IdentityFrom {
    fn from(i: IdentitySetting) -> Self {
        match i {
            IdentitySetting::CommonName => outpost_net::IdentityFrom::CommonName,
            IdentitySetting::SubjectAltName => outpost_net::IdentityFrom::SubjectAltName,
        }
    }
}
