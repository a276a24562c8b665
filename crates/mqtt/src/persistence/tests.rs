use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_codec::{QoS, ReasonCode, SubscribeOptions};
use outpost_store::{RecordId, StreamId};
use tokio::sync::oneshot;

use super::*;
use crate::Message;
use crate::MessageProperties;

#[test]
fn messages_round_trip_through_the_record_format() {
    let m = Message {
        properties: MessageProperties {
            content_type: Some("text/plain".into()),
            message_expiry_interval: Some(100),
            user_properties: vec![("k".into(), "v".into())],
            ..MessageProperties::default()
        },
        ..Message::new("a/b", Bytes::from_static(b"hello"), QoS::ExactlyOnce, true)
    };
    let b = encode_message(&m, QoS::AtLeastOnce, true, &[7, 9]);
    let (back, qos, retain, ids) = decode_message(&b, Duration::from_secs(30)).unwrap();
    assert_eq!((qos, retain, ids), (QoS::AtLeastOnce, true, vec![7, 9]));
    assert_eq!(back.topic, m.topic);
    assert_eq!(back.payload, m.payload);
    assert_eq!(back.properties.content_type, m.properties.content_type);
    assert_eq!(
        back.properties.user_properties,
        m.properties.user_properties
    );
    let left = back.remaining_expiry(Instant::now()).unwrap();
    assert!((69..=70).contains(&left), "expiry keeps counting: {left}");
}

#[test]
fn a_durable_wait_reports_the_first_failure_and_a_vanished_task() {
    let waits = |answers: Vec<Option<Result<(), PersistError>>>| {
        let mut d = Durable::default();
        for a in answers {
            let (tx, rx) = oneshot::channel();
            d.push(rx);
            if let Some(a) = a {
                let _ = tx.send(a);
            }
        }
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(d.wait());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => panic!("every answer is in"),
        }
    };
    use std::future::Future;
    assert_eq!(waits(vec![Some(Ok(())), Some(Ok(()))]), Ok(()));
    assert_eq!(
        waits(vec![
            Some(Ok(())),
            Some(Err(PersistError::DiskFull)),
            Some(Err(PersistError::Failed))
        ]),
        Err(PersistError::DiskFull)
    );
    assert_eq!(
        waits(vec![None]),
        Err(PersistError::Failed),
        "a dropped sender is a failure"
    );
    assert_eq!(
        PersistError::DiskFull.reason_code(),
        ReasonCode::QuotaExceeded
    );
    assert_eq!(
        PersistError::Failed.reason_code(),
        ReasonCode::UnspecifiedError
    );
}

fn rec(stream: u64, seq: u64) -> RecordId {
    RecordId {
        stream: StreamId(stream),
        seq,
    }
}

#[test]
fn a_shared_message_goes_with_its_last_reference() {
    let mut stored = Stored::default();
    stored.add_message(7, rec(1, 1));
    stored.add_message(8, rec(1, 2));
    stored.add_delivery(100, rec(2, 1), Some(7));
    stored.add_delivery(101, rec(3, 1), Some(7));
    assert_eq!(
        stored.take_orphans(),
        vec![rec(1, 2)],
        "key 8 has no reference"
    );
    let mut dead = Vec::new();
    stored.release_delivery(100, &mut dead);
    assert_eq!(
        dead,
        vec![rec(2, 1)],
        "another session still references the message"
    );
    dead.clear();
    stored.release_delivery(101, &mut dead);
    assert_eq!(
        dead,
        vec![rec(3, 1), rec(1, 1)],
        "the last reference takes the message"
    );
    dead.clear();
    stored.release_delivery(101, &mut dead);
    assert!(dead.is_empty(), "releasing twice is harmless");
}

#[test]
fn a_record_of_references_lives_until_its_last_delivery() {
    let mut stored = Stored::default();
    stored.add_message(7, rec(1, 1));
    stored.add_message(8, rec(1, 2));
    // One record holds both deliveries of a session.
    stored.add_delivery(100, rec(2, 1), Some(7));
    stored.add_delivery(101, rec(2, 1), Some(8));
    let mut dead = Vec::new();
    stored.release_delivery(100, &mut dead);
    assert_eq!(dead, vec![rec(1, 1)], "the record still holds 101");
    dead.clear();
    stored.release_delivery(101, &mut dead);
    assert_eq!(dead, vec![rec(2, 1), rec(1, 2)]);
    // A session's end takes a record with everything it holds.
    stored.add_message(9, rec(1, 3));
    stored.add_delivery(102, rec(2, 2), Some(9));
    stored.add_delivery(103, rec(2, 2), Some(9));
    dead.clear();
    stored.release_record(rec(2, 2), &mut dead);
    assert_eq!(dead, vec![rec(1, 3), rec(2, 2)]);
    dead.clear();
    stored.release_delivery(103, &mut dead);
    assert!(dead.is_empty(), "gone with its record");
}

