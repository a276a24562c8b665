//! Routing end to end: the real `outpost` binary driven by boto3's `events` client (with paho and
//! mosquitto_pub publishing over MQTT), and a `kill -9` while MQTT publishes and `PutEvents`
//! calls fan out through rules to three queues.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_codec::{QoS, ReasonCode, Version};
use support::http::{events_json, receive_all, sqs_json};
use support::raw::{Got, Raw};
use support::{aws_cli, eventually, python, Outpost};

/// Runs one pytest file of tests/interop against a fresh broker.
fn pytest(file: &str) {
    let Some(python) = python(".venv") else {
        return;
    };
    let broker = Outpost::start();
    support::pytest(
        &python,
        file,
        &[
            ("OUTPOST_HTTP_ENDPOINT", broker.http.clone()),
            ("OUTPOST_MQTT_PORT", broker.port()),
        ],
    );
}

#[test]
fn boto3_events_suite() {
    pytest("events_test.py");
}

#[test]
fn boto3_iot_data_suite() {
    pytest("iotdata_test.py");
}

#[test]
fn paho_mqtt_queues_suite() {
    pytest("mqtt_queues_test.py");
}

fn ok(call: (u16, String)) -> String {
    assert_eq!(call.0, 200, "{}", call.1);
    call.1
}

/// Counts of each number found at `field` (a JSON pointer) in the bodies.
fn numbers(bodies: &[String], field: &str) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    for b in bodies {
        let v: serde_json::Value = serde_json::from_str(b).expect("JSON body");
        let n = v.pointer(field).and_then(|n| n.as_u64()).expect("number");
        *counts.entry(n).or_insert(0) += 1;
    }
    counts
}

