//! The HTTP client the topic engine delivers through: HTTP/1.1 with connection reuse per
//! endpoint, HTTPS with rustls and the Mozilla root certificates (`webpki-roots`, so delivery
//! does not depend on the gateway's CA bundle).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use outpost_topics::{BoxFuture, HttpRequest, HttpSender};

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// POSTs notifications to HTTP/S endpoints.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish()
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with its own connection pool.
    pub fn new() -> HttpClient {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            .build(connector);
        HttpClient { client }
    }
}

impl HttpSender for HttpClient {
    fn post(&self, request: HttpRequest) -> BoxFuture<'_, Result<u16, String>> {
        Box::pin(async move {
            let mut builder = hyper::Request::post(&request.url);
            for (k, v) in &request.headers {
                builder = builder.header(*k, v);
            }
            let req = builder
                .body(Full::new(Bytes::from(request.body)))
                .map_err(|e| format!("invalid request: {e}"))?;
            let exchange = async {
                let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                // The answer's body is read (and dropped) so the connection can be reused.
                let _ = resp.into_body().collect().await;
                Ok::<u16, String>(status)
            };
            match tokio::time::timeout(request.timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {:?}", request.timeout)),
            }
        })
    }
}
