//! The `outpost` binary: configuration, wiring, startup and shutdown. No broker logic lives here.
//!
//! It loads the configuration, opens the embedded store (replaying it after a crash), starts the MQTT
//! listeners (TCP, WebSocket) and the HTTP port (SQS API, `/health`, `/metrics`), and runs until
//! SIGINT/SIGTERM.

mod config;
mod metrics;
mod passwd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use config::Config;

/// One persistent message broker for the edge.
#[derive(Debug, Parser)]
#[command(name = "outpost", version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "OUTPOST_CONFIG")]
    config: Option<PathBuf>,
    /// Folder for the embedded store.
    #[arg(long, env = "OUTPOST_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `outpost=debug,info`.
    #[arg(long, env = "OUTPOST_LOG")]
    log: Option<String>,
    /// MQTT over TCP listen address.
    #[arg(long, env = "OUTPOST_MQTT_LISTEN")]
    mqtt_listen: Option<SocketAddr>,
    /// MQTT over WebSocket listen address.
    #[arg(long, env = "OUTPOST_WS_LISTEN")]
    ws_listen: Option<SocketAddr>,
    /// HTTP (SQS, SNS, publish, metrics) listen address.
    #[arg(long, env = "OUTPOST_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// Seconds between `$SYS` updates (0: off).
    #[arg(long, env = "OUTPOST_SYS_INTERVAL")]
    sys_interval: Option<u64>,
    /// How receivers reach the HTTP port (URLs in SNS messages), e.g. http://gateway:9324.
    #[arg(long, env = "OUTPOST_PUBLIC_URL")]
    public_url: Option<String>,
    /// Store sync policy: always, never or interval:<ms>.
    #[arg(long, env = "OUTPOST_STORE_SYNC")]
    store_sync: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
    /// Serve callers without credentials on the configured addresses (not only on loopback).
    #[arg(long)]
    allow_anonymous: bool,
    /// MQTT password file (`outpost passwd`).
    #[arg(long)]
    password_file: Option<String>,
    /// HTTP access keys file (SigV4).
    #[arg(long)]
    access_keys_file: Option<String>,
    /// ACL file.
    #[arg(long)]
    acl_file: Option<String>,
    /// TLS certificate chain (PEM); with --tls-key, turns the TLS listeners on.
    #[arg(long)]
    tls_cert: Option<String>,
    /// TLS private key (PEM).
    #[arg(long)]
    tls_key: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Exit 0 when an `http://host:port/path` answers 200 within 3 s (container health checks,
    /// e.g. `outpost probe http://127.0.0.1:9324/ready`).
    Probe {
        /// The URL (plain HTTP).
        url: String,
    },
    /// Manage the password file of MQTT users (argon2id hashes).
    Passwd {
        #[command(subcommand)]
        action: passwd::Passwd,
    },
}

impl Cli {
    /// Defaults, then the file, then environment and flags (clap already gave flags precedence).
    fn config(&self) -> Result<Config, config::ConfigError> {
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("OUTPOST_"))
            .collect();
        let mut c = Config::load(self.config.as_deref(), &env)?;
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &self.log {
            c.log = v.clone();
        }
        if let Some(v) = self.mqtt_listen {
            c.mqtt.listen = v;
        }
        if let Some(v) = self.ws_listen {
            c.websocket.listen = v;
        }
        if let Some(v) = self.http_listen {
            c.http.listen = v;
        }
        if let Some(v) = self.sys_interval {
            c.mqtt.sys_interval = v;
        }
        if let Some(v) = &self.public_url {
            c.topics.public_url = v.clone();
        }
        if let Some(v) = &self.store_sync {
            c.store.sync = v.clone();
        }
        if let Some(v) = &self.log_format {
            c.log_format = v.clone();
        }
        if self.allow_anonymous {
            c.auth.allow_anonymous = true;
        }
        for (flag, key) in [
            (&self.password_file, &mut c.auth.password_file),
            (&self.access_keys_file, &mut c.auth.access_keys_file),
            (&self.acl_file, &mut c.auth.acl_file),
            (&self.tls_cert, &mut c.tls.cert_file),
            (&self.tls_key, &mut c.tls.key_file),
        ] {
            if let Some(v) = flag {
                *key = v.clone();
            }
        }
        Ok(c)
    }
}

