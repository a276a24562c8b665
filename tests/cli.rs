//! The `outpost` binary as a user starts it.

use std::process::Command;

fn outpost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_outpost"))
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
fn data_dir_comes_from_the_environment() {
    let out = outpost()
        .env("OUTPOST_DATA_DIR", "/tmp/outpost-cli-test")
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("/tmp/outpost-cli-test"));
}

#[test]
fn unknown_flag_is_a_clear_error() {
    let out = outpost().arg("--no-such-flag").output().expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-such-flag"), "{err}");
}
