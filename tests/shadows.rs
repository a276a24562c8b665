//! The Device Shadow service against the real broker: AWS's own clients (boto3 `iot-data`, the
//! aws CLI, `awsiotsdk`'s shadow client, paho) through `tests/interop/shadows_test.py`, an
//! accepted update surviving `kill -9` with its version, and the ACL deciding with IoT's actions.

mod support;

use std::path::Path;
use std::time::Duration;

use outpost_codec::{QoS, ReasonCode, Version};
use support::raw::{Got, Raw};
use support::{aws_cli, python, Outpost};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn aws_clients_suite() {
    let Some(python) = python(".venv") else {
        return;
    };
    let broker = Outpost::start();
    support::pytest(
        &python,
        "shadows_test.py",
        &[
            ("OUTPOST_HTTP_ENDPOINT", broker.http.clone()),
            ("OUTPOST_MQTT_PORT", broker.port()),
        ],
    );
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The aws CLI writes the shadow document to a file, as `aws iot-data get-thing-shadow` does.
fn cli_get(broker: &Outpost, thing: &str, dir: &Path) -> serde_json::Value {
    let out = dir.join("shadow.json");
    aws_cli(
        broker,
        &[
            "iot-data",
            "get-thing-shadow",
            "--thing-name",
            thing,
            out.to_str().expect("utf-8 path"),
        ],
    );
    json(&std::fs::read_to_string(&out).expect("the CLI wrote the document"))
}

/// Every update acknowledged (MQTT PUBACK after `/update/accepted`) survives `kill -9`, with its
/// version; the next update continues from it.
#[test]
fn accepted_updates_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Outpost::start();
    let mut dev = Raw::connect(broker.mqtt, Version::V5, "lamp-dev", true);
    assert_eq!(dev.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    for n in 1..=50u16 {
        let body = format!(
            r#"{{"state":{{"reported":{{"n":{n},"k{}":true}}}}}}"#,
            n % 7
        );
        dev.publish(
            "$aws/things/lamp/shadow/update",
            body.as_bytes(),
            QoS::AtLeastOnce,
            n,
            false,
        );
        loop {
            match dev.recv(WAIT) {
                Some(Got::PubAck(p, ReasonCode::Success)) if p == n => break,
                Some(Got::PubAck(p, code)) => panic!("PUBACK {p} {code:?}"),
                Some(_) => continue,
                None => panic!("no PUBACK for update {n}"),
            }
        }
    }
    let before = cli_get(&broker, "lamp", dir.path());
    assert_eq!(before["version"], 50);
    assert_eq!(before["state"]["reported"]["n"], 50);

    let data = broker.kill();
    let broker = Outpost::start_in(data);
    let after = cli_get(&broker, "lamp", dir.path());
    assert_eq!(after["version"], 50, "the version never goes backwards");
    assert_eq!(after["state"], before["state"]);
    assert_eq!(after["metadata"], before["metadata"]);
    aws_cli(
        &broker,
        &[
            "iot-data",
            "update-thing-shadow",
            "--thing-name",
            "lamp",
            "--payload",
            r#"{"state":{"desired":{"n":51}}}"#,
            dir.path().join("out.json").to_str().expect("utf-8 path"),
        ],
    );
    let next = cli_get(&broker, "lamp", dir.path());
    assert_eq!(next["version"], 51);
    assert_eq!(next["state"]["delta"], serde_json::json!({"n": 51}));
}

/// A device limited to its own thing (`%c` in the ACL, IoT's actions on the thing's ARN): its
/// own shadow is answered, another thing's update is rejected with 403 on `/rejected`.
#[test]
fn the_acl_limits_a_device_to_its_own_thing() {
    let (broker, _files) = support::with_users_and_acl(
        &[("dev", "dev-secret")],
        r##"
[[rules]]
effect = "allow"
identities = ["*"]
actions = ["mqtt:*"]
resources = ["$aws/things/+/shadow/#"]

[[rules]]
effect = "allow"
identities = ["*"]
actions = ["iot:GetThingShadow", "iot:UpdateThingShadow"]
resources = ["arn:aws:iot:*:*:thing/%c"]
"##,
    );
    let mut dev = Raw::login(
        broker.mqtt,
        Version::V5,
        "pump-1",
        Some("dev"),
        Some(b"dev-secret"),
    );
    assert_eq!(dev.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    dev.subscribe(
        1,
        &[
            "$aws/things/pump-1/shadow/update/accepted",
            "$aws/things/pump-2/shadow/update/rejected",
        ],
        QoS::AtMostOnce,
    );
    assert!(matches!(dev.recv(WAIT), Some(Got::SubAck(_))));
    let next = |dev: &mut Raw| loop {
        match dev.recv(WAIT) {
            Some(Got::Publish { topic, payload, .. }) => {
                return (topic, json(&String::from_utf8_lossy(&payload)))
            }
            Some(_) => continue,
            None => panic!("no answer"),
        }
    };
    dev.publish(
        "$aws/things/pump-1/shadow/update",
        br#"{"state":{"reported":{"rpm":900}}}"#,
        QoS::AtMostOnce,
        0,
        false,
    );
    let (topic, body) = next(&mut dev);
    assert_eq!(topic, "$aws/things/pump-1/shadow/update/accepted");
    assert_eq!(body["version"], 1);
    dev.publish(
        "$aws/things/pump-2/shadow/update",
        br#"{"state":{"reported":{"rpm":1}}}"#,
        QoS::AtMostOnce,
        0,
        false,
    );
    let (topic, body) = next(&mut dev);
    assert_eq!(topic, "$aws/things/pump-2/shadow/update/rejected");
    assert_eq!(body["code"], 403);
    assert_eq!(body["message"], "Forbidden");
}

/// A shadow change is an event the rules see (its MQTT answer topics, as `detail-type`): a rule
/// puts every delta into a queue, whichever door made the change.
#[test]
fn a_rule_puts_deltas_in_a_queue() {
    use support::http::{events_json, http, receive_all, sqs_json};
    let broker = Outpost::start();
    let base = broker.http.clone();
    assert_eq!(
        sqs_json(&base, "CreateQueue", r#"{"QueueName":"deltas"}"#).0,
        200
    );
    let pattern = r#"{"source":["outpost.mqtt"],"detail-type":[{"wildcard":"$aws/things/*/shadow/update/delta"}]}"#;
    let rule = serde_json::json!({"Name": "deltas", "EventPattern": pattern}).to_string();
    assert_eq!(events_json(&base, "PutRule", &rule).0, 200);
    let (status, body) = events_json(
        &base,
        "PutTargets",
        r#"{"Rule":"deltas","Targets":[{"Id":"q","Arn":"arn:aws:sqs:us-east-1:000000000000:deltas","InputPath":"$.detail"}]}"#,
    );
    assert_eq!(status, 200, "{body}");

    let update = |thing: &str, body: &str| {
        let req = format!(
            "POST /things/{thing}/shadow HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (status, answer) = http(&base, req.as_bytes());
        assert_eq!(status, 200, "{answer}");
    };
    update("fan-1", r#"{"state":{"reported":{"speed":1}}}"#);
    update("fan-1", r#"{"state":{"desired":{"speed":3}}}"#);
    let mut got = Vec::new();
    support::eventually("the delta to reach the queue", WAIT, || {
        got.extend(receive_all(&base, "deltas"));
        !got.is_empty()
    });
    assert_eq!(got.len(), 1, "a report makes no delta: {got:?}");
    let delta = json(&got[0]);
    assert_eq!(delta["state"], serde_json::json!({"speed": 3}));
    assert_eq!(delta["version"], 2);
}

/// The limits that have no AWS client test: more than 10 requests in flight from one connection
/// (a burst of 200 updates in one write: those past the tenth still waiting for the disk are
/// refused with 429 on `/rejected`, the others accepted, none lost silently), and
/// `mqtt.max_shadows`.
#[test]
fn in_flight_and_shadow_limits() {
    // Each fsync takes a second: the first ten updates of the burst are certain to be in flight
    // (waiting for the disk) while the other 190 arrive, whatever this machine's disk does.
    let broker = Outpost::slow_disk(
        tempfile::tempdir().expect("temp dir"),
        &[("OUTPOST_MQTT_MAX_SHADOWS", "3")],
        Duration::from_secs(1),
    );
    let mut dev = Raw::connect(broker.mqtt, Version::V5, "burst", true);
    assert_eq!(dev.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    dev.subscribe(
        1,
        &[
            "$aws/things/burst/shadow/update/accepted",
            "$aws/things/burst/shadow/update/rejected",
            "$aws/things/+/shadow/update/rejected",
        ],
        QoS::AtMostOnce,
    );
    assert!(matches!(dev.recv(WAIT), Some(Got::SubAck(_))));
    let mut burst = bytes::BytesMut::new();
    for n in 0..200 {
        let body = format!(r#"{{"state":{{"reported":{{"n":{n}}}}}}}"#);
        outpost_codec::Packet::Publish(outpost_codec::Publish::new(
            "$aws/things/burst/shadow/update",
            body.as_bytes(),
        ))
        .encode_to(Version::V5, &mut burst)
        .expect("encodes");
    }
    use std::io::Write as _;
    dev.s.write_all(&burst).expect("burst written");
    let (mut accepted, mut throttled) = (0, 0);
    while accepted + throttled < 200 {
        match dev.recv(WAIT) {
            Some(Got::Publish { topic, payload, .. }) => {
                let body = json(&String::from_utf8_lossy(&payload));
                if topic.ends_with("/accepted") {
                    accepted += 1;
                } else {
                    assert_eq!(body["code"], 429, "{body}");
                    assert!(body["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("more than 10 in-flight requests")));
                    throttled += 1;
                }
            }
            Some(_) => {}
            None => panic!("{accepted} accepted and {throttled} refused of 200"),
        }
    }
    println!("burst of 200: {accepted} accepted, {throttled} refused with 429");
    assert_eq!(accepted, 10, "the first ten are served");
    assert_eq!(throttled, 190, "past 10 in flight every request is refused");
    let doc = cli_get(&broker, "burst", tempfile::tempdir().expect("dir").path());
    assert_eq!(
        doc["version"], accepted,
        "every accepted update is in the version"
    );

    // Three shadows in all: a fourth is refused. Each of the two before it is answered (its
    // PUBACK follows its answer) before the next is asked for.
    for (n, thing) in ["a1", "a2"].into_iter().enumerate() {
        let pkid = n as u16 + 1;
        dev.publish(
            &format!("$aws/things/{thing}/shadow/update"),
            br#"{"state":{"reported":{"x":1}}}"#,
            QoS::AtLeastOnce,
            pkid,
            false,
        );
        loop {
            match dev.recv(WAIT) {
                Some(Got::PubAck(p, _)) if p == pkid => break,
                Some(_) => {}
                None => panic!("no PUBACK for {thing}"),
            }
        }
    }
    dev.publish(
        "$aws/things/a3/shadow/update",
        br#"{"state":{"reported":{"x":1}}}"#,
        QoS::AtMostOnce,
        0,
        false,
    );
    let refused = loop {
        match dev.recv(WAIT) {
            Some(Got::Publish { topic, payload, .. }) if topic.contains("/a3/") => {
                break json(&String::from_utf8_lossy(&payload))
            }
            Some(_) => {}
            None => panic!("no answer for the fourth shadow"),
        }
    };
    assert_eq!(refused["code"], 429, "{refused}");
}

/// Requests of one client are applied in the order they arrive, whatever the disk does: ten
/// updates written at once leave the last one's value, at version 10.
#[test]
fn updates_apply_in_order() {
    let broker = Outpost::start();
    let mut dev = Raw::connect(broker.mqtt, Version::V5, "order", true);
    assert_eq!(dev.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    dev.subscribe(
        1,
        &["$aws/things/order/shadow/update/accepted"],
        QoS::AtMostOnce,
    );
    assert!(matches!(dev.recv(WAIT), Some(Got::SubAck(_))));
    let mut burst = bytes::BytesMut::new();
    for n in 1..=10 {
        let body = format!(r#"{{"state":{{"reported":{{"n":{n}}}}}}}"#);
        outpost_codec::Packet::Publish(outpost_codec::Publish::new(
            "$aws/things/order/shadow/update",
            body.as_bytes(),
        ))
        .encode_to(Version::V5, &mut burst)
        .expect("encodes");
    }
    use std::io::Write as _;
    dev.s.write_all(&burst).expect("burst written");
    let mut versions = Vec::new();
    while versions.len() < 10 {
        match dev.recv(WAIT) {
            Some(Got::Publish { payload, .. }) => {
                let a = json(&String::from_utf8_lossy(&payload));
                versions.push((a["version"].as_u64(), a["state"]["reported"]["n"].as_u64()));
            }
            Some(_) => {}
            None => panic!("{} of 10 answered", versions.len()),
        }
    }
    versions.sort();
    let expected: Vec<_> = (1..=10u64).map(|n| (Some(n), Some(n))).collect();
    assert_eq!(versions, expected, "update n became version n");
    let doc = cli_get(&broker, "order", tempfile::tempdir().expect("dir").path());
    assert_eq!(doc["state"]["reported"]["n"], 10);
}