/// `kill -9` while an MQTT publisher (QoS 1) and a `PutEvents` caller feed rules with three queue
/// targets: after the restart every acknowledged message is in every queue. EventBridge delivers
/// at least once; duplicates are counted and reported.
#[test]
fn kill_9_during_routing_loses_nothing_acknowledged() {
    let broker = Outpost::start();
    let base = broker.http.clone();
    let queues = ["route-a", "route-b", "route-c"];
    for q in queues {
        ok(sqs_json(
            &base,
            "CreateQueue",
            &format!(r#"{{"QueueName":"{q}"}}"#),
        ));
    }
    let targets: Vec<String> = queues
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let input = if i == 0 {
                ""
            } else {
                r#","InputPath":"$.detail""#
            };
            format!(r#"{{"Id":"t{i}","Arn":"arn:aws:sqs:us-east-1:000000000000:{q}"{input}}}"#)
        })
        .collect();
    for (rule, pattern) in [
        (
            "from-mqtt",
            r#"{"source":["outpost.mqtt"],"detail-type":[{"wildcard":"crash/*/telemetry"}]}"#,
        ),
        ("from-api", r#"{"source":["crash.app"]}"#),
    ] {
        let body = serde_json::json!({"Name": rule, "EventPattern": pattern}).to_string();
        ok(events_json(&base, "PutRule", &body));
        ok(events_json(
            &base,
            "PutTargets",
            &format!(r#"{{"Rule":"{rule}","Targets":[{}]}}"#, targets.join(",")),
        ));
    }

    ok(events_json(
        &base,
        "CreateArchive",
        r#"{"ArchiveName":"crash-archive","EventSourceArn":"arn:aws:events:us-east-1:000000000000:event-bus/default"}"#,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let mqtt_acked = Arc::new(Mutex::new(Vec::new()));
    let api_acked = Arc::new(Mutex::new(Vec::new()));
    let mqtt_publisher = {
        let (stop, acked, addr) = (stop.clone(), mqtt_acked.clone(), broker.mqtt);
        std::thread::spawn(move || {
            let mut c = Raw::connect(addr, Version::V5, "crash-pub", true);
            assert_eq!(
                c.recv(Duration::from_secs(10)),
                Some(Got::ConnAck(ReasonCode::Success))
            );
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let payload = format!(r#"{{"n":{n}}}"#);
                let pkid = (n % 60_000 + 1) as u16;
                if !c.try_send(&outpost_codec::Packet::Publish(outpost_codec::Publish {
                    qos: QoS::AtLeastOnce,
                    pkid,
                    ..outpost_codec::Publish::new("crash/d1/telemetry", payload.as_bytes())
                })) {
                    return;
                }
                match c.recv(Duration::from_secs(10)) {
                    Some(Got::PubAck(p, ReasonCode::Success)) if p == pkid => {
                        acked.lock().unwrap().push(n)
                    }
                    other => {
                        eprintln!("MQTT publisher stopped at {n}: {other:?}");
                        return;
                    }
                }
                n += 1;
            }
        })
    };
    let api_publisher = {
        let (stop, acked, base) = (stop.clone(), api_acked.clone(), base.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = serde_json::json!({"Entries": [{
                    "Source": "crash.app", "DetailType": "t",
                    "Detail": format!(r#"{{"n":{n}}}"#),
                }]})
                .to_string();
                let (code, text) = events_json(&base, "PutEvents", &body);
                if code != 200 || !text.contains(r#""FailedEntryCount":0"#) {
                    eprintln!("PutEvents caller stopped at {n}: {code} {text}");
                    return;
                }
                acked.lock().unwrap().push(n);
                n += 1;
            }
        })
    };
    eventually(
        "100 acknowledged messages from each door",
        Duration::from_secs(60),
        || mqtt_acked.lock().unwrap().len() >= 100 && api_acked.lock().unwrap().len() >= 100,
    );
    let data = broker.kill();
    stop.store(true, Ordering::Relaxed);
    mqtt_publisher.join().expect("MQTT publisher");
    api_publisher.join().expect("API publisher");

    let broker = Outpost::start_in(data);
    let mut duplicates = 0;
    for (i, q) in queues.iter().enumerate() {
        let bodies = receive_all(&broker.http, q);
        // Split by door: the whole event names its source; the detail alone is told apart by
        // a second receive pass below (both doors number from 0).
        let (mqtt, api): (Vec<String>, Vec<String>) = if i == 0 {
            bodies
                .into_iter()
                .partition(|b| b.contains(r#""source":"outpost.mqtt""#))
        } else {
            (bodies, Vec::new())
        };
        let field = if i == 0 { "/detail/n" } else { "/n" };
        let mqtt_counts = numbers(&mqtt, field);
        let api_counts = numbers(&api, field);
        let acked_m = mqtt_acked.lock().unwrap().clone();
        let acked_a = api_acked.lock().unwrap().clone();
        if i == 0 {
            for n in &acked_m {
                assert!(mqtt_counts.contains_key(n), "{q}: MQTT message {n} lost");
            }
            for n in &acked_a {
                assert!(api_counts.contains_key(n), "{q}: PutEvents entry {n} lost");
            }
        } else {
            // Detail-only bodies from both doors share numbers: each acknowledged number must be
            // there at least as often as the doors that acknowledged it.
            for n in acked_m.iter().chain(&acked_a) {
                let want = u32::from(acked_m.contains(n)) + u32::from(acked_a.contains(n));
                let got = mqtt_counts.get(n).copied().unwrap_or(0);
                assert!(
                    got >= want,
                    "{q}: number {n} arrived {got} times, want {want}"
                );
            }
            // At most one copy per door per number (plus at-least-once repeats, counted).
            duplicates += mqtt_counts
                .values()
                .map(|c| c.saturating_sub(2) as usize)
                .sum::<usize>();
            continue;
        }
        duplicates += mqtt_counts
            .values()
            .chain(api_counts.values())
            .map(|c| (c - 1) as usize)
            .sum::<usize>();
    }
    // The archive kept every acknowledged event too.
    let described = ok(events_json(
        &broker.http,
        "DescribeArchive",
        r#"{"ArchiveName":"crash-archive"}"#,
    ));
    let count = serde_json::from_str::<serde_json::Value>(&described).expect("JSON")["EventCount"]
        .as_u64()
        .expect("EventCount");
    let acked_total = (mqtt_acked.lock().unwrap().len() + api_acked.lock().unwrap().len()) as u64;
    assert!(
        count >= acked_total,
        "archive holds {count} events, {acked_total} were acknowledged"
    );
    println!(
        "acknowledged {} MQTT and {} PutEvents messages before kill -9; all in 3 queues after restart ({duplicates} duplicates)",
        mqtt_acked.lock().unwrap().len(),
        api_acked.lock().unwrap().len()
    );
}

/// `kill -9` while a QoS 1 publisher feeds `$queue/crash-jobs`: after the restart an MQTT consumer
/// of the queue receives every acknowledged message.
#[test]
fn kill_9_between_queue_puback_and_consumer_loses_nothing() {
    let broker = Outpost::start();
    ok(sqs_json(
        &broker.http,
        "CreateQueue",
        r#"{"QueueName":"crash-jobs"}"#,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let publisher = {
        let (stop, acked, addr) = (stop.clone(), acked.clone(), broker.mqtt);
        std::thread::spawn(move || {
            let mut c = Raw::connect(addr, Version::V5, "queue-pub", true);
            assert_eq!(
                c.recv(Duration::from_secs(10)),
                Some(Got::ConnAck(ReasonCode::Success))
            );
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let pkid = (n % 60_000 + 1) as u16;
                let body = n.to_string();
                if !c.try_send(&outpost_codec::Packet::Publish(outpost_codec::Publish {
                    qos: QoS::AtLeastOnce,
                    pkid,
                    ..outpost_codec::Publish::new("$queue/crash-jobs", body.as_bytes())
                })) {
                    return;
                }
                match c.recv(Duration::from_secs(10)) {
                    Some(Got::PubAck(p, ReasonCode::Success)) if p == pkid => {
                        acked.lock().unwrap().push(n)
                    }
                    _ => return,
                }
                n += 1;
            }
        })
    };
    eventually(
        "200 acknowledged queue publishes",
        Duration::from_secs(60),
        || acked.lock().unwrap().len() >= 200,
    );
    let data = broker.kill();
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher");
    let acked = acked.lock().unwrap().clone();

    let broker = Outpost::start_in(data);
    let mut c = Raw::connect(broker.mqtt, Version::V5, "queue-consumer", true);
    assert_eq!(
        c.recv(Duration::from_secs(10)),
        Some(Got::ConnAck(ReasonCode::Success))
    );
    c.subscribe(1, &["$queue/crash-jobs"], QoS::AtLeastOnce);
    let mut got = BTreeMap::new();
    while let Some(g) = c.recv(Duration::from_secs(5)) {
        if let Got::Publish { pkid, payload, .. } = g {
            let n: u64 = String::from_utf8_lossy(&payload).parse().expect("number");
            *got.entry(n).or_insert(0u32) += 1;
            c.send(&outpost_codec::Packet::PubAck(outpost_codec::Ack {
                pkid,
                ..outpost_codec::Ack::default()
            }));
        }
    }
    for n in &acked {
        assert!(got.contains_key(n), "acknowledged queue message {n} lost");
    }
    println!(
        "acknowledged {} queue publishes before kill -9; all consumed over MQTT after restart ({} received)",
        acked.len(),
        got.len()
    );
}

/// A scheduled rule made with the aws CLI fires on the system clock through the real binary
/// (the first minute boundary after it is put), and its schedule survives `kill -9`. Which
/// ticks fire, catch-up after a stop and retries are tested on an injected clock in
/// crates/rules/tests/schedules.rs; this test proves the wiring, so it waits for one real
/// tick (at most a minute).
#[test]
fn a_scheduled_rule_put_with_the_aws_cli_fires_on_the_minute() {
    let Some(_) = python(".venv") else { return };
    let broker = Outpost::start();
    let aws = |args: &[&str]| aws_cli(&broker, args);
    aws(&["sqs", "create-queue", "--queue-name", "ticks"]);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let put = aws(&[
        "events",
        "put-rule",
        "--name",
        "minutely",
        "--schedule-expression",
        "cron(* * * * ? *)",
    ]);
    assert!(put.contains("arn:aws:events:us-east-1:000000000000:rule/minutely"));
    aws(&[
        "events",
        "put-targets",
        "--rule",
        "minutely",
        "--targets",
        r#"[{"Id":"q","Arn":"arn:aws:sqs:us-east-1:000000000000:ticks","InputTransformer":{"InputPathsMap":{"t":"$.time","r":"$.resources[0]"},"InputTemplate":"{\"at\": <t>, \"rule\": <r>}"}}]"#,
    ]);
    let described: serde_json::Value =
        serde_json::from_str(&aws(&["events", "describe-rule", "--name", "minutely"]))
            .expect("JSON");
    assert_eq!(described["ScheduleExpression"], "cron(* * * * ? *)");
    assert_eq!(described.get("EventPattern"), None);
    let deadline = Instant::now() + Duration::from_secs(90);
    let body = loop {
        assert!(Instant::now() < deadline, "no tick within 90 s");
        let got = aws(&[
            "sqs",
            "receive-message",
            "--queue-url",
            &format!("{}/000000000000/ticks", broker.http),
            "--wait-time-seconds",
            "10",
        ]);
        if let Some(b) = serde_json::from_str::<serde_json::Value>(&got)
            .ok()
            .and_then(|v| v["Messages"][0]["Body"].as_str().map(str::to_string))
        {
            break b;
        }
    };
    let body: serde_json::Value = serde_json::from_str(&body).expect("the template's JSON");
    assert_eq!(
        body["rule"],
        "arn:aws:events:us-east-1:000000000000:rule/minutely"
    );
    // A whole minute after the rule was put: the first one, or the next when the first passed
    // before the target was put.
    let at = body["at"].as_str().expect("time");
    let minutes: Vec<String> = (1..=3)
        .map(|k| (before / 60 + k) * 60)
        .map(|t| format!("{:02}:{:02}:00Z", t / 3600 % 24, t / 60 % 60))
        .collect();
    assert!(
        minutes.iter().any(|m| at.ends_with(m.as_str())),
        "{at} is one of {minutes:?}"
    );
    let broker = Outpost::start_in(broker.kill());
    let described = aws_cli(&broker, &["events", "list-rules"]);
    assert!(
        described.contains("\"ScheduleExpression\": \"cron(* * * * ? *)\""),
        "{described}"
    );
}

/// The README's example, as a user types it: the aws CLI creates a queue, a rule and its target;
/// mosquitto_pub publishes telemetry; only the hot reading reaches the queue.
#[test]
fn readme_example_with_the_aws_cli_and_mosquitto_pub() {
    let Some(_) = python(".venv") else { return };
    let broker = Outpost::start();
    let aws = |args: &[&str]| aws_cli(&broker, args);
    aws(&["sqs", "create-queue", "--queue-name", "alerts"]);
    let pattern = r#"{"source":["outpost.mqtt"],"detail-type":[{"wildcard":"sensors/*/telemetry"}],"detail":{"temp":[{"numeric":[">",50]}]}}"#;
    assert!(aws(&[
        "events",
        "put-rule",
        "--name",
        "hot",
        "--event-pattern",
        pattern
    ])
    .contains("arn:aws:events:us-east-1:000000000000:rule/hot"));
    aws(&[
        "events",
        "put-targets",
        "--rule",
        "hot",
        "--targets",
        "Id=q,Arn=arn:aws:sqs:us-east-1:000000000000:alerts",
    ]);
    for payload in [r#"{"temp": 20}"#, r#"{"temp": 61}"#] {
        let status = Command::new("mosquitto_pub")
            .args(["-p", &broker.port(), "-q", "1", "-t", "sensors/a/telemetry"])
            .args(["-m", payload])
            .status()
            .expect("mosquitto_pub runs");
        assert!(status.success());
    }
    let bodies = receive_all(&broker.http, "alerts");
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let event: serde_json::Value = serde_json::from_str(&bodies[0]).expect("event JSON");
    assert_eq!(event["detail"], serde_json::json!({"temp": 61}));
    assert_eq!(event["detail-type"], "sensors/a/telemetry");
    assert!(aws(&["events", "list-rules"]).contains("\"hot\""));
}

/// `kill -9` while a replay runs: after the restart the replay resumes from its saved position
/// and completes (it no longer ends FAILED), and every archived event reached the rule's queue
/// again (at least once).
#[test]
fn a_replay_interrupted_by_kill_9_resumes() {
    let broker = Outpost::start();
    let base = broker.http.clone();
    ok(sqs_json(
        &base,
        "CreateQueue",
        r#"{"QueueName":"replay-q"}"#,
    ));
    let rule =
        serde_json::json!({"Name": "replayed", "EventPattern": r#"{"source":["replay.app"]}"#})
            .to_string();
    ok(events_json(&base, "PutRule", &rule));
    ok(events_json(
        &base,
        "PutTargets",
        r#"{"Rule":"replayed","Targets":[{"Id":"q","Arn":"arn:aws:sqs:us-east-1:000000000000:replay-q","InputPath":"$.detail.n"}]}"#,
    ));
    ok(events_json(
        &base,
        "CreateArchive",
        r#"{"ArchiveName":"replay-archive","EventSourceArn":"arn:aws:events:us-east-1:000000000000:event-bus/default"}"#,
    ));
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64()
    };
    let start = now() - 60.0;
    let total = 3_000u64;
    for batch in 0..total / 10 {
        let entries: Vec<serde_json::Value> = (0..10)
            .map(|i| {
                serde_json::json!({"Source": "replay.app", "DetailType": "t",
                    "Detail": format!(r#"{{"n":{}}}"#, batch * 10 + i)})
            })
            .collect();
        let put = ok(events_json(
            &base,
            "PutEvents",
            &serde_json::json!({ "Entries": entries }).to_string(),
        ));
        assert!(put.contains(r#""FailedEntryCount":0"#), "{put}");
    }
    let end = now() + 1.0;
    let replay = serde_json::json!({
        "ReplayName": "interrupted",
        "EventSourceArn": "arn:aws:events:us-east-1:000000000000:archive/replay-archive",
        "EventStartTime": start, "EventEndTime": end,
        "Destination": {"Arn": "arn:aws:events:us-east-1:000000000000:event-bus/default"},
    })
    .to_string();
    ok(events_json(&base, "StartReplay", &replay));
    let data = broker.kill();

    let broker = Outpost::start_in(data);
    let state = || {
        let (_, text) = events_json(
            &broker.http,
            "DescribeReplay",
            r#"{"ReplayName":"interrupted"}"#,
        );
        serde_json::from_str::<serde_json::Value>(&text).expect("JSON")["State"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    eventually(
        "the replay to finish after the restart",
        Duration::from_secs(60),
        || matches!(state().as_str(), "COMPLETED" | "FAILED"),
    );
    assert_eq!(
        state(),
        "COMPLETED",
        "an interrupted replay resumes and completes"
    );
    // Live deliveries plus the replay's: every number at least twice.
    let bodies = receive_all(&broker.http, "replay-q");
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    for b in &bodies {
        if let Ok(n) = b.trim().parse::<u64>() {
            *counts.entry(n).or_insert(0) += 1;
        }
    }
    let short: Vec<u64> = (0..total)
        .filter(|n| counts.get(n).copied().unwrap_or(0) < 2)
        .collect();
    assert!(
        short.is_empty(),
        "{} events not delivered both live and by the replay, first {:?}",
        short.len(),
        &short[..short.len().min(10)]
    );
}
