//! The MQTT broker against clients we did not write (mosquitto_pub / mosquitto_sub) and against raw
//! sockets for the protocol's error paths.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::Outpost;

fn mosquitto(cmd: &str, broker: &Outpost, args: &[&str]) -> Command {
    let mut c = Command::new(cmd);
    c.args(["-h", "127.0.0.1", "-p", &broker.port()]).args(args);
    c
}

/// A mosquitto_sub in the background, its output read line by line as it comes.
struct Sub {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// Starts a subscriber that exits after `count` messages (or 10 s), printing `topic payload`.
fn subscriber(broker: &Outpost, args: &[&str], count: usize) -> Sub {
    let n = count.to_string();
    let mut full = vec!["-v", "-C", &n, "-W", "10"];
    full.extend_from_slice(args);
    spawn_sub(broker, &full)
}

fn spawn_sub(broker: &Outpost, args: &[&str]) -> Sub {
    let mut child = mosquitto("mosquitto_sub", broker, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("mosquitto_sub (Debian package mosquitto-clients) runs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Sub {
        child,
        lines,
        seen: Vec::new(),
    }
}

/// A subscriber left running (a failed assertion) must not outlive the test: it would hold the
/// test's output pipe open.
impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sub {
    /// Waits (10 s at most) until the subscriber prints a line `wanted` accepts.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.seen.iter().any(|l| wanted(l)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "the subscriber never printed {what}; it printed {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for the subscriber to exit: every line it printed.
    fn finish(mut self) -> Vec<String> {
        let _ = self.child.wait();
        let mut seen = std::mem::take(&mut self.seen);
        seen.extend(self.lines.iter());
        seen
    }
}

/// Publishes with mosquitto_pub, which exits once the broker acknowledged (QoS 1 and 2).
fn publish(broker: &Outpost, args: &[&str]) {
    let out = mosquitto("mosquitto_pub", broker, args)
        .output()
        .expect("mosquitto_pub runs");
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until a subscriber's SUBSCRIBE has been processed, using a retained marker message the
/// subscriber receives first.
fn ready_marker(broker: &Outpost, topic: &str) {
    publish(broker, &["-t", topic, "-m", "ready", "-r", "-q", "1"]);
}

#[test]
fn qos_0_1_2_between_mosquitto_clients_both_versions() {
    let broker = Outpost::start();
    for version in ["mqttv311", "mqttv5"] {
        ready_marker(&broker, "t/ready");
        let mut sub = subscriber(&broker, &["-V", version, "-q", "2", "-t", "t/#"], 4);
        // The retained marker arrives first: the subscription exists before we publish.
        sub.wait_for("the retained marker", |l| l == "t/ready ready");
        for (qos, msg) in [("0", "zero"), ("1", "one"), ("2", "two")] {
            publish(
                &broker,
                &[
                    "-V",
                    version,
                    "-q",
                    qos,
                    "-t",
                    &format!("t/q{qos}"),
                    "-m",
                    msg,
                ],
            );
        }
        let got = sub.finish();
        assert_eq!(
            got,
            ["t/ready ready", "t/q0 zero", "t/q1 one", "t/q2 two"],
            "{version}"
        );
    }
}

#[test]
fn retained_messages_set_replace_clear() {
    let broker = Outpost::start();
    publish(&broker, &["-t", "home/temp", "-m", "20", "-r"]);
    publish(&broker, &["-t", "home/temp", "-m", "21", "-r", "-q", "1"]);
    assert_eq!(
        subscriber(&broker, &["-t", "home/+", "-F", "%t %p %r"], 1).finish(),
        ["home/temp 21 1"],
        "the newest retained message, flagged retained"
    );
    publish(&broker, &["-t", "home/temp", "-n", "-r"]);
    let out = mosquitto(
        "mosquitto_sub",
        &broker,
        &["-t", "home/#", "-C", "1", "-W", "1"],
    )
    .output()
    .unwrap();
    assert!(
        lines(&out).is_empty(),
        "an empty retained payload clears it: {:?}",
        lines(&out)
    );
}

#[test]
fn will_is_published_when_a_client_dies_not_on_clean_disconnect() {
    let broker = Outpost::start();
    ready_marker(&broker, "wills/ready");
    let mut watcher = subscriber(&broker, &["-t", "wills/#"], 2);
    watcher.wait_for("the retained marker", |l| l == "wills/ready ready");
    // A clean disconnect: no will.
    publish(
        &broker,
        &[
            "-t",
            "x",
            "-m",
            "bye",
            "--will-topic",
            "wills/clean",
            "--will-payload",
            "should not appear",
        ],
    );
    // A client that dies: its will goes out.
    // It is connected (with its will) once it receives a retained marker.
    ready_marker(&broker, "doomed/ready");
    let mut doomed = spawn_sub(
        &broker,
        &[
            "-v",
            "-t",
            "doomed/ready",
            "--will-topic",
            "wills/dead",
            "--will-payload",
            "gone",
            "-i",
            "doomed",
        ],
    );
    doomed.wait_for("the retained marker", |l| l == "doomed/ready ready");
    drop(doomed);
    assert_eq!(watcher.finish(), ["wills/ready ready", "wills/dead gone"]);
}

#[test]
fn persistent_session_receives_what_was_published_while_offline() {
    let broker = Outpost::start();
    // Subscribe with a persistent session, then go away.
    let out = mosquitto(
        "mosquitto_sub",
        &broker,
        &[
            "-c", "-i", "sleeper", "-q", "1", "-t", "cmd/#", "-E", "-V", "mqttv311",
        ],
    )
    .output()
    .unwrap();
    assert!(lines(&out).is_empty());
    publish(&broker, &["-t", "cmd/reboot", "-m", "now", "-q", "1"]);
    publish(
        &broker,
        &["-t", "cmd/other", "-m", "qos0 not queued", "-q", "0"],
    );
    let got = subscriber(
        &broker,
        &[
            "-c", "-i", "sleeper", "-q", "1", "-t", "cmd/#", "-V", "mqttv311",
        ],
        1,
    )
    .finish();
    assert_eq!(got, ["cmd/reboot now"]);
}

fn connect_packet(client: &str, keep_alive: u16) -> Vec<u8> {
    use outpost_codec::{Connect, Packet, Version};
    let p = Packet::Connect(Connect {
        protocol: Version::V311,
        clean_start: true,
        keep_alive,
        client_id: client,
        ..Connect::default()
    });
    let mut buf = vec![0u8; 64];
    let n = p.encode(Version::V311, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Reads until the peer closes (or `limit`), returning what arrived.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(all),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            // A close with unread data in the broker's buffer arrives as a reset.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(all),
            Err(_) => return None,
        }
    }
}

#[test]
fn bad_input_closes_only_that_connection() {
    let mut broker = Outpost::start();
    // Garbage instead of CONNECT.
    let mut s = TcpStream::connect(broker.mqtt).unwrap();
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).unwrap();
    assert!(
        read_until_closed(&mut s, Duration::from_secs(5)).is_some(),
        "closed"
    );
    // First packet not CONNECT.
    let mut s = TcpStream::connect(broker.mqtt).unwrap();
    s.write_all(&[0xc0, 0x00]).unwrap();
    assert!(read_until_closed(&mut s, Duration::from_secs(5)).is_some());
    // Unsupported protocol level: CONNACK 0x01, then closed.
    let mut s = TcpStream::connect(broker.mqtt).unwrap();
    s.write_all(&[
        0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 9, 2, 0, 60, 0, 1, b'c',
    ])
    .unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(5)).expect("closed");
    assert_eq!(got, [0x20, 0x02, 0x00, 0x01]);
    // A malformed packet after a good CONNECT.
    let mut s = TcpStream::connect(broker.mqtt).unwrap();
    s.write_all(&connect_packet("bad", 60)).unwrap();
    s.write_all(&[0x82, 0x02, 0x00, 0x01]).unwrap(); // SUBSCRIBE without filters
    let got = read_until_closed(&mut s, Duration::from_secs(5)).expect("closed");
    assert_eq!(&got[..4], [0x20, 0x02, 0x00, 0x00], "CONNACK came first");
    // Everyone else is still served.
    assert!(broker.is_running());
    publish(&broker, &["-t", "still/alive", "-m", "yes", "-r"]);
    assert_eq!(
        subscriber(&broker, &["-t", "still/alive"], 1).finish(),
        ["still/alive yes"]
    );
}

