//! Upgrades keep the data: a data directory written by an earlier build (`tests/fixtures/`, one
//! archive per on-disk format) is opened by this build, which serves everything in it: a persistent
//! session's queued messages and messages in flight, a retained message, queue messages (visible,
//! delayed, dead-lettered, FIFO), a topic and its subscription, a rule with its target, an archive,
//! a bridge's backlog.
//!
//! A change of an on-disk format adds a fixture of the new format (run the ignored
//! `write_fixture` test with `OUTPOST_FIXTURE=<name>` on the build that writes it) and keeps
//! reading the old ones: every archive in `tests/fixtures/` is checked.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outpost_codec::{QoS, ReasonCode, Version};
use support::http::{events_json, sns_query, sqs_json};
use support::raw::{drain_numbers, offline_subscriber, Got, Raw};
use support::{root, Outpost};

const WAIT: Duration = Duration::from_secs(10);
/// A bridge to an upstream that is never there (port 9 on loopback): what it forwards stays in
/// its backlog.
const CONFIG: &str = "[store]\nsegment_size = 1048576\n\
    [[bridges]]\nname = \"fx\"\naddress = \"127.0.0.1:9\"\nbackoff_min_ms = 1000\nbackoff_max_ms = 1000\n\
    [[bridges.out]]\nfilter = \"up/#\"\ntopic = \"gw/{topic}\"\nqos = 1\n";

fn ok(call: (u16, String)) -> serde_json::Value {
    assert_eq!(call.0, 200, "{}", call.1);
    serde_json::from_str(&call.1).unwrap_or(serde_json::Value::Null)
}

