//! The topic engine in-process, on the real store and queues, with fakes of the two doors it does
//! not own (an HTTP sender that answers what the test scripts, an MQTT door that records): fan-out
//! to every protocol, filter policies, FIFO order, and HTTP delivery retries down to the
//! dead-letter queue. The binary and boto3 test the same through the wire (tests/sns.rs).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_queues::{Queues, QueuesConfig, ReceiveRequest};
use outpost_store::{Store, StoreConfig};
use outpost_topics::message::Attribute;
use outpost_topics::{
    BoxFuture, HttpRequest, HttpSender, MqttMessage, MqttPublisher, MqttRefusal, PublishEntry,
    PublishRequest, Topics, TopicsConfig,
};
use parking_lot::Mutex;
use serde_json::{json, Value};

const ACCOUNT: &str = "000000000000";
const REGION: &str = "us-east-1";

/// An HTTP sender that records every POST and answers with the scripted statuses (200 once the
/// script is used up).
#[derive(Default)]
struct FakeHttp {
    posts: Mutex<Vec<HttpRequest>>,
    answers: Mutex<VecDeque<u16>>,
}

impl HttpSender for FakeHttp {
    fn post(&self, request: HttpRequest) -> BoxFuture<'_, Result<u16, String>> {
        self.posts.lock().push(request);
        let status = self.answers.lock().pop_front().unwrap_or(200);
        Box::pin(async move { Ok(status) })
    }
}

impl FakeHttp {
    /// The JSON bodies of the POSTs of one message type (`Notification`,
    /// `SubscriptionConfirmation`).
    fn bodies(&self, kind: &str) -> Vec<Value> {
        self.posts
            .lock()
            .iter()
            .filter_map(|p| serde_json::from_str::<Value>(&p.body).ok())
            .filter(|b| b["Type"] == kind)
            .collect()
    }
}

#[derive(Default)]
struct FakeMqtt(Mutex<Vec<MqttMessage>>);

impl MqttPublisher for FakeMqtt {
    fn publish(&self, message: MqttMessage) -> BoxFuture<'_, Result<(), MqttRefusal>> {
        self.0.lock().push(message);
        Box::pin(async { Ok(()) })
    }
}

struct Engines {
    queues: Arc<Queues>,
    topics: Arc<Topics>,
    http: Arc<FakeHttp>,
    mqtt: Arc<FakeMqtt>,
    _store: Store,
}

fn open(dir: &std::path::Path) -> Engines {
    let store = Store::open(dir.join("data"), StoreConfig::default()).expect("store");
    let queues = Queues::open(store.clone(), QueuesConfig::default()).expect("queues");
    let topics = Topics::open(
        store.clone(),
        queues.clone(),
        TopicsConfig {
            region: REGION.into(),
            account: ACCOUNT.into(),
            public_url: "http://127.0.0.1:9324".into(),
            signing_dir: dir.join("signing"),
            signing_key_bits: 2048,
            max_topics: 100,
            max_pending_deliveries: 100,
            max_pending_bytes: 1 << 20,
            max_filter_policy_bytes_per_principal: 1 << 20,
            max_pending_deliveries_per_host: 100,
            max_pending_bytes_per_host: 1 << 20,
        },
    )
    .expect("topics");
    let (http, mqtt) = (Arc::new(FakeHttp::default()), Arc::new(FakeMqtt::default()));
    topics.attach(Some(http.clone()), Some(mqtt.clone()));
    Engines {
        queues,
        topics,
        http,
        mqtt,
        _store: store,
    }
}