#[test]
fn keep_alive_is_enforced_and_takeover_closes_the_old_connection() {
    let broker = Outpost::start();
    let mut quiet = TcpStream::connect(broker.mqtt).unwrap();
    quiet.write_all(&connect_packet("quiet", 1)).unwrap();
    let started = std::time::Instant::now();
    let got = read_until_closed(&mut quiet, Duration::from_secs(5)).expect("closed for silence");
    assert_eq!(&got[..4], [0x20, 0x02, 0x00, 0x00]);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "not before 1.5 × keep-alive: {waited:?}"
    );

    let mut first = TcpStream::connect(broker.mqtt).unwrap();
    first.write_all(&connect_packet("same-id", 60)).unwrap();
    let mut ack = [0u8; 4];
    first.read_exact(&mut ack).unwrap();
    let mut second = TcpStream::connect(broker.mqtt).unwrap();
    second.write_all(&connect_packet("same-id", 60)).unwrap();
    second.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
    assert!(
        read_until_closed(&mut first, Duration::from_secs(5)).is_some(),
        "the old connection is closed"
    );
}

#[test]
fn persistent_sessions_and_retained_messages_survive_kill_9() {
    let broker = Outpost::start();
    let out = mosquitto(
        "mosquitto_sub",
        &broker,
        &[
            "-c", "-i", "keeper", "-q", "1", "-t", "k/#", "-E", "-V", "mqttv5", "-x", "3600",
        ],
    )
    .output()
    .unwrap();
    assert!(lines(&out).is_empty());
    // mosquitto_pub returns after PUBACK: from then on the message must survive.
    publish(&broker, &["-t", "k/1", "-m", "one", "-q", "1"]);
    publish(&broker, &["-t", "k/2", "-m", "two", "-q", "2"]);
    publish(&broker, &["-t", "r/t", "-m", "kept", "-r", "-q", "1"]);
    let data = broker.kill();

    let broker = Outpost::start_in(data);
    let got = subscriber(
        &broker,
        &[
            "-c", "-i", "keeper", "-q", "1", "-t", "k/#", "-V", "mqttv5", "-x", "3600",
        ],
        2,
    )
    .finish();
    assert_eq!(got, ["k/1 one", "k/2 two"]);
    assert_eq!(
        subscriber(&broker, &["-t", "r/#"], 1).finish(),
        ["r/t kept"]
    );
    // After a graceful stop, acknowledged messages are not delivered again. (After a crash right
    // after the PUBACK a QoS 1 message may come again: at least once.)
    let broker = Outpost::start_in(broker.stop());
    let out = mosquitto(
        "mosquitto_sub",
        &broker,
        &[
            "-c", "-i", "keeper", "-q", "1", "-t", "k/#", "-W", "2", "-V", "mqttv5", "-x", "3600",
        ],
    )
    .output()
    .unwrap();
    assert!(lines(&out).is_empty(), "delivered once: {:?}", lines(&out));
}

