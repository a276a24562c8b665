//! Bridges against real upstreams on loopback: mosquitto (plain and with client certificates),
//! a second Outpost, moto (SQS), and an Outpost that checks SigV4 signatures.
//!
//! The store-and-forward tests count every message the upstream delivers: none acknowledged
//! locally may be missing, and per topic the first arrivals must be in publish order.
//!
//! Longer than ~700 lines on purpose: every bridge scenario shares the upstreams set up here
//! (mosquitto, a second Outpost, moto, a signature-checking Outpost), and splitting them would copy
//! that setup into each file.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outpost_codec::{Packet, QoS, ReasonCode, Version};
use support::http::sqs_json;
use support::mosquitto::{free_port, wait_listening, Mosquitto};
use support::raw::{offline_subscriber, persistent, Got, Raw};
use support::{eventually, metric, Outpost};

const WAIT: Duration = Duration::from_secs(10);

/// A stopped mosquitto that keeps the persistent session `sink` (subscribed to `gw1/#`): what is
/// forwarded once it runs again waits there for the sink.
fn stopped_upstream_with_sink() -> Mosquitto {
    let mut up = Mosquitto::new("");
    up.start();
    offline_subscriber(up.addr(), "sink", "gw1/#");
    up.stop();
    up
}

/// An MQTT bridge named `up` to `port` forwarding `sensors/#` to `gw1/{topic}`.
fn forwarding(port: u16, window: u16, extra: &str) -> String {
    format!(
        "[[bridges]]\nname = \"up\"\naddress = \"127.0.0.1:{port}\"\nbackoff_min_ms = 100\n\
         backoff_max_ms = 1000\nwindow = {window}\n{extra}\n\
         [[bridges.out]]\nfilter = \"sensors/#\"\ntopic = \"gw1/{{topic}}\"\nqos = 1\n"
    )
}

