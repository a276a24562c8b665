//! AWS IoT Core's lifecycle events (`$aws/events/…`): what a watcher subscribed to them sees as
//! real clients connect, subscribe, unsubscribe, disconnect in each way AWS names, fail to log
//! in, and what a rule does with them. Clients are raw MQTT over loopback; the rule is created
//! through the EventBridge API and read back through SQS.

mod support;

use std::time::Duration;

use outpost_codec::{Packet, QoS, ReasonCode, Version};
use serde_json::Value;
use support::http::{events_json, receive_all, sqs_json};
use support::raw::{Got, Raw};
use support::Outpost;

const WAIT: Duration = Duration::from_secs(10);

/// A client subscribed to `filter` (QoS 0), connected as `client`.
fn watcher(addr: std::net::SocketAddr, client: &str, filter: &str) -> Raw {
    let mut w = Raw::connect(addr, Version::V5, client, true);
    assert_eq!(w.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    w.subscribe(1, &[filter], QoS::AtMostOnce);
    assert_eq!(w.recv(WAIT), Some(Got::SubAck(vec![ReasonCode::Success])));
    w
}

/// The next event the watcher gets: (topic, JSON body).
fn next_event(w: &mut Raw) -> (String, Value) {
    loop {
        match w.recv(WAIT) {
            Some(Got::Publish { topic, payload, .. }) => {
                let body = serde_json::from_slice(&payload).expect("an event is JSON");
                return (topic, body);
            }
            Some(Got::PingResp | Got::Other) => continue,
            other => panic!("expected a lifecycle event, got {other:?}"),
        }
    }
}

/// The next event about `client` (events of other clients in between are skipped).
fn event_of(w: &mut Raw, client: &str) -> (String, Value) {
    loop {
        let (topic, body) = next_event(w);
        if body["clientId"] == client {
            return (topic, body);
        }
    }
}

fn connected(addr: std::net::SocketAddr, client: &str, keep_alive: u16) -> Raw {
    let mut c = Raw::connect_with(
        addr,
        Version::V5,
        client,
        true,
        Default::default(),
        keep_alive,
    );
    assert_eq!(c.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    c
}

fn is_uuid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 36
            && s.chars().enumerate().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            })
    })
}