#[test]
fn references_and_message_records_round_trip() {
    let m = Message::new(
        "a/b",
        Bytes::from_static(b"payload"),
        QoS::ExactlyOnce,
        true,
    );
    let rec = encode_message_record(42, &m, &[]);
    let (key, back, set) = decode_message_record(&rec, Duration::ZERO).unwrap();
    assert!(set.is_empty());
    assert_eq!(
        (key, &*back.topic, &back.payload[..]),
        (42, "a/b", &b"payload"[..])
    );
    let spec = RefSpec {
        stream: StreamId(3),
        delivery: 9,
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: vec![5, 6],
    };
    let refs = |b: &Bytes| -> Vec<(u64, QoS, bool, Vec<u32>)> {
        decode_deliveries(b, Duration::ZERO)
            .expect("decodes")
            .into_iter()
            .map(|d| match d {
                StoredDelivery::Reference {
                    key,
                    qos,
                    retain,
                    subscription_ids,
                } => (key, qos, retain, subscription_ids),
                StoredDelivery::Whole(..) => panic!("a reference"),
            })
            .collect()
    };
    assert_eq!(
        refs(&encode_reference(42, &spec)),
        [(42, QoS::AtLeastOnce, false, vec![5, 6])]
    );
    let other = RefSpec {
        retain: true,
        subscription_ids: Vec::new(),
        ..spec.clone()
    };
    assert_eq!(
        refs(&encode_references(&[(42, &spec), (43, &other)])),
        [
            (42, QoS::AtLeastOnce, false, vec![5, 6]),
            (43, QoS::AtLeastOnce, true, vec![])
        ]
    );
    let truncated = encode_references(&[(42, &spec), (43, &other)]);
    assert!(decode_deliveries(&truncated.slice(..truncated.len() - 3), Duration::ZERO).is_none());
    // The compact layout: keys out of order (two publishers interleaved), identifiers, QoS 2.
    let third = RefSpec {
        qos: QoS::ExactlyOnce,
        subscription_ids: vec![268_435_455],
        ..spec.clone()
    };
    let compact = encode_compact_references(&[(42, &spec), (u64::MAX, &other), (7, &third)]);
    assert_eq!(
        refs(&compact),
        [
            (42, QoS::AtLeastOnce, false, vec![5, 6]),
            (u64::MAX, QoS::AtLeastOnce, true, vec![]),
            (7, QoS::ExactlyOnce, false, vec![268_435_455])
        ]
    );
    let small = encode_compact_references(&[(1_000, &other), (1_001, &other), (1_002, &other)]);
    assert!(small.len() <= 1 + 1 + 3 + 2 * 3, "{} bytes", small.len());
    // Truncated anywhere, a trailing byte, a count larger than the record: refused, no panic.
    for cut in 1..compact.len() {
        assert!(
            decode_deliveries(&compact.slice(..cut), Duration::ZERO).is_none(),
            "cut at {cut}"
        );
    }
    let mut longer = compact.to_vec();
    longer.push(0);
    assert!(decode_deliveries(&Bytes::from(longer), Duration::ZERO).is_none());
    let claims = Bytes::from_static(&[0x03, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00, 0x01]);
    assert!(decode_deliveries(&claims, Duration::ZERO).is_none());
    // A varint of more than 64 bits.
    let wide = Bytes::from_static(&[
        0x03, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x01,
    ]);
    assert!(decode_deliveries(&wide, Duration::ZERO).is_none());
    // A whole message, as sessions stored them first, still reads.
    let whole = encode_message(&m, QoS::AtLeastOnce, false, &[1]);
    assert!(matches!(
        decode_deliveries(&whole, Duration::ZERO).as_deref(),
        Some([StoredDelivery::Whole(_, QoS::AtLeastOnce, false, _)])
    ));
}

