//! The web console in a real browser (Chromium driven by Playwright, tests/interop/console_test.py)
//! against the real broker: login, the overview moving under load, kicking a client, a queue's
//! test message and purge, a user and a role turning a denied publish into an allowed one, the
//! live view. The overview's screenshot in docs/ is the one this test takes.

mod support;

use support::{add_user, python, root, Outpost};

#[test]
fn console_in_a_browser() {
    let Some(python) = python(".venv") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let passwords = dir.path().join("passwords");
    add_user(&passwords, "operator", "op-secret-1");
    let acl = dir.path().join("acl.toml");
    std::fs::write(
        &acl,
        "[[rules]]\neffect = \"allow\"\nidentities = [\"operator\"]\nactions = [\"*\"]\nresources = [\"*\", \"#\"]\n",
    )
    .expect("acl written");
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        "[[keys]]\naccess_key_id = \"AKIDOPERATOR0001\"\nsecret_access_key = \"operator-secret-key-0001\"\nidentity = \"operator\"\n",
    )
    .expect("keys written");
    let toml = format!(
        "[auth]\npassword_file = {passwords:?}\nacl_file = {acl:?}\naccess_keys_file = {keys:?}\n"
    );
    let broker = Outpost::start_with(tempfile::tempdir().expect("temp dir"), &toml, None);
    let ws_port = broker
        .ws
        .split(':')
        .nth(1)
        .and_then(|p| p.split('/').next())
        .unwrap_or("")
        .to_string();
    support::pytest(
        &python,
        "console_test.py",
        &[
            ("OUTPOST_HTTP_ENDPOINT", broker.http.clone()),
            ("OUTPOST_MQTT_PORT", broker.port()),
            ("OUTPOST_WS_PORT", ws_port),
            (
                "OUTPOST_SCREENSHOT",
                root()
                    .join("docs/console-overview.png")
                    .display()
                    .to_string(),
            ),
        ],
    );
}
