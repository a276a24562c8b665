//! The `outpost` binary: configuration, wiring, startup and shutdown. No broker logic lives here.
//!
//! Today it loads the configuration, opens the embedded store (replaying it after a crash) and reports
//! what it found; the MQTT, WebSocket and HTTP listeners are wired in as they land.

mod config;

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
    /// Store sync policy: always, never or interval:<ms>.
    #[arg(long, env = "OUTPOST_STORE_SYNC")]
    store_sync: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

impl Cli {
    /// Defaults, then the file, then environment and flags (clap already gave flags precedence).
    fn config(&self) -> Result<Config, config::ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
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
        if let Some(v) = &self.store_sync {
            c.store.sync = v.clone();
        }
        Ok(c)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let filter =
        tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let store_config = match config.store_config() {
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
    let stats = store.stats();
    println!(
        "outpost {}: store in {} ({} segments, {} live records, recovered in {} ms); MQTT {} / WebSocket {}{} / HTTP {} configured — the listeners are not built yet",
        env!("CARGO_PKG_VERSION"),
        config.data_dir.display(),
        stats.segments,
        stats.live_records,
        stats.recovery.millis,
        config.mqtt.listen,
        config.websocket.listen,
        config.websocket.path,
        config.http.listen,
    );
    ExitCode::SUCCESS
}
