//! The TLS listeners: which run, where, with which certificates and client-certificate modes.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::choices::{ClientCertsSetting, IdentitySetting};
use super::ConfigError;

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
    pub mqtt_client_certs: ClientCertsSetting,
    /// Client certificates on the WebSocket listener.
    pub ws_client_certs: ClientCertsSetting,
    /// Client certificates on the HTTPS listener (verified only; HTTP callers are identified
    /// by their SigV4 signature).
    pub https_client_certs: ClientCertsSetting,
    /// Which certificate name is an MQTT client's identity: `cn` or `san`.
    pub identity_from: IdentitySetting,
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
            mqtt_client_certs: ClientCertsSetting::None,
            ws_client_certs: ClientCertsSetting::None,
            https_client_certs: ClientCertsSetting::None,
            identity_from: IdentitySetting::CommonName,
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
        let identity_from = self.identity_from.into();
        let one = |key: &'static str,
                   listen: &str,
                   mode_key: &'static str,
                   mode: ClientCertsSetting|
         -> Result<Option<TlsListener>, ConfigError> {
            let client_certs: outpost_net::ClientCerts = mode.into();
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
                self.mqtt_client_certs,
            )?,
            one(
                "tls.ws_listen",
                &self.ws_listen,
                "tls.ws_client_certs",
                self.ws_client_certs,
            )?,
            one(
                "tls.https_listen",
                &self.https_listen,
                "tls.https_client_certs",
                self.https_client_certs,
            )?,
        ))
    }
}
