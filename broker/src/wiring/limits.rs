//! What every door is allowed: the connection caps (fitted to the descriptor limit), the rates,
//! and the local-only mode of a broker nobody can authenticate to.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{self, Config};

/// The gates and rates the doors share.
pub(crate) struct Limits {
    pub mqtt_gate: outpost_net::Gate,
    pub http_gate: outpost_net::Gate,
    pub mqtt_rates: Arc<outpost_listeners::MqttRates>,
    #[cfg(feature = "http")]
    pub http_rates: Arc<outpost_http::throttle::HttpRates>,
}

impl Limits {
    pub(crate) fn new(config: &Config) -> Limits {
        let (mqtt_cap, http_cap) = connection_caps(config);
        let mqtt_gate = outpost_net::Gate::new(
            "mqtt",
            outpost_net::GateLimits {
                max_connections: mqtt_cap,
                max_per_address: config.mqtt.max_connections_per_address,
            },
        );
        let http_gate = outpost_net::Gate::new(
            "http",
            outpost_net::GateLimits {
                max_connections: http_cap,
                max_per_address: config.http.max_connections_per_address,
            },
        );
        let m = &config.mqtt;
        let mqtt_rates = Arc::new(outpost_listeners::MqttRates::new(
            config::rate(
                u64::from(m.max_messages_per_second),
                u64::from(m.message_burst),
            ),
            config::rate(m.max_bytes_per_second, m.bytes_burst),
            config::rate(u64::from(m.max_total_messages_per_second), 0),
            config::rate(u64::from(m.max_connections_per_second), 0),
            config::rate(u64::from(m.max_connections_per_second_per_address), 0),
        ));
        #[cfg(feature = "http")]
        let h = &config.http;
        #[cfg(feature = "http")]
        let http_rates = Arc::new(outpost_http::throttle::HttpRates::new(
            config::rate(
                u64::from(h.max_requests_per_second_per_address),
                u64::from(h.request_burst),
            ),
            config::rate(
                u64::from(h.max_requests_per_second),
                u64::from(h.request_burst),
            ),
            h.max_long_polls,
        ));
        Limits {
            mqtt_gate,
            http_gate,
            mqtt_rates,
            #[cfg(feature = "http")]
            http_rates,
        }
    }
}

/// With no way for callers to authenticate and anonymous access not asked for, the broker is
/// reachable from this machine only (mosquitto 2's local-only mode): every listen address
/// becomes the loopback address of its family. True when that mode is on.
pub(crate) fn restrict_to_loopback(config: &mut Config, security: &outpost_auth::Security) -> bool {
    let local_only_mode = !config.auth.allow_anonymous && !security.has_credentials();
    if local_only_mode {
        let addrs = [
            &mut config.mqtt.listen,
            &mut config.websocket.listen,
            &mut config.http.listen,
        ];
        if addrs.iter().any(|a| !a.ip().is_loopback()) {
            for a in addrs {
                *a = local_only(*a);
            }
            tracing::warn!("no authentication configured: listening on loopback only; set auth.allow_anonymous = true, or configure auth.password_file / auth.access_keys_file, to serve the configured addresses");
        }
    }
    local_only_mode
}

/// The loopback address of `addr`'s family, same port.
pub(crate) fn local_only(addr: SocketAddr) -> SocketAddr {
    let ip: std::net::IpAddr = match addr {
        SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    SocketAddr::new(ip, addr.port())
}

/// Room kept in the descriptor budget for the store's segments and metadata, logs and the like.
const RESERVED_DESCRIPTORS: usize = 256;

/// The connection caps of the MQTT listeners and the HTTP port, lowered (with a warning) so that
/// together they fit the process's descriptor limit: running out of descriptors must refuse new
/// connections, never fail a store write.
fn connection_caps(config: &Config) -> (usize, usize) {
    let (mqtt, http) = (config.mqtt.max_connections, config.http.max_connections);
    let Some(limit) = outpost_net::raise_descriptor_limit() else {
        return (mqtt, http);
    };
    let budget = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(RESERVED_DESCRIPTORS)
        .max(2);
    if mqtt.saturating_add(http) <= budget {
        return (mqtt, http);
    }
    // HTTP gets at most a quarter of the budget, MQTT (devices) the rest; a cap that already fits
    // is kept as it is.
    let h = http.min((budget / 4).max(1));
    let m = mqtt.min(budget.saturating_sub(h).max(1));
    tracing::warn!(
        descriptor_limit = limit,
        mqtt_max_connections = m,
        http_max_connections = h,
        "connection caps lowered to fit the descriptor limit"
    );
    (m, h)
}