fn sns(base: &str, params: &[(&str, &str)]) -> String {
    let (code, body) = sns_query(base, params);
    assert_eq!(code, 200, "{body}");
    body
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// Writes a fixture with this build: `OUTPOST_FIXTURE=<name> cargo test -p outpost --test
/// upgrade write_fixture -- --ignored`.
#[test]
#[ignore = "writes a new fixture; run by hand when an on-disk format changes"]
fn write_fixture() {
    let name = std::env::var("OUTPOST_FIXTURE").expect("OUTPOST_FIXTURE=<name>");
    let broker = Outpost::start_with(tempfile::tempdir().unwrap(), CONFIG, None);
    let base = broker.http.clone();
    // A persistent session with three queued QoS 1 messages, and a retained message.
    offline_subscriber(broker.mqtt, "fx-sub", "fx/t");
    let mut p = Raw::connect(broker.mqtt, Version::V5, "fx-pub", true);
    assert_eq!(p.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    for n in 0..3u32 {
        p.publish_number("fx/t", n, 8);
        assert!(matches!(
            p.recv(WAIT),
            Some(Got::PubAck(_, ReasonCode::Success))
        ));
    }
    p.publish("fx/ret", b"retained", QoS::AtLeastOnce, 9, true);
    assert!(matches!(p.recv(WAIT), Some(Got::PubAck(9, _))));
    // Two messages in flight to a session that received them and never acknowledged them.
    offline_subscriber(broker.mqtt, "fx-inflight", "fx/i");
    for n in 10..12u32 {
        p.publish_number("fx/i", n, 8);
        assert!(matches!(
            p.recv(WAIT),
            Some(Got::PubAck(_, ReasonCode::Success))
        ));
    }
    {
        let mut s = Raw::connect_with(
            broker.mqtt,
            Version::V5,
            "fx-inflight",
            false,
            support::raw::persistent(),
            60,
        );
        assert_eq!(s.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
        for _ in 0..2 {
            assert!(s.recv_publish(WAIT).is_some(), "in flight");
        }
        // Gone without a PUBACK.
    }
    // Two messages in a bridge's backlog (its upstream never answers).
    for n in 20..22u32 {
        p.publish_number("up/x", n, 8);
        assert!(matches!(
            p.recv(WAIT),
            Some(Got::PubAck(_, ReasonCode::Success))
        ));
    }
    // A queue with a visible and a delayed message.
    ok(sqs_json(&base, "CreateQueue", r#"{"QueueName":"fx-q"}"#));
    let url = format!("{base}/000000000000/fx-q");
    ok(sqs_json(
        &base,
        "SendMessage",
        &format!(r#"{{"QueueUrl":"{url}","MessageBody":"visible"}}"#),
    ));
    ok(sqs_json(
        &base,
        "SendMessage",
        &format!(r#"{{"QueueUrl":"{url}","MessageBody":"delayed","DelaySeconds":900}}"#),
    ));
    // A dead-lettered message (received twice with maxReceiveCount 1) and a FIFO message.
    ok(sqs_json(&base, "CreateQueue", r#"{"QueueName":"fx-dlq"}"#));
    ok(sqs_json(
        &base,
        "CreateQueue",
        &serde_json::json!({"QueueName": "fx-src", "Attributes": {"RedrivePolicy":
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:fx-dlq","maxReceiveCount":"1"}"#}})
        .to_string(),
    ));
    let src = format!("{base}/000000000000/fx-src");
    ok(sqs_json(
        &base,
        "SendMessage",
        &format!(r#"{{"QueueUrl":"{src}","MessageBody":"poison"}}"#),
    ));
    for _ in 0..2 {
        ok(sqs_json(
            &base,
            "ReceiveMessage",
            &format!(r#"{{"QueueUrl":"{src}","VisibilityTimeout":0}}"#),
        ));
    }
    ok(sqs_json(
        &base,
        "CreateQueue",
        r#"{"QueueName":"fx.fifo","Attributes":{"FifoQueue":"true"}}"#,
    ));
    ok(sqs_json(
        &base,
        "SendMessage",
        &format!(
            r#"{{"QueueUrl":"{base}/000000000000/fx.fifo","MessageBody":"first","MessageGroupId":"g","MessageDeduplicationId":"d1"}}"#
        ),
    ));
    // A topic subscribed by the queue, a rule with a target, an archive.
    sns(&base, &[("Action", "CreateTopic"), ("Name", "fx-topic")]);
    sns(
        &base,
        &[
            ("Action", "Subscribe"),
            ("TopicArn", "arn:aws:sns:us-east-1:000000000000:fx-topic"),
            ("Protocol", "sqs"),
            ("Endpoint", "arn:aws:sqs:us-east-1:000000000000:fx-q"),
        ],
    );
    ok(events_json(
        &base,
        "PutRule",
        r#"{"Name":"fx-rule","EventPattern":"{\"source\":[\"fx.app\"]}"}"#,
    ));
    ok(events_json(
        &base,
        "PutTargets",
        r#"{"Rule":"fx-rule","Targets":[{"Id":"q","Arn":"arn:aws:sqs:us-east-1:000000000000:fx-q"}]}"#,
    ));
    ok(events_json(
        &base,
        "CreateArchive",
        r#"{"ArchiveName":"fx-archive","EventSourceArn":"arn:aws:events:us-east-1:000000000000:event-bus/default"}"#,
    ));
    let data = broker.stop();
    std::fs::create_dir_all(fixtures()).unwrap();
    let out = fixtures().join(format!("{name}.tar.gz"));
    let tar = Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(data.path())
        .arg(".")
        .status()
        .expect("tar runs");
    assert!(tar.success());
    println!("wrote {}", out.display());
}

/// Opens `archive` with this build and checks everything the writer put in it.
fn check(archive: &Path) {
    let data = tempfile::tempdir().unwrap();
    let untar = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(data.path())
        .status()
        .expect("tar runs");
    assert!(untar.success());
    let what = archive.display();
    let broker = Outpost::start_with(data, CONFIG, None);
    let base = broker.http.clone();
    let got = drain_numbers(broker.mqtt, "fx-sub", 3);
    assert_eq!(
        got,
        (0..3).collect(),
        "{what}: the session's queued messages"
    );
    let resent = drain_numbers(broker.mqtt, "fx-inflight", 2);
    assert_eq!(resent, (10..12).collect(), "{what}: the in-flight messages");
    assert_eq!(
        support::metric(&broker, "outpost_bridge_backlog_messages{bridge=\"fx\"}"),
        2,
        "{what}: the bridge's backlog"
    );
    let dlq = ok(sqs_json(
        &base,
        "ReceiveMessage",
        &format!(r#"{{"QueueUrl":"{base}/000000000000/fx-dlq"}}"#),
    ));
    assert_eq!(dlq["Messages"][0]["Body"], "poison", "{what}: {dlq}");
    let fifo = ok(sqs_json(
        &base,
        "ReceiveMessage",
        &format!(r#"{{"QueueUrl":"{base}/000000000000/fx.fifo","AttributeNames":["All"]}}"#),
    ));
    assert_eq!(fifo["Messages"][0]["Body"], "first", "{what}: {fifo}");
    assert_eq!(
        fifo["Messages"][0]["Attributes"]["MessageGroupId"], "g",
        "{what}: {fifo}"
    );
    let mut r = Raw::connect(broker.mqtt, Version::V5, "fx-reader", true);
    assert_eq!(r.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    r.subscribe(1, &["fx/ret"], QoS::AtMostOnce);
    let retained = loop {
        match r.recv(WAIT) {
            Some(Got::Publish { payload, .. }) => break payload,
            Some(_) => continue,
            None => panic!("{what}: no retained message"),
        }
    };
    assert_eq!(retained, b"retained");
    let url = format!("{base}/000000000000/fx-q");
    let attrs = ok(sqs_json(
        &base,
        "GetQueueAttributes",
        &format!(r#"{{"QueueUrl":"{url}","AttributeNames":["All"]}}"#),
    ));
    // The delayed message (900 s, SQS's longest delay) is still delayed in a fixture younger
    // than that, visible in an older one: either way both messages are there.
    let count = |k: &str| {
        attrs["Attributes"][k]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        count("ApproximateNumberOfMessages") + count("ApproximateNumberOfMessagesDelayed"),
        2,
        "{what}: {attrs}"
    );
    let received = ok(sqs_json(
        &base,
        "ReceiveMessage",
        &format!(r#"{{"QueueUrl":"{url}","MaxNumberOfMessages":10}}"#),
    ));
    let bodies: Vec<&str> = received["Messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["Body"].as_str()).collect())
        .unwrap_or_default();
    assert!(bodies.contains(&"visible"), "{what}: {received}");
    if count("ApproximateNumberOfMessagesDelayed") == 0 {
        assert!(bodies.contains(&"delayed"), "{what}: {received}");
    }
    let subs = sns(
        &base,
        &[
            ("Action", "ListSubscriptionsByTopic"),
            ("TopicArn", "arn:aws:sns:us-east-1:000000000000:fx-topic"),
        ],
    );
    assert!(
        subs.contains("arn:aws:sqs:us-east-1:000000000000:fx-q"),
        "{what}: {subs}"
    );
    let targets = ok(events_json(
        &base,
        "ListTargetsByRule",
        r#"{"Rule":"fx-rule"}"#,
    ));
    assert_eq!(targets["Targets"][0]["Id"], "q", "{what}: {targets}");
    ok(events_json(
        &base,
        "DescribeArchive",
        r#"{"ArchiveName":"fx-archive"}"#,
    ));
}

#[test]
fn every_fixture_opens_and_serves_its_data() {
    let mut archives: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    archives.sort();
    assert!(!archives.is_empty(), "no fixture in tests/fixtures");
    for a in &archives {
        check(a);
    }
    println!("{} fixtures read", archives.len());
}