fn owner() -> outpost_access::Identity {
    outpost_access::Identity::anonymous(ACCOUNT)
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Waits (up to 10 s) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Engines {
    async fn topic(&self, name: &str, attributes: &[(&str, &str)]) -> String {
        self.topics
            .create_topic(name, attrs(attributes), BTreeMap::new())
            .await
            .expect("topic")
    }

    async fn queue(&self, name: &str, attributes: &[(&str, &str)]) -> String {
        self.queues
            .create_queue(name, &attrs(attributes), &BTreeMap::new())
            .await
            .expect("queue");
        format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
    }

    async fn subscribe(
        &self,
        topic: &str,
        protocol: &str,
        endpoint: &str,
        attributes: &[(&str, &str)],
    ) -> String {
        self.topics
            .subscribe(
                topic,
                protocol,
                Some(endpoint),
                attrs(attributes),
                true,
                &owner(),
            )
            .await
            .expect("subscribe")
    }

    /// Subscribes an HTTP endpoint and confirms it with the token of its confirmation POST.
    async fn subscribe_http(&self, topic: &str, url: &str, attributes: &[(&str, &str)]) {
        self.subscribe(topic, "http", url, attributes).await;
        let http = self.http.clone();
        eventually("the confirmation POST", || {
            !http.bodies("SubscriptionConfirmation").is_empty()
        })
        .await;
        let confirmation = self.http.bodies("SubscriptionConfirmation").remove(0);
        let token = confirmation["Token"].as_str().expect("a token");
        self.topics.confirm(topic, token).await.expect("confirmed");
    }

    async fn publish(&self, topic: &str, entry: PublishEntry) {
        self.topics
            .publish(PublishRequest {
                topic_arn: Some(topic.into()),
                target_arn: None,
                phone_number: None,
                entry,
            })
            .await
            .expect("publish");
    }

    /// Bodies waiting in a queue, in the order received (received and deleted).
    async fn drain(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let got = self
                .queues
                .receive(
                    name,
                    ReceiveRequest {
                        max_messages: Some(10),
                        visibility_timeout: Some(30),
                        wait_seconds: Some(0),
                        attempt_id: None,
                    },
                )
                .await
                .expect("receive");
            if got.is_empty() {
                return out;
            }
            for m in got {
                out.push(String::from_utf8(m.message.body.to_vec()).expect("utf-8"));
                self.queues
                    .delete_message(name, &m.receipt)
                    .await
                    .expect("delete");
            }
        }
    }
}

fn message(text: &str) -> PublishEntry {
    PublishEntry {
        message: Some(text.into()),
        ..PublishEntry::default()
    }
}

/// The RSA key is made with the first topic, not at start (issue 29), and found again after a
/// restart: a receiver that cached the certificate keeps verifying.
#[tokio::test]
async fn the_signing_key_is_made_with_the_first_topic_and_kept() {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("signing").join("key.pem");
    let first_cert = {
        let e = open(dir.path());
        assert!(!key.exists(), "no key before any topic");
        assert!(e.topics.signing_certificate().is_none());
        e.topic("first", &[]).await;
        assert!(key.exists(), "the key is made with the first topic");
        let (pem, file) = e.topics.signing_certificate().expect("a certificate");
        (pem.to_string(), file.to_string())
    };
    let e = open(dir.path());
    let (pem, file) = e.topics.signing_certificate().expect("loaded at start");
    assert_eq!((pem.to_string(), file.to_string()), first_cert);
}

#[tokio::test]
async fn one_publish_reaches_queues_http_endpoints_and_mqtt_topics() {
    let dir = tempfile::tempdir().expect("dir");
    let e = open(dir.path());
    let topic = e.topic("alerts", &[]).await;
    let raw = e.queue("raw", &[]).await;
    let wrapped = e.queue("wrapped", &[]).await;
    e.subscribe(&topic, "sqs", &raw, &[("RawMessageDelivery", "true")])
        .await;
    e.subscribe(&topic, "sqs", &wrapped, &[]).await;
    e.subscribe(
        &topic,
        "mqtt",
        "devices/alerts",
        &[("RawMessageDelivery", "true")],
    )
    .await;
    e.subscribe_http(&topic, "http://hooks.example/alerts", &[])
        .await;

    e.publish(&topic, message("disk almost full")).await;

    assert_eq!(e.drain("raw").await, vec!["disk almost full"]);
    let envelope: Value = serde_json::from_str(&e.drain("wrapped").await[0]).expect("JSON");
    assert_eq!(envelope["Type"], "Notification");
    assert_eq!(envelope["Message"], "disk almost full");
    assert_eq!(envelope["TopicArn"], topic.as_str());
    let mqtt = e.mqtt.0.lock().clone();
    assert_eq!(mqtt.len(), 1);
    assert_eq!(mqtt[0].topic, "devices/alerts");
    assert_eq!(&mqtt[0].payload[..], b"disk almost full");
    assert_eq!(
        mqtt[0].who,
        owner(),
        "delivered as the subscription's owner"
    );
    let http = e.http.clone();
    eventually("the notification POST", || {
        !http.bodies("Notification").is_empty()
    })
    .await;
    let posted = e.http.bodies("Notification");
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0]["Message"], "disk almost full");
    assert_eq!(
        posted[0]["MessageId"], envelope["MessageId"],
        "one message id for every copy"
    );
}

