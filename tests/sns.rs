//! The SNS API end to end: the real `outpost` binary driven by boto3 (with an HTTP endpoint and
//! an MQTT subscriber run by the suite), the aws CLI, and a `kill -9` in the middle of a fan-out
//! to three queues and a failing HTTP endpoint.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::endpoint::Endpoint;
use support::http::{receive_all, sns_query as sns, sqs_json};
use support::{aws_cli, eventually, python, Outpost};

#[test]
fn boto3_sns_suite() {
    let Some(python) = python(".venv") else {
        return;
    };
    let broker = Outpost::start();
    support::pytest(
        &python,
        "sns_test.py",
        &[
            ("OUTPOST_SNS_ENDPOINT", broker.http.clone()),
            ("OUTPOST_MQTT_PORT", broker.port()),
        ],
    );
}

#[test]
fn aws_cli_sns_smoke() {
    let Some(_) = python(".venv") else { return };
    let broker = Outpost::start();
    let aws = |args: &[&str]| aws_cli(&broker, args);
    let created = aws(&["sns", "create-topic", "--name", "cli-topic"]);
    assert!(created.contains("arn:aws:sns:us-east-1:000000000000:cli-topic"));
    let arn = "arn:aws:sns:us-east-1:000000000000:cli-topic";
    aws(&["sqs", "create-queue", "--queue-name", "cli-q"]);
    aws(&[
        "sns",
        "subscribe",
        "--topic-arn",
        arn,
        "--protocol",
        "sqs",
        "--notification-endpoint",
        "arn:aws:sqs:us-east-1:000000000000:cli-q",
        "--attributes",
        "RawMessageDelivery=true",
    ]);
    assert!(aws(&[
        "sns",
        "publish",
        "--topic-arn",
        arn,
        "--message",
        "from the cli"
    ])
    .contains("MessageId"));
    let url = format!("{}/000000000000/cli-q", broker.http);
    let got = aws(&["sqs", "receive-message", "--queue-url", &url]);
    assert!(got.contains("from the cli"), "{got}");
    assert!(aws(&["sns", "list-topics"]).contains(arn));
}

/// The value of `<tag>` in an XML answer.
fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(
        xml[start..end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// `kill -9` while messages fan out to three queues and a failing HTTP endpoint: after the
/// restart each queue holds every acknowledged message exactly once, and the endpoint's pending
/// deliveries resume and arrive once it recovers.
#[test]
fn kill_9_during_fan_out_loses_nothing_acknowledged() {
    let broker = Outpost::start();
    let base = broker.http.clone();
    let (code, xml) = sns(&base, &[("Action", "CreateTopic"), ("Name", "crash")]);
    assert_eq!(code, 200, "{xml}");
    let topic = xml_value(&xml, "TopicArn").expect("TopicArn");
    let queues = ["crash-a", "crash-b", "crash-c"];
    for (i, q) in queues.iter().enumerate() {
        let (code, text) = sqs_json(&base, "CreateQueue", &format!(r#"{{"QueueName":"{q}"}}"#));
        assert_eq!(code, 200, "{text}");
        let raw = if i == 0 { "false" } else { "true" };
        let (code, text) = sns(
            &base,
            &[
                ("Action", "Subscribe"),
                ("TopicArn", &topic),
                ("Protocol", "sqs"),
                (
                    "Endpoint",
                    &format!("arn:aws:sqs:us-east-1:000000000000:{q}"),
                ),
                ("Attributes.entry.1.key", "RawMessageDelivery"),
                ("Attributes.entry.1.value", raw),
            ],
        );
        assert_eq!(code, 200, "{text}");
    }
    let endpoint = Endpoint::start();
    let policy =
        r#"{"healthyRetryPolicy":{"minDelayTarget":1,"maxDelayTarget":1,"numRetries":100}}"#;
    let (code, text) = sns(
        &base,
        &[
            ("Action", "Subscribe"),
            ("TopicArn", &topic),
            ("Protocol", "http"),
            ("Endpoint", &endpoint.url),
            ("Attributes.entry.1.key", "DeliveryPolicy"),
            ("Attributes.entry.1.value", policy),
        ],
    );
    assert_eq!(code, 200, "{text}");
    eventually(
        "the HTTP subscription is confirmed",
        Duration::from_secs(15),
        || {
            let (_, xml) = sns(
                &base,
                &[("Action", "GetTopicAttributes"), ("TopicArn", &topic)],
            );
            xml.contains("<key>SubscriptionsConfirmed</key><value>4</value>")
        },
    );

    // Publish a numbered stream, one request at a time, until the broker dies under it.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let publisher = {
        let (stop, acked, base, topic) = (stop.clone(), acked.clone(), base.clone(), topic.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let (code, _) = sns(
                    &base,
                    &[
                        ("Action", "Publish"),
                        ("TopicArn", &topic),
                        ("Message", &n.to_string()),
                    ],
                );
                if code != 200 {
                    return n;
                }
                acked.lock().unwrap().push(n);
                n += 1;
            }
            n
        })
    };
    eventually(
        "100 acknowledged publishes",
        Duration::from_secs(60),
        || acked.lock().unwrap().len() >= 100,
    );
    eventually("HTTP attempts failing", Duration::from_secs(10), || {
        endpoint.attempts.load(Ordering::Relaxed) > 10
    });
    let data = broker.kill();
    stop.store(true, Ordering::Relaxed);
    let sent = publisher.join().expect("publisher");
    let acked: Vec<u32> = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());

    endpoint.healthy.store(true, Ordering::Relaxed);
    let broker = Outpost::start_in(data);
    for (i, q) in queues.iter().enumerate() {
        let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
        for body in receive_all(&broker.http, q) {
            let text = if i == 0 {
                let v: serde_json::Value = serde_json::from_str(&body).expect("envelope");
                v["Message"].as_str().expect("Message").to_string()
            } else {
                body
            };
            *counts.entry(text.parse().expect("number")).or_insert(0) += 1;
        }
        for n in &acked {
            assert_eq!(
                counts.get(n),
                Some(&1),
                "queue {q}: acknowledged message {n}"
            );
        }
        assert!(counts.values().all(|c| *c == 1), "queue {q}: a duplicate");
        assert!(
            counts.keys().all(|n| *n <= sent),
            "queue {q}: a message never sent"
        );
    }
    eventually(
        "every acknowledged message reaches the recovered endpoint",
        Duration::from_secs(60),
        || {
            let got = endpoint.received.lock().unwrap();
            acked.iter().all(|n| got.contains_key(n))
        },
    );
    println!(
        "acknowledged {} messages before kill -9; all in 3 queues once, all delivered to HTTP after restart",
        acked.len()
    );
}