/// Publishes `count` numbered QoS 1 messages (to `sensors/a` and `sensors/b` in turn) with 100
/// in flight; returns the numbers acknowledged with Success.
fn publish_numbers(addr: SocketAddr, count: u32) -> BTreeSet<u32> {
    let mut c = Raw::connect(addr, Version::V5, "gw-device", true);
    assert_eq!(c.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    let mut acked = BTreeSet::new();
    let (mut next, mut outstanding) = (0u32, 0u32);
    while acked.len() < count as usize {
        while next < count && outstanding < 100 {
            let topic = if next % 2 == 0 {
                "sensors/a"
            } else {
                "sensors/b"
            };
            c.publish_number(topic, next, 16);
            next += 1;
            outstanding += 1;
        }
        match c.recv(WAIT) {
            Some(Got::PubAck(pkid, code)) => {
                assert_eq!(code, ReasonCode::Success, "message {} refused", pkid - 1);
                acked.insert(u32::from(pkid) - 1);
                outstanding -= 1;
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    acked
}

/// Every message a persistent upstream session `client` gets, in arrival order, as (topic,
/// number), until `done` says so or nothing came for 15 s; `each` runs after every message.
fn drain_in_order(
    addr: SocketAddr,
    client: &str,
    mut done: impl FnMut(&[(String, u32)]) -> bool,
    mut each: impl FnMut(&[(String, u32)]),
) -> Vec<(String, u32)> {
    let mut s = Raw::connect_with(addr, Version::V5, client, false, persistent(), 60);
    assert_eq!(s.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    let mut got = Vec::new();
    while !done(&got) {
        let Some(Got::Publish {
            topic,
            pkid,
            payload,
        }) = s.recv(Duration::from_secs(15))
        else {
            break;
        };
        got.push((topic, u32::from_be_bytes(payload[..4].try_into().unwrap())));
        s.send(&Packet::PubAck(outpost_codec::Ack::new(pkid)));
        each(&got);
    }
    got
}

fn distinct(got: &[(String, u32)]) -> BTreeSet<u32> {
    got.iter().map(|(_, n)| *n).collect()
}

/// Nothing acknowledged missing; per topic, first arrivals in publish order; returns the
/// number of duplicates (QoS 1 allows some after a crash).
fn check_delivery(acked: &BTreeSet<u32>, got: &[(String, u32)]) -> usize {
    let seen = distinct(got);
    let lost: Vec<&u32> = acked.difference(&seen).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged and never forwarded, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let mut last: HashMap<&str, u32> = HashMap::new();
    let mut first = BTreeSet::new();
    for (topic, n) in got {
        assert_eq!(
            topic,
            if n % 2 == 0 {
                "gw1/sensors/a"
            } else {
                "gw1/sensors/b"
            },
            "message {n} on the wrong remote topic"
        );
        if first.insert(*n) {
            if let Some(prev) = last.insert(topic, *n) {
                assert!(prev < *n, "{topic}: {n} arrived after {prev}");
            }
        }
    }
    got.len() - seen.len()
}

fn backlog(broker: &Outpost, bridge: &str) -> u64 {
    metric(
        broker,
        &format!("outpost_bridge_backlog_messages{{bridge=\"{bridge}\"}}"),
    )
}

fn connected(broker: &Outpost, bridge: &str) -> u64 {
    metric(
        broker,
        &format!("outpost_bridge_connected{{bridge=\"{bridge}\"}}"),
    )
}

/// 10,000 QoS 1 messages published while the upstream is down all arrive once it returns, in
/// order per topic, and the backlog shows in the metrics meanwhile.
#[test]
fn ten_thousand_messages_wait_for_the_upstream() {
    let mut up = stopped_upstream_with_sink();

    let local = Outpost::start_with(
        tempfile::tempdir().expect("temp dir"),
        &forwarding(up.port, 64, ""),
        None,
    );
    let acked = publish_numbers(local.mqtt, 10_000);
    assert_eq!(
        backlog(&local, "up"),
        10_000,
        "every message waits in the backlog"
    );
    assert_eq!(connected(&local, "up"), 0);

    up.start();
    let got = drain_in_order(up.addr(), "sink", |g| distinct(g).len() >= 10_000, |_| {});
    let duplicates = check_delivery(&acked, &got);
    println!("10,000 forwarded after the upstream returned, {duplicates} duplicates");
    eventually("the backlog to empty", WAIT, || backlog(&local, "up") == 0);
    assert_eq!(connected(&local, "up"), 1);
    assert!(
        metric(&local, "outpost_bridge_forwarded_total{bridge=\"up\"}") >= 10_000,
        "forwarded counted"
    );
}

/// `kill -9` of the local broker while it forwards: after the restart it resumes with what the
/// upstream had not acknowledged, and nothing acknowledged locally is lost.
#[test]
fn kill_9_while_forwarding_loses_nothing() {
    let mut up = stopped_upstream_with_sink();

    // A small window keeps the forwarding slow enough to be cut in the middle.
    let toml = forwarding(up.port, 4, "");
    let mut local = Some(Outpost::start_with(
        tempfile::tempdir().expect("temp dir"),
        &toml,
        None,
    ));
    let acked = publish_numbers(local.as_ref().expect("running").mqtt, 10_000);

    up.start();
    let mut killed_at = None;
    let got = drain_in_order(
        up.addr(),
        "sink",
        |g| distinct(g).len() >= 10_000,
        |g| {
            if killed_at.is_none() && g.len() >= 2_000 {
                let data = local.take().expect("running").kill();
                killed_at = Some(g.len());
                local = Some(Outpost::start_with(data, &toml, None));
            }
        },
    );
    let killed_at = killed_at.expect("the broker was killed while forwarding");
    let duplicates = check_delivery(&acked, &got);
    println!("killed after {killed_at} forwarded; 10,000 arrived, {duplicates} duplicates");
    let local = local.expect("running");
    eventually("the backlog to empty", WAIT, || backlog(&local, "up") == 0);
}

/// Past `max_backlog_bytes` the oldest messages are dropped, counted and logged.
#[test]
fn the_backlog_is_bounded_by_bytes() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("outpost.log");
    let local = Outpost::start_with(
        tempfile::tempdir().expect("temp dir"),
        &forwarding(port, 64, "max_backlog_bytes = 20000"),
        Some(&log),
    );
    publish_numbers(local.mqtt, 1_000);
    eventually("the oldest to be dropped", WAIT, || {
        metric(&local, "outpost_bridge_dropped_total{bridge=\"up\"}") > 0
    });
    eventually("the backlog to be within its bound", WAIT, || {
        metric(&local, "outpost_bridge_backlog_bytes{bridge=\"up\"}") <= 20_000
    });
    eventually("kept + dropped = sent", WAIT, || {
        backlog(&local, "up") + metric(&local, "outpost_bridge_dropped_total{bridge=\"up\"}")
            == 1_000
    });
    eventually("a log line about the drop", WAIT, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("oldest messages were dropped"))
    });
}

/// While the link is up, publishers are paced to it: with the upstream frozen (SIGSTOP: the link
/// stays connected, nothing is acknowledged), PUBACKs past `pace_above` wait (up to 2 s each) and
/// are counted; every acknowledged message still arrives. Once the link is down nothing is
/// paced: the backlog takes what arrives.
#[test]
fn a_live_link_paces_publishers_and_a_down_link_does_not() {
    let mut up = Mosquitto::new("");
    up.start();
    offline_subscriber(up.addr(), "sink", "gw1/#");
    let local = Outpost::start_with(
        tempfile::tempdir().expect("temp dir"),
        &forwarding(up.port, 4, "pace_above = 20"),
        None,
    );
    let paced = || metric(&local, "outpost_bridge_paced_total{bridge=\"up\"}");
    eventually("the link to connect", WAIT, || connected(&local, "up") == 1);
    assert_eq!(paced(), 0, "nothing paced before anything was published");
    // Pacing does not depend on how long the link has been idle.
    std::thread::sleep(Duration::from_millis(2500));

    up.signal("STOP");
    let started = Instant::now();
    let acked = publish_numbers(local.mqtt, 60);
    let took = started.elapsed();
    println!("60 acknowledged in {took:?} with the upstream frozen");
    up.signal("CONT");
    assert!(paced() > 0, "PUBACKs past the mark waited for the link");
    assert!(
        took >= Duration::from_millis(1500),
        "60 messages past a mark of 20 were acknowledged in {took:?}, without waiting for the link"
    );
    let got = drain_in_order(up.addr(), "sink", |g| distinct(g).len() >= 60, |_| {});
    check_delivery(&acked, &got);

    up.stop();
    eventually("the link to go down", WAIT, || connected(&local, "up") == 0);
    let before = paced();
    let started = Instant::now();
    publish_numbers(local.mqtt, 500);
    println!(
        "500 acknowledged in {:?} with the link down",
        started.elapsed()
    );
    assert_eq!(paced(), before, "a link that is down paces no one");
    eventually("the backlog to hold them", WAIT, || {
        backlog(&local, "up") == 500
    });
}

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn ca() -> Ca {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "bridge test CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A leaf signed by `ca`, written as `<name>.pem` and `<name>.key`.
fn leaf(ca: &Ca, dir: &Path, name: &str, server: bool) -> (PathBuf, PathBuf) {
    use rcgen::{CertificateParams, DnType, SanType};
    let sans = if server {
        vec!["localhost".to_string()]
    } else {
        Vec::new()
    };
    let mut p = CertificateParams::new(sans).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    if server {
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// Mutual TLS, as AWS IoT Core requires it: mosquitto demands a client certificate; the bridge
/// with one forwards, the bridge without one stays down and says so.
#[test]
fn tls_with_a_client_certificate() {
    let certs = tempfile::tempdir().expect("temp dir");
    let authority = ca();
    let ca_file = certs.path().join("ca.pem");
    std::fs::write(&ca_file, authority.cert.pem()).unwrap();
    let (server_cert, server_key) = leaf(&authority, certs.path(), "server", true);
    let (client_cert, client_key) = leaf(&authority, certs.path(), "gw1", false);
    let tls_port = free_port();
    let mut up = Mosquitto::new(&format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        ca_file.display(),
        server_cert.display(),
        server_key.display()
    ));
    up.start();
    wait_listening(tls_port, "mosquitto's TLS listener");
    let mut sink = Raw::connect(up.addr(), Version::V5, "tls-sink", true);
    assert_eq!(sink.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    sink.subscribe(1, &["gw1/#"], QoS::AtLeastOnce);
    assert!(matches!(sink.recv(WAIT), Some(Got::SubAck(_))));

    let tls = |name: &str, with_cert: bool| {
        // The one with a certificate speaks MQTT 3.1.1 and brings commands in, as a gateway
        // of AWS IoT Core would.
        let cert = if with_cert {
            format!(
                "cert_file = {:?}\nkey_file = {:?}\n[[bridges.in]]\nfilter = \"cmd/gw1/#\"\nqos = 1\n",
                client_cert.display().to_string(),
                client_key.display().to_string()
            )
        } else {
            String::new()
        };
        format!(
            "[[bridges]]\nname = \"{name}\"\naddress = \"127.0.0.1:{tls_port}\"\nbackoff_min_ms = 100\n\
             backoff_max_ms = 500\nversion = \"{}\"\n[bridges.tls]\nca_file = {:?}\nserver_name = \"localhost\"\n{cert}\
             [[bridges.out]]\nfilter = \"sensors/#\"\ntopic = \"gw1/{name}/{{topic}}\"\n",
            if with_cert { "3.1.1" } else { "5" },
            ca_file.display().to_string()
        )
    };
    let local = Outpost::start_with(
        tempfile::tempdir().expect("temp dir"),
        &format!("{}\n{}", tls("secure", true), tls("nocert", false)),
        None,
    );
    eventually("the bridge with a certificate to connect", WAIT, || {
        connected(&local, "secure") == 1
    });
    let mut device = Raw::connect(local.mqtt, Version::V5, "dev", true);
    assert_eq!(device.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    device.subscribe(1, &["cmd/#"], QoS::AtLeastOnce);
    assert!(matches!(device.recv(WAIT), Some(Got::SubAck(_))));
    sink.publish("cmd/gw1/blink", b"3", QoS::AtLeastOnce, 7, false);
    assert_eq!(sink.recv(WAIT), Some(Got::PubAck(7, ReasonCode::Success)));
    match device.recv(WAIT) {
        Some(Got::Publish { topic, payload, .. }) => {
            assert_eq!(
                (topic.as_str(), payload.as_slice()),
                ("cmd/gw1/blink", &b"3"[..])
            );
        }
        other => panic!("expected the command, got {other:?}"),
    }
    device.publish("sensors/t", b"21.5", QoS::AtLeastOnce, 1, false);
    assert_eq!(device.recv(WAIT), Some(Got::PubAck(1, ReasonCode::Success)));
    match sink.recv(WAIT) {
        Some(Got::Publish { topic, payload, .. }) => {
            assert_eq!(topic, "gw1/secure/sensors/t");
            assert_eq!(payload, b"21.5");
        }
        other => panic!("expected the forwarded message, got {other:?}"),
    }
    eventually("the bridge without a certificate to retry", WAIT, || {
        metric(&local, "outpost_bridge_retries_total{bridge=\"nocert\"}") >= 2
    });
    assert_eq!(connected(&local, "nocert"), 0);
    assert_eq!(backlog(&local, "nocert"), 1, "its message waits");
}

/// A device client of the local broker (rumqttc): what it receives.
fn device(broker: &Outpost, id: &str, filter: &str) -> std::sync::mpsc::Receiver<rumqttc::Publish> {
    use rumqttc::{Client, Event, MqttOptions, Packet};
    let mut opts = MqttOptions::new(id, "127.0.0.1", broker.mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = Client::new(opts, 64);
    let (tx, rx) = std::sync::mpsc::channel();
    let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
    client
        .subscribe(filter, rumqttc::QoS::AtLeastOnce)
        .expect("subscribe queued");
    std::thread::spawn(move || {
        let _client = client;
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p).is_err() {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.send(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    subscribed
        .recv_timeout(WAIT)
        .expect("the device subscribed");
    rx
}

/// Payloads received until `last` arrives.
fn until_rumqttc(rx: &std::sync::mpsc::Receiver<rumqttc::Publish>, last: &[u8]) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("the fence message arrives");
        let p = rx.recv_timeout(left).expect("a message");
        got.push(p.payload.to_vec());
        if p.payload == last {
            return got;
        }
    }
}

/// Payloads a raw client receives until `last` arrives.
fn until_raw(c: &mut Raw, last: &[u8]) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        match c.recv(WAIT) {
            Some(Got::Publish { payload, pkid, .. }) => {
                if pkid != 0 {
                    c.send(&Packet::PubAck(outpost_codec::Ack::new(pkid)));
                }
                let end = payload == last;
                got.push(payload);
                if end {
                    return got;
                }
            }
            Some(_) => {}
            None => panic!("{:?} never arrived", String::from_utf8_lossy(last)),
        }
    }
}

/// Payloads a raw client receives until every one of `fences` arrived.
fn until_all(c: &mut Raw, fences: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut got: Vec<Vec<u8>> = Vec::new();
    while !fences
        .iter()
        .all(|f| got.iter().any(|g| g.as_slice() == *f))
    {
        match c.recv(WAIT) {
            Some(Got::Publish { payload, pkid, .. }) => {
                if pkid != 0 {
                    c.send(&Packet::PubAck(outpost_codec::Ack::new(pkid)));
                }
                got.push(payload);
            }
            Some(_) => {}
            None => panic!("the fences never all arrived; got {got:?}"),
        }
    }
    got
}

fn count(got: &[Vec<u8>], payload: &[u8]) -> usize {
    got.iter().filter(|p| p.as_slice() == payload).count()
}

/// A command published upstream reaches a rumqttc device subscribed locally, and a rule that
/// forwards and brings in the same topics does not loop: each message arrives once on each side.
#[test]
fn inbound_commands_and_a_two_way_rule_without_loops() {
    let mut up = Mosquitto::new("");
    up.start();
    let toml = format!(
        "[mqtt]\nsys_interval = 1\n[[bridges]]\nname = \"up\"\naddress = \"127.0.0.1:{}\"\nclean_start = true\n\
         [[bridges.out]]\nfilter = \"sync/#\"\n\
         [[bridges.in]]\nfilter = \"sync/#\"\nqos = 1\n\
         [[bridges.in]]\nfilter = \"cmd/gw1/#\"\ntopic = \"cmd/{{topic}}\"\nstrip_prefix = \"cmd/gw1/\"\nqos = 1\n",
        up.port
    );
    let local = Outpost::start_with(tempfile::tempdir().expect("temp dir"), &toml, None);
    // Connected means subscribed upstream too: from now on a command gets through.
    eventually("the bridge to connect", WAIT, || {
        connected(&local, "up") == 1
    });
    // The bridge's state in $SYS, as mosquitto publishes its own.
    let mut sys = Raw::connect(local.mqtt, Version::V5, "sys-watcher", true);
    assert_eq!(sys.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    sys.subscribe(1, &["$SYS/broker/bridge/up/#"], QoS::AtMostOnce);
    let mut sys_values: HashMap<String, String> = HashMap::new();
    let deadline = Instant::now() + WAIT;
    let wanted = [
        "connected",
        "backlog/messages",
        "backlog/bytes",
        "last error",
        "messages/forwarded per second",
    ];
    // Retained values from before the connection come first; the next round says connected.
    while sys_values
        .get("$SYS/broker/bridge/up/connected")
        .map(String::as_str)
        != Some("1")
        || !wanted
            .iter()
            .all(|k| sys_values.contains_key(&format!("$SYS/broker/bridge/up/{k}")))
    {
        assert!(
            Instant::now() < deadline,
            "no $SYS state of the bridge: {sys_values:?}"
        );
        if let Some(Got::Publish { topic, payload, .. }) = sys.recv(WAIT) {
            sys_values.insert(topic, String::from_utf8_lossy(&payload).to_string());
        }
    }
    assert_eq!(sys_values["$SYS/broker/bridge/up/connected"], "1");
    assert_eq!(sys_values["$SYS/broker/bridge/up/last error"], "none");
    let commands = device(&local, "device-cmd", "cmd/#");
    let synced = device(&local, "device-sync", "sync/#");
    let mut cloud = Raw::connect(up.addr(), Version::V5, "cloud", true);
    assert_eq!(cloud.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    cloud.subscribe(1, &["sync/#"], QoS::AtLeastOnce);
    assert!(matches!(cloud.recv(WAIT), Some(Got::SubAck(_))));
    let mut commander = Raw::connect(up.addr(), Version::V5, "commander", true);
    assert_eq!(
        commander.recv(WAIT),
        Some(Got::ConnAck(ReasonCode::Success))
    );
    commander.publish("cmd/gw1/reboot", b"now", QoS::AtLeastOnce, 1, false);
    let p = commands
        .recv_timeout(WAIT)
        .expect("the command reaches the device");
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("cmd/reboot", &b"now"[..])
    );

    // From the cloud: once on the device, once in the cloud (not sent back up).
    commander.publish("sync/down", b"from-cloud", QoS::AtLeastOnce, 2, false);
    // From a local device: once in the cloud, once locally (not brought back in).
    let mut gateway = Raw::connect(local.mqtt, Version::V5, "gw-app", true);
    assert_eq!(gateway.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    gateway.publish("sync/up", b"from-gateway", QoS::AtLeastOnce, 1, false);
    // Fences: a second round through the same links, after anything an echo would have sent.
    commander.publish("sync/fence", b"fence-cloud", QoS::AtLeastOnce, 3, false);
    let device_got = until_rumqttc(&synced, b"fence-cloud");
    gateway.publish("sync/fence", b"fence-gateway", QoS::AtLeastOnce, 2, false);
    let cloud_got = until_raw(&mut cloud, b"fence-gateway");
    let device_got = [device_got, until_rumqttc(&synced, b"fence-gateway")].concat();
    for (side, got) in [("device", &device_got), ("cloud", &cloud_got)] {
        assert_eq!(count(got, b"from-cloud"), 1, "{side}: {got:?}");
        assert_eq!(count(got, b"from-gateway"), 1, "{side}: {got:?}");
    }
    assert_eq!(
        metric(&local, "outpost_bridge_received_total{bridge=\"up\"}"),
        3,
        "the command, from-cloud and fence-cloud came in; nothing of ours came back"
    );
}

/// Two Outposts bridged to each other on the same topics: each message reaches the other side
/// once and never comes back (hop marker and the upstream's node id).
#[test]
fn two_outposts_bridged_both_ways_do_not_loop() {
    let (port_a, port_b) = (free_port(), free_port());
    let bridge = |to: u16| {
        format!(
            "[[bridges]]\nname = \"peer\"\naddress = \"127.0.0.1:{to}\"\nbackoff_min_ms = 100\n\
             backoff_max_ms = 500\n[[bridges.out]]\nfilter = \"chat/#\"\n"
        )
    };
    let a = Outpost::start_with_mqtt(
        tempfile::tempdir().expect("temp dir"),
        &bridge(port_b),
        &format!("127.0.0.1:{port_a}"),
    );
    let b = Outpost::start_with_mqtt(
        tempfile::tempdir().expect("temp dir"),
        &bridge(port_a),
        &format!("127.0.0.1:{port_b}"),
    );
    eventually("both bridges to connect", WAIT, || {
        connected(&a, "peer") == 1 && connected(&b, "peer") == 1
    });
    let listen = |broker: &Outpost, id: &str| {
        let mut c = Raw::connect(broker.mqtt, Version::V5, id, true);
        assert_eq!(c.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
        c.subscribe(1, &["chat/#"], QoS::AtLeastOnce);
        assert!(matches!(c.recv(WAIT), Some(Got::SubAck(_))));
        c
    };
    let (mut on_a, mut on_b) = (listen(&a, "listener-a"), listen(&b, "listener-b"));
    let mut pub_a = Raw::connect(a.mqtt, Version::V5, "pub-a", true);
    assert_eq!(pub_a.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    let mut pub_b = Raw::connect(b.mqtt, Version::V5, "pub-b", true);
    assert_eq!(pub_b.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));

    pub_a.publish("chat/x", b"hello-from-a", QoS::AtLeastOnce, 1, false);
    pub_b.publish("chat/y", b"hello-from-b", QoS::AtLeastOnce, 1, false);
    // Fences: a message from each side after the first ones, through the same ordered links;
    // a second round catches an echo of the first messages, which would travel one link more.
    pub_a.publish("chat/fence", b"fence-a", QoS::AtLeastOnce, 2, false);
    pub_b.publish("chat/fence", b"fence-b", QoS::AtLeastOnce, 2, false);
    let mut got_a = until_all(&mut on_a, &[b"fence-a", b"fence-b"]);
    let mut got_b = until_all(&mut on_b, &[b"fence-a", b"fence-b"]);
    pub_a.publish("chat/fence", b"fence-a2", QoS::AtLeastOnce, 3, false);
    pub_b.publish("chat/fence", b"fence-b2", QoS::AtLeastOnce, 3, false);
    got_a.extend(until_all(&mut on_a, &[b"fence-a2", b"fence-b2"]));
    got_b.extend(until_all(&mut on_b, &[b"fence-a2", b"fence-b2"]));
    for (side, got) in [("a", &got_a), ("b", &got_b)] {
        assert_eq!(count(got, b"hello-from-a"), 1, "{side}: {got:?}");
        assert_eq!(count(got, b"hello-from-b"), 1, "{side}: {got:?}");
    }
}

/// A moto server (SQS) on a free port.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start(python: &Path, port: u16) -> Moto {
        let child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto runs");
        wait_listening(port, "moto to listen");
        MOTO.with(|m| m.borrow_mut().push(format!("http://127.0.0.1:{port}")));
        Moto { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// An SQS call to moto, which picks the service from the credential scope of the
/// `Authorization` header (it does not check the signature); to Outpost it is anonymous.
fn sqs(base: &str, op: &str, body: &str) -> (u16, String) {
    if !MOTO.with(|m| m.borrow().contains(&base.to_string())) {
        return sqs_json(base, op, body);
    }
    let req = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: AmazonSQS.{op}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=00\r\n\
         Content-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    support::http::http(base, req.as_bytes())
}

thread_local! {
    /// Base URLs of the moto servers of this test thread.
    static MOTO: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An SNS (query protocol) call to moto.
fn sns(base: &str, form: &str) -> String {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=00\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let (code, body) = support::http::http(base, req.as_bytes());
    assert_eq!(code, 200, "{body}");
    body
}

fn create_queue(base: &str, name: &str) -> String {
    let (code, body) = sqs(
        base,
        "CreateQueue",
        &format!("{{\"QueueName\":\"{name}\"}}"),
    );
    assert_eq!(code, 200, "{body}");
    json(&body)["QueueUrl"]
        .as_str()
        .expect("a queue URL")
        .to_string()
}

/// Receives up to 10 messages with their attributes, deleting them.
fn receive(base: &str, url: &str) -> Vec<serde_json::Value> {
    let (code, body) = sqs(
        base,
        "ReceiveMessage",
        &format!(
            "{{\"QueueUrl\":\"{url}\",\"MaxNumberOfMessages\":10,\"WaitTimeSeconds\":1,\
             \"MessageAttributeNames\":[\"All\"]}}"
        ),
    );
    assert_eq!(code, 200, "{body}");
    let messages = json(&body)["Messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for m in &messages {
        let handle = m["ReceiptHandle"].as_str().unwrap_or("");
        sqs(
            base,
            "DeleteMessage",
            &format!("{{\"QueueUrl\":\"{url}\",\"ReceiptHandle\":\"{handle}\"}}"),
        );
    }
    messages
}

/// Everything in a remote queue, until `n` messages came or 20 s passed.
fn receive_n(base: &str, url: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut all = Vec::new();
    while all.len() < n && Instant::now() < deadline {
        all.extend(receive(base, url));
    }
    all
}

/// moto as the SQS upstream: a local queue moves there with its attributes, MQTT messages are
/// forwarded as SQS messages, and while moto is down the backlog grows, shows in the metrics and
/// drains once it is back.
#[test]
fn sqs_upstream_on_moto() {
    let Some(python) = support::python(".venv") else {
        return;
    };
    let port = free_port();
    let moto = Moto::start(&python, port);
    let remote = create_queue(&moto.url(), "remote");
    // An SNS topic upstream, fanned out to a queue there (raw delivery: the body is the message).
    let fanout = create_queue(&moto.url(), "fanout");
    let created = sns(
        &moto.url(),
        "Action=CreateTopic&Version=2010-03-31&Name=events",
    );
    let topic_arn = created
        .split("<TopicArn>")
        .nth(1)
        .and_then(|r| r.split("</TopicArn>").next())
        .expect("a topic ARN")
        .to_string();
    sns(
        &moto.url(),
        &format!(
            "Action=Subscribe&Version=2010-03-31&TopicArn={topic_arn}&Protocol=sqs&\
             Endpoint=arn:aws:sqs:us-east-1:123456789012:fanout&Attributes.entry.1.key=RawMessageDelivery&\
             Attributes.entry.1.value=true"
        ),
    );
    let toml = format!(
        "[[bridges]]\nname = \"aws\"\nkind = \"aws\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
         access_key_id = \"AKIDTEST\"\nsecret_access_key = \"test-secret\"\nbackoff_min_ms = 100\n\
         backoff_max_ms = 500\n[[bridges.queues]]\nlocal = \"outbox\"\nremote = \"{remote}\"\n\
         [[bridges.out]]\nfilter = \"alerts/#\"\nsqs = \"{remote}\"\n\
         [[bridges.out]]\nfilter = \"events/#\"\nsns = \"{topic_arn}\"\n\
         [[bridges.topics]]\nlocal = \"news\"\nsqs = \"{remote}\"\n",
        moto.url()
    );
    let local = Outpost::start_with(tempfile::tempdir().expect("temp dir"), &toml, None);
    let outbox = create_queue(&local.http, "outbox");
    let (code, body) = sqs_json(
        &local.http,
        "SendMessage",
        &format!(
            "{{\"QueueUrl\":\"{outbox}\",\"MessageBody\":\"order 17\",\"MessageAttributes\":{{\
             \"kind\":{{\"DataType\":\"String\",\"StringValue\":\"order\"}},\
             \"amount\":{{\"DataType\":\"Number\",\"StringValue\":\"42.5\"}},\
             \"blob\":{{\"DataType\":\"Binary\",\"BinaryValue\":\"AAEC/w==\"}}}}}}"
        ),
    );
    assert_eq!(code, 200, "{body}");
    let moved = receive_n(&moto.url(), &remote, 1);
    assert_eq!(moved.len(), 1, "the queued message moved upstream");
    let m = &moved[0];
    assert_eq!(m["Body"], "order 17");
    let attrs = &m["MessageAttributes"];
    assert_eq!(attrs["kind"]["StringValue"], "order");
    assert_eq!(attrs["amount"]["DataType"], "Number");
    assert_eq!(attrs["amount"]["StringValue"], "42.5");
    assert_eq!(attrs["blob"]["BinaryValue"], "AAEC/w==");
    eventually("the local copy to be deleted", WAIT, || {
        let (_, body) = sqs_json(
            &local.http,
            "GetQueueAttributes",
            &format!("{{\"QueueUrl\":\"{outbox}\",\"AttributeNames\":[\"All\"]}}"),
        );
        let a = &json(&body)["Attributes"];
        a["ApproximateNumberOfMessages"] == "0" && a["ApproximateNumberOfMessagesNotVisible"] == "0"
    });

    // MQTT → SQS: the payload is the body, the topic an attribute.
    let mut device = Raw::connect(local.mqtt, Version::V5, "alarm", true);
    assert_eq!(device.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    device.publish(
        "alerts/fire",
        b"smoke in hall 2",
        QoS::AtLeastOnce,
        1,
        false,
    );
    assert_eq!(device.recv(WAIT), Some(Got::PubAck(1, ReasonCode::Success)));
    let alert = receive_n(&moto.url(), &remote, 1);
    assert_eq!(alert.len(), 1);
    assert_eq!(alert[0]["Body"], "smoke in hall 2");
    assert_eq!(
        alert[0]["MessageAttributes"]["mqtt-topic"]["StringValue"],
        "alerts/fire"
    );

    // MQTT → SNS → the topic's subscribers upstream.
    device.publish("events/door", b"open", QoS::AtLeastOnce, 60_000, false);
    assert_eq!(
        device.recv(WAIT),
        Some(Got::PubAck(60_000, ReasonCode::Success))
    );
    let published = receive_n(&moto.url(), &fanout, 1);
    assert_eq!(
        published.len(),
        1,
        "the SNS publish reached the topic's queue"
    );
    assert_eq!(published[0]["Body"], "open");

    // A local SNS topic → the remote queue, message attributes kept. The bridge makes the local
    // topic, its queue and the subscription between them as its link starts, beside everything
    // above (with the broker's first topic comes its signing key, which takes a while on a busy
    // machine); a message published to a topic before it has a subscriber reaches no one.
    eventually("the bridge's subscription to its local topic", WAIT, || {
        let (code, body) = support::http::form_post(
            &local.http,
            "Action=ListSubscriptionsByTopic&TopicArn=arn:aws:sns:us-east-1:000000000000:news",
        );
        code == 200 && body.contains("bridge-aws-news")
    });
    let (code, body) = support::http::form_post(
        &local.http,
        "Action=Publish&TopicArn=arn:aws:sns:us-east-1:000000000000:news&Message=extra+edition&\
         MessageAttributes.entry.1.Name=section&MessageAttributes.entry.1.Value.DataType=String&\
         MessageAttributes.entry.1.Value.StringValue=sports",
    );
    assert_eq!(code, 200, "{body}");
    let news = receive_n(&moto.url(), &remote, 1);
    assert_eq!(
        news.len(),
        1,
        "the local topic's message reached the remote queue"
    );
    assert_eq!(news[0]["Body"], "extra edition");
    assert_eq!(
        news[0]["MessageAttributes"]["section"]["StringValue"],
        "sports"
    );

    // moto down: the backlog grows and shows; back up: it drains.
    drop(moto);
    for i in 0..50u16 {
        device.publish(
            "alerts/t",
            format!("alert {i}").as_bytes(),
            QoS::AtLeastOnce,
            i + 2,
            false,
        );
        assert_eq!(
            device.recv(WAIT),
            Some(Got::PubAck(i + 2, ReasonCode::Success))
        );
    }
    eventually("the backlog to show 50", WAIT, || {
        backlog(&local, "aws") == 50
    });
    eventually("the failures to show", WAIT, || {
        metric(&local, "outpost_bridge_retries_total{bridge=\"aws\"}") >= 1
            && connected(&local, "aws") == 0
    });
    let moto = Moto::start(&python, port);
    assert_eq!(create_queue(&moto.url(), "remote"), remote);
    let drained = receive_n(&moto.url(), &remote, 50);
    let bodies: BTreeSet<String> = drained
        .iter()
        .filter_map(|m| m["Body"].as_str().map(str::to_string))
        .collect();
    assert_eq!(bodies.len(), 50, "all 50 arrived after moto returned");
    eventually("the backlog to empty", WAIT, || backlog(&local, "aws") == 0);
}

/// Signatures are real: an Outpost that checks SigV4 takes the bridge with the right secret and
/// refuses the one with a wrong secret, whose message waits.
#[test]
fn sqs_upstream_checks_signatures() {
    let keys = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        keys.path().join("keys.toml"),
        "[[keys]]\naccess_key_id = \"AKIDBRIDGE000001\"\nsecret_access_key = \"right-secret-0123456\"\nidentity = \"bridge\"\n",
    )
    .unwrap();
    let upstream = Outpost::start_with(
        tempfile::tempdir().expect("temp dir"),
        &format!(
            "[auth]\nallow_anonymous = true\naccess_keys_file = {:?}\n",
            keys.path().join("keys.toml").display().to_string()
        ),
        None,
    );
    let inbox = create_queue(&upstream.http, "inbox");
    let aws = |name: &str, secret: &str, filter: &str| {
        format!(
            "[[bridges]]\nname = \"{name}\"\nkind = \"aws\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
             access_key_id = \"AKIDBRIDGE000001\"\nsecret_access_key = \"{secret}\"\nbackoff_min_ms = 100\n\
             backoff_max_ms = 500\n[[bridges.out]]\nfilter = \"{filter}\"\nsqs = \"{inbox}\"\n",
            upstream.http
        )
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("outpost.log");
    let local = Outpost::start_with(
        tempfile::tempdir().expect("temp dir"),
        &format!(
            "{}\n{}",
            aws("right", "right-secret-0123456", "right/#"),
            aws("wrong", "wrong-secret-0123456", "wrong/#")
        ),
        Some(&log),
    );
    let mut device = Raw::connect(local.mqtt, Version::V5, "d", true);
    assert_eq!(device.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    device.publish("wrong/1", b"signed wrongly", QoS::AtLeastOnce, 1, false);
    device.publish("right/1", b"signed rightly", QoS::AtLeastOnce, 2, false);
    let got = receive_n(&upstream.http, &inbox, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["Body"], "signed rightly");
    eventually("the wrong signature to be refused, twice", WAIT, || {
        metric(&local, "outpost_bridge_retries_total{bridge=\"wrong\"}") >= 2
    });
    assert_eq!(backlog(&local, "wrong"), 1, "the refused message waits");
    assert!(
        receive(&upstream.http, &inbox).is_empty(),
        "nothing signed wrongly got in"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("signature we calculated does not match"),
        "the log says why: {text}"
    );
    assert!(!text.contains("wrong-secret"), "no secret in the log");
}

/// A message whose MQTT 5 expiry passes while it waits for the upstream is not forwarded; one
/// still alive goes with what is left of its lifetime.
#[test]
fn expired_messages_are_not_forwarded() {
    let mut up = stopped_upstream_with_sink();
    let local = Outpost::start_with(
        tempfile::tempdir().expect("temp dir"),
        &forwarding(up.port, 64, ""),
        None,
    );
    let mut device = Raw::connect(local.mqtt, Version::V5, "d", true);
    assert_eq!(device.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    let publish = |device: &mut Raw, payload: &[u8], expiry: u32, pkid: u16| {
        device.send(&Packet::Publish(outpost_codec::Publish {
            qos: QoS::AtLeastOnce,
            pkid,
            properties: outpost_codec::PublishProperties {
                message_expiry_interval: Some(expiry),
                ..Default::default()
            },
            ..outpost_codec::Publish::new("sensors/a", payload)
        }));
        assert_eq!(
            device.recv(WAIT),
            Some(Got::PubAck(pkid, ReasonCode::Success))
        );
    };
    publish(&mut device, &[0, 0, 0, 1], 1, 1);
    publish(&mut device, &[0, 0, 0, 2], 3600, 2);
    // Past the first message's lifetime (its age is counted in whole seconds).
    std::thread::sleep(Duration::from_millis(2_100));
    up.start();
    let got = drain_in_order(up.addr(), "sink", |g| !g.is_empty(), |_| {});
    assert_eq!(got, vec![("gw1/sensors/a".to_string(), 2)]);
    eventually("the expired message counted as dropped", WAIT, || {
        metric(&local, "outpost_bridge_dropped_total{bridge=\"up\"}") == 1
    });
}

/// What an `in` rule brings in acts as the bridge's `identity` (ADR 0015): with an ACL that
/// denies that identity `secret/#`, a command mapped there is dropped (and acknowledged
/// upstream), one mapped to an allowed topic arrives; `$SYS` is never written from upstream.
#[test]
fn inbound_messages_act_as_the_bridge_identity() {
    let mut up = Mosquitto::new("");
    up.start();
    let dir = tempfile::tempdir().expect("temp dir");
    let acl = dir.path().join("acl.toml");
    std::fs::write(
        &acl,
        "[[rules]]\neffect = \"allow\"\nidentities = [\"*\"]\nactions = [\"mqtt:*\"]\nresources = [\"#\", \"$SYS/#\"]\n\
         [[rules]]\neffect = \"deny\"\nidentities = [\"cloud-bridge\"]\nactions = [\"mqtt:publish\"]\nresources = [\"secret/#\"]\n",
    )
    .expect("acl written");
    let toml = format!(
        "[auth]\nallow_anonymous = true\nacl_file = {acl:?}\n\
         [[bridges]]\nname = \"up\"\naddress = \"127.0.0.1:{}\"\nclean_start = true\nidentity = \"cloud-bridge\"\n\
         [[bridges.in]]\nfilter = \"in/secret/#\"\ntopic = \"secret/{{topic}}\"\nstrip_prefix = \"in/secret/\"\nqos = 1\n\
         [[bridges.in]]\nfilter = \"in/sys/#\"\ntopic = \"$SYS/{{topic}}\"\nstrip_prefix = \"in/sys/\"\nqos = 1\n\
         [[bridges.in]]\nfilter = \"in/open/#\"\ntopic = \"open/{{topic}}\"\nstrip_prefix = \"in/open/\"\nqos = 1\n",
        up.port
    );
    let local = Outpost::start_with(tempfile::tempdir().expect("temp dir"), &toml, None);
    eventually("the bridge to connect", WAIT, || {
        connected(&local, "up") == 1
    });
    let mut watcher = Raw::connect(local.mqtt, Version::V5, "watcher", true);
    assert_eq!(watcher.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    watcher.subscribe(1, &["secret/#", "open/#", "$SYS/x/#"], QoS::AtLeastOnce);
    assert!(matches!(watcher.recv(WAIT), Some(Got::SubAck(_))));
    let mut cloud = Raw::connect(up.addr(), Version::V5, "cloud", true);
    assert_eq!(cloud.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    cloud.publish("in/secret/a", b"denied", QoS::AtLeastOnce, 1, false);
    cloud.publish("in/sys/x/a", b"reserved", QoS::AtLeastOnce, 2, false);
    cloud.publish("in/open/a", b"allowed", QoS::AtLeastOnce, 3, false);
    // In order through one link: once the allowed one is here, the others would have been.
    let got = until_raw(&mut watcher, b"allowed");
    assert_eq!(got, vec![b"allowed".to_vec()]);
    assert_eq!(
        metric(&local, "outpost_bridge_received_total{bridge=\"up\"}"),
        3,
        "all three came in (and were acknowledged upstream)"
    );
}

/// Reads a shadow over the iot-data API (`None`: 404).
fn shadow_of(broker: &Outpost, thing: &str) -> Option<serde_json::Value> {
    let req = format!(
        "GET /things/{thing}/shadow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = support::http::http(&broker.http, req.as_bytes());
    match status {
        200 => Some(json(&body)),
        404 => None,
        _ => panic!("GetThingShadow {status}: {body}"),
    }
}

/// UpdateThingShadow over the iot-data API.
fn update_shadow(broker: &Outpost, thing: &str, doc: serde_json::Value) {
    let body = doc.to_string();
    let req = format!(
        "POST /things/{thing}/shadow HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, answer) = support::http::http(&broker.http, req.as_bytes());
    assert_eq!(status, 200, "UpdateThingShadow: {answer}");
}

fn state_at(broker: &Outpost, thing: &str, pointer: &str) -> serde_json::Value {
    shadow_of(broker, thing)
        .and_then(|d| d.pointer(pointer).cloned())
        .unwrap_or(serde_json::Value::Null)
}

/// Device shadows kept in sync with a "cloud" (a second Outpost standing in for AWS IoT Core's
/// Device Shadow service) through a bridge: both ways while connected; a gateway change made
/// during an outage, through a `kill -9` of the gateway, reaches the cloud when the link returns;
/// a cloud change made meanwhile comes down; and a key changed on both sides ends with the
/// gateway's value on both (the documented rule).
#[test]
fn shadows_stay_in_sync_with_the_cloud() {
    use serde_json::json as j;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cloud = Some(Outpost::start_with_mqtt(
        tempfile::tempdir().expect("temp dir"),
        "",
        &addr,
    ));
    let toml = format!(
        "[[bridges]]\nname = \"iot\"\naddress = \"{addr}\"\nclient_id = \"gw-1\"\n\
         backoff_min_ms = 100\nbackoff_max_ms = 500\n\
         [[bridges.shadows]]\nthings = [\"pump-*\"]\ndirection = \"both\"\n"
    );
    let mut gw = Some(Outpost::start_with(
        tempfile::tempdir().expect("temp dir"),
        &toml,
        None,
    ));
    fn g(gw: &Option<Outpost>) -> &Outpost {
        gw.as_ref().expect("gateway runs")
    }
    fn c(cloud: &Option<Outpost>) -> &Outpost {
        cloud.as_ref().expect("cloud runs")
    }
    eventually("the link to connect", WAIT, || {
        connected(g(&gw), "iot") == 1
    });

    // Up and down while connected.
    update_shadow(g(&gw), "pump-1", j!({"state": {"reported": {"rpm": 900}}}));
    eventually("the report to reach the cloud", WAIT, || {
        state_at(c(&cloud), "pump-1", "/state/reported/rpm") == j!(900)
    });
    update_shadow(
        c(&cloud),
        "pump-1",
        j!({"state": {"desired": {"rpm": 1200, "mode": "auto"}}}),
    );
    eventually("the cloud's desired state to come down", WAIT, || {
        state_at(g(&gw), "pump-1", "/state/delta") == j!({"rpm": 1200, "mode": "auto"})
    });
    // Things no rule names stay here.
    update_shadow(
        g(&gw),
        "valve-1",
        j!({"state": {"reported": {"open": true}}}),
    );

    // Outage: the cloud goes away; the gateway changes a report and a desired value, and is
    // killed with kill -9 before the link returns.
    let cloud_data = cloud.take().expect("cloud runs").stop();
    eventually("the link to go down", WAIT, || {
        connected(g(&gw), "iot") == 0
    });
    update_shadow(
        g(&gw),
        "pump-1",
        j!({"state": {"reported": {"rpm": 1000}, "desired": {"mode": "eco"}}}),
    );
    let gw_data = gw.take().expect("gateway runs").kill();

    // The cloud returns before the gateway does, and changes the same desired key and another.
    cloud = Some(Outpost::start_with_mqtt(cloud_data, "", &addr));
    update_shadow(
        c(&cloud),
        "pump-1",
        j!({"state": {"desired": {"mode": "turbo", "light": "on"}}}),
    );

    gw = Some(Outpost::start_with(gw_data, &toml, None));
    eventually("both sides to agree", WAIT, || {
        let here = state_at(g(&gw), "pump-1", "/state");
        let there = state_at(c(&cloud), "pump-1", "/state");
        here.get("desired") == there.get("desired") && here.get("reported") == there.get("reported")
    });
    let fin = state_at(c(&cloud), "pump-1", "/state");
    assert_eq!(
        fin["reported"],
        j!({"rpm": 1000}),
        "the outage's report arrived"
    );
    assert_eq!(
        fin["desired"],
        j!({"rpm": 1200, "mode": "eco", "light": "on"}),
        "the cloud's change came down; on the key both changed, the gateway's value won"
    );
    assert_eq!(
        shadow_of(c(&cloud), "valve-1"),
        None,
        "no rule names valve-1"
    );
}
