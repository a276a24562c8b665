//! The `outpost` binary: configuration, wiring, startup and shutdown. No broker logic lives here.
//!
//! Until the MQTT listener lands, the binary parses its command line, reports its version and the
//! settings it would serve with, and exits.

use clap::Parser;

/// One persistent message broker for the edge.
#[derive(Debug, Parser)]
#[command(name = "outpost", version, about)]
struct Cli {
    /// Folder for the embedded store.
    #[arg(long, env = "OUTPOST_DATA_DIR", default_value = "./outpost-data")]
    data_dir: std::path::PathBuf,
}

fn main() {
    let cli = Cli::parse();
    println!(
        "outpost {} (data in {}): protocol codec ready; the MQTT listener is not built yet",
        env!("CARGO_PKG_VERSION"),
        cli.data_dir.display()
    );
}
