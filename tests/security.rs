//! Authentication and authorization end to end, on the real binary: the password file made by
//! `outpost passwd`, MQTT logins and the ACL answered in each protocol version's own codes
//! (raw packets, so the exact bytes are checked), mosquitto_pub and paho as real clients, boto3
//! and the aws CLI's botocore against verified SigV4 (tests/interop/security_test.py), SIGHUP
//! reloads, per-address throttling of failed logins, the loopback-only default, and no secret in
//! the log.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use outpost_codec::{QoS, ReasonCode, Version};
use support::raw::{Got, Raw};
use support::{add_user, eventually, python, Outpost};

const WAIT: Duration = Duration::from_secs(10);

const ACL: &str = r##"
[[rules]]
effect = "allow"
identities = ["alice", "bob"]
actions = ["mqtt:publish"]
resources = ["devices/%c/#", "users/%u/#"]

[[rules]]
effect = "allow"
identities = ["*"]
actions = ["mqtt:subscribe", "mqtt:receive"]
resources = ["public/#", "users/%u/#"]

[[rules]]
effect = "deny"
identities = ["*"]
actions = ["mqtt:receive"]
resources = ["public/secret/#"]

[[rules]]
effect = "allow"
identities = ["ops"]
actions = ["mqtt:*", "sqs:*", "sns:*", "events:*", "iot:*"]
resources = ["#", "*"]

[[rules]]
effect = "allow"
identities = ["guest"]
actions = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]
resources = ["arn:aws:sqs:*:*:public-*"]

[[rules]]
effect = "deny"
identities = ["guest"]
actions = ["sqs:ReceiveMessage"]
resources = ["*"]
"##;

const KEYS: &str = r#"
[[keys]]
access_key_id = "AKIDOPS000000001"
secret_access_key = "ops-secret-0123456789"
identity = "ops"

[[keys]]
access_key_id = "AKIDGUEST0000001"
secret_access_key = "guest-secret-0123456"
identity = "guest"

[[keys]]
access_key_id = "AKIDPARTNER00001"
secret_access_key = "partner-secret-01234"
identity = "partner"
account = "111122223333"
"#;

/// Every secret the tests use: none may appear in the log.
const SECRETS: [&str; 6] = [
    "alice-secret",
    "bob-secret",
    "ops-mqtt-secret",
    "ops-secret-0123456789",
    "guest-secret-0123456",
    "partner-secret-01234",
];

fn outpost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_outpost"))
}

struct Secured {
    broker: Outpost,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Secured {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A broker with a password file (alice, bob, ops), access keys (ops, guest, partner) and the
/// ACL above; `extra` is appended to its `[auth]` section.
fn secured(extra: &str) -> Secured {
    let dir = tempfile::tempdir().expect("temp dir");
    let passwords = dir.path().join("passwords");
    add_user(&passwords, "alice", "alice-secret");
    add_user(&passwords, "bob", "bob-secret");
    add_user(&passwords, "ops", "ops-mqtt-secret");
    std::fs::write(dir.path().join("keys.toml"), KEYS).expect("keys written");
    std::fs::write(dir.path().join("acl.toml"), ACL).expect("acl written");
    let toml = format!(
        "[auth]\npassword_file = {:?}\naccess_keys_file = {:?}\nacl_file = {:?}\n{extra}\n",
        passwords,
        dir.path().join("keys.toml"),
        dir.path().join("acl.toml"),
    );
    let log = dir.path().join("outpost.log");
    let broker = Outpost::start_with(
        tempfile::tempdir().expect("temp dir"),
        &toml,
        Some(log.as_path()),
    );
    Secured { broker, dir, log }
}

fn connack(raw: &mut Raw) -> ReasonCode {
    match raw.recv(WAIT) {
        Some(Got::ConnAck(code)) => code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn login(
    s: &Secured,
    version: Version,
    client: &str,
    user: Option<&str>,
    pass: Option<&str>,
) -> (Raw, ReasonCode) {
    let mut raw = Raw::login(
        s.broker.mqtt,
        version,
        client,
        user,
        pass.map(str::as_bytes),
    );
    let code = connack(&mut raw);
    (raw, code)
}

#[test]
fn passwd_subcommand_manages_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwords");
    add_user(&file, "alice", "alice-secret");
    // The password from standard input, as scripts pass it.
    let mut child = outpost()
        .args(["passwd", "add"])
        .arg(&file)
        .arg("bob")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "bob-secret").unwrap();
    }
    assert!(child.wait().unwrap().success());
    let list = |file: &Path| {
        let out = outpost()
            .args(["passwd", "list"])
            .arg(file)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(list(&file), "alice\nbob\n");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("alice:$argon2id$"), "{text}");
    assert!(!text.contains("secret"), "plaintext in the password file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "the password file is readable by its owner only"
        );
    }
    let st = outpost()
        .args(["passwd", "delete"])
        .arg(&file)
        .arg("bob")
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(list(&file), "alice\n");
    let out = outpost()
        .args(["passwd", "delete"])
        .arg(&file)
        .arg("nobody")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user nobody"));
}