#[test]
fn sessions_round_trip() {
    let s = SavedSession {
        expiry: 3600,
        subscriptions: vec![
            (
                "a/+".into(),
                SubscribeOptions::qos(QoS::AtLeastOnce),
                Some(5),
            ),
            (
                "$share/g/b/#".into(),
                SubscribeOptions {
                    retain_as_published: true,
                    ..SubscribeOptions::qos(QoS::ExactlyOnce)
                },
                None,
            ),
        ],
    };
    assert_eq!(decode_session(&encode_session(&s)), Some(s));
    assert_eq!(decode_session(&[1, 2]), None);
}

#[test]
fn a_routed_delivery_finds_its_reference_through_its_message() {
    let mut stored = Stored::default();
    // Found at restore: message 5 and a delivery given id 7 then.
    stored.add_message(5, rec(1, 0));
    stored.add_delivery(7, rec(4, 1), Some(5));
    // Routed since: message 10 to deliveries 11..=13 (12 went to a session that stores nothing),
    // message 20 to 21 and 22. Session A's record (2, 1) holds 11 and 21, session B's (3, 1)
    // holds 13 and (3, 2) holds 22.
    stored.add_routed_record(rec(2, 1), vec![11, 21]);
    stored.add_routed_record(rec(3, 1), vec![13]);
    stored.add_routed_record(rec(3, 2), vec![22]);
    stored.add_routed_message(10, rec(1, 1), vec![(13, rec(3, 1)), (11, rec(2, 1))]);
    stored.add_routed_message(20, rec(1, 2), vec![(21, rec(2, 1)), (22, rec(3, 2))]);
    let mut dead = Vec::new();
    stored.release_delivery(12, &mut dead);
    stored.release_delivery(11, &mut dead);
    assert!(
        dead.is_empty(),
        "12 was never stored; 11's record and message live on"
    );
    stored.release_delivery(13, &mut dead);
    assert_eq!(dead, vec![rec(3, 1), rec(1, 1)], "13 was message 10's last");
    stored.release_delivery(13, &mut dead);
    stored.release_delivery(7, &mut dead);
    assert_eq!(
        dead,
        vec![rec(3, 1), rec(1, 1), rec(4, 1), rec(1, 0)],
        "a second release is harmless; a restored delivery is found by its id"
    );
    dead.clear();
    // Session A ends: its record goes, with its live delivery 21 (11 is complete already).
    stored.release_record(rec(2, 1), &mut dead);
    assert_eq!(dead, vec![rec(2, 1)], "message 20 is still B's");
    dead.clear();
    stored.release_delivery(22, &mut dead);
    assert_eq!(dead, vec![rec(3, 2), rec(1, 2)]);
    assert!(stored.take_orphans().is_empty());
    // A delivery completed before its message was stored: its reference is not written.
    dead.clear();
    stored.release_delivery(31, &mut dead);
    assert!(dead.is_empty());
    let spec = RefSpec {
        stream: StreamId(2),
        delivery: 31,
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: Vec::new(),
    };
    assert!(stored.skip(&spec));
    assert!(!stored.skip(&spec), "once");
}

#[test]
fn a_session_ending_with_a_backlog_releases_every_message_it_held() {
    let mut stored = Stored::default();
    // 50 messages (keys 100, 110, …), each to sessions A (delivery key+1) and B (key+2); A's
    // references in two records, B's in one; one restored delivery of A beside them.
    let keys: Vec<u64> = (0..50).map(|i| 100 + 10 * i).collect();
    stored.add_message(5, rec(1, 999));
    stored.add_delivery(6, rec(2, 99), Some(5));
    let (a_first, a_second): (Vec<u64>, Vec<u64>) =
        keys.iter().map(|k| k + 1).partition(|d| *d < 300);
    stored.add_routed_record(rec(2, 1), a_first.iter().rev().copied().collect());
    stored.add_routed_record(rec(2, 2), a_second.clone());
    stored.add_routed_record(rec(3, 1), keys.iter().map(|k| k + 2).collect());
    for (i, k) in keys.iter().enumerate() {
        let a = if k + 1 < 300 { rec(2, 1) } else { rec(2, 2) };
        stored.add_routed_message(*k, rec(1, i as u64), vec![(k + 2, rec(3, 1)), (k + 1, a)]);
    }
    let mut dead = Vec::new();
    stored.release_record(rec(2, 99), &mut dead);
    assert_eq!(
        dead,
        vec![rec(1, 999), rec(2, 99)],
        "the restored one's message"
    );
    dead.clear();
    stored.release_record(rec(2, 1), &mut dead);
    stored.release_record(rec(2, 2), &mut dead);
    assert_eq!(
        dead,
        vec![rec(2, 1), rec(2, 2)],
        "every message is still B's"
    );
    // A delivery already complete is not released twice.
    stored.release_delivery(keys[0] + 2, &mut dead);
    dead.clear();
    stored.release_record(rec(3, 1), &mut dead);
    dead.sort_unstable();
    let mut want: Vec<RecordId> = (1..50).map(|i| rec(1, i)).collect();
    want.push(rec(3, 1));
    want.sort_unstable();
    assert_eq!(dead, want, "B's end frees the rest");
    assert!(stored.take_orphans().is_empty());
}

