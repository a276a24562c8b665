//! TLS for every listener (MQTT 8883, WebSocket 8084, HTTPS 9325): rustls with its safe defaults
//! (TLS 1.2 and 1.3, forward-secret AEAD suites only, no renegotiation, no compression), the
//! certificate and key read from PEM files, and optional client certificates verified against a
//! configured CA, whose subject names become identities.
//!
//! The files are read again on SIGHUP ([`Tls::reload`]): new handshakes use the new certificate,
//! connections already open keep theirs. A reload that fails keeps the certificate in force.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tls")]
use crate::TlsBytes;
#[cfg(feature = "tls")]
use parking_lot::RwLock;
#[cfg(feature = "tls")]
use rustls::pki_types::pem::PemObject as _;
#[cfg(feature = "tls")]
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
#[cfg(feature = "tls")]
use rustls::server::WebPkiClientVerifier;
#[cfg(feature = "tls")]
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;

/// Whether a listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// Not asked for.
    None,
    /// Asked for and verified when given; a client without one still connects.
    Optional,
    /// Required: a handshake without a valid client certificate fails.
    Required,
}

/// Which name of a client certificate is the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityFrom {
    /// The subject's common name.
    CommonName,
    /// The first DNS name, e-mail address or URI among the subject alternative names.
    SubjectAltName,
}

/// Where a listener's certificate, key and client CA are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates that client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// Whether client certificates are asked for.
    pub client_certs: ClientCerts,
    /// Which certificate name is the identity.
    pub identity_from: IdentityFrom,
}

/// Why a TLS setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// rustls refused the combination.
    #[error("TLS configuration: {0}")]
    Config(String),
}

#[cfg(feature = "tls")]
fn file_error(path: &std::path::Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

#[cfg(feature = "tls")]
fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_error(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(file_error(&files.cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (files.client_certs, &files.client_ca) {
        (ClientCerts::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Config(
                "client certificates are asked for but no client CA file is configured".into(),
            ))
        }
        (mode, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| file_error(ca, e))? {
                let cert = cert.map_err(|e| file_error(ca, e))?;
                roots.add(cert).map_err(|e| file_error(ca, e))?;
            }
            if roots.is_empty() {
                return Err(file_error(ca, "no CA certificate in the file"));
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if mode == ClientCerts::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A listener's TLS: the acceptor in force and the files it came from.
#[cfg(feature = "tls")]
pub struct Tls {
    files: TlsFiles,
    config: RwLock<Arc<ServerConfig>>,
}

#[cfg(feature = "tls")]
impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

#[cfg(feature = "tls")]
impl Tls {
    /// Reads the files; an unusable one is an error naming it.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let config = server_config(&files)?;
        Ok(Arc::new(Tls {
            files,
            config: RwLock::new(config),
        }))
    }

    /// Reads the files again; on error the certificate in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        *self.config.write() = config;
        Ok(())
    }

    /// The TLS handshake within `timeout`, and the identity of a verified client certificate.
    pub async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> std::io::Result<(TlsBytes<TcpStream>, Option<Arc<str>>)> {
        let config = self.config.read().clone();
        let tls = tokio::time::timeout(timeout, TlsBytes::accept(stream, config))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
        let identity = tls
            .connection()
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| certificate_name(leaf.as_ref(), self.files.identity_from))
            .map(Arc::<str>::from);
        Ok((tls, identity))
    }
}

/// The identity a certificate names (its CN, or its first SAN).
#[cfg(feature = "tls")]
pub fn certificate_name(der: &[u8], from: IdentityFrom) -> Option<String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    match from {
        IdentityFrom::CommonName => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        IdentityFrom::SubjectAltName => {
            let san = cert.subject_alternative_name().ok()??;
            san.value.general_names.iter().find_map(|n| match n {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    Some((*s).to_string())
                }
                _ => None,
            })
        }
    }
    .filter(|n| !n.is_empty())
}

/// A build without TLS (cargo feature `tls` off): no listener can load a certificate, so a
/// configuration that asks for TLS is refused at start with the reason, and no TLS code is in the
/// binary.
#[cfg(not(feature = "tls"))]
#[derive(Debug)]
pub enum Tls {}

#[cfg(not(feature = "tls"))]
impl Tls {
    /// Refuses: this build has no TLS.
    pub fn load(_files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        Err(TlsError::Config(
            "this build has no TLS (cargo feature `tls`)".into(),
        ))
    }

    /// Never called: no `Tls` exists in this build.
    pub fn reload(&self) -> Result<(), TlsError> {
        match *self {}
    }

    /// Never called: no `Tls` exists in this build.
    pub async fn accept(
        &self,
        _stream: TcpStream,
        _timeout: Duration,
    ) -> std::io::Result<(TcpStream, Option<Arc<str>>)> {
        match *self {}
    }
}
