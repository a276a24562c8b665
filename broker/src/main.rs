//! The `outpost` binary: configuration, wiring, startup and shutdown. No broker logic lives here.
//!
//! `main` reads the command line and the configuration, sets up logging, opens the embedded store
//! (replaying it after a crash) and hands over to [`wiring::serve`], which builds the engines,
//! binds the doors and runs until SIGINT/SIGTERM; [`shutdown`] says in what order everything stops.

// A build without some feature leaves parts of the wiring unused (a `mut` that nothing pushes
// to, a parameter only an absent engine reads); the full build is the one held to every lint.
#![cfg_attr(
    not(all(
        feature = "sqs",
        feature = "sns",
        feature = "events",
        feature = "iot-data",
        feature = "bridge",
        feature = "tls",
        feature = "metrics"
    )),
    allow(unused)
)]

mod cli;
mod config;
#[cfg(feature = "metrics")]
mod metrics;
mod passwd;
mod probe;
mod shutdown;
mod signals;
mod wiring;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};
use config::{Config, LogFormat};

fn main() -> ExitCode {
    // Test builds only: failure points named in `FAILPOINTS` (see the store's `failpoints`).
    #[cfg(feature = "failpoints")]
    let _faults = fail::FailScenario::setup();
    let mut cli = Cli::parse();
    match cli.command.take() {
        Some(Command::Passwd { action }) => return passwd::run(action),
        Some(Command::Probe { url }) => return probe::probe(&url),
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
    if let Err(e) = init_logging(&config) {
        eprintln!("outpost: {e}");
        return ExitCode::from(2);
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
    runtime.block_on(wiring::serve(config, store, security))
}

/// Logs through `tracing`, as text or JSON lines.
fn init_logging(config: &Config) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // `Targets` reads the same `target=level,level` syntax as `EnvFilter` without a regex engine
    // (a third of a megabyte of binary for span and field filters the broker never needs).
    let filter: tracing_subscriber::filter::Targets = config
        .log
        .parse()
        .map_err(|e| format!("invalid log filter {:?}: {e}", config.log))?;
    match config.log_format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().json())
            .with(filter)
            .init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer())
            .with(filter)
            .init(),
    }
    Ok(())
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