/// The Python interpreter of the test venv (created by scripts/test.sh with paho-mqtt in it).
fn paho_python() -> Option<std::path::PathBuf> {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    support::skip("no .venv with paho-mqtt (./scripts/test.sh creates it)");
    None
}

#[test]
fn paho_over_tcp_and_websocket() {
    let Some(python) = paho_python() else { return };
    let broker = Outpost::start();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/paho_client.py");
    let tcp = Command::new(&python)
        .arg(&script)
        .args(["tcp", "127.0.0.1", &broker.port()])
        .output()
        .unwrap();
    assert!(
        tcp.status.success(),
        "paho over TCP: {} {}",
        String::from_utf8_lossy(&tcp.stdout),
        String::from_utf8_lossy(&tcp.stderr)
    );
    assert_eq!(lines(&tcp), ["paho/test hello over tcp qos=1"]);

    let (addr, path) = broker.ws.split_once('/').expect("ws address with a path");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let ws = Command::new(&python)
        .arg(&script)
        .args(["websockets", host, port, &format!("/{path}")])
        .output()
        .unwrap();
    assert!(
        ws.status.success(),
        "paho over WebSocket: {} {}",
        String::from_utf8_lossy(&ws.stdout),
        String::from_utf8_lossy(&ws.stderr)
    );
    assert_eq!(lines(&ws), ["paho/test hello over websockets qos=1"]);
}

