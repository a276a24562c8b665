//! The engine on a real store: what survives a reopen, retention, dead-lettering and deletes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use outpost_queues::{QueueError, Queues, QueuesConfig, ReceiveRequest, SendRequest};
use outpost_store::{Store, StoreConfig};

fn open(dir: &std::path::Path) -> (Store, Arc<Queues>) {
    let store = Store::open(dir, StoreConfig::default()).expect("store opens");
    let queues = Queues::open(store.clone(), QueuesConfig::default()).expect("queues recover");
    (store, queues)
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn body(s: &str) -> SendRequest {
    SendRequest {
        body: s.into(),
        ..SendRequest::default()
    }
}

fn recv(max: i64, vis: i64) -> ReceiveRequest {
    ReceiveRequest {
        max_messages: Some(max),
        visibility_timeout: Some(vis),
        wait_seconds: Some(0),
        attempt_id: None,
    }
}

fn counts(q: &Queues, name: &str) -> (String, String, String) {
    let a = q.get_attributes(name, &["All".into()]).expect("attributes");
    (
        a["ApproximateNumberOfMessages"].clone(),
        a["ApproximateNumberOfMessagesNotVisible"].clone(),
        a["ApproximateNumberOfMessagesDelayed"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn state_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (handle, receipt_deleted) = {
        let (_store, q) = open(dir.path());
        q.create_queue(
            "jobs",
            &attrs(&[("VisibilityTimeout", "30")]),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
        for i in 0..5 {
            q.send("jobs", body(&format!("m{i}"))).await.unwrap();
        }
        let got = q.receive("jobs", recv(2, 60)).await.unwrap();
        assert_eq!(got.len(), 2);
        q.delete_message("jobs", &got[0].receipt).await.unwrap();
        (got[1].receipt.clone(), got[0].receipt.clone())
    };
    let (_store, q) = open(dir.path());
    assert_eq!(
        counts(&q, "jobs"),
        ("3".into(), "1".into(), "0".into()),
        "one deleted, one still in flight after the reopen"
    );
    assert!(matches!(
        q.delete_message("jobs", &receipt_deleted).await,
        Err(QueueError::ReceiptHandleIsInvalid(_))
    ));
    // The in-flight receipt still works: the delivery record carried its nonce.
    q.change_visibility("jobs", &handle, 0).await.unwrap();
    let all = q.receive("jobs", recv(10, 30)).await.unwrap();
    assert_eq!(all.len(), 4);
    let again = all
        .iter()
        .find(|m| m.receive_count == 2)
        .expect("the redelivered one");
    assert_eq!(&again.message.body[..], b"m1");
}

#[tokio::test(flavor = "multi_thread")]
async fn fifo_dedup_and_sequence_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let (_store, q) = open(dir.path());
        q.create_queue("o.fifo", &attrs(&[("FifoQueue", "true")]), &BTreeMap::new())
            .await
            .unwrap();
        let mut r = body("a");
        r.group_id = Some("g".into());
        r.dedup_id = Some("d1".into());
        q.send("o.fifo", r).await.unwrap()
    };
    let (_store, q) = open(dir.path());
    let mut r = body("a again");
    r.group_id = Some("g".into());
    r.dedup_id = Some("d1".into());
    let dup = q.send("o.fifo", r).await.unwrap();
    assert_eq!(dup.message_id, first.message_id);
    let mut r = body("b");
    r.group_id = Some("g".into());
    r.dedup_id = Some("d2".into());
    let next = q.send("o.fifo", r).await.unwrap();
    assert!(next.sequence_number > first.sequence_number);
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_expires_old_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (store, q) = open(dir.path());
    q.create_queue(
        "short",
        &attrs(&[("MessageRetentionPeriod", "60")]),
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    q.send("short", body("old")).await.unwrap();
    q.expire_messages(outpost_queues::now_ms() + 30_000);
    assert_eq!(counts(&q, "short").0, "1");
    q.expire_messages(outpost_queues::now_ms() + 61_000);
    assert_eq!(counts(&q, "short").0, "0");
    assert!(q.receive("short", recv(1, 30)).await.unwrap().is_empty());
    store.sync().await.unwrap();
    drop(q);
    let (_store2, q) = {
        drop(store);
        open(dir.path())
    };
    assert_eq!(counts(&q, "short").0, "0", "the expiry is durable");
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letter_moves_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, q) = open(dir.path());
        q.create_queue("dlq", &BTreeMap::new(), &BTreeMap::new())
            .await
            .unwrap();
        let policy = format!(
            r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":1}}"#,
            q.arn("dlq")
        );
        q.create_queue(
            "src",
            &attrs(&[("RedrivePolicy", &policy)]),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
        q.send("src", body("poison")).await.unwrap();
        assert_eq!(q.receive("src", recv(1, 0)).await.unwrap().len(), 1);
        assert!(q.receive("src", recv(1, 0)).await.unwrap().is_empty());
        assert_eq!(
            q.dead_letter_sources("dlq").unwrap(),
            vec!["src".to_string()]
        );
    }
    let (_store, q) = open(dir.path());
    assert_eq!(counts(&q, "src").0, "0");
    let dead = q.receive("dlq", recv(1, 30)).await.unwrap();
    assert_eq!(&dead[0].message.body[..], b"poison");
    assert_eq!(
        dead[0].message.dead_letter_source.as_deref(),
        Some(q.arn("src").as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_queues_stay_deleted_and_free_their_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, q) = open(dir.path());
        q.create_queue("gone", &BTreeMap::new(), &BTreeMap::new())
            .await
            .unwrap();
        for i in 0..100 {
            q.send("gone", body(&format!("{i}"))).await.unwrap();
        }
        q.delete_queue("gone").await.unwrap();
        store.sync().await.unwrap();
        assert_eq!(store.stats().live_records, 0);
    }
    let (store, q) = open(dir.path());
    assert!(matches!(
        q.queue("gone"),
        Err(QueueError::QueueDoesNotExist)
    ));
    assert_eq!(store.stats().live_records, 0);
    // The name can be used again, with fresh streams.
    q.create_queue("gone", &BTreeMap::new(), &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(counts(&q, "gone").0, "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn long_poll_wakes_on_send_and_on_visibility_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, q) = open(dir.path());
    q.create_queue("lp", &BTreeMap::new(), &BTreeMap::new())
        .await
        .unwrap();
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let got = q
                .receive(
                    "lp",
                    ReceiveRequest {
                        wait_seconds: Some(20),
                        visibility_timeout: Some(1),
                        ..ReceiveRequest::default()
                    },
                )
                .await
                .unwrap();
            (got.len(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.send("lp", body("now")).await.unwrap();
    let (n, took) = waiter.await.unwrap();
    assert_eq!(n, 1);
    assert!(took < Duration::from_secs(5), "woke after {took:?}");
    // The message is in flight for 1 s; a long poll gets it back when the timeout ends.
    let started = tokio::time::Instant::now();
    let got = q
        .receive(
            "lp",
            ReceiveRequest {
                wait_seconds: Some(10),
                ..ReceiveRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifo_delivery_order_is_sequence_number_order_with_concurrent_senders() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, q) = open(dir.path());
    q.create_queue(
        "c.fifo",
        &attrs(&[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")]),
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    let senders: Vec<_> = (0..8)
        .map(|t| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for i in 0..50 {
                    let mut r = body(&format!("{t}-{i}"));
                    r.group_id = Some("g".into());
                    let res = q.send("c.fifo", r).await.unwrap();
                    sent.push((res.sequence_number.unwrap(), format!("{t}-{i}")));
                }
                sent
            })
        })
        .collect();
    let mut by_sequence = Vec::new();
    for s in senders {
        by_sequence.extend(s.await.unwrap());
    }
    by_sequence.sort();
    let mut delivered = Vec::new();
    while delivered.len() < by_sequence.len() {
        let got = q.receive("c.fifo", recv(10, 30)).await.unwrap();
        assert!(!got.is_empty(), "everything sent is receivable");
        for m in got {
            delivered.push(String::from_utf8(m.message.body.to_vec()).unwrap());
            q.delete_message("c.fifo", &m.receipt).await.unwrap();
        }
    }
    let expected: Vec<String> = by_sequence.into_iter().map(|(_, b)| b).collect();
    assert_eq!(
        delivered, expected,
        "delivery order is SequenceNumber order"
    );
}
