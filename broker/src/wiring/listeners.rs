//! The doors' sockets: every listen address is bound before anything is served (a taken port
//! fails the start, not a later moment), and accept loops start only once the engines behind
//! them are wired, so a client that connects at the first instant cannot get past a door that is
//! not there yet (until then connections wait in the kernel's accept queue).

use std::net::SocketAddr;
use std::sync::Arc;

use outpost_shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::limits::{local_only, Limits};
use super::Failure;
use crate::config::{Config, TlsListener};

/// A TLS listener, bound, with its certificate loaded.
type TlsBound = (TcpListener, Arc<outpost_net::Tls>);

/// Every listener of the broker, bound.
pub(crate) struct Bound {
    mqtt: TcpListener,
    websocket: Option<TcpListener>,
    mqtts: Option<TlsBound>,
    wss: Option<TlsBound>,
    pub https: Option<TlsBound>,
    /// The HTTP port (none in a build without it).
    pub http: Option<TcpListener>,
    /// The certificates SIGHUP reloads.
    pub tls_in_force: Vec<Arc<outpost_net::Tls>>,
    /// "mqtt=… ws=… http=…": the line tests and scripts read to learn the ports.
    pub addresses: String,
}

/// Binds every configured listener. TLS listeners that require client certificates authenticate
/// every caller themselves, so they keep their configured address even in local-only mode.
pub(crate) async fn bind_all(config: &Config, local_only_mode: bool) -> Result<Bound, Failure> {
    let mqtt = bind(config.mqtt.listen, "MQTT").await?;
    let mqtt_addr = mqtt.local_addr().unwrap_or(config.mqtt.listen);
    let mut ws_addr = String::from("off");
    let websocket = if config.websocket.enabled {
        let ws = bind(config.websocket.listen, "MQTT over WebSocket").await?;
        ws_addr = format!(
            "{}{}",
            ws.local_addr().unwrap_or(config.websocket.listen),
            config.websocket.path
        );
        Some(ws)
    } else {
        None
    };
    let (tls_mqtt, tls_ws, tls_https) = config.tls.listeners().map_err(Failure::config)?;
    let mut tls_in_force = Vec::new();
    let mut tls_addrs = String::new();
    let mut bind_tls = async |plan: Option<TlsListener>,
                              what: &str,
                              name: &str,
                              suffix: &str|
           -> Result<Option<TlsBound>, Failure> {
        let Some(l) = plan else { return Ok(None) };
        let tls = outpost_net::Tls::load(l.files.clone()).map_err(Failure::config)?;
        tls_in_force.push(tls.clone());
        let authenticated = l.files.client_certs == outpost_net::ClientCerts::Required;
        let addr = if local_only_mode && !authenticated {
            local_only(l.listen)
        } else {
            l.listen
        };
        tracing::debug!(listener = name, %addr, "TLS listener configured");
        let listener = bind(addr, what).await?;
        tls_addrs.push_str(&format!(
            " {name}={}{suffix}",
            listener.local_addr().unwrap_or(addr)
        ));
        Ok(Some((listener, tls)))
    };
    let mqtts = bind_tls(tls_mqtt, "MQTT over TLS", "mqtts", "").await?;
    let wss = bind_tls(
        tls_ws,
        "MQTT over WebSocket over TLS",
        "wss",
        &config.websocket.path,
    )
    .await?;
    let https = bind_tls(tls_https, "HTTPS", "https", "").await?;
    // A build without HTTP APIs or metrics has no HTTP port (`http=off`).
    let http = if cfg!(feature = "http") {
        Some(bind(config.http.listen, "HTTP").await?)
    } else {
        None
    };
    let http_addr = http.as_ref().map_or_else(
        || "off".to_string(),
        |l| l.local_addr().unwrap_or(config.http.listen).to_string(),
    );
    Ok(Bound {
        mqtt,
        websocket,
        mqtts,
        wss,
        https,
        http,
        tls_in_force,
        addresses: format!("mqtt={mqtt_addr} ws={ws_addr} http={http_addr}{tls_addrs}"),
    })
}

impl Bound {
    /// Where the HTTP port listens (the addresses of queue URLs, the default public URL).
    pub(crate) fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }
}

/// Binds a listener, or says why it cannot.
async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::runtime(format!("cannot listen for {what} on {addr}: {e}")))
}

/// Starts the MQTT accept loops (TCP, WebSocket, and their TLS forms); each stops accepting when
/// `shutdown` fires. Returns the HTTP listeners, which are served once their state is built.
pub(crate) fn serve_mqtt(
    bound: Bound,
    config: &Config,
    broker: &Arc<outpost_mqtt::Broker>,
    limits: &Limits,
    security: &Arc<outpost_auth::Security>,
    shutdown: &Shutdown,
) -> (Vec<JoinHandle<()>>, HttpListeners) {
    let listener_config = Arc::new(outpost_listeners::ListenerConfig {
        max_packet_size: config.mqtt.max_packet_size,
        connect_timeout: std::time::Duration::from_secs(config.mqtt.connect_timeout),
        max_keep_alive: config.mqtt.max_keep_alive,
        security: security.clone(),
        rates: limits.mqtt_rates.clone(),
    });
    let gate = &limits.mqtt_gate;
    let path = &config.websocket.path;
    let port = |l: &TcpListener| l.local_addr().ok().map(|a| a.port());
    let ws_port = bound.websocket.as_ref().and_then(port);
    let wss_port = bound.wss.as_ref().and_then(|(l, _)| port(l));
    let mut tasks = vec![spawn_until(
        shutdown,
        outpost_listeners::run_tcp(
            bound.mqtt,
            gate.clone(),
            broker.clone(),
            listener_config.clone(),
        ),
    )];
    if let Some(ws) = bound.websocket {
        tasks.push(spawn_until(
            shutdown,
            outpost_listeners::run_websocket(
                ws,
                gate.clone(),
                path.clone(),
                broker.clone(),
                listener_config.clone(),
                None,
            ),
        ));
    }
    if let Some((listener, tls)) = bound.mqtts {
        tasks.push(spawn_until(
            shutdown,
            outpost_listeners::run_tls(
                listener,
                gate.clone(),
                tls,
                broker.clone(),
                listener_config.clone(),
            ),
        ));
    }
    if let Some((listener, tls)) = bound.wss {
        tasks.push(spawn_until(
            shutdown,
            outpost_listeners::run_websocket(
                listener,
                gate.clone(),
                path.clone(),
                broker.clone(),
                listener_config,
                Some(tls),
            ),
        ));
    }
    (
        tasks,
        HttpListeners {
            #[cfg(feature = "http")]
            live_view: outpost_http::LiveView {
                ws_port,
                wss_port,
                path: config.websocket.path.clone(),
            },
            http: bound.http,
            https: bound.https,
        },
    )
}

/// The HTTP port and its TLS twin, bound and not yet served.
pub(crate) struct HttpListeners {
    pub http: Option<TcpListener>,
    pub https: Option<TlsBound>,
    /// Where the web console's live view connects (MQTT over WebSocket).
    #[cfg(feature = "http")]
    pub live_view: outpost_http::LiveView,
}

/// Spawns an accept loop that stops accepting when the broker stops.
pub(crate) fn spawn_until(
    shutdown: &Shutdown,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let _ = shutdown.until(task).await;
    })
}