/// A message is signed once, whatever it goes to: two queue copies in the envelope, three HTTP
/// endpoints, and the retries of one that fails at first share one RSA signature (SNS signs the
/// message, not the subscription: `UnsubscribeURL` is not in the signed text).
#[test]
fn one_signature_per_message_for_every_copy_and_retry() {
    let broker = Outpost::start();
    let base = broker.http.clone();
    let (code, xml) = sns(&base, &[("Action", "CreateTopic"), ("Name", "signed")]);
    assert_eq!(code, 200, "{xml}");
    let topic = xml_value(&xml, "TopicArn").expect("TopicArn");
    let subscribe = |protocol: &str, endpoint: &str| {
        let policy =
            r#"{"healthyRetryPolicy":{"minDelayTarget":1,"maxDelayTarget":1,"numRetries":10}}"#;
        let mut params = vec![
            ("Action", "Subscribe"),
            ("TopicArn", &topic),
            ("Protocol", protocol),
            ("Endpoint", endpoint),
        ];
        if protocol == "http" {
            params.extend([
                ("Attributes.entry.1.key", "DeliveryPolicy"),
                ("Attributes.entry.1.value", policy),
            ]);
        }
        let (code, text) = sns(&base, &params);
        assert_eq!(code, 200, "{text}");
    };
    for q in ["signed-a", "signed-b"] {
        let (code, text) = sqs_json(&base, "CreateQueue", &format!(r#"{{"QueueName":"{q}"}}"#));
        assert_eq!(code, 200, "{text}");
        subscribe("sqs", &format!("arn:aws:sqs:us-east-1:000000000000:{q}"));
    }
    let endpoints: Vec<Endpoint> = (0..3).map(|_| Endpoint::start()).collect();
    for (i, e) in endpoints.iter().enumerate() {
        // The first endpoint fails until told otherwise: its deliveries are retried.
        e.healthy.store(i != 0, Ordering::Relaxed);
        subscribe("http", &e.url);
    }
    eventually(
        "five confirmed subscriptions",
        Duration::from_secs(15),
        || {
            let (_, xml) = sns(
                &base,
                &[("Action", "GetTopicAttributes"), ("TopicArn", &topic)],
            );
            xml.contains("<key>SubscriptionsConfirmed</key><value>5</value>")
        },
    );
    let before = support::metric(&broker, "outpost_topic_signatures_total");
    const MESSAGES: u32 = 5;
    for n in 0..MESSAGES {
        let (code, text) = sns(
            &base,
            &[
                ("Action", "Publish"),
                ("TopicArn", &topic),
                ("Message", &n.to_string()),
            ],
        );
        assert_eq!(code, 200, "{text}");
    }
    eventually(
        "failed attempts at the first endpoint",
        Duration::from_secs(15),
        || endpoints[0].attempts.load(Ordering::Relaxed) > MESSAGES,
    );
    endpoints[0].healthy.store(true, Ordering::Relaxed);
    eventually(
        "every endpoint has every message",
        Duration::from_secs(30),
        || {
            endpoints
                .iter()
                .all(|e| e.received.lock().unwrap().len() == MESSAGES as usize)
        },
    );
    for q in ["signed-a", "signed-b"] {
        let bodies = receive_all(&base, q);
        assert_eq!(bodies.len(), MESSAGES as usize, "{q}: {bodies:?}");
        assert!(
            bodies.iter().all(|b| b.contains("\"Signature\" : \"")),
            "enveloped: {bodies:?}"
        );
    }
    let made = support::metric(&broker, "outpost_topic_signatures_total") - before;
    assert_eq!(
        made,
        u64::from(MESSAGES),
        "one signature per message for 2 queue copies, 3 endpoints and retries"
    );
}
