//! Upgrades keep the data: a data directory written by an earlier build (`tests/fixtures/`, one
//! archive per on-disk format) is opened by this build, which serves everything in it: a persistent
//! session's queued messages, a retained message, queue messages (visible and delayed), a topic
//! and its subscription, a rule with its target, an archive.
//!
//! A change of an on-disk format adds a fixture of the new format (run the ignored
//! `write_fixture` test with `OUTPOST_FIXTURE=<name>` on the build that writes it) and keeps
//! reading the old ones: every archive in `tests/fixtures/` is checked.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outpost_codec::{QoS, ReasonCode, Version};
use support::http::{events_json, form_post, sqs_json};
use support::raw::{drain_numbers, offline_subscriber, Got, Raw};
use support::{root, Outpost};

const WAIT: Duration = Duration::from_secs(10);
const CONFIG: &str = "[store]\nsegment_size = 1048576\n";

fn ok(call: (u16, String)) -> serde_json::Value {
    assert_eq!(call.0, 200, "{}", call.1);
    serde_json::from_str(&call.1).unwrap_or(serde_json::Value::Null)
}

fn sns(base: &str, params: &[(&str, &str)]) -> String {
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("Version", "2010-03-31")
        .extend_pairs(params.iter().copied())
        .finish();
    let (code, body) = form_post(base, &form);
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
    assert_eq!(
        attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"], "1",
        "{what}: {attrs}"
    );
    let received = ok(sqs_json(
        &base,
        "ReceiveMessage",
        &format!(r#"{{"QueueUrl":"{url}","MaxNumberOfMessages":10}}"#),
    ));
    assert_eq!(
        received["Messages"][0]["Body"], "visible",
        "{what}: {received}"
    );
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