#[test]
fn a_message_record_carries_its_delivery_set() {
    let m = Message::new(
        "a/b",
        Bytes::from_static(b"payload"),
        QoS::AtLeastOnce,
        false,
    );
    let member = |stream: u64, retain: bool, ids: Vec<u32>| RefSpec {
        stream: StreamId(stream),
        delivery: 0,
        qos: QoS::AtLeastOnce,
        retain,
        subscription_ids: ids,
    };
    let set = vec![
        member(3, false, vec![]),
        member(300_000, true, vec![7, 268_435_455]),
    ];
    let rec = encode_message_record(u64::MAX - 5, &m, &set);
    let (key, back, got) = decode_message_record(&rec, Duration::ZERO).expect("decodes");
    assert_eq!(
        (key, &*back.topic, &back.payload[..]),
        (u64::MAX - 5, "a/b", &b"payload"[..])
    );
    assert_eq!(
        got,
        vec![
            SetMember {
                stream: StreamId(3),
                retain: false,
                subscription_ids: vec![],
            },
            SetMember {
                stream: StreamId(300_000),
                retain: true,
                subscription_ids: vec![7, 268_435_455],
            },
        ]
    );
    // Damaged: cut anywhere, or a set claiming more members than it has, does not decode.
    for cut in 1..rec.len() {
        assert!(
            decode_message_record(&rec.slice(..cut), Duration::ZERO).is_none(),
            "cut at {cut}"
        );
    }
    let mut claims = rec.to_vec();
    claims[9] = 0x7F;
    assert!(decode_message_record(&Bytes::from(claims), Duration::ZERO).is_none());
    let mut flags = rec.to_vec();
    flags[11] = 0x01;
    assert!(decode_message_record(&Bytes::from(flags), Duration::ZERO).is_none());
    // Cursors.
    assert_eq!(decode_cursor(&encode_cursor(77)), Some(77));
    assert_eq!(decode_cursor(&encode_cursor(77)[..8]), None);
    assert_eq!(decode_cursor(&rec), None);
}

#[test]
fn a_cursor_moves_past_complete_set_deliveries_only() {
    let mut stored = Stored::default();
    let a = StreamId(2);
    let b = StreamId(3);
    // Messages 10, 20, 30, each to A (delivery key+1) in the set and to B (key+2) in the set.
    for (i, k) in [10u64, 20, 30].into_iter().enumerate() {
        stored.add_routed_message(
            k,
            rec(1, i as u64),
            vec![(k + 2, Stored::in_set(b)), (k + 1, Stored::in_set(a))],
        );
    }
    let mut dead = Vec::new();
    // A completes 21 first: its cursor stays at 10.
    stored.release_delivery(21, &mut dead);
    assert!(stored.take_cursor_moves().is_empty());
    stored.release_delivery(11, &mut dead);
    assert_eq!(stored.take_cursor_moves(), vec![(a, 30, None)]);
    assert_eq!(
        stored.cursor(a),
        30,
        "a key below is now put in a reference"
    );
    assert!(dead.is_empty(), "B still needs every message");
    assert_eq!(stored.cursor_stored(a, rec(2, 5)), None);
    stored.release_delivery(31, &mut dead);
    assert_eq!(
        stored.take_cursor_moves(),
        vec![(a, 31, Some(rec(2, 5)))],
        "past the last; the old cursor record is to go"
    );
    // B's session ends with all three pending: every message goes.
    stored.release_delivery(12, &mut dead);
    assert_eq!(dead, vec![rec(1, 0)]);
    dead.clear();
    stored.release_set(b, &mut dead);
    assert_eq!(dead, vec![rec(1, 1), rec(1, 2)]);
    assert!(stored.take_orphans().is_empty());
    assert_eq!(stored.cursor(b), 0);
    // A restored set delivery is found through its message; a superseded cursor record is
    // returned.
    let mut stored = Stored::default();
    assert_eq!(stored.add_cursor(a, 40, rec(2, 1)), None);
    assert_eq!(stored.add_cursor(a, 35, rec(2, 0)), Some(rec(2, 0)));
    assert_eq!(stored.add_cursor(a, 50, rec(2, 2)), Some(rec(2, 1)));
    stored.add_message(60, rec(1, 9));
    assert!(stored.add_restored_set(60, a, 0));
    assert!(!stored.add_restored_set(70, a, 0), "no message 70");
    let mut dead = Vec::new();
    stored.release_delivery(61, &mut dead);
    assert_eq!(dead, vec![rec(1, 9)]);
    assert_eq!(stored.take_cursor_moves(), vec![(a, 61, Some(rec(2, 2)))]);
}

