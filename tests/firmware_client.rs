//! The firmware client (`outpost-client`) on a host, against the real broker: every feature a
//! device relies on, including a broker killed and restarted under a QoS 1 stream.

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use outpost_client::blocking::Client;
use outpost_client::transport::TcpTransport;
use outpost_client::{Buffers, Config, Event, LastWill, QoS, SubscribeFilter, Version};
use support::{eventually, Outpost};

const N: usize = 16;

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

struct Bufs {
    rx: Vec<u8>,
    tx: Vec<u8>,
    out: Vec<u8>,
}

fn bufs(out: usize) -> Bufs {
    Bufs {
        rx: vec![0; 2048],
        tx: vec![0; 2048],
        out: vec![0; out],
    }
}

/// (topic, payload, QoS) of a received message.
type Received = (String, Vec<u8>, QoS);

type Dev<'b> = Client<'b, TcpTransport, fn() -> u64, N>;

fn client<'b>(b: &'b mut Bufs, config: Config<'b>) -> Dev<'b> {
    Client::new(
        config,
        Buffers {
            rx: &mut b.rx,
            tx: &mut b.tx,
            outgoing: &mut b.out,
        },
        now_ms as fn() -> u64,
    )
}

fn connect(c: &mut Dev<'_>, broker: &Outpost) -> bool {
    c.connect(TcpTransport::connect(broker.mqtt).expect("tcp"))
        .expect("CONNACK")
}

/// Polls until `done` holds, collecting (topic, payload, qos) of messages and acknowledged ids.
fn pump(
    c: &mut Dev<'_>,
    what: &str,
    mut done: impl FnMut(&[Received], &[u16]) -> bool,
) -> (Vec<Received>, Vec<u16>) {
    let mut msgs = Vec::new();
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&msgs, &acked) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        c.poll(|e| match e {
            Event::Message(m) => msgs.push((m.topic.to_string(), m.payload.to_vec(), m.qos)),
            Event::Published(id) => acked.push(id),
            Event::Subscribed { pkid, granted } => {
                assert!(granted, "subscription {pkid} refused")
            }
            Event::Unsubscribed(_) => {}
        })
        .expect("poll");
        std::thread::sleep(Duration::from_millis(2));
    }
    (msgs, acked)
}

fn subscribe(c: &mut Dev<'_>, filter: &str, qos: QoS) {
    let id = c
        .subscribe(&[SubscribeFilter::new(filter, qos)])
        .expect("subscribe");
    let mut got = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got {
        assert!(Instant::now() < deadline, "no SUBACK");
        c.poll(|e| {
            if let Event::Subscribed { pkid, granted } = e {
                assert!(granted);
                got |= pkid == id;
            }
        })
        .expect("poll");
    }
}

fn all_qos_both_ways(version: Version) {
    let broker = Outpost::start();
    let mut b = bufs(4096);
    let mut cfg = Config::new("fw-roundtrip");
    cfg.version = version;
    cfg.clean_session = true;
    cfg.username = Some("device");
    cfg.password = Some(b"secret");
    let mut c = client(&mut b, cfg);
    assert!(!connect(&mut c, &broker));
    subscribe(&mut c, "dev/+/data", QoS::ExactlyOnce);
    let mut ids = Vec::new();
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let id = c
            .publish(
                &format!("dev/{i}/data"),
                format!("q{i}").as_bytes(),
                qos,
                false,
            )
            .expect("publish");
        ids.extend(id);
    }
    let (msgs, acked) = pump(&mut c, "three messages and two acks", |m, a| {
        m.len() >= 3 && a.len() >= 2
    });
    let mut got: Vec<_> = msgs
        .iter()
        .map(|(t, p, q)| (t.clone(), String::from_utf8_lossy(p).into_owned(), *q))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("dev/0/data".into(), "q0".into(), QoS::AtMostOnce),
            ("dev/1/data".into(), "q1".into(), QoS::AtLeastOnce),
            ("dev/2/data".into(), "q2".into(), QoS::ExactlyOnce),
        ]
    );
    assert_eq!(acked, ids);
    assert_eq!(c.pending(), 0);
    c.unsubscribe(&["dev/+/data"]).expect("unsubscribe");
    c.disconnect();
}

