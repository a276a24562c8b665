//! The `outpost` binary as a user starts it: version, configuration layers, the embedded store.

mod support;

use std::process::Command;

fn outpost() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outpost"));
    // Tests set what they need; nothing leaks in from the environment running them.
    for var in [
        "OUTPOST_CONFIG",
        "OUTPOST_DATA_DIR",
        "OUTPOST_LOG",
        "OUTPOST_MQTT_LISTEN",
        "OUTPOST_WS_LISTEN",
        "OUTPOST_HTTP_LISTEN",
        "OUTPOST_STORE_SYNC",
    ] {
        c.env_remove(var);
    }
    c
}

#[test]
fn version_flag_prints_the_crate_version() {
    let out = outpost().arg("--version").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("outpost {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn starts_with_an_embedded_store_in_the_data_dir() {
    let broker = support::Outpost::start();
    let data = broker.data.path().to_path_buf();
    support::eventually(
        "the store files",
        std::time::Duration::from_secs(10),
        || data.join("meta.redb").exists() && data.join("0000000000000000.seg").exists(),
    );
}

#[test]
fn defaults_are_the_documented_ports() {
    let out = outpost().arg("--print-config").output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen = \"0.0.0.0:1883\""), "{text}");
    assert!(text.contains("listen = \"0.0.0.0:8083\""), "{text}");
    assert!(text.contains("path = \"/mqtt\""), "{text}");
    assert!(text.contains("listen = \"0.0.0.0:9324\""), "{text}");
    assert!(text.contains("data_dir = \"./outpost-data\""), "{text}");
}

#[test]
fn file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("outpost.toml");
    std::fs::write(
        &file,
        "[mqtt]\nlisten = \"127.0.0.1:1000\"\n[http]\nlisten = \"127.0.0.1:2000\"\n",
    )
    .unwrap();
    let out = outpost()
        .args([
            "--config",
            file.to_str().unwrap(),
            "--print-config",
            "--http-listen",
            "127.0.0.1:4000",
        ])
        .env("OUTPOST_MQTT_LISTEN", "127.0.0.1:3000")
        .env("OUTPOST_HTTP_LISTEN", "127.0.0.1:5000")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("listen = \"127.0.0.1:3000\""),
        "environment beats the file: {text}"
    );
    assert!(
        text.contains("listen = \"127.0.0.1:4000\""),
        "flags beat the environment: {text}"
    );
    assert!(
        !text.contains("127.0.0.1:1000") && !text.contains("127.0.0.1:5000"),
        "{text}"
    );
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[mqtt]\nlisten_port = 1883\n").unwrap();
    let out = outpost()
        .args(["--config", file.to_str().unwrap()])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_port"), "names the bad key: {err}");

    let out = outpost()
        .args(["--store-sync", "sometimes"])
        .env("OUTPOST_DATA_DIR", dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("store.sync"));

    let out = outpost().arg("--no-such-flag").output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}