#[test]
fn sys_topics_report_the_broker_and_hide_from_wildcards() {
    let broker = Outpost::start();
    let listener = subscriber(&broker, &["-t", "anything/#"], 1);
    let got = subscriber(
        &broker,
        &[
            "-t",
            "$SYS/broker/version",
            "-t",
            "$SYS/broker/clients/connected",
        ],
        2,
    )
    .finish();
    assert!(
        got.iter()
            .any(|l| l.starts_with("$SYS/broker/version outpost ")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("$SYS/broker/clients/connected ")),
        "{got:?}"
    );
    // A `#` subscription does not receive `$SYS` topics (§4.7.2).
    let out = mosquitto("mosquitto_sub", &broker, &["-t", "#", "-W", "2", "-v"])
        .output()
        .unwrap();
    assert!(
        lines(&out).iter().all(|l| !l.starts_with("$SYS")),
        "{:?}",
        lines(&out)
    );
    drop(listener);
}

/// A raw MQTT 5 client on our codec: for checks that need to see packets as they are on the wire.
struct RawClient {
    s: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    fn connect(broker: &Outpost, connect: outpost_codec::Connect<'_>) -> RawClient {
        use outpost_codec::{Packet, Version};
        let mut s = TcpStream::connect(broker.mqtt).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = vec![0u8; 512];
        let n = Packet::Connect(connect)
            .encode(Version::V5, &mut buf)
            .unwrap();
        s.write_all(&buf[..n]).unwrap();
        RawClient { s, buf: Vec::new() }
    }

    fn send(&mut self, p: outpost_codec::Packet<'_>) {
        let mut buf = vec![0u8; 1024];
        let n = p.encode(outpost_codec::Version::V5, &mut buf).unwrap();
        self.s.write_all(&buf[..n]).unwrap();
    }

    /// The next packet, as owned bytes (decode with `outpost_codec::decode`).
    fn next_frame(&mut self) -> Vec<u8> {
        loop {
            if let Ok(outpost_codec::Frame::Complete(h)) =
                outpost_codec::check(&self.buf, usize::MAX)
            {
                let frame: Vec<u8> = self.buf.drain(..h.packet_len()).collect();
                return frame;
            }
            let mut chunk = [0u8; 1024];
            let n = self.s.read(&mut chunk).expect("a packet within 10 s");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[test]
fn outgoing_topic_aliases() {
    use outpost_codec::{
        decode, ConnectProperties, Decoded, List, Packet, QoS, Subscribe, SubscribeFilter, Version,
    };
    let broker = Outpost::start();
    let mut c = RawClient::connect(
        &broker,
        outpost_codec::Connect {
            protocol: Version::V5,
            clean_start: true,
            keep_alive: 60,
            client_id: "aliased",
            properties: ConnectProperties {
                topic_alias_maximum: Some(4),
                ..ConnectProperties::default()
            },
            ..outpost_codec::Connect::default()
        },
    );
    assert_eq!(c.next_frame()[0], 0x20, "CONNACK");
    let filters = [SubscribeFilter::new("alias/#", QoS::AtMostOnce)];
    c.send(Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: List::new(&filters),
        ..Subscribe::default()
    }));
    assert_eq!(c.next_frame()[0], 0x90, "SUBACK");
    for _ in 0..2 {
        publish(&broker, &["-t", "alias/long/topic/name", "-m", "x"]);
    }
    let first = c.next_frame();
    let second = c.next_frame();
    let (Ok(Decoded::Packet(Packet::Publish(a), _)), Ok(Decoded::Packet(Packet::Publish(b), _))) = (
        decode(&first, Version::V5, usize::MAX),
        decode(&second, Version::V5, usize::MAX),
    ) else {
        panic!("two PUBLISH packets expected");
    };
    assert_eq!(
        (a.topic, a.properties.topic_alias),
        ("alias/long/topic/name", Some(1))
    );
    assert_eq!(
        (b.topic, b.properties.topic_alias),
        ("", Some(1)),
        "only the alias the second time"
    );
    assert!(second.len() < first.len());
}

/// MQTT.js (Node), the client web dashboards use, over TCP and WebSocket, MQTT 3.1.1 and 5
/// (publish/subscribe, retained, will, and a Device Shadow update answered on `update/accepted`).
#[test]
fn mqttjs_over_tcp_and_websocket() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/mqttjs");
    if !dir.join("node_modules/mqtt").exists() {
        support::skip("no MQTT.js (./scripts/test.sh installs it)");
        return;
    }
    let broker = Outpost::start();
    let out = std::process::Command::new("node")
        .arg(dir.join("client.mjs"))
        .arg(format!("mqtt://{}", broker.mqtt))
        .arg(format!("ws://{}", broker.ws))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "MQTT.js: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        4,
        "{stdout}"
    );
}