#[test]
fn mqtt_logins_answer_in_each_version_s_codes() {
    let s = secured("");
    for version in [Version::V5, Version::V311] {
        let (_, ok) = login(&s, version, "alice-1", Some("alice"), Some("alice-secret"));
        assert_eq!(ok, ReasonCode::Success, "{version:?}");
        // 0x86 in MQTT 5, return code 4 in 3.1.1.
        let (_, wrong) = login(&s, version, "alice-2", Some("alice"), Some("alice-Secret"));
        assert_eq!(wrong, ReasonCode::BadUserNameOrPassword, "{version:?}");
        let (_, unknown) = login(&s, version, "x", Some("mallory"), Some("alice-secret"));
        assert_eq!(unknown, ReasonCode::BadUserNameOrPassword, "{version:?}");
        // 0x87 / return code 5: no credentials and anonymous access is off.
        let (_, anonymous) = login(&s, version, "anon", None, None);
        assert_eq!(anonymous, ReasonCode::NotAuthorized, "{version:?}");
    }
    let log = s.log_text();
    assert!(log.contains("login refused"), "refusals are logged: {log}");
    for secret in SECRETS {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[test]
fn the_acl_decides_publish_subscribe_and_receive() {
    let s = secured("");
    // ops reads everything (its rule grants `#`).
    let (mut ops, code) = login(
        &s,
        Version::V5,
        "ops-1",
        Some("ops"),
        Some("ops-mqtt-secret"),
    );
    assert_eq!(code, ReasonCode::Success);
    ops.subscribe(1, &["devices/#"], QoS::AtLeastOnce);
    assert_eq!(
        ops.recv(WAIT),
        Some(Got::SubAck(vec![ReasonCode::GrantedQoS1]))
    );

    // MQTT 5: a denied QoS 1 publish hears 0x87; the allowed one is delivered.
    let (mut alice, _) = login(
        &s,
        Version::V5,
        "alice-1",
        Some("alice"),
        Some("alice-secret"),
    );
    alice.publish("devices/other/t", b"nope", QoS::AtLeastOnce, 1, false);
    assert_eq!(
        alice.recv(WAIT),
        Some(Got::PubAck(1, ReasonCode::NotAuthorized))
    );
    alice.publish("devices/alice-1/t", b"yes", QoS::AtLeastOnce, 2, false);
    assert_eq!(alice.recv(WAIT), Some(Got::PubAck(2, ReasonCode::Success)));
    let got = ops.recv_publish(WAIT).expect("the allowed message arrives");
    assert_eq!(got.1, b"yes");

    // MQTT 3.1.1: the denied publish is acknowledged (mosquitto's behavior) and goes nowhere.
    let (mut bob, _) = login(&s, Version::V311, "bob-1", Some("bob"), Some("bob-secret"));
    bob.publish("devices/alice-1/t", b"denied", QoS::AtLeastOnce, 3, false);
    assert_eq!(bob.recv(WAIT), Some(Got::PubAck(3, ReasonCode::Success)));
    bob.publish("devices/bob-1/t", b"allowed", QoS::AtLeastOnce, 4, false);
    assert_eq!(bob.recv(WAIT), Some(Got::PubAck(4, ReasonCode::Success)));
    // What arrives next is the allowed one: the denied one, sent before it, was dropped.
    assert_eq!(ops.recv_publish(WAIT).expect("delivered").1, b"allowed");

    // Subscriptions: per filter, 0x87 in MQTT 5, 0x80 in 3.1.1.
    alice.subscribe(
        5,
        &["public/#", "devices/#", "users/alice/#"],
        QoS::AtLeastOnce,
    );
    assert_eq!(
        alice.recv(WAIT),
        Some(Got::SubAck(vec![
            ReasonCode::GrantedQoS1,
            ReasonCode::NotAuthorized,
            ReasonCode::GrantedQoS1
        ]))
    );
    bob.subscribe(6, &["devices/#", "public/#"], QoS::AtLeastOnce);
    assert_eq!(
        bob.recv(WAIT),
        Some(Got::SubAck(vec![
            ReasonCode::UnspecifiedError,
            ReasonCode::GrantedQoS1
        ]))
    );

    // Receive: `public/#` is readable but `public/secret/#` is not, whatever the subscription.
    ops.publish("public/secret/x", b"secret", QoS::AtLeastOnce, 7, false);
    assert!(matches!(ops_ack(&mut ops, 7), Some(Got::PubAck(7, _))));
    ops.publish("public/open", b"open", QoS::AtLeastOnce, 8, false);
    let first = alice.recv_publish(WAIT).expect("public/open arrives");
    assert_eq!(first.1, b"open", "public/secret/x was delivered");
    let first = bob.recv_publish(WAIT).expect("public/open arrives");
    assert_eq!(first.1, b"open", "public/secret/x was delivered");
}

/// Consumes acknowledgements until the one for `pkid` (the subscriber's own deliveries may come
/// first) and returns it.
fn ops_ack(ops: &mut Raw, pkid: u16) -> Option<Got> {
    loop {
        match ops.recv(WAIT)? {
            a @ Got::PubAck(p, _) if p == pkid => return Some(a),
            _ => {}
        }
    }
}

#[test]
fn failed_logins_are_throttled_per_address() {
    let s = secured("login_failure_burst = 3\nlogin_failures_per_minute = 1\n");
    for i in 0..3 {
        let (_, code) = login(
            &s,
            Version::V5,
            &format!("t{i}"),
            Some("alice"),
            Some("guess"),
        );
        assert_eq!(code, ReasonCode::BadUserNameOrPassword);
    }
    // The address has spent its failures: even the right password is refused for now.
    let (_, code) = login(&s, Version::V5, "t4", Some("alice"), Some("alice-secret"));
    assert_eq!(code, ReasonCode::ConnectionRateExceeded);
    let (_, code) = login(&s, Version::V311, "t5", Some("alice"), Some("alice-secret"));
    assert_eq!(code, ReasonCode::ServerUnavailable);
    let metrics = support::http::http(
        &s.broker.http,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        metrics
            .1
            .contains("outpost_throttled_total{reason=\"login_failures\"} 2"),
        "{}",
        metrics.1
    );
}

#[test]
fn sighup_reloads_rules_and_users_without_dropping_connections() {
    let s = secured("");
    let (mut alice, _) = login(
        &s,
        Version::V5,
        "alice-1",
        Some("alice"),
        Some("alice-secret"),
    );
    alice.publish("later/x", b"1", QoS::AtLeastOnce, 1, false);
    assert_eq!(
        alice.recv(WAIT),
        Some(Got::PubAck(1, ReasonCode::NotAuthorized))
    );
    let (_, code) = login(
        &s,
        Version::V5,
        "carol-1",
        Some("carol"),
        Some("carol-secret"),
    );
    assert_eq!(code, ReasonCode::BadUserNameOrPassword);

    let acl = format!(
        "{ACL}\n[[rules]]\neffect = \"allow\"\nidentities = [\"alice\"]\nactions = [\"mqtt:publish\"]\nresources = [\"later/#\"]\n"
    );
    std::fs::write(s.file("acl.toml"), acl).unwrap();
    add_user(&s.file("passwords"), "carol", "carol-secret");
    // An invalid file first: the reload is refused and the rules in force stay.
    let keys = std::fs::read_to_string(s.file("keys.toml")).unwrap();
    std::fs::write(s.file("keys.toml"), "[[keys]]\nbroken").unwrap();
    hup(&s.broker);
    eventually("the refused reload is logged", WAIT, || {
        s.log_text().contains("reload refused")
    });
    std::fs::write(s.file("keys.toml"), keys).unwrap();
    hup(&s.broker);

    let mut pkid = 2;
    eventually("the new rule applies to the open connection", WAIT, || {
        pkid += 1;
        alice.publish("later/x", b"1", QoS::AtLeastOnce, pkid, false);
        match alice.recv(WAIT) {
            Some(Got::PubAck(_, code)) => code != ReasonCode::NotAuthorized,
            other => panic!("the connection was dropped by the reload: {other:?}"),
        }
    });
    let (_, code) = login(
        &s,
        Version::V5,
        "carol-2",
        Some("carol"),
        Some("carol-secret"),
    );
    assert_eq!(code, ReasonCode::Success);
}

fn hup(broker: &Outpost) {
    let st = Command::new("kill")
        .args(["-HUP", &broker.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn mosquitto_clients_log_in_with_the_password_file() {
    let s = secured("");
    let pubc = |user: &str, pass: &str| {
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &s.broker.port(), "-q", "1"])
            .args(["-i", "alice-m", "-t", "devices/alice-m/t", "-m", "hello"])
            .args(["-u", user, "-P", pass])
            .output()
    };
    let Ok(ok) = pubc("alice", "alice-secret") else {
        support::skip("no mosquitto_pub");
        return;
    };
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = pubc("alice", "wrong").unwrap();
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr).to_lowercase();
    assert!(
        said.contains("bad user name or password") || said.contains("not authori"),
        "{said}"
    );
}

/// mosquitto_sub and mosquitto_pub against the ACL, for a user and for anonymous clients.
#[test]
fn mosquitto_clients_subscribe_and_publish_as_the_acl_says() {
    let s = secured("allow_anonymous = true\n");
    let port = s.broker.port();
    let run = |args: &[&str]| {
        Command::new(args[0])
            .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5"])
            .args(&args[1..])
            .output()
    };
    // A retained message alice may publish, then read back.
    let Ok(o) = run(&[
        "mosquitto_pub",
        "-u",
        "alice",
        "-P",
        "alice-secret",
        "-i",
        "alice-r",
        "-q",
        "1",
        "-r",
        "-t",
        "users/alice/state",
        "-m",
        "on",
    ]) else {
        support::skip("no mosquitto clients");
        return;
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&[
        "mosquitto_sub",
        "-u",
        "alice",
        "-P",
        "alice-secret",
        "-t",
        "users/alice/#",
        "-C",
        "1",
        "-W",
        "5",
    ])
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "on");
    // Another user's tree: the subscription is denied.
    let o = run(&[
        "mosquitto_sub",
        "-u",
        "bob",
        "-P",
        "bob-secret",
        "-t",
        "users/alice/#",
        "-C",
        "1",
        "-W",
        "3",
    ])
    .unwrap();
    // mosquitto_sub reports it and stops (with status 0).
    assert!(o.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("All subscription requests were denied"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Anonymous: may read public/#, may not publish anywhere.
    let o = run(&["mosquitto_pub", "-q", "1", "-t", "public/news", "-m", "x"]).unwrap();
    let said = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(said.contains("not authorized"), "{said}");
    let o = run(&[
        "mosquitto_pub",
        "-u",
        "ops",
        "-P",
        "ops-mqtt-secret",
        "-q",
        "1",
        "-r",
        "-t",
        "public/news",
        "-m",
        "hello",
    ])
    .unwrap();
    assert!(o.status.success());
    let o = run(&["mosquitto_sub", "-t", "public/#", "-C", "1", "-W", "5"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "hello");
}

#[test]
fn boto3_paho_security_suite() {
    let Some(python) = python(".venv") else {
        return;
    };
    // Many refusals from one address in a row, on purpose: not throttled here.
    let s = secured("login_failure_burst = 10000\n");
    support::pytest(
        &python,
        "security_test.py",
        &[
            ("OUTPOST_HTTP_ENDPOINT", s.broker.http.clone()),
            ("OUTPOST_MQTT_PORT", s.broker.port()),
        ],
    );
    let log = s.log_text();
    for secret in SECRETS {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

/// Starts the binary with `args` and returns the addresses it reports and its log.
fn start_raw(args: &[&str], vars: &[(&str, &str)]) -> (String, String) {
    let data = tempfile::tempdir().unwrap();
    let mut child = outpost()
        .args(args)
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("OUTPOST_CONFIG")
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx2.send(line);
        }
    });
    let mut log = String::new();
    let mut listening = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while listening.is_empty() && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains(" listening: ") {
                listening = line.clone();
            }
            log.push_str(&line);
            log.push('\n');
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    while let Ok(line) = rx.try_recv() {
        log.push_str(&line);
        log.push('\n');
    }
    (listening, log)
}

#[test]
fn without_authentication_the_broker_listens_on_loopback_only() {
    let args = [
        "--mqtt-listen",
        "0.0.0.0:0",
        "--ws-listen",
        "0.0.0.0:0",
        "--http-listen",
        "0.0.0.0:0",
    ];
    let (line, log) = start_raw(&args, &[]);
    assert!(line.contains("mqtt=127.0.0.1:"), "{line}");
    assert!(line.contains("http=127.0.0.1:"), "{line}");
    assert!(line.contains("ws=127.0.0.1:"), "{line}");
    assert!(log.contains("loopback only"), "the reason is logged: {log}");
    let (line, _) = start_raw(&args, &[("OUTPOST_AUTH_ALLOW_ANONYMOUS", "true")]);
    assert!(line.contains("mqtt=0.0.0.0:"), "{line}");
    assert!(line.contains("http=0.0.0.0:"), "{line}");
}

#[test]
fn invalid_settings_fail_at_start_naming_the_key() {
    let out = outpost()
        .env("OUTPOST_MQTT_MAX_INFLIGHT", "lots")
        .arg("--print-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OUTPOST_MQTT_MAX_INFLIGHT") && err.contains("mqtt.max_inflight"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl.toml");
    std::fs::write(&acl, "[[rules]]\neffect = \"sometimes\"\n").unwrap();
    let out = outpost()
        .env("OUTPOST_AUTH_ACL_FILE", &acl)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("acl.toml"), "{err}");
    // Every key, through its variable, shows in the effective configuration.
    let out = outpost()
        .env("OUTPOST_HTTP_MAX_CONCURRENT_PARSING", "7")
        .env("OUTPOST_TOPICS_SIGNING_KEY_BITS", "3072")
        .arg("--print-config")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("max_concurrent_parsing = 7"), "{text}");
    assert!(text.contains("signing_key_bits = 3072"), "{text}");
}
