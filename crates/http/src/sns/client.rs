//! The HTTP client the topic engine delivers through: HTTP/1.1 with connection reuse per
//! endpoint, HTTPS with rustls and the Mozilla root certificates (`webpki-roots`, so delivery
//! does not depend on the gateway's CA bundle).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use outpost_topics::{BoxFuture, HttpRequest, HttpSender};

use super::egress::{EgressPolicy, GuardedResolver, HostPace};

/// POSTs notifications to HTTP/S endpoints, only where the egress policy admits (see
/// `egress`), paced per host.
#[derive(Clone)]
pub struct HttpClient {
    client: outpost_net::outbound::OutboundClient<GuardedResolver>,
    policy: Arc<EgressPolicy>,
    pace: Arc<HostPace>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish()
    }
}

impl HttpClient {
    /// A client with its own connection pool that POSTs where `policy` admits.
    pub fn new(policy: EgressPolicy) -> Result<HttpClient, String> {
        let policy = Arc::new(policy);
        let client = outpost_net::outbound::outbound_client(
            GuardedResolver(policy.clone()),
            outpost_net::outbound::mozilla_roots(),
            Duration::from_secs(5),
        )
        .map_err(|e| format!("the HTTP client for SNS deliveries: {e}"))?;
        Ok(HttpClient {
            client,
            policy,
            pace: Arc::new(HostPace::default()),
        })
    }
}

impl HttpSender for HttpClient {
    fn check_endpoint(&self, url: &str) -> Result<(), String> {
        self.policy.check_url(url)
    }

    fn post(&self, request: HttpRequest) -> BoxFuture<'_, Result<u16, String>> {
        Box::pin(async move {
            self.policy.check_url(&request.url)?;
            let host = request
                .url
                .parse::<hyper::Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_string))
                .unwrap_or_default();
            let wait = self.pace.wait(
                &host,
                self.policy.per_host_per_second,
                self.policy.per_host_burst,
            );
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
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