#[tokio::test]
async fn filter_policies_choose_which_subscriptions_get_a_message() {
    let dir = tempfile::tempdir().expect("dir");
    let e = open(dir.path());
    let topic = e.topic("orders", &[]).await;
    let big = e.queue("big", &[]).await;
    let all = e.queue("all", &[]).await;
    let policy = json!({"kind": ["order"], "amount": [{"numeric": [">=", 100]}]}).to_string();
    e.subscribe(
        &topic,
        "sqs",
        &big,
        &[("RawMessageDelivery", "true"), ("FilterPolicy", &policy)],
    )
    .await;
    e.subscribe(&topic, "sqs", &all, &[("RawMessageDelivery", "true")])
        .await;
    let with = |kind: &str, amount: &str, text: &str| {
        let mut entry = message(text);
        for (name, data_type, value) in [("kind", "String", kind), ("amount", "Number", amount)] {
            entry.attributes.insert(
                name.into(),
                Attribute {
                    data_type: data_type.into(),
                    value: value.into(),
                },
            );
        }
        entry
    };
    e.publish(&topic, with("order", "250", "large order")).await;
    e.publish(&topic, with("order", "20", "small order")).await;
    e.publish(&topic, with("refund", "500", "refund")).await;
    assert_eq!(e.drain("big").await, vec!["large order"]);
    let mut everything = e.drain("all").await;
    everything.sort();
    assert_eq!(everything, vec!["large order", "refund", "small order"]);
}

#[tokio::test]
async fn a_fifo_topic_keeps_each_groups_order_into_a_fifo_queue() {
    let dir = tempfile::tempdir().expect("dir");
    let e = open(dir.path());
    let topic = e
        .topic(
            "ledger.fifo",
            &[("FifoTopic", "true"), ("ContentBasedDeduplication", "true")],
        )
        .await;
    let queue = e
        .queue(
            "ledger.fifo",
            &[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")],
        )
        .await;
    e.subscribe(&topic, "sqs", &queue, &[("RawMessageDelivery", "true")])
        .await;
    let sent: Vec<String> = (0..30).map(|i| format!("entry {i:02}")).collect();
    for text in &sent {
        let mut entry = message(text);
        entry.group_id = Some("account-7".into());
        e.publish(&topic, entry).await;
    }
    // A duplicate inside the deduplication window is accepted and not delivered again.
    let mut again = message("entry 00");
    again.group_id = Some("account-7".into());
    e.publish(&topic, again).await;
    assert_eq!(e.drain("ledger.fifo").await, sent, "in publish order, once");
}

#[tokio::test]
async fn failed_http_deliveries_are_retried_with_one_signature_then_dead_lettered() {
    let dir = tempfile::tempdir().expect("dir");
    let e = open(dir.path());
    let topic = e.topic("hooks", &[]).await;
    let dlq = e.queue("hooks-dlq", &[]).await;
    let policy = json!({"healthyRetryPolicy": {
        "numRetries": 2, "numNoDelayRetries": 2, "minDelayTarget": 1, "maxDelayTarget": 1
    }})
    .to_string();
    let redrive = json!({ "deadLetterTargetArn": dlq }).to_string();
    e.subscribe_http(
        &topic,
        "http://hooks.example/flaky",
        &[("DeliveryPolicy", &policy), ("RedrivePolicy", &redrive)],
    )
    .await;

    // Two failures, then a success: three POSTs of one notification, signed once.
    e.http.answers.lock().extend([500, 503]);
    e.publish(&topic, message("first")).await;
    let http = e.http.clone();
    eventually("three attempts", || http.bodies("Notification").len() == 3).await;
    let attempts = e.http.bodies("Notification");
    assert!(attempts.iter().all(|a| a["Message"] == "first"));
    assert!(
        attempts
            .windows(2)
            .all(|w| w[0]["Signature"] == w[1]["Signature"]),
        "every retry carries the same signature"
    );

    // Failing every time: the first try and two retries, then the dead-letter queue.
    e.http.answers.lock().extend([500, 500, 500]);
    e.publish(&topic, message("second")).await;
    let mut dead = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dead.is_empty() && Instant::now() < deadline {
        dead = e.drain("hooks-dlq").await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("second"), "{}", dead[0]);
    let seconds = e
        .http
        .bodies("Notification")
        .into_iter()
        .filter(|b| b["Message"] == "second")
        .count();
    assert_eq!(seconds, 3, "one try and two retries");
}
