//! The admin API (`/admin/v1`) against its OpenAPI description, driven from Python
//! (tests/interop/admin_api_test.py: every documented operation called, every answer checked
//! against its schema, effects seen by paho and boto3); then a purge that must survive `kill -9`;
//! then Schemathesis's property-based run over every operation (valid and invalid requests,
//! undeclared methods, no credentials, stateful sequences: every answer as documented).

mod support;

use support::{add_user, python, Outpost};

#[test]
fn admin_api_matches_its_description() {
    let Some(python) = python(".venv") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let passwords = dir.path().join("passwords");
    add_user(&passwords, "operator", "op-secret-1");
    add_user(&passwords, "viewer", "viewer-secret-1");
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        "[[keys]]\naccess_key_id = \"AKIDOPERATOR0001\"\nsecret_access_key = \"operator-secret-key-0001\"\nidentity = \"operator\"\n",
    )
    .expect("keys written");
    let acl = dir.path().join("acl.toml");
    std::fs::write(
        &acl,
        r##"
[[rules]]
effect = "allow"
identities = ["operator"]
actions = ["*"]
resources = ["*", "#"]

[[rules]]
effect = "allow"
identities = ["viewer"]
actions = ["mqtt:*"]
resources = ["#"]
"##,
    )
    .expect("acl written");
    // Schemathesis logs in wrongly on purpose, many times: the per-address login throttle
    // (its own tests are elsewhere) would otherwise answer everything after with 429.
    let toml = format!(
        "[auth]\npassword_file = {passwords:?}\nacl_file = {acl:?}\naccess_keys_file = {keys:?}\nlogin_failure_burst = 1000000\n"
    );
    let broker = Outpost::start_with(tempfile::tempdir().expect("temp dir"), &toml, None);
    support::pytest(
        &python,
        "admin_api_test.py",
        &[
            ("OUTPOST_HTTP_ENDPOINT", broker.http.clone()),
            ("OUTPOST_MQTT_PORT", broker.port()),
        ],
    );
    // The purge was acknowledged (204): it survives kill -9, and the other message stays.
    let data = broker.kill();
    let config = data.path().with_extension("toml");
    let broker = Outpost::start_with(
        data,
        &std::fs::read_to_string(config).expect("config"),
        None,
    );
    let get = |topic: &str| {
        support::http::http(
            &broker.http,
            format!(
                "GET /admin/v1/retained/message?topic={topic} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic b3BlcmF0b3I6b3Atc2VjcmV0LTE=\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .0
    };
    assert_eq!(get("purged/topic"), 404, "the purge was durable");
    assert_eq!(get("kept/topic"), 200);

    let Some(api_python) = support::python(".venv-api") else {
        return;
    };
    let st = api_python.with_file_name("st");
    // Schemathesis keeps a cache in its working folder: a temporary one, not the checkout.
    let scratch = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(st)
        .current_dir(scratch.path())
        .arg("run")
        .arg(format!("{}/admin/v1/openapi.json", broker.http))
        .args(["--url", &broker.http])
        .args(["-H", "Authorization: Basic b3BlcmF0b3I6b3Atc2VjcmV0LTE="])
        .args(["--max-examples", "25", "--seed", "1", "--no-color"])
        .output()
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "schemathesis found answers that break the description"
    );
    assert!(text.contains("14/14"), "every operation was tested");
}
