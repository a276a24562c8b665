//! The README's five-minute tour, run as written: each `sh` block of the tour is given to bash
//! against a real broker, with mosquitto's clients and the aws CLI, and what the block's `# →` line
//! promises must be in what it printed. Only the addresses change (the broker listens on free
//! ports here): `http://localhost:9324` becomes the broker's HTTP address, and `mosquitto_pub` /
//! `mosquitto_sub` are given its MQTT port by a wrapper.

mod support;

use std::path::Path;
use std::process::Command;

use support::{python, root, Outpost};

/// The tour's `sh` blocks, in order, as written in README.md.
fn tour_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme
        .find("## A five-minute tour")
        .expect("the README has a tour");
    let end = readme[start..]
        .find("\n## ")
        .map_or(readme.len(), |i| start + i);
    let tour = &readme[start..end];
    let mut blocks = Vec::new();
    let mut rest = tour;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("```").expect("a closed block");
        blocks.push(body[..close].to_string());
        rest = &body[close + 3..];
    }
    blocks
}

/// What a block promises to print: the fragments of its `# →` lines (`…` separates fragments).
fn promises(block: &str) -> Vec<String> {
    block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("# →"))
        .flat_map(|l| l.split('…'))
        .map(|f| f.trim().trim_end_matches(',').trim().to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

/// A folder with `mosquitto_pub` and `mosquitto_sub` that talk to `port`.
fn wrappers(dir: &Path, port: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    for tool in ["mosquitto_pub", "mosquitto_sub"] {
        let real = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .expect("sh runs");
        let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
        assert!(!real.is_empty(), "{tool} is not installed");
        let path = dir.join(tool);
        std::fs::write(
            &path,
            format!("#!/bin/sh\nexec {real} -h 127.0.0.1 -p {port} \"$@\"\n"),
        )
        .expect("wrapper written");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

#[test]
fn the_five_minute_tour_works_as_written() {
    let Some(python) = python(".venv") else {
        return;
    };
    let blocks = tour_blocks();
    assert_eq!(blocks.len(), 4, "the credentials, then three scenarios");
    let broker = Outpost::start();
    let bin = tempfile::tempdir().expect("temp dir");
    wrappers(bin.path(), &broker.port());
    let venv_bin = python.parent().expect("the venv's bin");
    let path = format!(
        "{}:{}:{}",
        bin.path().display(),
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let credentials = &blocks[0];
    for block in &blocks[1..] {
        let expected = promises(block);
        assert!(!expected.is_empty(), "every scenario promises an output");
        let script = format!(
            "set -euo pipefail\n{credentials}\n{}",
            block.replace("http://localhost:9324", &broker.http)
        );
        let out = Command::new("timeout")
            .args(["120", "bash", "-c", &script])
            .env("PATH", &path)
            .env_remove("AWS_PROFILE")
            .output()
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "the block failed:\n{block}\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for fragment in &expected {
            assert!(
                stdout.contains(fragment.as_str()),
                "{fragment:?} not printed by:\n{block}\nstdout:\n{stdout}"
            );
        }
    }
}