/// The floor rule (ADR 0023): a QoS 1 delivery whose key is below its session's cursor (its
/// publisher's job reached the task after a later key's delivery completed) is written as a
/// reference of its own, not as a set member the cursor would already call complete; a later key
/// joins the set.
#[tokio::test]
async fn a_delivery_below_its_sessions_cursor_gets_a_reference_of_its_own() {
    use super::batch::{finish_batch, send_batch};
    let dir = tempfile::tempdir().unwrap();
    let store =
        outpost_store::Store::open(dir.path(), outpost_store::StoreConfig::default()).unwrap();
    let messages = store.stream(MESSAGES_STREAM).unwrap();
    let session = store.stream("mqtt/session/s#1").unwrap();
    let broker = std::sync::Arc::new(crate::Broker::new(Default::default()));
    let mut stored = Stored::default();
    let job = |key: u64| {
        let (done, rx) = oneshot::channel();
        let job = Job::Store {
            message: std::sync::Arc::new(Message::new(
                "t",
                Bytes::from_static(b"m"),
                QoS::AtLeastOnce,
                false,
            )),
            key,
            refs: vec![RefSpec {
                stream: session,
                delivery: key + 1,
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: Vec::new(),
            }],
            done,
        };
        (job, rx)
    };
    // Key 20 is stored in the set and completes: the cursor moves past it.
    let (j20, rx20) = job(20);
    let mut sent = send_batch(&store, messages, &mut stored, vec![j20]).expect("sent");
    let written = sent.written().await;
    finish_batch(&broker, &store, &mut stored, sent, written).await;
    assert_eq!(rx20.await.unwrap(), Ok(()));
    let mut dead = Vec::new();
    stored.release_delivery(21, &mut dead);
    assert_eq!(stored.take_cursor_moves(), vec![(session, 21, None)]);
    // Key 10 arrives now, and key 30.
    let (j10, rx10) = job(10);
    let (j30, rx30) = job(30);
    let mut sent = send_batch(&store, messages, &mut stored, vec![j10, j30]).expect("sent");
    let written = sent.written().await;
    finish_batch(&broker, &store, &mut stored, sent, written).await;
    assert_eq!((rx10.await.unwrap(), rx30.await.unwrap()), (Ok(()), Ok(())));
    let sets: Vec<(u64, usize)> = store
        .scan(messages, 0, usize::MAX)
        .iter()
        .map(|r| {
            let (key, _, set) = decode_message_record(&r.payload, Duration::ZERO).unwrap();
            (key, set.len())
        })
        .collect();
    assert_eq!(sets, [(20, 1), (10, 0), (30, 1)]);
    let references: Vec<u64> = store
        .scan(session, 0, usize::MAX)
        .iter()
        .flat_map(|r| decode_deliveries(&r.payload, Duration::ZERO).unwrap())
        .map(|d| match d {
            StoredDelivery::Reference { key, .. } => key,
            StoredDelivery::Whole(..) => panic!("a reference"),
        })
        .collect();
    assert_eq!(references, [10], "key 10 has a reference record of its own");
}
