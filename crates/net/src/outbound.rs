//! How the broker calls out over HTTP(S): SNS deliveries to HTTP/S endpoints and bridges to
//! SQS/SNS build their client here, so both speak HTTP/1.1 over rustls with the same pool and
//! timeouts. What differs is passed in: the resolver (SNS endpoints resolve through an egress
//! guard) and the trusted roots (a bridge may name its own CA).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A pooled HTTP(S) client over a connector that resolves with `R`.
pub type OutboundClient<R> = Client<hyper_rustls::HttpsConnector<HttpConnector<R>>, Full<Bytes>>;

/// Idle pooled connections are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per host.
const POOL_PER_HOST: usize = 32;

/// A client that connects within `connect_timeout`, resolving with `resolver` and trusting `roots`.
pub fn outbound_client<R>(
    resolver: R,
    roots: rustls::RootCertStore,
    connect_timeout: Duration,
) -> Result<OutboundClient<R>, rustls::Error>
where
    R: Clone + Send + Sync + 'static,
    hyper_rustls::HttpsConnector<HttpConnector<R>>:
        hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut http = HttpConnector::new_with_resolver(resolver);
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(POOL_PER_HOST)
        .build(connector))
}

/// The Mozilla roots (webpki-roots).
pub fn mozilla_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}
