//! The rules engine in-process, on the real store, queues and topics, with a fake MQTT door:
//! rule matching, what a target receives (`InputPath`, `InputTransformer`), MQTT targets acting as
//! the rule's owner, dead-letter queues, and archive and replay. The binary and boto3 test the
//! same through the wire (tests/events.rs); these pin the engine's own behaviour without one.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{open_with, owner, queue_arn, Engines, ACCOUNT, REGION};
use outpost_rules::{BoxFuture, MqttMessage, MqttPublisher, PutEntry, PutResult};
use outpost_topics::MqttRefusal;
use parking_lot::Mutex;
use serde_json::{json, Value};

/// An MQTT door that records what it is given, and refuses everything when told to.
#[derive(Default)]
struct FakeMqtt {
    published: Mutex<Vec<MqttMessage>>,
    refuse: bool,
}

impl MqttPublisher for FakeMqtt {
    fn publish(&self, message: MqttMessage) -> BoxFuture<'_, Result<(), MqttRefusal>> {
        let refuse = self.refuse;
        let topic = message.topic.clone();
        self.published.lock().push(message);
        Box::pin(async move {
            if refuse {
                Err(MqttRefusal::Refused(format!("{topic}: not allowed")))
            } else {
                Ok(())
            }
        })
    }
}

fn engines(dir: &std::path::Path, mqtt: Option<Arc<FakeMqtt>>) -> Engines {
    let door = mqtt.map(|m| m as Arc<dyn MqttPublisher>);
    open_with(dir, outpost_store::now_ms(), door)
}

fn event(source: &str, detail: Value) -> PutEntry {
    PutEntry {
        source: Some(source.into()),
        detail_type: Some("reading".into()),
        detail: Some(detail.to_string()),
        ..PutEntry::default()
    }
}

async fn put(e: &Engines, entries: Vec<PutEntry>) {
    for r in e.events.put_events(entries).await.expect("put") {
        assert!(matches!(r, PutResult::Ok(_)), "{r:?}");
    }
}

fn parsed(bodies: Vec<String>) -> Vec<Value> {
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).expect("JSON"))
        .collect()
}

#[tokio::test]
async fn rules_match_by_pattern_and_each_target_gets_what_its_input_says() {
    let dir = tempfile::tempdir().expect("dir");
    let e = engines(dir.path(), None);
    for q in ["all", "hot", "shaped"] {
        e.queue(q).await;
    }
    e.pattern_rule(
        "all",
        &json!({"source": ["app"]}),
        vec![json!({"Id": "all", "Arn": queue_arn("all"), "InputPath": "$.detail"})],
    )
    .await;
    e.pattern_rule(
        "hot",
        &json!({"source": ["app"], "detail": {"temp": [{"numeric": [">", 50]}]}}),
        vec![
            json!({"Id": "hot", "Arn": queue_arn("hot")}),
            json!({"Id": "shaped", "Arn": queue_arn("shaped"), "InputTransformer": {
                "InputPathsMap": {"t": "$.detail.temp", "s": "$.source"},
                "InputTemplate": "{\"temp\": <t>, \"from\": <s>}"
            }}),
        ],
    )
    .await;
    put(
        &e,
        vec![
            event("app", json!({"temp": 20})),
            event("app", json!({"temp": 61})),
            event("other", json!({"temp": 99})),
        ],
    )
    .await;
    let mut all = parsed(e.drain("all").await);
    all.sort_by_key(|d| d["temp"].as_i64());
    assert_eq!(all, vec![json!({"temp": 20}), json!({"temp": 61})]);
    let hot = parsed(e.drain("hot").await);
    assert_eq!(hot.len(), 1, "{hot:?}");
    assert_eq!(hot[0]["detail"], json!({"temp": 61}));
    assert_eq!(hot[0]["source"], "app");
    assert_eq!(hot[0]["account"], ACCOUNT);
    assert_eq!(hot[0]["region"], REGION);
    assert_eq!(
        parsed(e.drain("shaped").await),
        vec![json!({"temp": 61, "from": "app"})]
    );
}

#[tokio::test]
async fn mqtt_targets_publish_through_the_door_as_the_rules_owner() {
    let dir = tempfile::tempdir().expect("dir");
    let mqtt = Arc::new(FakeMqtt::default());
    let e = engines(dir.path(), Some(mqtt.clone()));
    e.pattern_rule(
        "to-devices",
        &json!({"source": ["app"]}),
        vec![json!({"Id": "m", "Arn": "mqtt:alerts/${detail.site}", "InputPath": "$.detail"})],
    )
    .await;
    put(&e, vec![event("app", json!({"site": "north", "level": 3}))]).await;
    let got = mqtt.published.lock().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].topic, "alerts/north");
    assert_eq!(
        serde_json::from_slice::<Value>(&got[0].payload).expect("JSON"),
        json!({"site": "north", "level": 3})
    );
    assert_eq!(got[0].who, owner(), "published as the rule's owner");
}

#[tokio::test]
async fn a_target_that_refuses_sends_the_event_to_its_dead_letter_queue() {
    let dir = tempfile::tempdir().expect("dir");
    let mqtt = Arc::new(FakeMqtt {
        refuse: true,
        ..FakeMqtt::default()
    });
    let e = engines(dir.path(), Some(mqtt.clone()));
    e.queue("dlq").await;
    e.pattern_rule(
        "refused",
        &json!({"source": ["app"]}),
        vec![json!({"Id": "m", "Arn": "mqtt:locked/topic",
                    "DeadLetterConfig": {"Arn": queue_arn("dlq")}})],
    )
    .await;
    put(&e, vec![event("app", json!({"n": 1}))]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = e.drain("dlq").await;
        if !dead.is_empty() || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dead.len(), 1, "one dead letter: {dead:?}");
    assert!(dead[0].contains("\"n\":1"), "{}", dead[0]);
    assert_eq!(mqtt.published.lock().len(), 1, "a refusal is not retried");
}

#[tokio::test]
async fn an_archive_keeps_events_and_a_replay_puts_them_through_the_rules_again() {
    let dir = tempfile::tempdir().expect("dir");
    let e = engines(dir.path(), None);
    e.queue("seen").await;
    let bus = format!("arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default");
    let (archive, _) = e
        .events
        .create_archive("kept", &bus, None, None, None)
        .await
        .expect("archive");
    e.pattern_rule(
        "seen",
        &json!({"source": ["app"]}),
        vec![json!({"Id": "q", "Arn": queue_arn("seen")})],
    )
    .await;
    let start = outpost_store::now_ms();
    put(&e, (1..=3).map(|n| event("app", json!({"n": n}))).collect()).await;
    assert_eq!(e.drain("seen").await.len(), 3, "delivered when put");
    let end = outpost_store::now_ms() + 1;
    e.events
        .start_replay("again", None, &archive, start, end, &bus, Vec::new())
        .await
        .expect("replay");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut replayed = Vec::new();
    while replayed.len() < 3 && Instant::now() < deadline {
        replayed.extend(parsed(e.drain("seen").await));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ns: Vec<i64> = replayed
        .iter()
        .map(|ev| {
            assert_eq!(ev["replay-name"], "again", "{ev}");
            ev["detail"]["n"].as_i64().expect("n")
        })
        .collect();
    ns.sort();
    assert_eq!(ns, vec![1, 2, 3], "each archived event once more");
    let summary = e.events.describe_replay("again").expect("replay");
    assert!(
        matches!(summary.state.as_str(), "COMPLETED" | "RUNNING"),
        "{}",
        summary.state
    );
}
