//! TLS to an upstream with rustls: the server's certificate checked against a configured CA (or
//! the Mozilla roots), an optional client certificate (AWS IoT Core's mutual TLS), SNI and ALPN
//! (IoT Core on port 443 needs `x-amzn-mqtt-ca`).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::BridgeTls;

/// A ready client configuration and the name to verify.
#[derive(Clone)]
pub(crate) struct Client {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Client {
    /// TLS over `tcp`, the server verified.
    pub(crate) async fn connect(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        self.connector.connect(self.server_name.clone(), tcp).await
    }
}

/// The root certificates: the configured CA file, or the Mozilla roots.
pub(crate) fn roots(ca_file: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    if ca_file.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    }
    for cert in
        CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("ca_file {ca_file}: {e}"))?
    {
        let cert = cert.map_err(|e| format!("ca_file {ca_file}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("ca_file {ca_file}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("ca_file {ca_file}: no certificate in it"));
    }
    Ok(roots)
}

/// Builds the client side of TLS for `host`.
pub(crate) fn client(tls: &BridgeTls, host: &str) -> Result<Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(&tls.ca_file)?);
    let mut config = if tls.cert_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
            .map_err(|e| format!("cert_file {}: {e}", tls.cert_file))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cert_file {}: {e}", tls.cert_file))?;
        let key = PrivateKeyDer::from_pem_file(&tls.key_file)
            .map_err(|e| format!("key_file {}: {e}", tls.key_file))?;
        builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("client certificate: {e}"))?
    };
    config.alpn_protocols = tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let name = if tls.server_name.is_empty() {
        host
    } else {
        &tls.server_name
    };
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|_| format!("{name:?} is not a valid server name"))?;
    Ok(Client {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    })
}