fn main() -> ExitCode {
    // Test builds only: failure points named in `FAILPOINTS` (see the store's `failpoints`).
    #[cfg(feature = "failpoints")]
    let _faults = fail::FailScenario::setup();
    let mut cli = Cli::parse();
    match cli.command.take() {
        Some(Command::Passwd { action }) => return passwd::run(action),
        Some(Command::Probe { url }) => return probe(&url),
        None => {}
    }
    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("outpost: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    // `Targets` reads the same `target=level,level` syntax as `EnvFilter` without a regex engine
    // (a third of a megabyte of binary for span and field filters the broker never needs).
    let filter: tracing_subscriber::filter::Targets = match config.log.parse() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("outpost: invalid log filter {:?}: {e}", config.log);
            return ExitCode::from(2);
        }
    };
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    if config.log_format == "json" {
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().json())
            .with(filter)
            .init();
    } else {
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer())
            .with(filter)
            .init();
    }

    if let Err(e) = config.validate() {
        eprintln!("outpost: {e}");
        return ExitCode::from(2);
    }
    let store_config = match config.store_config() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outpost: {e}");
            return ExitCode::from(2);
        }
    };
    let security = match open_security(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outpost: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match outpost_store::Store::open(&config.data_dir, store_config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "outpost: cannot open the store in {}: {e}",
                config.data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("outpost: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config, store, security))
}

/// `outpost probe URL`: one plain HTTP GET, 200 or not (no HTTP client in a slim image).
fn probe(url: &str) -> ExitCode {
    use std::io::{Read as _, Write as _};
    let Some(rest) = url.strip_prefix("http://") else {
        eprintln!("outpost probe: only http:// URLs");
        return ExitCode::from(2);
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let timeout = std::time::Duration::from_secs(3);
    let answer = (|| -> std::io::Result<String> {
        use std::net::ToSocketAddrs as _;
        let addr = host
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut head = [0u8; 64];
        let n = s.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    })();
    match answer {
        Ok(a) if a.starts_with("HTTP/1.1 200") || a.starts_with("HTTP/1.0 200") => {
            ExitCode::SUCCESS
        }
        Ok(a) => {
            eprintln!("outpost probe: {}", a.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("outpost probe: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The security files named in the configuration, read and checked.
fn open_security(config: &Config) -> Result<std::sync::Arc<outpost_auth::Security>, String> {
    let path = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
    let a = &config.auth;
    outpost_auth::Security::open(outpost_auth::SecurityConfig {
        password_file: path(&a.password_file),
        acl_file: path(&a.acl_file),
        access_keys_file: path(&a.access_keys_file),
        allow_anonymous: a.allow_anonymous.then_some(true),
        account: config.http.account.clone(),
        region: config.http.region.clone(),
        login_failures: outpost_auth::Rate {
            per_second: f64::from(a.login_failures_per_minute.max(1)) / 60.0,
            burst: f64::from(a.login_failure_burst.max(1)),
        },
    })
    .map_err(|e| e.to_string())
}

/// With no way for callers to authenticate and anonymous access not asked for, the broker is
/// reachable from this machine only (mosquitto 2's local-only mode): every listen address
/// becomes the loopback address of its family.
fn local_only(addr: SocketAddr) -> SocketAddr {
    let ip: std::net::IpAddr = match addr {
        SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    SocketAddr::new(ip, addr.port())
}

/// Binds a listener; `None` (after saying why) when the address cannot be had.
async fn bind(addr: SocketAddr, what: &str) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("outpost: cannot listen for {what} on {addr}: {e}");
            None
        }
    }
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

async fn serve(
    mut config: Config,
    store: outpost_store::Store,
    security: std::sync::Arc<outpost_auth::Security>,
) -> ExitCode {
    use std::sync::Arc;

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

    let (mqtt_cap, http_cap) = connection_caps(&config);
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
    let h = &config.http;
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
    let stats = store.stats();
    tracing::info!(
        data_dir = %config.data_dir.display(),
        segments = stats.segments,
        live_records = stats.live_records,
        recovery_ms = stats.recovery.millis,
        "store opened"
    );
    let broker = match outpost_mqtt::Broker::with_store(
        outpost_mqtt::BrokerConfig {
            max_packet_size: config.mqtt.max_packet_size.min(u32::MAX as usize) as u32,
            v311_session_expiry: config.mqtt.v311_session_expiry.unwrap_or(u32::MAX),
            max_subscriptions_per_session: config.mqtt.max_subscriptions,
            max_topic_levels: config.mqtt.max_topic_levels,
            max_inflight: config.mqtt.max_inflight,
            max_retained_messages: config.mqtt.max_retained_messages,
            max_retained_bytes: config.mqtt.max_retained_bytes,
            max_persistent_sessions: config.mqtt.max_persistent_sessions,
            flow_control_queue: config.mqtt.flow_control_queue,
            stall_timeout: std::time::Duration::from_secs(config.mqtt.stall_timeout),
            node_id: node_id(&store),
            overflow: match config.mqtt.queue_overflow {
                config::QueueOverflow::Refuse => outpost_mqtt::OverflowPolicy::Refuse,
                config::QueueOverflow::Drop => outpost_mqtt::OverflowPolicy::Drop,
            },
            outbox: outpost_mqtt::OutboxLimits {
                max_queued: config.mqtt.max_queued_messages,
                max_queued_bytes: config.mqtt.max_queued_bytes,
                ..outpost_mqtt::OutboxLimits::default()
            },
            ..outpost_mqtt::BrokerConfig::default()
        },
        store.clone(),
    ) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("outpost: cannot restore the MQTT state from the store: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(listener) = bind(config.mqtt.listen, "MQTT").await else {
        return ExitCode::FAILURE;
    };
    let mqtt_addr = listener.local_addr().unwrap_or(config.mqtt.listen);
    let listener_config = Arc::new(outpost_listeners::ListenerConfig {
        max_packet_size: config.mqtt.max_packet_size,
        connect_timeout: std::time::Duration::from_secs(config.mqtt.connect_timeout),
        max_keep_alive: config.mqtt.max_keep_alive,
        security: security.clone(),
        rates: mqtt_rates.clone(),
    });
    let mut accepting = Vec::new();
    // MQTT connections are accepted only once the routing layer (event rules, bridges, the
    // `$queue/` door) is wired below: a client that connects at the first instant must not
    // publish past it. Until then connections wait in the kernel's accept queue.
    let (wired, wired_rx) = tokio::sync::watch::channel(false);
    accepting.push(tokio::spawn(once_wired(
        wired_rx.clone(),
        outpost_listeners::run_tcp(
            listener,
            mqtt_gate.clone(),
            broker.clone(),
            listener_config.clone(),
        ),
    )));
    let mut ws_addr = String::from("off");
    if config.websocket.enabled {
        let Some(ws) = bind(config.websocket.listen, "MQTT over WebSocket").await else {
            return ExitCode::FAILURE;
        };
        ws_addr = format!(
            "{}{}",
            ws.local_addr().unwrap_or(config.websocket.listen),
            config.websocket.path
        );
        accepting.push(tokio::spawn(once_wired(
            wired_rx.clone(),
            outpost_listeners::run_websocket(
                ws,
                mqtt_gate.clone(),
                config.websocket.path.clone(),
                broker.clone(),
                listener_config.clone(),
                None,
            ),
        )));
    }
    // TLS listeners. One that requires client certificates authenticates every caller itself,
    // so it keeps its configured address even in local-only mode.
    let (tls_mqtt, tls_ws, tls_https) = match config.tls.listeners() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("outpost: {e}");
            return ExitCode::from(2);
        }
    };
    let mut tls_in_force: Vec<Arc<outpost_net::Tls>> = Vec::new();
    let mut open_tls = |l: config::TlsListener,
                        what: &str|
     -> Result<(Arc<outpost_net::Tls>, SocketAddr), String> {
        let tls = outpost_net::Tls::load(l.files.clone()).map_err(|e| e.to_string())?;
        tls_in_force.push(tls.clone());
        let authenticated = l.files.client_certs == outpost_net::ClientCerts::Required;
        let addr = if local_only_mode && !authenticated {
            local_only(l.listen)
        } else {
            l.listen
        };
        tracing::debug!(listener = what, %addr, "TLS listener configured");
        Ok((tls, addr))
    };
    let mut tls_addrs = String::new();
    if let Some(l) = tls_mqtt {
        let (tls, addr) = match open_tls(l, "mqtts") {
            Ok(x) => x,
            Err(e) => {
                eprintln!("outpost: {e}");
                return ExitCode::from(2);
            }
        };
        let Some(listener) = bind(addr, "MQTT over TLS").await else {
            return ExitCode::FAILURE;
        };
        tls_addrs.push_str(&format!(" mqtts={}", listener.local_addr().unwrap_or(addr)));
        accepting.push(tokio::spawn(once_wired(
            wired_rx.clone(),
            outpost_listeners::run_tls(
                listener,
                mqtt_gate.clone(),
                tls,
                broker.clone(),
                listener_config.clone(),
            ),
        )));
    }
    if let Some(l) = tls_ws {
        let (tls, addr) = match open_tls(l, "wss") {
            Ok(x) => x,
            Err(e) => {
                eprintln!("outpost: {e}");
                return ExitCode::from(2);
            }
        };
        let Some(listener) = bind(addr, "MQTT over WebSocket over TLS").await else {
            return ExitCode::FAILURE;
        };
        tls_addrs.push_str(&format!(
            " wss={}{}",
            listener.local_addr().unwrap_or(addr),
            config.websocket.path
        ));
        accepting.push(tokio::spawn(once_wired(
            wired_rx.clone(),
            outpost_listeners::run_websocket(
                listener,
                mqtt_gate.clone(),
                config.websocket.path.clone(),
                broker.clone(),
                listener_config.clone(),
                Some(tls),
            ),
        )));
    }
    let https = match tls_https {
        Some(l) => match open_tls(l, "https") {
            Ok((tls, addr)) => {
                let Some(listener) = bind(addr, "HTTPS").await else {
                    return ExitCode::FAILURE;
                };
                tls_addrs.push_str(&format!(" https={}", listener.local_addr().unwrap_or(addr)));
                Some((listener, tls))
            }
            Err(e) => {
                eprintln!("outpost: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                every.tick().await;
                broker.tick(std::time::Instant::now());
            }
        });
    }
    let queues = match outpost_queues::Queues::open(
        store.clone(),
        outpost_queues::QueuesConfig {
            region: config.http.region.clone(),
            account: config.http.account.clone(),
            max_queues: config.http.max_queues,
            ..outpost_queues::QueuesConfig::default()
        },
    ) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("outpost: cannot recover the queues: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(queues.clone().run_maintenance());
    let Some(http) = bind(config.http.listen, "HTTP").await else {
        return ExitCode::FAILURE;
    };
    let http_addr = http.local_addr().unwrap_or(config.http.listen);
    let public_url = if config.topics.public_url.is_empty() {
        let host = match http_addr.ip() {
            ip if ip.is_unspecified() => "localhost".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{}", http_addr.port())
    } else {
        config.topics.public_url.clone()
    };
    let topics = {
        let (store, queues) = (store.clone(), queues.clone());
        let topics_config = outpost_topics::TopicsConfig {
            region: config.http.region.clone(),
            account: config.http.account.clone(),
            public_url,
            signing_dir: config.data_dir.join("sns-signing"),
            signing_key_bits: config.topics.signing_key_bits,
            max_topics: config.http.max_topics,
            max_pending_deliveries: config.topics.max_pending_deliveries,
            max_pending_bytes: config.topics.max_pending_bytes,
            max_pending_deliveries_per_host: config.topics.max_pending_deliveries_per_host,
            max_pending_bytes_per_host: config.topics.max_pending_bytes_per_host,
            max_filter_policy_bytes_per_principal: config
                .topics
                .max_filter_policy_bytes_per_principal,
        };
        // Creating the signing key (first start only) takes a moment of CPU.
        match tokio::task::spawn_blocking(move || {
            outpost_topics::Topics::open(store, queues, topics_config)
        })
        .await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                eprintln!("outpost: cannot recover the topics: {e}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("outpost: cannot recover the topics: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    // Messages that cross doors are checked as their principals (ADR 0015).
    broker.set_authorizer(security.clone());
    topics.set_authorizer(security.clone());
    let egress = outpost_http::sns::egress::EgressPolicy {
        allow: config.topics.endpoint_networks().unwrap_or_default(),
        own: vec![http_addr, config.mqtt.listen, config.websocket.listen],
        per_host_per_second: config.topics.endpoint_posts_per_second as f64,
        per_host_burst: if config.topics.endpoint_posts_burst == 0 {
            config.topics.endpoint_posts_per_second as f64
        } else {
            config.topics.endpoint_posts_burst as f64
        },
    };
    topics.attach(
        Some(Arc::new(outpost_http::sns::HttpClient::new(egress))),
        Some(Arc::new(MqttDoor(broker.clone()))),
    );
    let events = match outpost_routing::Events::open(
        store.clone(),
        queues.clone(),
        topics.clone(),
        outpost_routing::EventsConfig {
            region: config.http.region.clone(),
            account: config.http.account.clone(),
            max_rules_per_bus: config.http.max_rules_per_bus,
            max_archives_per_bus: config.http.max_archives_per_bus,
        },
    ) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("outpost: cannot recover the event rules: {e}");
            return ExitCode::FAILURE;
        }
    };
    events.set_authorizer(security.clone());
    events.attach(Some(Arc::new(MqttDoor(broker.clone()))));
    // Ticks missed while stopped fire now, once (ADR 0011).
    events.start_schedules();
    let (bridges_stop, bridges_stop_rx) = tokio::sync::watch::channel(false);
    let bridges = match outpost_bridge::Bridges::start(
        &config.bridges,
        &broker.config().node_id,
        broker.clone(),
        store.clone(),
        queues.clone(),
        topics.clone(),
        bridges_stop_rx,
    ) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("outpost: {e}");
            return ExitCode::from(2);
        }
    };
    broker.set_tap(Arc::new(outpost_mqtt::TapChain(vec![
        Arc::new(RulesTap(events.clone())),
        bridges.clone(),
    ])));
    if config.mqtt.sys_interval > 0 {
        let (broker, store, bridges) = (broker.clone(), store.clone(), bridges.clone());
        let started = std::time::Instant::now();
        let period = std::time::Duration::from_secs(config.mqtt.sys_interval);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            loop {
                every.tick().await;
                let s = store.stats();
                let bridge_values = bridges.sys_values();
                let mut extra = vec![
                    ("store/bytes", s.disk_bytes.to_string()),
                    ("store/live records", s.live_records.to_string()),
                    ("store/segments", s.segments.to_string()),
                ];
                extra.extend(bridge_values.iter().map(|(k, v)| (k.as_str(), v.clone())));
                broker.publish_sys(started.elapsed(), &extra);
            }
        });
    }
    broker.set_queue_door(outpost_routing::MqttQueues::new(queues.clone(), &broker));
    let _ = wired.send(true);
    let (http_shutdown, http_shutdown_rx) = tokio::sync::watch::channel(false);
    // Ready once every listener is bound (just below) and until shutdown begins.
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let registry = Arc::new(metrics::registry(metrics::Sources {
            mqtt: broker.clone(),
            queues: queues.clone(),
            topics: topics.clone(),
            events: events.clone(),
            store: store.clone(),
            gates: vec![mqtt_gate.clone(), http_gate.clone()],
            security: security.clone(),
            mqtt_rates: mqtt_rates.clone(),
            http_rates: http_rates.clone(),
            bridges: bridges.clone(),
        }));
        let is_ready = ready.clone();
        let state = outpost_http::HttpState::new(
            outpost_http::Engines {
                queues: queues.clone(),
                topics: topics.clone(),
                events: events.clone(),
                mqtt: broker.clone(),
                security: security.clone(),
                rates: http_rates.clone(),
            },
            http_addr,
            (
                Arc::new(move || metrics::render(&registry)),
                Arc::new(move || is_ready.load(std::sync::atomic::Ordering::Relaxed)),
            ),
            outpost_http::HttpLimits {
                header_timeout: std::time::Duration::from_secs(config.http.header_timeout),
                body_timeout: std::time::Duration::from_secs(config.http.body_timeout),
                max_parsing: config.http.max_concurrent_parsing,
                max_body: config.http.max_body_bytes,
            },
        );
        if let Some((listener, tls)) = https {
            accepting.push(tokio::spawn(outpost_http::serve(
                listener,
                http_gate.clone(),
                state.clone(),
                http_shutdown_rx.clone(),
                Some(tls),
            )));
        }
        accepting.push(tokio::spawn(outpost_http::serve(
            http,
            http_gate.clone(),
            state,
            http_shutdown_rx,
            None,
        )));
    }
    // Tests and scripts read this line to learn the ports (they may ask for port 0).
    println!(
        "outpost {} listening: mqtt={mqtt_addr} ws={ws_addr} http={http_addr}{tls_addrs} data={}",
        env!("CARGO_PKG_VERSION"),
        config.data_dir.display()
    );
    tracing::info!(%mqtt_addr, %ws_addr, %http_addr, "listeners started");

    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::spawn(reload_on_hangup(security.clone(), tls_in_force));
    shutdown_signal().await;
    tracing::info!("shutting down");
    ready.store(false, std::sync::atomic::Ordering::Relaxed);
    // One signal reaches everything: no new connections; MQTT connections write what they have
    // and close (MQTT 5: DISCONNECT 0x8B); long polls answer now; HTTP requests in flight finish.
    for task in &accepting {
        task.abort();
    }
    queues.shut_down();
    let _ = bridges_stop.send(true);
    broker.shut_down();
    let _ = http_shutdown.send(true);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (mqtt_gate.open() > 0 || http_gate.open() > 0) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if mqtt_gate.open() + http_gate.open() > 0 {
        tracing::warn!(
            mqtt = mqtt_gate.open(),
            http = http_gate.open(),
            "connections still open after 10 s; closing anyway"
        );
    }
    // What the engine queued for the store (deliveries acknowledged, sessions changed) is written
    // before the store closes.
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        broker.flush_persistence().wait(),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the store failed while shutting down"),
        Err(_) => tracing::warn!("the store did not finish its queue within 5 s"),
    }
    if let Err(e) = store.sync().await {
        tracing::error!(error = %e, "the final store sync failed");
    }
    tracing::info!("stopped");
    drop(store);
    ExitCode::SUCCESS
}

/// The MQTT engine as a door for topic subscriptions with the `mqtt` protocol: QoS 1, answered
/// once every persistent session that got the message holds it durably.
struct MqttDoor(std::sync::Arc<outpost_mqtt::Broker>);

impl outpost_topics::MqttPublisher for MqttDoor {
    fn publish(
        &self,
        m: outpost_topics::MqttMessage,
    ) -> outpost_topics::BoxFuture<'_, Result<(), outpost_topics::MqttRefusal>> {
        let message = outpost_mqtt::Message {
            topic: m.topic.as_str().into(),
            payload: m.payload,
            qos: outpost_codec::QoS::AtLeastOnce,
            retain: false,
            properties: outpost_mqtt::MessageProperties {
                content_type: m.content_type.map(str::to_string),
                user_properties: m.user_properties,
                ..Default::default()
            },
            received: None,
        };
        // Checked as its owner where it enters the engine (ADR 0015); not offered to the rules,
        // or a rule could feed itself.
        let durable = match self.0.publish_as(&m.who, message, false) {
            Ok((_, durable)) => durable,
            Err(code) => {
                let why = format!(
                    "MQTT publish to {} refused: {code:?}",
                    m.topic.chars().take(128).collect::<String>()
                );
                // A full queue (or retained quota) may drain: retried like a failed write.
                let refusal = if code == outpost_codec::ReasonCode::QuotaExceeded {
                    outpost_topics::MqttRefusal::Failed(why)
                } else {
                    outpost_topics::MqttRefusal::Refused(why)
                };
                return Box::pin(async move { Err(refusal) });
            }
        };
        Box::pin(async move {
            durable
                .wait()
                .await
                .map_err(|e| outpost_topics::MqttRefusal::Failed(e.to_string()))
        })
    }
}

