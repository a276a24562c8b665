//! TLS on every listener, with certificates generated here (rcgen): MQTT over TLS with
//! mosquitto_pub (server-only, mutual with the certificate's CN as identity, a client
//! certificate from the wrong CA, an expired one), and a Python suite
//! (tests/interop/tls_test.py) for paho over WebSocket-TLS with a required client certificate,
//! boto3 over HTTPS, refused old protocol versions and a certificate reloaded on SIGHUP.

mod support;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bytes::BytesMut;
use outpost_codec::{Packet, QoS, ReasonCode, Version};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use support::raw::{Got, Raw};
use support::{eventually, python, Outpost};

const WAIT: Duration = Duration::from_secs(10);

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

/// A TLS client of our own (rustls), trusting the fixture's CA, offering only `version`.
fn tls_stream(
    f: &Fixture,
    version: &'static rustls::SupportedProtocolVersion,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls::pki_types::CertificateDer::pem_file_iter(f.dir.path().join("ca.pem")).unwrap()
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let sock = std::net::TcpStream::connect(&f.mqtts).unwrap();
    sock.set_nodelay(true).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

type TlsRaw = Raw<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>;

impl support::raw::Wire for rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    fn set_read_timeout(&self, limit: Option<Duration>) -> std::io::Result<()> {
        self.sock.set_read_timeout(limit)
    }
}

/// Connected over TLS as alice (password login), MQTT 5.
fn tls_client(f: &Fixture, version: &'static rustls::SupportedProtocolVersion, id: &str) -> TlsRaw {
    let mut c = Raw::over(tls_stream(f, version), Version::V5);
    c.send(&Packet::Connect(outpost_codec::Connect {
        protocol: Version::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: id,
        username: Some("alice"),
        password: Some(b"alice-secret"),
        ..outpost_codec::Connect::default()
    }));
    assert_eq!(c.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    c
}

fn parked(f: &Fixture) -> u64 {
    support::metric(&f.broker, "outpost_mqtt_clients_parked ")
}

/// Idle TLS connections park like plain ones (issue 29): between records, with nothing read,
/// queued or unsent, the socket waits in the parking lot with rustls's state of the connection
/// (its keys and sequence numbers) and no buffers, and wakes onto a task that goes on where it
/// was: deliveries, publishes, a large message over many records, a PINGREQ (encrypted: the lot
/// cannot answer it, so it wakes the connection), half a record (the connection waits on its
/// task for the rest), and the client's close_notify. TLS 1.3 and 1.2 alike.
#[test]
fn tls_connections_park_between_records_and_wake_with_their_keys() {
    let f = fixture();
    let mut sub = tls_client(&f, &rustls::version::TLS13, "tls-parked-sub");
    sub.subscribe(1, &["devices/alice/#"], QoS::AtLeastOnce);
    assert!(matches!(sub.recv(WAIT), Some(Got::SubAck(_))));
    let mut publisher = tls_client(&f, &rustls::version::TLS12, "tls-parked-pub");
    eventually("both idle TLS connections parked", WAIT, || parked(&f) == 2);

    // Each message wakes both (the publisher's PUBLISH, the subscriber's delivery); they park
    // again, and the next message is read and sealed with the keys and sequence numbers they
    // parked with.
    for n in 1..=3u16 {
        let payload = if n == 2 {
            vec![b'L'; 100_000]
        } else {
            format!("m{n}").into_bytes()
        };
        publisher.publish("devices/alice/t", &payload, QoS::AtLeastOnce, n, false);
        assert_eq!(
            publisher.recv(WAIT),
            Some(Got::PubAck(n, ReasonCode::Success))
        );
        let Some(Got::Publish {
            topic,
            pkid,
            payload: got,
        }) = sub.recv(WAIT)
        else {
            panic!("message {n} not delivered");
        };
        assert_eq!(topic, "devices/alice/t");
        assert_eq!(got, payload, "message {n}");
        sub.send(&Packet::PubAck(outpost_codec::Ack::new(pkid)));
        eventually("both parked again", WAIT, || parked(&f) == 2);
    }

    // A PINGREQ is a record the lot cannot read: it wakes the connection, which answers.
    sub.send(&Packet::PingReq);
    assert_eq!(sub.recv(WAIT), Some(Got::PingResp));
    eventually("parked again after the ping", WAIT, || parked(&f) == 2);

    // Half a record: the connection wakes and, with a record begun, stays on its task past the
    // idle spell (two seconds) until the rest comes.
    let mut ping = BytesMut::new();
    Packet::PingReq
        .encode_to(Version::V5, &mut ping)
        .expect("encodable");
    publisher.s.conn.writer().write_all(&ping).unwrap();
    let mut record = Vec::new();
    publisher.s.conn.write_tls(&mut record).unwrap();
    assert!(record.len() > 8, "one record: {} bytes", record.len());
    let half = record.len() / 2;
    publisher.s.sock.write_all(&record[..half]).unwrap();
    eventually("woken by half a record", WAIT, || parked(&f) == 1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        parked(&f),
        1,
        "a connection with half a record read was parked"
    );
    publisher.s.sock.write_all(&record[half..]).unwrap();
    assert_eq!(publisher.recv(WAIT), Some(Got::PingResp));
    eventually("parked once the record was whole", WAIT, || parked(&f) == 2);

    // The client's close_notify ends the parked connection, and the broker answers with its own
    // before it closes (rustls reads a close without it as an error).
    publisher.s.conn.send_close_notify();
    publisher.s.flush().unwrap();
    eventually("the closed connection left the lot", WAIT, || {
        parked(&f) == 1
    });
    publisher.s.sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut rest = Vec::new();
    let end = publisher.s.read_to_end(&mut rest);
    assert!(end.is_ok(), "the broker's end of the stream: {end:?}");
}
