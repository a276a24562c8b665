//! Startup: the engines built from the store, the doors bound and opened in front of them, the
//! background tasks, then the wait for a signal. Every task gets the one [`Shutdown`]; what stops
//! in which order is in [`crate::shutdown`].

#[cfg(feature = "sns")]
mod crossings;
mod engines;
#[cfg(feature = "http")]
mod http;
mod limits;
mod listeners;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use outpost_shutdown::{Shutdown, Trigger};

use crate::config::Config;
use crate::shutdown::Stopping;
use crate::signals;

/// Why the broker could not start: the message for stderr and the exit code (2 for a
/// configuration the broker refuses, 1 for anything else).
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// A configuration the broker refuses (exit code 2).
    pub(crate) fn config(e: impl std::fmt::Display) -> Failure {
        Failure {
            code: 2,
            message: e.to_string(),
        }
    }

    /// Anything else that stops the start (exit code 1).
    pub(crate) fn runtime(message: String) -> Failure {
        Failure { code: 1, message }
    }
}

/// Runs the broker until SIGINT/SIGTERM, then stops it in order.
pub(crate) async fn serve(
    config: Config,
    store: outpost_store::Store,
    security: Arc<outpost_auth::Security>,
) -> ExitCode {
    match run(config, store, security).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("outpost: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(
    mut config: Config,
    store: outpost_store::Store,
    security: Arc<outpost_auth::Security>,
) -> Result<(), Failure> {
    let local_only_mode = limits::restrict_to_loopback(&mut config, &security);
    let limits = limits::Limits::new(&config);
    let stats = store.stats();
    tracing::info!(
        data_dir = %config.data_dir.display(),
        segments = stats.segments,
        live_records = stats.live_records,
        recovery_ms = stats.recovery.millis,
        "store opened"
    );
    let trigger = Trigger::new();
    let shutdown = trigger.subscribe();
    let bound = listeners::bind_all(&config, local_only_mode).await?;
    let broker = engines::mqtt(&config, &store)?;
    let engines = engines::open(
        &config,
        &store,
        broker,
        &security,
        bound.http_addr(),
        &shutdown,
    )
    .await?;
    background(&config, &engines, &store, &shutdown);
    let addresses = bound.addresses.clone();
    let tls_in_force = bound.tls_in_force.clone();
    let (mut tasks, http_listeners) = listeners::serve_mqtt(
        bound,
        &config,
        &engines.broker,
        &limits,
        &security,
        &shutdown,
    );
    // Ready once every listener serves, and until shutdown begins.
    let ready = Arc::new(AtomicBool::new(false));
    #[cfg(feature = "http")]
    tasks.extend(http::serve(
        http_listeners,
        &config,
        &engines,
        &limits,
        &store,
        &security,
        (&ready, &shutdown),
    ));
    // Tests and scripts read this line to learn the ports (they may ask for port 0).
    println!(
        "outpost {} listening: {addresses} data={}",
        env!("CARGO_PKG_VERSION"),
        config.data_dir.display()
    );
    tracing::info!(%addresses, "listeners started");
    ready.store(true, Ordering::Relaxed);
    tokio::spawn(
        shutdown
            .clone()
            .until(signals::reload_on_hangup(security.clone(), tls_in_force)),
    );
    signals::shutdown_signal().await;
    Stopping {
        trigger,
        ready,
        accepting: tasks,
        #[cfg(feature = "sqs")]
        queues: engines.queues,
        broker: engines.broker,
        gates: [limits.mqtt_gate, limits.http_gate],
        store,
    }
    .stop()
    .await;
    Ok(())
}

/// The engines' clocks: the MQTT engine's second tick (expiries, will delays) and `$SYS`.
fn background(
    config: &Config,
    engines: &engines::Engines,
    store: &outpost_store::Store,
    shutdown: &Shutdown,
) {
    let broker = engines.broker.clone();
    tokio::spawn(shutdown.clone().until(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            every.tick().await;
            broker.tick(std::time::Instant::now());
        }
    }));
    if config.mqtt.sys_interval > 0 {
        let (broker, store) = (engines.broker.clone(), store.clone());
        #[cfg(feature = "bridge")]
        let bridges = engines.bridges.clone();
        let started = std::time::Instant::now();
        let period = std::time::Duration::from_secs(config.mqtt.sys_interval);
        tokio::spawn(shutdown.clone().until(async move {
            let mut every = tokio::time::interval(period);
            loop {
                every.tick().await;
                let s = store.stats();
                #[cfg(feature = "bridge")]
                let bridge_values = bridges.sys_values();
                #[cfg(not(feature = "bridge"))]
                let bridge_values: Vec<(String, String)> = Vec::new();
                let mut extra = vec![
                    ("store/bytes", s.disk_bytes.to_string()),
                    ("store/live records", s.live_records.to_string()),
                    ("store/segments", s.segments.to_string()),
                ];
                extra.extend(bridge_values.iter().map(|(k, v)| (k.as_str(), v.clone())));
                broker.publish_sys(started.elapsed(), &extra);
            }
        }));
    }
}