/// Runs `listener` once `wired` turns true.
async fn once_wired(
    mut wired: tokio::sync::watch::Receiver<bool>,
    listener: impl std::future::Future<Output = ()>,
) {
    let _ = wired.wait_for(|w| *w).await;
    listener.await;
}

/// This broker's name in bridges' hop markers: made once, kept in the store, so it survives
/// restarts and differs between gateways.
fn node_id(store: &outpost_store::Store) -> String {
    const TABLE: &str = "bridge";
    if let Ok(Some(v)) = store.meta().get(TABLE, b"node") {
        if let Ok(s) = String::from_utf8(v) {
            return s;
        }
    }
    let id = format!("{:016x}", rand::random::<u64>());
    if let Err(e) = store.meta().apply(&[outpost_store::MetaOp::Put {
        table: TABLE,
        key: b"node",
        value: id.as_bytes(),
    }]) {
        tracing::warn!(error = %e, "the node id could not be stored; bridges use a new one after a restart");
    }
    id
}

/// Offers every client PUBLISH to the event rules (MQTT publishes are events, ADR 0011).
struct RulesTap(std::sync::Arc<outpost_routing::Events>);

impl outpost_mqtt::PublishTap for RulesTap {
    fn offer(&self, client_id: &str, m: &outpost_mqtt::Message) -> Option<outpost_mqtt::TapWait> {
        let p = &m.properties;
        self.0.offer_mqtt(&outpost_routing::MqttEventSource {
            client_id,
            topic: &m.topic,
            payload: &m.payload,
            qos: m.qos as u8,
            retain: m.retain,
            content_type: p.content_type.as_deref(),
            response_topic: p.response_topic.as_deref(),
            correlation_data: p.correlation_data.as_deref(),
            payload_format_indicator: p.payload_format_indicator,
            user_properties: &p.user_properties,
        })
    }
}

/// SIGHUP reads the password, access key and ACL files and the TLS certificates again;
/// connections stay open and the new rules apply to their next packet (new certificates to new
/// handshakes). An invalid file keeps what is in force.
async fn reload_on_hangup(
    security: std::sync::Arc<outpost_auth::Security>,
    tls: Vec<std::sync::Arc<outpost_net::Tls>>,
) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; the security files will not be reloaded");
            return;
        };
        while hup.recv().await.is_some() {
            match security.reload() {
                Ok(()) => tracing::info!("SIGHUP: security files reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: reload refused; the previous rules stay in force")
                }
            }
            for t in &tls {
                match t.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS reload refused; the certificate in force stays")
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    drop((security, tls));
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
