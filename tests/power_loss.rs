//! Power cuts, not only `kill -9`: the broker's data folder is a FUSE file system that forgets
//! everything not synced (tests/lazyfs). Each cycle runs mixed load, kills the broker, cuts the
//! power (unsynced data, names and sizes are thrown away; with `OUTPOST_POWER_TEAR=1` the first
//! unsynced page of each file is torn), restarts on what survived and checks that everything
//! acknowledged is there:
//! - MQTT QoS 1 and QoS 2 publishes to an offline persistent session (delivered after restarts);
//! - retained messages (a fresh subscriber gets each acknowledged one);
//! - subscriptions acknowledged by SUBACK (a later QoS 1 publish to them is not answered "No
//!   matching subscribers");
//! - SQS sends (plain, delayed, FIFO in order and deduplicated across the cut, moved to a
//!   dead-letter queue), SNS publishes fanned out to a queue, PutEvents to a rule's queue target
//!   and an archive, MQTT `$queue/` publishes (received after restarts; deletes may be lost with
//!   the power, which at-least-once delivery allows); queues, topics and rules created;
//! - SNS deliveries to an HTTP endpoint (pending deliveries resume after each restart), MQTT
//!   `$queue/` consumers, and a bridge to a mosquitto upstream (every acknowledged message on a
//!   bridged topic reaches the upstream's subscriber);
//! - the broker starts every time.
//!
//! The same loop without the cuts is the `kill -9` chaos loop over every door
//! (`kill_9_over_every_door`, `OUTPOST_KILL_CYCLES`, 10 by default).
//!
//! `OUTPOST_POWER_CUTS` sets the number of cycles (10 by default; `scripts/power-loss.sh` runs
//! 100). Needs `/dev/fuse` and `fusermount3` (Debian's `fuse3`): fails, never skips, when they
//! are missing, since CI installs them.
//!
//! Longer than ~700 lines on purpose: one power-cut loop over every door, whose checks must be read
//! beside the workload that wrote what they check.

mod lazyfs;
mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_codec::{Packet, QoS, ReasonCode, Version};
use support::endpoint::Endpoint;
use support::http::{events_json, sns_query, sqs_json};
use support::mosquitto::Mosquitto;
use support::raw::{drain_until, offline_subscriber, Got, Raw};
use support::Outpost;

const WAIT: Duration = Duration::from_secs(10);

fn ok(call: (u16, String)) -> serde_json::Value {
    assert_eq!(call.0, 200, "{}", call.1);
    serde_json::from_str(&call.1).unwrap_or(serde_json::Value::Null)
}

