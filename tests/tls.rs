//! TLS on every listener, with certificates generated here (rcgen): MQTT over TLS with
//! mosquitto_pub (server-only, mutual with the certificate's CN as identity, a client
//! certificate from the wrong CA, an expired one), and a Python suite
//! (tests/interop/tls_test.py) for paho over WebSocket-TLS with a required client certificate,
//! boto3 over HTTPS, refused old protocol versions and a certificate reloaded on SIGHUP.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use support::{python, Outpost};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A leaf signed by `ca`: `(certificate PEM, key PEM)`.
fn leaf(ca: &Ca, cn: &str, server: bool, expired: bool) -> (String, String) {
    let sans = if server {
        vec!["localhost".to_string()]
    } else {
        Vec::new()
    };
    let mut p = CertificateParams::new(sans).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    if server {
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    }
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

struct Fixture {
    broker: Outpost,
    dir: tempfile::TempDir,
    mqtts: String,
    wss: String,
    https: String,
}

fn field(line: &str, name: &str) -> String {
    line.split(&format!(" {name}="))
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("")
        .to_string()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = ca("Outpost Test CA");
    let other = ca("Somebody Else's CA");
    write(d, "ca.pem", &good.cert.pem());
    let (cert, key) = leaf(&good, "localhost", true, false);
    write(d, "server.pem", &cert);
    write(d, "server.key", &key);
    let (cert, key) = leaf(&good, "device-7", false, false);
    write(d, "client.pem", &cert);
    write(d, "client.key", &key);
    let (cert, key) = leaf(&other, "device-7", false, false);
    write(d, "stranger.pem", &cert);
    write(d, "stranger.key", &key);
    let (cert, key) = leaf(&good, "device-7", false, true);
    write(d, "expired.pem", &cert);
    write(d, "expired.key", &key);
    // A second server certificate, for the reload test.
    let (cert, key) = leaf(&good, "localhost-renewed", true, false);
    write(d, "renewed.pem", &cert);
    write(d, "renewed.key", &key);
    write(
        d,
        "acl.toml",
        "[[rules]]\neffect = \"allow\"\nidentities = [\"*\"]\nactions = [\"mqtt:*\"]\nresources = [\"devices/%u/#\"]\n\
         [[rules]]\neffect = \"allow\"\nidentities = [\"*\"]\nactions = [\"sqs:*\"]\nresources = [\"*\"]\n",
    );
    let passwords = d.join("passwords");
    let st = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["passwd", "add"])
        .arg(&passwords)
        .args(["alice", "--password", "alice-secret"])
        .status()
        .unwrap();
    assert!(st.success());
    let toml = format!(
        "[auth]\npassword_file = {pw:?}\nacl_file = {acl:?}\n\
         [tls]\ncert_file = {cert:?}\nkey_file = {key:?}\nclient_ca_file = {ca:?}\n\
         mqtt_listen = \"127.0.0.1:0\"\nws_listen = \"127.0.0.1:0\"\nhttps_listen = \"127.0.0.1:0\"\n\
         mqtt_client_certs = \"optional\"\nws_client_certs = \"required\"\n",
        pw = passwords,
        acl = d.join("acl.toml"),
        cert = d.join("server.pem"),
        key = d.join("server.key"),
        ca = d.join("ca.pem"),
    );
    let log = d.join("outpost.log");
    let broker = Outpost::start_with(tempfile::tempdir().unwrap(), &toml, Some(log.as_path()));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.contains(" listening: "))
        .expect("the listening line")
        .to_string();
    Fixture {
        broker,
        mqtts: field(&line, "mqtts"),
        wss: field(&line, "wss"),
        https: field(&line, "https"),
        dir,
    }
}

fn port(addr: &str) -> String {
    addr.split(['/', ':']).nth(1).unwrap_or("").to_string()
}

fn mosquitto_pub(f: &Fixture, args: &[&str]) -> Option<Output> {
    let d = f.dir.path();
    let out = Command::new("mosquitto_pub")
        .args([
            "-h",
            "localhost",
            "-p",
            &port(&f.mqtts),
            "-q",
            "1",
            "-V",
            "mqttv5",
        ])
        .arg("--cafile")
        .arg(d.join("ca.pem"))
        .args(args)
        .current_dir(d)
        .output();
    match out {
        Ok(o) => Some(o),
        Err(_) => {
            support::skip("no mosquitto_pub");
            None
        }
    }
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn mqtt_over_tls_server_only_mutual_wrong_ca_and_expired() {
    let f = fixture();
    assert!(!f.mqtts.is_empty() && !f.wss.is_empty() && !f.https.is_empty());
    // Server-only TLS, password login.
    let Some(o) = mosquitto_pub(
        &f,
        &[
            "-u",
            "alice",
            "-P",
            "alice-secret",
            "-t",
            "devices/alice/t",
            "-m",
            "hi",
        ],
    ) else {
        return;
    };
    assert!(o.status.success(), "{}", said(&o));
    // Mutual TLS: the certificate's CN is the identity (no username), and the ACL's %u is it.
    let o = mosquitto_pub(
        &f,
        &[
            "--cert",
            "client.pem",
            "--key",
            "client.key",
            "-t",
            "devices/device-7/t",
            "-m",
            "hi",
        ],
    )
    .unwrap();
    assert!(o.status.success(), "{}", said(&o));
    let o = mosquitto_pub(
        &f,
        &[
            "--cert",
            "client.pem",
            "--key",
            "client.key",
            "-t",
            "devices/alice/t",
            "-m",
            "hi",
        ],
    )
    .unwrap();
    assert!(
        said(&o).to_lowercase().contains("not authorized"),
        "another identity's topic: {}",
        said(&o)
    );
    // Without any certificate or password: anonymous is off.
    let o = mosquitto_pub(&f, &["-t", "devices/x/t", "-m", "hi"]).unwrap();
    assert!(!o.status.success(), "{}", said(&o));
    // A certificate from another CA, and an expired one: the handshake fails.
    for (cert, key) in [
        ("stranger.pem", "stranger.key"),
        ("expired.pem", "expired.key"),
    ] {
        let o = mosquitto_pub(
            &f,
            &[
                "--cert",
                cert,
                "--key",
                key,
                "-t",
                "devices/device-7/t",
                "-m",
                "hi",
            ],
        )
        .unwrap();
        assert!(!o.status.success(), "{cert} was accepted: {}", said(&o));
    }
    // The client must verify the server too: a client trusting another CA refuses it.
    let o = Command::new("mosquitto_pub")
        .args([
            "-h",
            "localhost",
            "-p",
            &port(&f.mqtts),
            "-t",
            "a",
            "-m",
            "x",
        ])
        .arg("--cafile")
        .arg(f.dir.path().join("stranger.pem"))
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn websocket_tls_https_versions_and_reload_with_python_clients() {
    let Some(python) = python(".venv") else {
        return;
    };
    let f = fixture();
    support::pytest(
        &python,
        "tls_test.py",
        &[
            ("OUTPOST_TLS_DIR", f.dir.path().display().to_string()),
            ("OUTPOST_MQTTS", f.mqtts.clone()),
            ("OUTPOST_WSS", f.wss.clone()),
            ("OUTPOST_HTTPS", f.https.clone()),
            ("OUTPOST_PID", f.broker.pid().to_string()),
        ],
    );
}