#[test]
fn mqtt311_publish_and_receive_at_every_qos() {
    all_qos_both_ways(Version::V311);
}

#[test]
fn mqtt5_publish_and_receive_at_every_qos() {
    all_qos_both_ways(Version::V5);
}

#[test]
fn keep_alive_pings_hold_an_idle_link() {
    let broker = Outpost::start();
    let mut b = bufs(1024);
    let mut cfg = Config::new("fw-idle");
    cfg.keep_alive = 1;
    let mut c = client(&mut b, cfg);
    connect(&mut c, &broker);
    subscribe(&mut c, "idle/cmd", QoS::AtLeastOnce);
    // Three keep-alive periods of silence: the broker drops a client after 1.5 without pings.
    let until = Instant::now() + Duration::from_millis(3200);
    while Instant::now() < until {
        c.poll(|_| {}).expect("the link stays up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = std::process::Command::new("mosquitto_pub")
        .args([
            "-p",
            &broker.port(),
            "-t",
            "idle/cmd",
            "-q",
            "1",
            "-m",
            "still here",
        ])
        .status();
    if out.map(|s| s.success()).unwrap_or(false) {
        let (msgs, _) = pump(&mut c, "the command", |m, _| !m.is_empty());
        assert_eq!(msgs[0].1, b"still here");
    } else {
        // Without mosquitto_pub the link staying up is the check.
        assert!(std::env::var_os("OUTPOST_REQUIRE_INTEROP").is_none());
    }
}

#[test]
fn last_will_on_a_dropped_link() {
    let broker = Outpost::start();
    let mut wb = bufs(1024);
    let mut watcher = client(&mut wb, Config::new("fw-watcher"));
    connect(&mut watcher, &broker);
    subscribe(&mut watcher, "status/#", QoS::AtLeastOnce);
    {
        let mut b = bufs(1024);
        let mut cfg = Config::new("fw-mortal");
        cfg.will = Some(LastWill {
            topic: "status/fw-mortal",
            payload: b"offline",
            qos: QoS::AtLeastOnce,
            retain: false,
        });
        let mut c = client(&mut b, cfg);
        connect(&mut c, &broker);
        c.publish("status/fw-mortal", b"online", QoS::AtLeastOnce, false)
            .unwrap();
        pump(&mut c, "PUBACK", |_, a| !a.is_empty());
        // Dropped without DISCONNECT (the transport goes with the client).
    }
    let (msgs, _) = pump(&mut watcher, "online then the will", |m, _| m.len() >= 2);
    assert_eq!(msgs[0].1, b"online");
    assert_eq!(msgs[1].1, b"offline");
}

#[test]
fn offline_buffer_keeps_the_newest_messages() {
    let broker = Outpost::start();
    let mut b = bufs(200);
    let mut c = client(&mut b, Config::new("fw-offline"));
    // Not connected: QoS 1 telemetry queues up; the buffer holds about 8 of these.
    for i in 0..20 {
        c.publish(
            "tele/x",
            format!("reading {i:02}").as_bytes(),
            QoS::AtLeastOnce,
            false,
        )
        .expect("queued offline");
    }
    assert!(c.dropped() > 0, "the oldest were dropped");
    let kept = c.pending();
    assert_eq!(kept as u32 + c.dropped(), 20);
    let mut sb = bufs(1024);
    let mut sub = client(&mut sb, Config::new("fw-offline-sub"));
    connect(&mut sub, &broker);
    subscribe(&mut sub, "tele/x", QoS::AtLeastOnce);
    connect(&mut c, &broker);
    pump(&mut c, "all acknowledged", |_, a| a.len() == kept);
    let (msgs, _) = pump(&mut sub, "the kept readings", |m, _| m.len() == kept);
    let last: Vec<String> = msgs
        .iter()
        .map(|(_, p, _)| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(last.last().map(String::as_str), Some("reading 19"));
    assert!(last.windows(2).all(|w| w[0] < w[1]), "in order: {last:?}");
}

#[test]
fn qos1_stream_survives_a_broker_kill_and_restart() {
    let broker = Outpost::start();
    let mut sb = bufs(1024);
    let mut sub = client(&mut sb, Config::new("fw-sink"));
    connect(&mut sub, &broker);
    subscribe(&mut sub, "stream/#", QoS::AtLeastOnce);
    let mut pb = bufs(8192);
    let mut publisher = client(&mut pb, Config::new("fw-source"));
    connect(&mut publisher, &broker);
    let mut received = std::collections::BTreeSet::new();
    for i in 0..20 {
        // A full in-flight window answers QueueFull: keep polling for acknowledgements.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match publisher.publish(
                "stream/a",
                format!("{i:03}").as_bytes(),
                QoS::AtLeastOnce,
                false,
            ) {
                Ok(_) => break,
                Err(outpost_client::Error::QueueFull) if Instant::now() < deadline => {
                    publisher.poll(|_| {}).expect("poll");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("publish: {e:?}"),
            }
        }
    }
    let (m, _) = pump(&mut sub, "the first messages", |m, _| m.len() >= 5);
    received.extend(
        m.into_iter()
            .map(|(_, p, _)| String::from_utf8_lossy(&p).into_owned()),
    );
    // The next ten go into the offline buffer: wait until it has room for them (its window of
    // 16 may still be full of messages the broker acknowledged and the client has not read yet).
    eventually(
        "room for 10 in the publisher's buffer",
        Duration::from_secs(10),
        || {
            let _ = publisher.poll(|_| {});
            publisher.pending() <= N - 10
        },
    );
    // kill -9, with messages maybe still in flight; the publisher keeps publishing into its
    // offline buffer.
    let data = broker.kill();
    for i in 20..30 {
        let _ = publisher.poll(|_| {});
        publisher
            .publish(
                "stream/a",
                format!("{i:03}").as_bytes(),
                QoS::AtLeastOnce,
                false,
            )
            .expect("stored while the broker is down");
    }
    let broker = Outpost::start_in(data);
    // Both clients reconnect to their persistent sessions.
    eventually("the subscriber reconnects", Duration::from_secs(10), || {
        sub.connect(TcpTransport::connect(broker.mqtt).expect("tcp"))
            .is_ok()
    });
    connect(&mut publisher, &broker);
    let deadline = Instant::now() + Duration::from_secs(15);
    while publisher.pending() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} unacknowledged",
            publisher.pending()
        );
        publisher.poll(|_| {}).expect("poll");
        std::thread::sleep(Duration::from_millis(5));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while received.len() < 30 {
        assert!(
            Instant::now() < deadline,
            "QoS 1 messages lost: got {} of 30: {received:?}",
            received.len()
        );
        sub.poll(|e| {
            if let Event::Message(m) = e {
                received.insert(String::from_utf8_lossy(m.payload).into_owned());
            }
        })
        .expect("poll");
        std::thread::sleep(Duration::from_millis(2));
    }
    let expected: std::collections::BTreeSet<String> = (0..30).map(|i| format!("{i:03}")).collect();
    assert_eq!(received, expected);
}