/// Receives and deletes everything in the queue; the numbers of the bodies.
fn drain_queue(base: &str, url: &str) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        let v = ok(sqs_json(
            base,
            "ReceiveMessage",
            &format!(r#"{{"QueueUrl":"{url}","MaxNumberOfMessages":10,"VisibilityTimeout":60}}"#),
        ));
        let Some(msgs) = v["Messages"].as_array().filter(|m| !m.is_empty()).cloned() else {
            // Messages in flight when the broker died (received, not yet deleted) come back
            // after their visibility timeout, as SQS promises, and delayed ones after their
            // delay: wait for them too. A delayed message may turn visible between the empty
            // receive and this look, so visible ones count as well.
            let attrs = ok(sqs_json(
                base,
                "GetQueueAttributes",
                &format!(r#"{{"QueueUrl":"{url}","AttributeNames":["All"]}}"#),
            ));
            let a = &attrs["Attributes"];
            if a["ApproximateNumberOfMessages"] == "0"
                && a["ApproximateNumberOfMessagesNotVisible"] == "0"
                && a["ApproximateNumberOfMessagesDelayed"] == "0"
            {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        for m in msgs {
            if let Some(n) = m["Body"].as_str().and_then(|b| b.parse().ok()) {
                got.push(n);
            }
            let handle = m["ReceiptHandle"].as_str().unwrap_or_default();
            ok(sqs_json(
                base,
                "DeleteMessage",
                &serde_json::json!({"QueueUrl": url, "ReceiptHandle": handle}).to_string(),
            ));
        }
    }
}

/// Retained topics under `ret/` a fresh subscriber gets, waiting until `want` are there.
fn retained_topics(broker: &Outpost, want: &BTreeSet<String>) -> BTreeSet<String> {
    let mut s = Raw::connect(broker.mqtt, Version::V5, "ret-reader", true);
    assert_eq!(s.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    s.subscribe(1, &["ret/#"], QoS::AtMostOnce);
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !want.is_subset(&got) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        match s.recv(left) {
            Some(Got::Publish { topic, .. }) => {
                got.insert(topic);
            }
            Some(_) => {}
            None => break,
        }
    }
    got
}

#[test]
fn power_cuts_lose_nothing_acknowledged() {
    let cycles: u32 = std::env::var("OUTPOST_POWER_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let tear = std::env::var_os("OUTPOST_POWER_TEAR").is_some_and(|v| v == "1");
    assert!(
        std::path::Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: this test needs FUSE (./scripts/test.sh installs fuse3)"
    );
    let data = tempfile::tempdir().expect("temp dir");
    let fs = lazyfs::LazyFs::new(tear);
    let session = fs
        .mount(data.path())
        .expect("mount the power-cut file system (needs fusermount3 from fuse3, and root)");
    run(cycles, data, Some(&fs));
    drop(session);
}

#[test]
fn kill_9_over_every_door() {
    let cycles: u32 = std::env::var("OUTPOST_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    run(cycles, tempfile::tempdir().expect("temp dir"), None);
}

/// `cycles` rounds of load, `kill -9` and (with `fs`) a power cut, then checks; see the module doc.
fn run(cycles: u32, data: tempfile::TempDir, fs: Option<&lazyfs::LazyFs>) {
    let what = if fs.is_some() { "power cut" } else { "kill -9" };
    // The bridge's upstream, with a persistent subscriber of what is forwarded.
    let mut upstream = Mosquitto::new("");
    upstream.start();
    support::raw::offline_subscriber(upstream.addr(), "sink", "gw/#");
    // Small segments: rollovers, preallocation and directory syncs happen within a short run.
    let config = &format!(
        "[store]\nsegment_size = 1048576\n{}[mqtt]\nsys_interval = 0\n\
         [topics]\nendpoint_posts_per_second = 0\n\
         [[bridges]]\nname = \"up\"\naddress = \"127.0.0.1:{}\"\nbackoff_min_ms = 50\nbackoff_max_ms = 200\n\
         [[bridges.out]]\nfilter = \"br/#\"\ntopic = \"gw/{{topic}}\"\nqos = 1\n",
        std::env::var("OUTPOST_POWER_STORE").unwrap_or_default(),
        upstream.port
    );
    let started = Instant::now();
    let mut broker = Outpost::start_with(data, config, None);
    offline_subscriber(broker.mqtt, "keeper", "pc/#");
    let url = |b: &Outpost, q: &str| format!("{}/000000000000/{q}", b.http);
    // A short visibility timeout: what a consumer held when the power went is back soon.
    for q in ["pc", "pc-sns", "pc-ev", "pc-mq"] {
        ok(sqs_json(
            &broker.http,
            "CreateQueue",
            &format!(r#"{{"QueueName":"{q}","Attributes":{{"VisibilityTimeout":"1"}}}}"#),
        ));
    }
    // A FIFO queue (order and deduplication), and a queue whose messages move to a
    // dead-letter queue after one receive.
    ok(sqs_json(
        &broker.http,
        "CreateQueue",
        r#"{"QueueName":"pc.fifo","Attributes":{"FifoQueue":"true","VisibilityTimeout":"1"}}"#,
    ));
    ok(sqs_json(
        &broker.http,
        "CreateQueue",
        r#"{"QueueName":"pc-dlq"}"#,
    ));
    ok(sqs_json(
        &broker.http,
        "CreateQueue",
        &serde_json::json!({"QueueName": "pc-src", "Attributes": {"RedrivePolicy":
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:pc-dlq","maxReceiveCount":"1"}"#}})
        .to_string(),
    ));
    // SNS fan-out into a queue (raw bodies) and an EventBridge rule into a queue (the number).
    let sns = |base: &str, params: &[(&str, &str)]| {
        let (code, body) = sns_query(base, params);
        assert_eq!(code, 200, "{body}");
    };
    sns(
        &broker.http,
        &[("Action", "CreateTopic"), ("Name", "pc-topic")],
    );
    let topic = "arn:aws:sns:us-east-1:000000000000:pc-topic";
    sns(
        &broker.http,
        &[
            ("Action", "Subscribe"),
            ("TopicArn", topic),
            ("Protocol", "sqs"),
            ("Endpoint", "arn:aws:sqs:us-east-1:000000000000:pc-sns"),
            ("Attributes.entry.1.key", "RawMessageDelivery"),
            ("Attributes.entry.1.value", "true"),
        ],
    );
    // The same topic also delivers to an HTTP endpoint (confirmed by its SubscribeURL).
    let endpoint = Endpoint::start();
    endpoint.healthy.store(true, Ordering::Relaxed);
    sns(
        &broker.http,
        &[
            ("Action", "Subscribe"),
            ("TopicArn", topic),
            ("Protocol", "http"),
            ("Endpoint", &endpoint.url),
        ],
    );
    // Only a confirmed subscription gets messages (as in AWS): wait for the endpoint's
    // confirmation before any publish counts on it.
    support::eventually(
        "the HTTP endpoint's subscription confirmed",
        Duration::from_secs(20),
        || {
            let (code, body) = sns_query(
                &broker.http,
                &[("Action", "ListSubscriptionsByTopic"), ("TopicArn", topic)],
            );
            code == 200 && body.contains(&endpoint.url) && !body.contains("PendingConfirmation")
        },
    );
    ok(events_json(
        &broker.http,
        "PutRule",
        &serde_json::json!({"Name": "pc-rule", "EventPattern": r#"{"source":["pc.app"]}"#})
            .to_string(),
    ));
    ok(events_json(
        &broker.http,
        "PutTargets",
        r#"{"Rule":"pc-rule","Targets":[{"Id":"q","Arn":"arn:aws:sqs:us-east-1:000000000000:pc-ev","InputPath":"$.detail.n"}]}"#,
    ));

    let mqtt_acked = Arc::new(Mutex::new(BTreeSet::<u32>::new()));
    ok(events_json(
        &broker.http,
        "CreateArchive",
        r#"{"ArchiveName":"pc-archive","EventSourceArn":"arn:aws:events:us-east-1:000000000000:event-bus/default"}"#,
    ));
    let sqs_acked = Arc::new(Mutex::new(BTreeSet::<u64>::new()));
    let fifo_acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let mut fifo_got = BTreeSet::new();
    let mut moved_acked = Vec::new();
    let mut moved_got = BTreeSet::new();
    let mut created_acked: Vec<u32> = Vec::new();
    let mut mqtt_got = BTreeSet::new();
    let mut sqs_got = BTreeSet::new();
    let mut sqs_deliveries = 0usize;
    let mut retained_acked = BTreeSet::new();
    let mut probes_acked: Vec<u32> = Vec::new();
    let mut queues_acked: Vec<String> = Vec::new();
    let mut next_mqtt = 0u32;
    let mut next_sqs = 0u64;
    let mut recovery = Vec::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;

    for cycle in 0..cycles {
        // Load: an MQTT publisher (QoS 1, every third message QoS 2) and an SQS sender run
        // until the power goes; meanwhile a subscription, a queue and a retained message are
        // made and acknowledged.
        let stop = Arc::new(AtomicBool::new(false));
        let mqtt = {
            let (stop, acked, addr) = (stop.clone(), mqtt_acked.clone(), broker.mqtt);
            let from = next_mqtt;
            std::thread::spawn(move || {
                let mut n = from;
                let mut p = Raw::connect(addr, Version::V5, "pc-pub", true);
                if p.recv(WAIT) != Some(Got::ConnAck(ReasonCode::Success)) {
                    return n;
                }
                while !stop.load(Ordering::Relaxed) {
                    let qos = if n % 3 == 2 {
                        QoS::ExactlyOnce
                    } else {
                        QoS::AtLeastOnce
                    };
                    let pkid = (n % 60_000 + 1) as u16;
                    // Every fifth message is a `$queue/` publish (a SendMessage; text body),
                    // every fifth but one goes over the bridge.
                    let (topic, payload) = match n % 5 {
                        4 => ("$queue/pc-mq", n.to_string().into_bytes()),
                        3 => ("br/x", n.to_be_bytes().to_vec()),
                        _ => {
                            let mut payload = n.to_be_bytes().to_vec();
                            payload.resize(512, b'p');
                            ("pc/x", payload)
                        }
                    };
                    let qos = if n % 5 >= 3 { QoS::AtLeastOnce } else { qos };
                    if !p.try_send(&Packet::Publish(outpost_codec::Publish {
                        qos,
                        pkid,
                        ..outpost_codec::Publish::new(topic, &payload)
                    })) {
                        return n;
                    }
                    match p.recv(WAIT) {
                        Some(Got::PubAck(id, ReasonCode::Success))
                        | Some(Got::PubRec(id, ReasonCode::Success))
                            if id == pkid =>
                        {
                            acked.lock().unwrap().insert(n);
                        }
                        _ => return n + 1,
                    }
                    if qos == QoS::ExactlyOnce {
                        if !p.try_send(&Packet::PubRel(outpost_codec::Ack::new(pkid))) {
                            return n + 1;
                        }
                        if p.recv(WAIT).is_none() {
                            return n + 1;
                        }
                    }
                    n += 1;
                }
                n
            })
        };
        let sqs = {
            let (stop, acked, base) = (stop.clone(), sqs_acked.clone(), broker.http.clone());
            let queue = url(&broker, "pc");
            let fifo = url(&broker, "pc.fifo");
            let fifo_acked = fifo_acked.clone();
            let from = next_sqs;
            std::thread::spawn(move || {
                let mut n = from;
                while !stop.load(Ordering::Relaxed) {
                    // SendMessage, SNS Publish (fan-out to a queue), PutEvents (a rule's queue
                    // target), in turn; each number goes through one door.
                    let code = match n % 3 {
                        // A FIFO send (one group, the number as deduplication id) every fourth
                        // time, a delayed send every fourth, else a plain one.
                        0 if n % 12 == 3 => {
                            let body = serde_json::json!({"QueueUrl": fifo, "MessageBody": n.to_string(),
                                "MessageGroupId": "g", "MessageDeduplicationId": n.to_string()});
                            let code = sqs_json(&base, "SendMessage", &body.to_string()).0;
                            if code == 200 {
                                fifo_acked.lock().unwrap().push(n);
                            }
                            code
                        }
                        0 => {
                            let delay = if n % 12 == 9 { 1 } else { 0 };
                            let body = serde_json::json!({"QueueUrl": queue, "MessageBody": n.to_string(),
                                "DelaySeconds": delay});
                            sqs_json(&base, "SendMessage", &body.to_string()).0
                        }
                        1 => {
                            let message = n.to_string();
                            let params = [
                                ("Action", "Publish"),
                                ("TopicArn", topic),
                                ("Message", message.as_str()),
                            ];
                            sns_query(&base, &params).0
                        }
                        _ => {
                            let body = serde_json::json!({"Entries": [{
                                "Source": "pc.app", "DetailType": "t",
                                "Detail": format!(r#"{{"n":{n}}}"#),
                            }]});
                            let (code, text) = events_json(&base, "PutEvents", &body.to_string());
                            if text.contains(r#""FailedEntryCount":0"#) {
                                code
                            } else {
                                500
                            }
                        }
                    };
                    if code != 200 {
                        return n + 1;
                    }
                    acked.lock().unwrap().insert(n);
                    n += 1;
                }
                n
            })
        };
        // A `$queue/` consumer takes what it can meanwhile (the rest is drained after the restart).
        let consumer = {
            let (stop, addr) = (stop.clone(), broker.mqtt);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut c = Raw::connect(addr, Version::V5, "pc-consumer", true);
                if c.recv(WAIT) != Some(Got::ConnAck(ReasonCode::Success)) {
                    return seen;
                }
                c.subscribe(1, &["$queue/pc-mq"], QoS::AtLeastOnce);
                while !stop.load(Ordering::Relaxed) {
                    // Anything else, or nothing within the wait (the broker may be gone:
                    // `stop` follows), is skipped.
                    if let Some(Got::Publish { pkid, payload, .. }) =
                        c.recv(Duration::from_millis(200))
                    {
                        if let Some(n) = std::str::from_utf8(&payload)
                            .ok()
                            .and_then(|t| t.parse::<u32>().ok())
                        {
                            seen.push(n);
                        }
                        if !c.try_send(&Packet::PubAck(outpost_codec::Ack::new(pkid))) {
                            return seen;
                        }
                    }
                }
                seen
            })
        };
        // A subscription, a queue and a retained message, each acknowledged before the cut.
        let probe = format!("probe-{cycle}");
        offline_subscriber(broker.mqtt, &probe, &format!("probe/{cycle}"));
        probes_acked.push(cycle);
        let queue = format!("pq-{cycle}");
        ok(sqs_json(
            &broker.http,
            "CreateQueue",
            &format!(r#"{{"QueueName":"{queue}"}}"#),
        ));
        queues_acked.push(queue);
        // A topic and a rule created, and a message moved to the dead-letter queue (sent, then
        // received twice: the second receive moves it).
        sns(
            &broker.http,
            &[("Action", "CreateTopic"), ("Name", &format!("pt-{cycle}"))],
        );
        ok(events_json(
            &broker.http,
            "PutRule",
            &serde_json::json!({"Name": format!("pr-{cycle}"), "EventPattern": r#"{"source":["none"]}"#})
                .to_string(),
        ));
        created_acked.push(cycle);
        {
            let src = url(&broker, "pc-src");
            ok(sqs_json(
                &broker.http,
                "SendMessage",
                &format!(r#"{{"QueueUrl":"{src}","MessageBody":"{cycle}"}}"#),
            ));
            for _ in 0..2 {
                ok(sqs_json(
                    &broker.http,
                    "ReceiveMessage",
                    &format!(r#"{{"QueueUrl":"{src}","VisibilityTimeout":0}}"#),
                ));
            }
            moved_acked.push(u64::from(cycle));
        }
        {
            let mut r = Raw::connect(broker.mqtt, Version::V5, "ret-pub", true);
            assert_eq!(r.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
            let topic = format!("ret/{cycle}");
            r.publish(&topic, b"kept", QoS::AtLeastOnce, 1, true);
            // No subscriber: "No matching subscribers", a success all the same.
            assert!(matches!(
                r.recv(WAIT),
                Some(Got::PubAck(
                    1,
                    ReasonCode::Success | ReasonCode::NoMatchingSubscribers
                ))
            ));
            retained_acked.insert(topic);
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 500));

        // The power goes: the process dies, then what was not synced.
        let data = broker.kill();
        stop.store(true, Ordering::Relaxed);
        next_mqtt = mqtt.join().expect("MQTT publisher");
        next_sqs = sqs.join().expect("SQS sender");
        mqtt_got.extend(consumer.join().expect("$queue consumer"));
        if let Some(fs) = fs {
            fs.power_cut();
        }

        let t = Instant::now();
        broker = Outpost::start_with(data, config, None);
        recovery.push(t.elapsed());

        // Everything acknowledged is there.
        let acked: BTreeSet<u32> = mqtt_acked.lock().unwrap().clone();
        let got = drain_queue(&broker.http, &url(&broker, "pc-mq"));
        mqtt_got.extend(got.into_iter().map(|n| n as u32));
        // Bridged numbers are counted at the upstream, at the end.
        let missing: BTreeSet<u32> = acked
            .difference(&mqtt_got)
            .copied()
            .filter(|n| n % 5 != 3)
            .collect();
        let fresh = drain_until(broker.mqtt, "keeper", |g| missing.is_subset(g));
        mqtt_got.extend(fresh);
        let lost: Vec<&u32> = acked
            .difference(&mqtt_got)
            .filter(|n| *n % 5 != 3)
            .collect();
        if !lost.is_empty() {
            // Tell a late return (in flight longer than its visibility timeout) from a loss.
            std::thread::sleep(Duration::from_secs(5));
            let late = drain_queue(&broker.http, &url(&broker, "pc-mq"));
            let attrs = sqs_json(
                &broker.http,
                "GetQueueAttributes",
                &format!(
                    r#"{{"QueueUrl":"{}","AttributeNames":["All"]}}"#,
                    url(&broker, "pc-mq")
                ),
            );
            eprintln!("after 5 s more, pc-mq gave {late:?}; {attrs:?}");
        }
        assert!(
            lost.is_empty(),
            "{what} {cycle}: {} acknowledged MQTT messages lost, first {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        for q in ["pc", "pc-sns", "pc-ev"] {
            let got = drain_queue(&broker.http, &url(&broker, q));
            sqs_deliveries += got.len();
            sqs_got.extend(got);
        }
        // FIFO: in order within the drain, and each acknowledged send there once; a send
        // repeated with a deduplication id from before the cut is not queued again.
        let fifo_url = url(&broker, "pc.fifo");
        let drained = drain_queue(&broker.http, &fifo_url);
        assert!(
            drained.windows(2).all(|w| w[0] < w[1]),
            "{what} {cycle}: FIFO order broken: {drained:?}"
        );
        fifo_got.extend(drained.iter().copied());
        sqs_deliveries += drained.len();
        sqs_got.extend(drained);
        let last_fifo = fifo_acked.lock().unwrap().last().copied();
        if let Some(n) = last_fifo {
            let body = serde_json::json!({"QueueUrl": fifo_url, "MessageBody": n.to_string(),
                "MessageGroupId": "g", "MessageDeduplicationId": n.to_string()});
            ok(sqs_json(&broker.http, "SendMessage", &body.to_string()));
            let again = drain_queue(&broker.http, &fifo_url);
            assert!(
                !again.contains(&n),
                "{what} {cycle}: FIFO deduplication forgot {n} across the restart"
            );
        }
        // Dead-letter moves: each message is in its source or its dead-letter queue.
        for q in ["pc-src", "pc-dlq"] {
            moved_got.extend(drain_queue(&broker.http, &url(&broker, q)));
        }
        let gone: Vec<&u64> = moved_acked
            .iter()
            .filter(|n| !moved_got.contains(n))
            .collect();
        assert!(
            gone.is_empty(),
            "{what} {cycle}: dead-letter moves lost {gone:?}"
        );
        // Archived events: at least every acknowledged PutEvents entry.
        let events_acked = sqs_acked
            .lock()
            .unwrap()
            .iter()
            .filter(|n| *n % 3 == 2)
            .count();
        let archive = ok(events_json(
            &broker.http,
            "DescribeArchive",
            r#"{"ArchiveName":"pc-archive"}"#,
        ));
        let archived = archive["EventCount"].as_u64().unwrap_or(0) as usize;
        assert!(
            archived >= events_acked,
            "{what} {cycle}: the archive holds {archived} events, {events_acked} were acknowledged"
        );
        // Topics and rules created before the cut.
        let mut topics = String::new();
        let mut token = String::new();
        loop {
            let mut params = vec![("Action", "ListTopics")];
            if !token.is_empty() {
                params.push(("NextToken", token.as_str()));
            }
            let (code, body) = sns_query(&broker.http, &params);
            assert_eq!(code, 200, "{body}");
            topics.push_str(&body);
            token = body
                .split("<NextToken>")
                .nth(1)
                .and_then(|r| r.split("</NextToken>").next())
                .unwrap_or_default()
                .to_string();
            if token.is_empty() {
                break;
            }
        }
        let rules = ok(events_json(
            &broker.http,
            "ListRules",
            r#"{"NamePrefix":"pr-","Limit":100}"#,
        ));
        let rules = rules.to_string();
        for k in &created_acked {
            assert!(
                topics.contains(&format!(":pt-{k}<")),
                "{what} {cycle}: topic pt-{k} (created with a 200) is gone"
            );
            assert!(
                rules.contains(&format!("\"pr-{k}\"")),
                "{what} {cycle}: rule pr-{k} (created with a 200) is gone"
            );
        }
        let acked = sqs_acked.lock().unwrap().clone();
        let lost: Vec<&u64> = acked.difference(&sqs_got).collect();
        assert!(
            lost.is_empty(),
            "{what} {cycle}: {} acknowledged SQS messages lost, first {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        let retained = retained_topics(&broker, &retained_acked);
        assert!(
            retained_acked.is_subset(&retained),
            "{what} {cycle}: retained messages lost: {:?}",
            retained_acked.difference(&retained).collect::<Vec<_>>()
        );
        {
            let mut p = Raw::connect(broker.mqtt, Version::V5, "probe-pub", true);
            assert_eq!(p.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
            for (i, k) in probes_acked.iter().enumerate() {
                let pkid = i as u16 + 1;
                p.publish(&format!("probe/{k}"), b"?", QoS::AtLeastOnce, pkid, false);
                assert_eq!(
                    p.recv(WAIT),
                    Some(Got::PubAck(pkid, ReasonCode::Success)),
                    "{what} {cycle}: the subscription of probe-{k} (acknowledged by SUBACK) is gone"
                );
            }
        }
        let listed = ok(sqs_json(&broker.http, "ListQueues", "{}"));
        let urls: Vec<&str> = listed["QueueUrls"]
            .as_array()
            .map(|a| a.iter().filter_map(|u| u.as_str()).collect())
            .unwrap_or_default();
        for q in &queues_acked {
            assert!(
                urls.iter().any(|u| u.ends_with(&format!("/{q}"))),
                "{what} {cycle}: queue {q} (created with a 200) is gone: {urls:?}"
            );
        }
    }
    // Every acknowledged SNS publish reached the HTTP endpoint; every acknowledged bridged
    // message reached the upstream's subscriber.
    let sns_acked: BTreeSet<u32> = sqs_acked
        .lock()
        .unwrap()
        .iter()
        .filter(|n| *n % 3 == 1)
        .map(|n| *n as u32)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let missing: Vec<u32> = {
            let got = endpoint.received.lock().unwrap();
            sns_acked
                .iter()
                .filter(|n| !got.contains_key(n))
                .copied()
                .collect()
        };
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        missing.is_empty(),
        "{} acknowledged SNS publishes never reached the HTTP endpoint, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let bridged: BTreeSet<u32> = mqtt_acked
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|n| n % 5 == 3)
        .collect();
    let mut at_upstream = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !bridged.is_subset(&at_upstream) && Instant::now() < deadline {
        at_upstream.extend(drain_until(upstream.addr(), "sink", |g| {
            bridged.is_subset(&g.union(&at_upstream).copied().collect())
        }));
    }
    let lost: Vec<&u32> = bridged.difference(&at_upstream).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged bridged messages never reached the upstream, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let counts = fs.map(|f| f.counts()).unwrap_or_default();
    let mqtt_acked = mqtt_acked.lock().unwrap().len();
    let sqs_acked = sqs_acked.lock().unwrap().len();
    let slowest = recovery.iter().max().copied().unwrap_or_default();
    let mean = recovery.iter().sum::<Duration>() / recovery.len().max(1) as u32;
    println!(
        "{cycles} cycles of {what} in {:.0?}: acknowledged {mqtt_acked} MQTT (QoS 1/2; a fifth to $queue/, a fifth bridged: {} at the upstream), \
         {sqs_acked} HTTP (SQS, SNS to a queue and an HTTP endpoint, PutEvents in turn; {} at the endpoint, {} FIFO), {} retained, \
         {} subscriptions, {} dead-letter moves, {} queues, topics and rules each; lost 0; redeliveries {}; restarts {}; recovery mean {mean:.0?}, \
         slowest {slowest:.0?}; thrown away by the cuts: {} unsynced bytes, {} unsynced names; \
         syncs seen: {} file, {} directory",
        started.elapsed(),
        bridged.len(),
        sns_acked.len(),
        fifo_got.len(),
        retained_acked.len(),
        probes_acked.len(),
        moved_acked.len(),
        queues_acked.len(),
        sqs_deliveries - sqs_got.len(),
        recovery.len(),
        counts.lost_bytes,
        counts.lost_names,
        counts.file_syncs,
        counts.dir_syncs,
    );
    drop(broker.kill());
}