/// Connect, subscribe, unsubscribe and a client's DISCONNECT, with AWS's fields; the connect
/// and disconnect of one connection share their version number and session identifier.
#[test]
fn a_clients_life_in_events() {
    let broker = Outpost::start();
    let mut w = watcher(broker.mqtt, "watcher", "$aws/events/#");

    let mut dev = connected(broker.mqtt, "dev-1", 60);
    let (topic, c) = event_of(&mut w, "dev-1");
    assert_eq!(topic, "$aws/events/presence/connected/dev-1");
    assert_eq!(c["eventType"], "connected");
    assert_eq!(c["ipAddress"], "127.0.0.1");
    assert_eq!(c["principalIdentifier"], "", "an anonymous client");
    assert!(is_uuid(&c["sessionIdentifier"]), "{c}");
    assert!(c["versionNumber"].is_u64(), "{c}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let at = c["timestamp"].as_u64().expect("timestamp in ms");
    assert!(now.abs_diff(at) < 60_000, "timestamp {at}, now {now}");
    assert!(c.get("clientInitiatedDisconnect").is_none());

    dev.subscribe(1, &["sensors/+/t", "alarms/#"], QoS::AtLeastOnce);
    assert!(matches!(dev.recv(WAIT), Some(Got::SubAck(_))));
    let (topic, s) = event_of(&mut w, "dev-1");
    assert_eq!(topic, "$aws/events/subscriptions/subscribed/dev-1");
    assert_eq!(s["eventType"], "subscribed");
    assert_eq!(s["topics"], serde_json::json!(["sensors/+/t", "alarms/#"]));
    assert_eq!(s["sessionIdentifier"], c["sessionIdentifier"]);

    dev.send(&Packet::Unsubscribe(outpost_codec::Unsubscribe {
        pkid: 2,
        properties: Default::default(),
        filters: outpost_codec::List::new(&["alarms/#"]),
    }));
    assert!(matches!(dev.recv(WAIT), Some(Got::UnsubAck(_))));
    let (topic, u) = event_of(&mut w, "dev-1");
    assert_eq!(topic, "$aws/events/subscriptions/unsubscribed/dev-1");
    assert_eq!(u["topics"], serde_json::json!(["alarms/#"]));

    dev.send(&Packet::Disconnect(Default::default()));
    let (topic, d) = event_of(&mut w, "dev-1");
    assert_eq!(topic, "$aws/events/presence/disconnected/dev-1");
    assert_eq!(d["eventType"], "disconnected");
    assert_eq!(d["disconnectReason"], "CLIENT_INITIATED_DISCONNECT");
    assert_eq!(d["clientInitiatedDisconnect"], true);
    assert_eq!(d["versionNumber"], c["versionNumber"]);
    assert_eq!(d["sessionIdentifier"], c["sessionIdentifier"]);
    assert!(d.get("ipAddress").is_none(), "connect events only");
}

/// Each way a connection ends is named as AWS names it.
#[test]
fn disconnect_reasons() {
    let broker = Outpost::start();
    let mut w = watcher(
        broker.mqtt,
        "watcher",
        "$aws/events/presence/disconnected/+",
    );

    // The socket goes without DISCONNECT.
    drop(connected(broker.mqtt, "lost", 60));
    let (_, d) = event_of(&mut w, "lost");
    assert_eq!(d["disconnectReason"], "CONNECTION_LOST");
    assert_eq!(d["clientInitiatedDisconnect"], false);

    // Silent past 1.5 keep-alive periods.
    let _quiet = connected(broker.mqtt, "quiet", 1);
    let (_, d) = event_of(&mut w, "quiet");
    assert_eq!(d["disconnectReason"], "MQTT_KEEP_ALIVE_TIMEOUT");

    // The same client id connects again: the first connection is taken over.
    let mut first = connected(broker.mqtt, "twin", 60);
    let second = connected(broker.mqtt, "twin", 60);
    assert_eq!(
        first.recv(WAIT),
        Some(Got::Disconnect(ReasonCode::SessionTakenOver))
    );
    let (_, d) = event_of(&mut w, "twin");
    assert_eq!(d["disconnectReason"], "DUPLICATE_CLIENTID");
    drop(second);
    let (_, d2) = event_of(&mut w, "twin");
    assert_eq!(d2["disconnectReason"], "CONNECTION_LOST");
    assert!(
        d2["versionNumber"].as_u64() > d["versionNumber"].as_u64(),
        "the later connection has the higher version: {d} then {d2}"
    );

    // A protocol error: a second CONNECT.
    let mut bad = connected(broker.mqtt, "bad", 60);
    bad.send(&Packet::Connect(outpost_codec::Connect {
        protocol: Version::V5,
        client_id: "bad",
        ..outpost_codec::Connect::default()
    }));
    let (_, d) = event_of(&mut w, "bad");
    assert_eq!(d["disconnectReason"], "CLIENT_ERROR");
}

/// Client ids holding `#` or `+` get no events; nobody can publish one; `#` does not match
/// them (they are `$` topics).
#[test]
fn events_are_the_brokers_own() {
    let broker = Outpost::start();
    let mut w = watcher(broker.mqtt, "watcher", "$aws/events/presence/connected/+");
    let mut everything = watcher(broker.mqtt, "everything", "#");

    drop(connected(broker.mqtt, "odd+id", 60));
    let mut faker = connected(broker.mqtt, "faker", 60);
    let (_, c) = event_of(&mut w, "faker");
    assert_eq!(c["eventType"], "connected");
    faker.publish(
        "$aws/events/presence/connected/victim",
        br#"{"clientId":"victim"}"#,
        QoS::AtMostOnce,
        0,
        false,
    );
    // A fence: the next client's event arrives, and nothing came in between.
    drop(connected(broker.mqtt, "fence", 60));
    let (topic, _) = next_event(&mut w);
    assert_eq!(
        topic, "$aws/events/presence/connected/fence",
        "no event for odd+id, none faked by a client"
    );
    assert!(
        !matches!(
            everything.recv(Duration::from_millis(300)),
            Some(Got::Publish { .. })
        ),
        "`#` does not match `$aws/…`"
    );
}

/// With a password file and an ACL: a failed login is a `connect_failed` event, the
/// principal is the identity the client logged in as, and only those the ACL lets read
/// `$aws/events/…` get the events.
#[test]
fn logins_and_the_acl() {
    let (broker, _files) = support::with_users_and_acl(
        &[("ops", "ops-secret"), ("dev", "dev-secret")],
        r##"
[[rules]]
effect = "allow"
identities = ["ops"]
actions = ["mqtt:subscribe", "mqtt:receive"]
resources = ["$aws/events/#"]

[[rules]]
effect = "allow"
identities = ["*"]
actions = ["mqtt:*"]
resources = ["devices/%c/#"]
"##,
    );

    let mut ops = Raw::login(
        broker.mqtt,
        Version::V5,
        "ops-1",
        Some("ops"),
        Some(b"ops-secret"),
    );
    assert_eq!(ops.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    ops.subscribe(1, &["$aws/events/#"], QoS::AtMostOnce);
    assert_eq!(ops.recv(WAIT), Some(Got::SubAck(vec![ReasonCode::Success])));

    let mut dev = Raw::login(
        broker.mqtt,
        Version::V5,
        "dev-1",
        Some("dev"),
        Some(b"dev-secret"),
    );
    assert_eq!(dev.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    dev.subscribe(1, &["$aws/events/#"], QoS::AtMostOnce);
    assert_eq!(
        dev.recv(WAIT),
        Some(Got::SubAck(vec![ReasonCode::NotAuthorized])),
        "the ACL decides who reads lifecycle events"
    );
    let (_, c) = event_of(&mut ops, "dev-1");
    assert_eq!(c["eventType"], "connected");
    assert_eq!(c["principalIdentifier"], "dev");

    let mut wrong = Raw::login(
        broker.mqtt,
        Version::V5,
        "dev-2",
        Some("dev"),
        Some(b"nope"),
    );
    assert_eq!(
        wrong.recv(WAIT),
        Some(Got::ConnAck(ReasonCode::BadUserNameOrPassword))
    );
    let (topic, f) = event_of(&mut ops, "dev-2");
    assert_eq!(topic, "$aws/events/presence/connect_failed/dev-2");
    assert_eq!(f["eventType"], "connect_failed");
    assert_eq!(f["connectFailureReason"], "AUTHORIZATION_FAILED");
    assert_eq!(f["principalIdentifier"], "dev");
    assert_eq!(f["ipAddress"], "127.0.0.1");
    assert!(is_uuid(&f["sessionIdentifier"]), "{f}");
}

/// "A device went offline" lands in a queue through a rule on the events.
#[test]
fn a_rule_puts_disconnects_in_a_queue() {
    let broker = Outpost::start();
    let base = broker.http.clone();
    let (status, body) = sqs_json(&base, "CreateQueue", r#"{"QueueName":"offline"}"#);
    assert_eq!(status, 200, "{body}");
    let pattern = serde_json::json!({
        "source": ["outpost.mqtt"],
        "detail-type": [{"prefix": "$aws/events/presence/disconnected/"}],
        "detail": {"disconnectReason": [{"anything-but": "CLIENT_INITIATED_DISCONNECT"}]}
    })
    .to_string();
    let rule = serde_json::json!({"Name": "offline", "EventPattern": pattern}).to_string();
    let (status, body) = events_json(&base, "PutRule", &rule);
    assert_eq!(status, 200, "{body}");
    let (status, body) = events_json(
        &base,
        "PutTargets",
        r#"{"Rule":"offline","Targets":[{"Id":"q","Arn":"arn:aws:sqs:us-east-1:000000000000:offline","InputPath":"$.detail"}]}"#,
    );
    assert_eq!(status, 200, "{body}");

    // A rule on every MQTT message does not get the broker's `$aws/…` events, as `#` would not.
    let (status, body) = sqs_json(&base, "CreateQueue", r#"{"QueueName":"all-mqtt"}"#);
    assert_eq!(status, 200, "{body}");
    let rule = serde_json::json!({"Name": "all", "EventPattern": r#"{"source":["outpost.mqtt"]}"#});
    let (status, body) = events_json(&base, "PutRule", &rule.to_string());
    assert_eq!(status, 200, "{body}");
    let (status, body) = events_json(
        &base,
        "PutTargets",
        r#"{"Rule":"all","Targets":[{"Id":"q","Arn":"arn:aws:sqs:us-east-1:000000000000:all-mqtt","InputPath":"$.detail-type"}]}"#,
    );
    assert_eq!(status, 200, "{body}");

    let mut polite = connected(broker.mqtt, "polite", 60);
    polite.send(&Packet::Disconnect(Default::default()));
    drop(connected(broker.mqtt, "sensor-7", 60));

    let mut got = Vec::new();
    support::eventually("the disconnect to reach the queue", WAIT, || {
        got.extend(receive_all(&base, "offline"));
        !got.is_empty()
    });
    assert_eq!(got.len(), 1, "only the lost connection matches: {got:?}");
    let detail: Value = serde_json::from_str(&got[0]).expect("the detail is JSON");
    assert_eq!(detail["clientId"], "sensor-7");
    assert_eq!(detail["disconnectReason"], "CONNECTION_LOST");

    let mut fence = connected(broker.mqtt, "fence", 60);
    fence.publish("fence/x", b"{}", QoS::AtLeastOnce, 1, false);
    assert!(matches!(fence.recv(WAIT), Some(Got::PubAck(1, _))));
    let all = receive_all(&base, "all-mqtt");
    assert_eq!(
        all,
        vec!["\"fence/x\"".to_string()],
        "only the client's own publish"
    );
}
