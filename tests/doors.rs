//! No door is a way around another (issue 25, ADR 0015), on the real binary with real clients.
//!
//! One locked-down broker with users `owner` and `intruder` (password file), access keys for
//! `owner`, `intruder` and `ops`, and an ACL that denies `intruder` the topics under `secret/`,
//! subscribing under `private/`, and the `ops-*` resources. tests/interop/doors_test.py (paho, boto3, botocore's signer, raw
//! sockets where a client cannot misbehave) tries every crossing: wills, SNS `mqtt` and `sqs`
//! subscriptions, rule targets and rules that read MQTT events, wide subscriptions, parameters
//! the operation ignores, SSRF, slow bodies, amplification by templates, archives and
//! endpoints that never answer, long properties, SigV4 edge cases. A second broker (`lan`) has
//! loopback on its SNS allow-list, for the pacing and backlog tests that need a receiver here.
//! The stalled-subscriber bound is checked below with raw packets.

mod support;

use std::time::{Duration, Instant};

use outpost_codec::{QoS, Version};
use support::raw::{Got, Raw};
use support::{add_user, python, Outpost};

const ACL: &str = r##"
[[rules]]
effect = "allow"
identities = ["*"]
actions = ["mqtt:*"]
resources = ["#", "$queue/#", "$SYS/#"]

[[rules]]
effect = "allow"
identities = ["owner", "intruder", "ops"]
actions = ["sqs:*", "sns:*", "events:*", "iot:*"]
resources = ["*"]

[[rules]]
effect = "deny"
identities = ["intruder"]
actions = ["mqtt:*", "iot:*"]
resources = ["secret/#", "arn:aws:iot:*:*:topic/secret/*", "arn:aws:iot:*:*:topicfilter/secret/*"]

[[rules]]
effect = "deny"
identities = ["intruder"]
actions = ["sqs:*", "sns:*", "events:*"]
resources = ["arn:aws:sqs:*:*:ops-*", "arn:aws:sns:*:*:ops-*", "arn:aws:events:*:*:rule/ops-*", "arn:aws:events:*:*:event-bus/ops-*"]

[[rules]]
effect = "deny"
identities = ["intruder"]
actions = ["mqtt:subscribe"]
resources = ["private/#"]
"##;

const KEYS: &str = r#"
[[keys]]
access_key_id = "AKIDOWNER0000001"
secret_access_key = "owner-secret-0123456"
identity = "owner"

[[keys]]
access_key_id = "AKIDINTRUDER0001"
secret_access_key = "intruder-secret-0123"
identity = "intruder"

[[keys]]
access_key_id = "AKIDOPS000000001"
secret_access_key = "ops-secret-0123456789"
identity = "ops"
"#;

#[test]
fn every_crossing_between_doors_is_checked() {
    let Some(python) = python(".venv") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let passwords = dir.path().join("passwords");
    add_user(&passwords, "owner", "owner-secret");
    add_user(&passwords, "intruder", "intruder-secret");
    let keys = dir.path().join("keys.toml");
    let acl = dir.path().join("acl.toml");
    std::fs::write(&keys, KEYS).expect("keys written");
    std::fs::write(&acl, ACL).expect("acl written");
    let toml = format!(
        "[auth]\npassword_file = {passwords:?}\naccess_keys_file = {keys:?}\nacl_file = {acl:?}\nlogin_failure_burst = 10000\n\
         [mqtt]\nmax_retained_messages = 10\nmax_retained_bytes = 100000\n"
    );
    let locked = Outpost::start_with_env(
        tempfile::tempdir().expect("temp dir"),
        &toml,
        None,
        // SNS reaches no internal address here: the SSRF tests need the default.
        &[("OUTPOST_TOPICS_ALLOW_ENDPOINT_NETWORKS", "[]")],
    );
    let lan = Outpost::start_with_env(
        tempfile::tempdir().expect("temp dir"),
        "[auth]\nallow_anonymous = true\n[topics]\nmax_pending_deliveries = 20\nmax_pending_deliveries_per_host = 30\nendpoint_posts_per_second = 10\nendpoint_posts_burst = 10\n",
        None,
        &[],
    );
    support::pytest(
        &python,
        "doors_test.py",
        &[
            ("OUTPOST_HTTP_ENDPOINT", locked.http.clone()),
            ("OUTPOST_MQTT_PORT", locked.port()),
            ("OUTPOST_PID", locked.pid().to_string()),
            ("OUTPOST_ACL_FILE", acl.display().to_string()),
            ("OUTPOST_LAN_HTTP_ENDPOINT", lan.http.clone()),
            ("OUTPOST_LAN_MQTT_PORT", lan.port()),
            ("OUTPOST_LAN_PID", lan.pid().to_string()),
        ],
    );
}

/// A persistent subscriber that never reads holds its publishers for at most the stall
/// timeout in all: reconnecting just before (or after) it does not renew the budget.
#[test]
fn a_subscriber_that_never_reads_cannot_hold_publishers_by_reconnecting() {
    let stall = Duration::from_secs(2);
    let broker = Outpost::start_with(
        tempfile::tempdir().expect("temp dir"),
        "[mqtt]\nflow_control_queue = 20\nstall_timeout = 2\n",
        None,
    );
    // The subscriber: persistent, subscribed, then silent (never reads, never acknowledges).
    let silent = || {
        Raw::connect_with(
            broker.mqtt,
            Version::V5,
            "silent",
            false,
            support::raw::persistent(),
            60,
        )
    };
    let connected = |raw: &mut Raw| match raw.recv(Duration::from_secs(5)) {
        Some(Got::ConnAck(_)) => {}
        other => panic!("expected CONNACK, got {other:?}"),
    };
    let mut sub = silent();
    connected(&mut sub);
    sub.subscribe(1, &["stall/#"], QoS::AtLeastOnce);
    let mut publisher = Raw::connect(broker.mqtt, Version::V5, "pub", true);
    connected(&mut publisher);
    // Publish 400 QoS 1 messages; the subscriber reconnects (without reading) every 1.5 s,
    // just inside the stall timeout. The time the publisher is held is measured.
    let started = Instant::now();
    let mut held = Duration::ZERO;
    let mut last_reconnect = Instant::now();
    for n in 1..=400u16 {
        let at = Instant::now();
        publisher.publish("stall/x", &[b'x'; 64], QoS::AtLeastOnce, n, false);
        loop {
            match publisher.recv(Duration::from_secs(20)) {
                Some(Got::PubAck(id, _)) if id == n => break,
                Some(_) => continue,
                None => panic!("no PUBACK for {n} within 20 s"),
            }
        }
        // A PUBACK held back by the subscriber (not one that waited for the disk) takes
        // hundreds of milliseconds at least.
        let took = at.elapsed();
        if took > Duration::from_millis(300) {
            held += took;
        }
        // Without the bound each reconnection renewed the budget (a stall timeout per cycle);
        // with it the publisher is held at most one stall timeout, plus scheduling slack.
        assert!(
            held < stall + Duration::from_secs(1),
            "the publisher was held {held:?} of {:?} (message {n})",
            started.elapsed()
        );
        if last_reconnect.elapsed() > Duration::from_millis(1500) {
            drop(sub);
            sub = silent();
            last_reconnect = Instant::now();
        }
    }
    drop(sub);
}
