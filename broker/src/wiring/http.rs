//! The one HTTP port (and its TLS twin): SQS, SNS, EventBridge and IoT data, `/metrics`,
//! `/health` and `/ready`, served from one state (ADR 0017 says how a request is told apart).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use outpost_shutdown::Shutdown;
use tokio::task::JoinHandle;

use super::engines::Engines;
use super::limits::Limits;
use super::listeners::{spawn_until, HttpListeners};
use crate::config::Config;
#[cfg(feature = "metrics")]
use crate::metrics;

/// Starts serving HTTP(S): accepting stops when `shutdown` fires, and each connection then
/// finishes the request it is serving. `ready` is what `/ready` answers.
pub(crate) fn serve(
    listeners: HttpListeners,
    config: &Config,
    engines: &Engines,
    limits: &Limits,
    store: &outpost_store::Store,
    security: &Arc<outpost_auth::Security>,
    (ready, shutdown): (&Arc<AtomicBool>, &Shutdown),
) -> Vec<JoinHandle<()>> {
    let Some(http) = listeners.http else {
        return Vec::new();
    };
    #[cfg(feature = "metrics")]
    let metrics_text: outpost_http::MetricsText = {
        let registry = Arc::new(metrics::registry(metrics::Sources {
            mqtt: engines.broker.clone(),
            #[cfg(feature = "sqs")]
            queues: engines.queues.clone(),
            #[cfg(feature = "sns")]
            topics: engines.topics.clone(),
            #[cfg(feature = "events")]
            events: engines.events.clone(),
            store: store.clone(),
            gates: vec![limits.mqtt_gate.clone(), limits.http_gate.clone()],
            security: security.clone(),
            mqtt_rates: limits.mqtt_rates.clone(),
            http_rates: limits.http_rates.clone(),
            #[cfg(feature = "bridge")]
            bridges: engines.bridges.clone(),
        }));
        Arc::new(move || metrics::render(&registry))
    };
    #[cfg(not(feature = "metrics"))]
    let metrics_text: outpost_http::MetricsText =
        Arc::new(|| "# this build has no metrics (cargo feature `metrics`)\n# EOF\n".to_string());
    let is_ready = ready.clone();
    let mut state = outpost_http::HttpState::new(
        outpost_http::Engines {
            #[cfg(feature = "sqs")]
            queues: engines.queues.clone(),
            #[cfg(feature = "sns")]
            topics: engines.topics.clone(),
            #[cfg(feature = "events")]
            events: engines.events.clone(),
            mqtt: engines.broker.clone(),
            shadows: engines.shadows.clone(),
            security: security.clone(),
            rates: limits.http_rates.clone(),
            region: config.http.region.clone(),
        },
        http.local_addr().unwrap_or(config.http.listen),
        (
            metrics_text,
            Arc::new(move || is_ready.load(Ordering::Relaxed)),
        ),
        outpost_http::HttpLimits {
            header_timeout: std::time::Duration::from_secs(config.http.header_timeout),
            body_timeout: std::time::Duration::from_secs(config.http.body_timeout),
            max_parsing: config.http.max_concurrent_parsing,
            max_body: config.http.max_body_bytes,
        },
    );
    state.live_view = listeners.live_view;
    let mut tasks = Vec::new();
    if let Some((listener, tls)) = listeners.https {
        tasks.push(spawn_until(
            shutdown,
            outpost_http::serve(
                listener,
                limits.http_gate.clone(),
                state.clone(),
                shutdown.clone(),
                Some(tls),
            ),
        ));
    }
    tasks.push(spawn_until(
        shutdown,
        outpost_http::serve(
            http,
            limits.http_gate.clone(),
            state,
            shutdown.clone(),
            None,
        ),
    ));
    tasks
}
