//! The broker attacked as an outsider would: each test sends what once crashed, flooded or
//! exhausted Outpost to the real binary over real sockets, then checks that the process is still
//! up, that its memory or disk use stayed bounded, that the attacker got a protocol-correct
//! refusal, and that a well-behaved client beside it is served within a deadline.
//!
//! Longer than ~700 lines on purpose: the catalogue of attacks is one list, each test short, and a
//! new attack goes beside the others.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use outpost_codec::{ConnectProperties, Packet, QoS, ReasonCode, Unsubscribe, Version};
use support::http::{form_post, http, sqs_json};
use support::raw::{closed_within, persistent, Got, Raw};
use support::websocket;
use support::{eventually, Outpost};

fn deep(levels: usize) -> String {
    vec!["a"; levels].join("/")
}

/// A well-behaved MQTT client and an HTTP client are both served promptly.
fn assert_serves(broker: &mut Outpost) {
    assert!(broker.is_running(), "the broker process is up");
    let started = Instant::now();
    let mut c = Raw::connect(broker.mqtt, Version::V5, "well-behaved", true);
    assert_eq!(
        c.recv(Duration::from_secs(5)),
        Some(Got::ConnAck(ReasonCode::Success))
    );
    c.send(&Packet::PingReq);
    assert_eq!(c.recv(Duration::from_secs(5)), Some(Got::PingResp));
    let (status, _) = http(
        &broker.http,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "served within 5 s (took {:?})",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Critical: one request must not kill the process.

#[test]
fn deep_query_keys_get_400_by_get_and_post() {
    let mut broker = Outpost::start();
    let key = format!("Attribute.1{}", ".a".repeat(10_000));
    let (status, body) = http(
        &broker.http,
        format!("GET /?Action=ListQueues&{key}=x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("InvalidParameterValue"), "{body}");
    let (status, body) = form_post(&broker.http, &format!("Action=ListQueues&{key}=x"));
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("panicked"), "no internals leak: {body}");
    // The deepest key SQS itself uses still works.
    let (status, body) = form_post(
        &broker.http,
        "Action=CreateQueue&QueueName=deep-ok&Attribute.1.Name=DelaySeconds&Attribute.1.Value=1",
    );
    assert_eq!(status, 200, "{body}");
    assert_serves(&mut broker);
}

#[test]
fn query_parameter_floods_are_refused_with_bounded_memory() {
    let mut broker = Outpost::start();
    let before = broker.rss_kib();
    // Eight requests at once, each 4 MiB of tiny parameters (a million each: decoded in full
    // they would take gigabytes).
    let flood = format!("Action=ListQueues&{}", "a=1&".repeat(1024 * 1024 - 5));
    let base = broker.http.clone();
    let wave = || {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (base, flood) = (base.clone(), flood.clone());
                std::thread::spawn(move || form_post(&base, &flood))
            })
            .collect();
        for t in threads {
            let (status, body) = t.join().unwrap();
            assert_eq!(status, 400, "{body}");
            assert!(body.contains("parameters"), "{body}");
        }
    };
    // Bounded: the first wave costs a few times its 32 MiB of bodies, not their parameters.
    wave();
    let after_first = broker.rss_kib();
    let grown = after_first.saturating_sub(before);
    assert!(
        grown < 256 * 1024,
        "RSS grew by {grown} KiB for 32 MiB of requests"
    );
    // No growth after the second: what the first took is reused, nothing is kept.
    wave();
    let again = broker.rss_kib().saturating_sub(after_first);
    assert!(
        again < 24 * 1024,
        "RSS grew by {again} KiB more in a second wave of the same requests"
    );
    assert_serves(&mut broker);
}

#[test]
fn deep_topics_and_filters_are_refused_in_both_versions() {
    let mut broker = Outpost::start();
    let topic = deep(8_000);
    let wait = Duration::from_secs(5);
    // MQTT 5: SUBACK 0x8F for the filter; the connection stays usable.
    let mut c5 = Raw::connect(broker.mqtt, Version::V5, "deep5", true);
    assert_eq!(c5.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    c5.subscribe(1, &[&topic, "ok/#"], QoS::AtLeastOnce);
    assert_eq!(
        c5.recv(wait),
        Some(Got::SubAck(vec![
            ReasonCode::TopicFilterInvalid,
            ReasonCode::GrantedQoS1
        ]))
    );
    // ... unsubscribing it is harmless ...
    c5.send(&Packet::Unsubscribe(Unsubscribe {
        pkid: 2,
        filters: outpost_codec::List::new(&[topic.as_str()]),
        ..Unsubscribe::default()
    }));
    assert!(matches!(c5.recv(wait), Some(Got::UnsubAck(_))));
    // ... and publishing to it ends with DISCONNECT 0x90.
    c5.publish(&topic, b"x", QoS::AtLeastOnce, 3, true);
    assert_eq!(
        c5.recv(wait),
        Some(Got::Disconnect(ReasonCode::TopicNameInvalid))
    );
    assert!(c5.closed_within(wait));
    // MQTT 3.1.1: the filter gets SUBACK failure (0x80), a publish closes the connection.
    let mut c3 = Raw::connect(broker.mqtt, Version::V311, "deep3", true);
    assert_eq!(c3.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    c3.subscribe(1, &[&topic], QoS::AtMostOnce);
    assert_eq!(
        c3.recv(wait),
        Some(Got::SubAck(vec![ReasonCode::UnspecifiedError]))
    );
    c3.publish(&topic, b"x", QoS::AtMostOnce, 0, true);
    assert!(c3.closed_within(wait), "3.1.1 publisher disconnected");
    // A will on a deep topic is refused at CONNECT.
    let mut w = Raw::open(broker.mqtt, Version::V5);
    w.send(&Packet::Connect(outpost_codec::Connect {
        protocol: Version::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: "deep-will",
        will: Some(outpost_codec::Will {
            topic: &topic,
            payload: b"gone",
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Default::default(),
        }),
        ..outpost_codec::Connect::default()
    }));
    assert_eq!(
        w.recv(wait),
        Some(Got::ConnAck(ReasonCode::TopicNameInvalid))
    );
    // Nothing deep was retained: `#` finds nothing, and the broker is fine.
    let mut all = Raw::connect(broker.mqtt, Version::V5, "all", true);
    assert_eq!(all.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    all.subscribe(1, &["#"], QoS::AtMostOnce);
    assert_eq!(all.recv(wait), Some(Got::SubAck(vec![ReasonCode::Success])));
    assert_serves(&mut broker);
}

#[test]
fn deep_records_stored_under_looser_limits_are_skipped_at_restart() {
    let data = tempfile::tempdir().unwrap();
    let topic = deep(8_000);
    let wait = Duration::from_secs(10);
    let loose = "[mqtt]\nmax_topic_levels = 10000\n";
    let broker = Outpost::start_with(data, loose, None);
    // Under the loose limit the deep topic works end to end, without recursion: a persistent
    // subscription to it, a retained message on it, `#` over it, clearing it and setting it again.
    let mut sub = Raw::connect_with(
        broker.mqtt,
        Version::V5,
        "deep-sub",
        false,
        persistent(),
        60,
    );
    assert_eq!(sub.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    sub.subscribe(1, &[&topic], QoS::AtLeastOnce);
    assert_eq!(
        sub.recv(wait),
        Some(Got::SubAck(vec![ReasonCode::GrantedQoS1]))
    );
    let mut p = Raw::connect(broker.mqtt, Version::V5, "deep-pub", true);
    assert_eq!(p.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    p.publish(&topic, b"1", QoS::AtLeastOnce, 1, true);
    assert!(matches!(p.recv(wait), Some(Got::PubAck(1, _))));
    p.publish(&topic, b"", QoS::AtLeastOnce, 2, true);
    assert!(matches!(p.recv(wait), Some(Got::PubAck(2, _))));
    p.publish(&topic, b"2", QoS::AtLeastOnce, 3, true);
    assert!(matches!(p.recv(wait), Some(Got::PubAck(3, _))));
    let mut all = Raw::connect(broker.mqtt, Version::V5, "all", true);
    assert_eq!(all.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    all.subscribe(1, &["#"], QoS::AtMostOnce);
    assert_eq!(all.recv(wait), Some(Got::SubAck(vec![ReasonCode::Success])));
    assert!(matches!(all.recv(wait), Some(Got::Publish { topic: t, .. }) if t == topic));
    drop(sub);
    let data = broker.kill();
    // Restarted with the default limit: the stored deep retained message and subscription are
    // skipped (and logged), not a crash at the first `#`.
    let log = data.path().with_extension("log");
    let mut broker = Outpost::start_with(data, "", Some(&log));
    let mut all = Raw::connect(broker.mqtt, Version::V5, "all2", true);
    assert_eq!(all.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    all.subscribe(1, &["#"], QoS::AtMostOnce);
    assert_eq!(all.recv(wait), Some(Got::SubAck(vec![ReasonCode::Success])));
    let mut sub = Raw::connect_with(
        broker.mqtt,
        Version::V5,
        "deep-sub",
        false,
        persistent(),
        60,
    );
    assert_eq!(sub.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    assert_serves(&mut broker);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("retained messages with too many topic levels skipped"),
        "{text}"
    );
    assert!(
        text.contains("subscriptions with too many topic levels skipped"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// High: one client must not exhaust memory, disk or the broker's time.

#[test]
fn subscription_changes_are_written_as_deltas() {
    let mut broker = Outpost::start();
    let wait = Duration::from_secs(10);
    let mut c = Raw::connect_with(
        broker.mqtt,
        Version::V5,
        "many-filters",
        false,
        persistent(),
        60,
    );
    assert_eq!(c.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    // One filter per SUBSCRIBE, each waiting for its SUBACK: the bytes written for the last
    // hundred must not exceed those of the first hundred by much (a full rewrite per SUBSCRIBE
    // would make them grow with the number already held).
    let mut batch = |from: u16| {
        let before = broker.written_bytes();
        for i in from..from + 100 {
            let filter = format!("sensors/site-{i:05}/+/temperature/#");
            c.subscribe(i + 1, &[&filter], QoS::AtLeastOnce);
            assert!(matches!(c.recv(wait), Some(Got::SubAck(_))));
        }
        broker.written_bytes() - before
    };
    let first = batch(0);
    for from in (100..1900).step_by(100) {
        batch(from);
    }
    let last = batch(1900);
    eprintln!("bytes written: first 100 SUBSCRIBEs {first}, last 100 {last}");
    assert!(
        last <= first * 3 + 256 * 1024,
        "writes per SUBSCRIBE grew: first 100 wrote {first} B, last 100 wrote {last} B"
    );
    // One UNSUBSCRIBE of 200 filters: one small write, memory flat.
    let rss = broker.rss_kib();
    let before = broker.written_bytes();
    let filters: Vec<String> = (0..200)
        .map(|i| format!("sensors/site-{i:05}/+/temperature/#"))
        .collect();
    let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
    c.send(&Packet::Unsubscribe(Unsubscribe {
        pkid: 9999,
        filters: outpost_codec::List::new(&refs),
        ..Unsubscribe::default()
    }));
    assert!(matches!(c.recv(wait), Some(Got::UnsubAck(_))));
    // The write is durable once a later SUBACK of the same session returns.
    c.subscribe(10_000, &["probe"], QoS::AtMostOnce);
    assert!(matches!(c.recv(wait), Some(Got::SubAck(_))));
    let written = broker.written_bytes() - before;
    assert!(
        written < 2 * 1024 * 1024,
        "UNSUBSCRIBE of 200 wrote {written} B"
    );
    let grown = broker.rss_kib().saturating_sub(rss);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
    assert_serves(&mut broker);
}

#[test]
fn the_server_caps_the_outgoing_window_and_counts_in_flight_bytes() {
    let data = tempfile::tempdir().unwrap();
    let config = "[mqtt]\nmax_inflight = 20\nmax_queued_bytes = 2097152\n";
    let mut broker = Outpost::start_with(data, config, None);
    let wait = Duration::from_secs(10);
    // A subscriber that asks for a 65,535 window and never acknowledges.
    let mut sub = Raw::connect_with(
        broker.mqtt,
        Version::V5,
        "never-acks",
        true,
        ConnectProperties {
            receive_maximum: Some(u16::MAX),
            ..ConnectProperties::default()
        },
        60,
    );
    assert_eq!(sub.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    sub.subscribe(1, &["big"], QoS::AtLeastOnce);
    assert!(matches!(sub.recv(wait), Some(Got::SubAck(_))));
    let before = broker.rss_kib();
    let mut p = Raw::connect(broker.mqtt, Version::V5, "flooder", true);
    assert_eq!(p.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    let payload = vec![7u8; 64 * 1024];
    // 300 × 64 KiB = 19 MiB offered; the session may hold 2 MiB.
    for i in 0..300u16 {
        p.publish("big", &payload, QoS::AtLeastOnce, i % 50 + 1, false);
        if i % 50 == 49 {
            for _ in 0..50 {
                assert!(matches!(p.recv(wait), Some(Got::PubAck(..))));
            }
        }
    }
    let mut received = 0;
    while let Some(Got::Publish { .. }) = sub.recv(Duration::from_secs(2)) {
        received += 1;
    }
    assert_eq!(
        received, 20,
        "the window is the server's maximum, not the client's"
    );
    let grown = broker.rss_kib().saturating_sub(before);
    assert!(grown < 48 * 1024, "RSS grew by {grown} KiB");
    assert_serves(&mut broker);
}

#[test]
fn slow_partial_and_idle_http_connections_are_closed() {
    let data = tempfile::tempdir().unwrap();
    let config = "[http]\nheader_timeout = 2\nbody_timeout = 2\n";
    let mut broker = Outpost::start_with(data, config, None);
    let addr = broker.http.trim_start_matches("http://").to_string();
    let closed_within = |s: &mut TcpStream, limit: Duration| {
        s.set_read_timeout(Some(limit)).unwrap();
        let mut out = Vec::new();
        let started = Instant::now();
        let r = s.read_to_end(&mut out);
        (r.is_ok() || started.elapsed() < limit, out)
    };
    // Slowloris: headers that never end.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-a: ")
        .unwrap();
    let (closed, _) = closed_within(&mut slow, Duration::from_secs(8));
    assert!(closed, "a request whose headers never end is closed");
    // A body shorter than its Content-Length.
    let mut short = TcpStream::connect(&addr).unwrap();
    short
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nAc")
        .unwrap();
    let (closed, out) = closed_within(&mut short, Duration::from_secs(8));
    assert!(closed, "a body that never arrives ends the request");
    assert!(
        String::from_utf8_lossy(&out).contains(" 408 "),
        "answered 408: {}",
        String::from_utf8_lossy(&out)
    );
    // An idle keep-alive connection.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (closed, out) = closed_within(&mut idle, Duration::from_secs(8));
    assert!(closed, "an idle keep-alive connection is closed");
    assert!(String::from_utf8_lossy(&out).contains(" 200 "));
    assert_serves(&mut broker);
}

#[test]
fn websockets_that_never_upgrade_connect_or_close_are_dropped() {
    let data = tempfile::tempdir().unwrap();
    let config = "[mqtt]\nconnect_timeout = 2\nmax_packet_size = 4096\n";
    let mut broker = Outpost::start_with(data, config, None);
    let addr = broker.ws.split('/').next().unwrap().to_string();
    // A TCP connection that never upgrades.
    let mut plain = TcpStream::connect(&addr).unwrap();
    assert!(closed_within(&mut plain, Duration::from_secs(8)));
    // Upgraded, never sends CONNECT, never answers the close frame: the TCP connection ends.
    let mut silent = websocket::upgraded(&broker.ws);
    assert!(closed_within(&mut silent, Duration::from_secs(10)));
    // A frame larger than the largest MQTT packet is refused at the WebSocket layer.
    let mut big = websocket::upgraded(&broker.ws);
    let _ = big.write_all(&websocket::frame(&vec![0u8; 200_000]));
    assert!(closed_within(&mut big, Duration::from_secs(8)));
    assert_serves(&mut broker);
}

/// The WebSocket upgrade's own limits: a request past 8 KiB is refused with 431, another path
/// with 404, a request that is not an upgrade with 400; each connection is closed, and the broker
/// serves the next upgrade.
#[test]
fn websocket_upgrades_past_their_limits_are_refused_with_a_status() {
    let mut broker = Outpost::start();
    let addr = broker.ws.split('/').next().unwrap().to_string();
    let huge = format!(
        "GET /mqtt HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(10 * 1024)
    );
    let wrong_path = "GET /elsewhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n"
        .to_string();
    let plain = "GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n".to_string();
    for (request, status) in [(huge, " 431 "), (wrong_path, " 404 "), (plain, " 400 ")] {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The request may be refused before all of it is written.
        let _ = s.write_all(request.as_bytes());
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1") && answer.contains(status),
            "{status}: {answer}"
        );
    }
    // Still upgrading and serving.
    let mut ws = websocket::upgraded(&broker.ws);
    ws.write_all(&websocket::frame(&[
        0x10, 0x0C, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 0,
    ]))
    .unwrap();
    assert_eq!(websocket::read_frame(&mut ws), (2, vec![0x20, 0x02, 0, 0]));
    assert_serves(&mut broker);
}

/// MQTT bytes over WebSocket are a stream, not packets (MQTT §6): a packet cut across frames and
/// packets sharing a frame are read as TCP would read them; a ping is answered with its payload;
/// a text frame closes the connection (§6.0) and nothing else.
#[test]
fn websocket_frames_are_a_byte_stream_and_text_frames_close() {
    let mut broker = Outpost::start();
    let mut s = websocket::upgraded(&broker.ws);
    let mut connect = bytes::BytesMut::new();
    Packet::Connect(outpost_codec::Connect {
        protocol: Version::V311,
        client_id: "ws-stream",
        clean_start: true,
        keep_alive: 30,
        ..Default::default()
    })
    .encode_to(Version::V311, &mut connect)
    .unwrap();
    // CONNECT cut in two frames; the second also carries a whole PINGREQ.
    s.write_all(&websocket::frame(&connect[..5])).unwrap();
    let mut rest = connect[5..].to_vec();
    rest.extend_from_slice(&[0xC0, 0x00]);
    s.write_all(&websocket::frame(&rest)).unwrap();
    let mut got = Vec::new();
    while got.len() < 6 {
        let (opcode, payload) = websocket::read_frame(&mut s);
        assert_eq!(opcode, 2, "MQTT comes in binary frames");
        got.extend_from_slice(&payload);
    }
    assert_eq!(
        got,
        [0x20, 0x02, 0x00, 0x00, 0xD0, 0x00],
        "CONNACK, PINGRESP"
    );
    s.write_all(&websocket::control(0x9, b"are you there"))
        .unwrap();
    assert_eq!(
        websocket::read_frame(&mut s),
        (0xA, b"are you there".to_vec())
    );
    // Still serving MQTT after the ping.
    s.write_all(&websocket::frame(&[0xC0, 0x00])).unwrap();
    assert_eq!(websocket::read_frame(&mut s), (0x2, vec![0xD0, 0x00]));
    s.write_all(&websocket::control(0x1, b"{}")).unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(8)));
    assert_serves(&mut broker);
}

#[test]
fn connection_caps_refuse_the_excess_and_serve_the_rest() {
    let data = tempfile::tempdir().unwrap();
    let config = "[mqtt]\nmax_connections = 20\n[http]\nmax_connections_per_address = 5\n";
    let mut broker = Outpost::start_with(data, config, None);
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(broker.mqtt).unwrap())
        .collect();
    // Wait until all twenty are admitted (each connection is admitted by the accept loop).
    let mut extra = TcpStream::connect(broker.mqtt).unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(5)),
        "the 21st MQTT connection is closed at once"
    );
    drop(idle);
    // Places free up as connections close.
    eventually("a free MQTT place", Duration::from_secs(10), || {
        let mut c = Raw::connect(broker.mqtt, Version::V311, "after", true);
        c.recv(Duration::from_secs(1)) == Some(Got::ConnAck(ReasonCode::Success))
    });
    let addr = broker.http.trim_start_matches("http://").to_string();
    let held: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let mut sixth = TcpStream::connect(&addr).unwrap();
    assert!(
        closed_within(&mut sixth, Duration::from_secs(5)),
        "the 6th HTTP connection from one address is closed"
    );
    drop(held);
    eventually("HTTP served again", Duration::from_secs(10), || {
        http(
            &broker.http,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .0 == 200
    });
    let (status, metrics) = http(
        &broker.http,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(metrics.contains("outpost_connections_refused_total{listener=\"mqtt\"}"));
    assert_serves(&mut broker);
}

#[test]
fn retained_quota_refuses_with_0x97_and_floods_do_not_delay_acks() {
    let data = tempfile::tempdir().unwrap();
    let config = "[mqtt]\nmax_retained_messages = 100\n";
    let broker = Outpost::start_with(data, config, None);
    let wait = Duration::from_secs(10);
    let mut p = Raw::connect(broker.mqtt, Version::V5, "retainer", true);
    assert_eq!(p.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    let mut refused = 0;
    for i in 0..150u16 {
        p.publish(&format!("r/{i}"), b"v", QoS::AtLeastOnce, i + 1, true);
        match p.recv(wait) {
            Some(Got::PubAck(_, ReasonCode::QuotaExceeded)) => refused += 1,
            Some(Got::PubAck(..)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        refused, 50,
        "the 101st retained topic and later are refused"
    );
    // Replacing a retained topic is fine at the cap.
    p.publish("r/0", b"new", QoS::AtLeastOnce, 1, true);
    assert!(matches!(
        p.recv(wait),
        Some(Got::PubAck(
            1,
            ReasonCode::NoMatchingSubscribers | ReasonCode::Success
        ))
    ));
    // MQTT 3.1.1 over quota: disconnected.
    let mut p3 = Raw::connect(broker.mqtt, Version::V311, "retainer3", true);
    assert_eq!(p3.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    p3.publish("r/new", b"v", QoS::AtLeastOnce, 1, true);
    assert!(p3.closed_within(wait));
    drop(broker);

    // A QoS 0 retained flood on the default limits does not hold up a persistent session's PUBACK.
    let mut broker = Outpost::start();
    let mut sub = Raw::connect_with(
        broker.mqtt,
        Version::V5,
        "durable-sub",
        false,
        persistent(),
        60,
    );
    assert_eq!(sub.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    sub.subscribe(1, &["jobs"], QoS::AtLeastOnce);
    assert!(matches!(sub.recv(wait), Some(Got::SubAck(_))));
    let flood_addr = broker.mqtt;
    let flooder = std::thread::spawn(move || {
        let mut f = Raw::connect(flood_addr, Version::V5, "flood", true);
        assert_eq!(f.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
        for i in 0..50_000u32 {
            f.publish(
                &format!("flood/{i}"),
                b"0123456789",
                QoS::AtMostOnce,
                0,
                true,
            );
        }
        f.send(&Packet::PingReq);
        f.recv(Duration::from_secs(60))
    });
    let mut worker = Raw::connect(broker.mqtt, Version::V5, "worker", true);
    assert_eq!(worker.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    let mut slowest = Duration::ZERO;
    for i in 1..=20u16 {
        let started = Instant::now();
        worker.publish("jobs", b"work", QoS::AtLeastOnce, i, false);
        assert!(matches!(worker.recv(wait), Some(Got::PubAck(..))));
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(5),
        "a durable PUBACK took {slowest:?} during a retained flood"
    );
    assert_eq!(flooder.join().unwrap(), Some(Got::PingResp));
    assert_serves(&mut broker);
}

#[test]
fn refused_messages_are_counted_not_logged_one_by_one() {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().with_extension("log");
    let config = "[mqtt]\nmax_queued_messages = 10\nmax_subscriptions = 5\n";
    let mut broker = Outpost::start_with(data, config, Some(&log));
    let wait = Duration::from_secs(10);
    // An offline persistent subscriber with a 10-message queue.
    let mut sub = Raw::connect_with(broker.mqtt, Version::V5, "offline", false, persistent(), 60);
    assert_eq!(sub.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    sub.subscribe(1, &["t"], QoS::AtLeastOnce);
    assert!(matches!(sub.recv(wait), Some(Got::SubAck(_))));
    // 200 filters in one SUBSCRIBE: 195 over the quota.
    let filters: Vec<String> = (0..200).map(|i| format!("f/{i}")).collect();
    let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
    sub.subscribe(2, &refs, QoS::AtMostOnce);
    assert!(matches!(sub.recv(wait), Some(Got::SubAck(codes)) if codes.len() == 200));
    sub.send(&Packet::Disconnect(outpost_codec::Disconnect::new(
        ReasonCode::Success,
    )));
    let mut p = Raw::connect(broker.mqtt, Version::V5, "pub", true);
    assert_eq!(p.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    for i in 0..2_000u16 {
        p.publish("t", b"x", QoS::AtLeastOnce, i % 100 + 1, false);
        if i % 100 == 99 {
            for _ in 0..100 {
                assert!(matches!(p.recv(wait), Some(Got::PubAck(..))));
            }
        }
    }
    // Counted in metrics...
    eventually("the refusals are counted", wait, || {
        let (_, m) = http(
            &broker.http,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        m.lines().any(|l| {
            l.starts_with("outpost_mqtt_refused_total{reason=\"queue_full\"}") && !l.ends_with(" 0")
        })
    });
    // ... and logged once per second or so, not per message (2,190 refusals).
    eventually("a summary line", wait, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("QoS 1/2 messages not queued: session queue full")
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines = text.lines().count();
    assert!(lines < 30, "{lines} log lines:\n{text}");
    assert_serves(&mut broker);
}

#[test]
fn keep_alive_counts_whole_packets_not_bytes() {
    let mut broker = Outpost::start();
    let mut c = Raw::connect_with(
        broker.mqtt,
        Version::V311,
        "dribbler",
        true,
        ConnectProperties::default(),
        2,
    );
    assert_eq!(
        c.recv(Duration::from_secs(5)),
        Some(Got::ConnAck(ReasonCode::Success))
    );
    // A PUBLISH header announcing 100 bytes, then one byte a second: the connection must close
    // after 1.5 × 2 s without a whole packet.
    c.s.write_all(&[0x30, 100]).unwrap();
    let started = Instant::now();
    let mut closed = false;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(700));
        if c.s.write_all(b"x").is_err() || c.closed_within(Duration::from_millis(300)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "closed while dribbling");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "closed after {:?}",
        started.elapsed()
    );
    assert_serves(&mut broker);
}

#[test]
fn persistent_sessions_are_capped() {
    let data = tempfile::tempdir().unwrap();
    let config = "[mqtt]\nmax_persistent_sessions = 3\n";
    let mut broker = Outpost::start_with(data, config, None);
    let wait = Duration::from_secs(5);
    let mut kept = Vec::new();
    for i in 0..3 {
        let mut c = Raw::connect_with(
            broker.mqtt,
            Version::V5,
            &format!("p{i}"),
            false,
            persistent(),
            60,
        );
        assert_eq!(c.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
        kept.push(c);
    }
    let mut over = Raw::connect_with(broker.mqtt, Version::V5, "p3", false, persistent(), 60);
    assert_eq!(
        over.recv(wait),
        Some(Got::ConnAck(ReasonCode::QuotaExceeded))
    );
    let mut over3 = Raw::connect(broker.mqtt, Version::V311, "p4", false);
    assert_eq!(
        over3.recv(wait),
        Some(Got::ConnAck(ReasonCode::ServerUnavailable))
    );
    // A session that exists is resumed, a clean one is fine.
    drop(kept);
    let mut again = Raw::connect_with(broker.mqtt, Version::V5, "p0", false, persistent(), 60);
    assert_eq!(again.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    assert_serves(&mut broker);
}

// ---------------------------------------------------------------------------------------------
// The SQS API's limits.

#[test]
fn long_trace_headers_and_policies_are_refused_not_stored() {
    let mut broker = Outpost::start();
    let (status, body) = sqs_json(&broker.http, "CreateQueue", r#"{"QueueName":"traced"}"#);
    assert_eq!(status, 200, "{body}");
    let url = format!("{}/000000000000/traced", broker.http);
    let send = |trace: &str| {
        sqs_json(
            &broker.http,
            "SendMessage",
            &format!(
                r#"{{"QueueUrl":"{url}","MessageBody":"b","MessageSystemAttributes":{{"AWSTraceHeader":{{"DataType":"String","StringValue":"{trace}"}}}}}}"#
            ),
        )
    };
    let (status, body) = send(&"R".repeat(70_000));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("InvalidParameterValue"), "{body}");
    let (status, body) = send("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1");
    assert_eq!(status, 200, "{body}");
    let (status, body) = sqs_json(
        &broker.http,
        "ReceiveMessage",
        &format!(r#"{{"QueueUrl":"{url}","MessageSystemAttributeNames":["All"]}}"#),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Root=1-5759e988"),
        "the stored header comes back: {body}"
    );
    // A policy over AWS's 8,192-byte quota.
    let policy = format!(
        r#"{{\"Version\":\"2012-10-17\",\"Id\":\"{}\"}}"#,
        "p".repeat(9_000)
    );
    let (status, body) = sqs_json(
        &broker.http,
        "SetQueueAttributes",
        &format!(r#"{{"QueueUrl":"{url}","Attributes":{{"Policy":"{policy}"}}}}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("InvalidAttributeValue"), "{body}");
    assert_serves(&mut broker);
}