#[tokio::test]
async fn async_client_over_tokio() {
    use outpost_client::asynch::Client as AsyncClient;
    use outpost_client::transport::TokioTransport;
    let broker = tokio::task::spawn_blocking(Outpost::start).await.unwrap();
    let (mut rx, mut tx, mut out) = (vec![0u8; 1024], vec![0u8; 1024], vec![0u8; 2048]);
    let mut cfg = Config::new("fw-async");
    cfg.version = Version::V5;
    let mut c: AsyncClient<'_, TokioTransport, fn() -> u64, 8> = AsyncClient::new(
        cfg,
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
            outgoing: &mut out,
        },
        now_ms as fn() -> u64,
    );
    c.connect(TokioTransport::connect(broker.mqtt).await.unwrap())
        .await
        .unwrap();
    c.subscribe(&[SubscribeFilter::new("async/+", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let id = c
        .publish("async/1", b"over tokio", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let mut got = None;
    let mut acked = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.is_none() || !acked {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::timeout(
            Duration::from_millis(200),
            c.wait(|e| match e {
                Event::Message(m) => got = Some(m.payload.to_vec()),
                Event::Published(p) => acked |= Some(p) == id,
                _ => {}
            }),
        )
        .await
        .ok()
        .transpose()
        .unwrap();
    }
    assert_eq!(got.as_deref(), Some(&b"over tokio"[..]));
    drop(broker);
}
