//! The store's API against a real folder: append, read, scan, delete, reopen, retention, limits.

use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_store::*;

fn config() -> StoreConfig {
    StoreConfig {
        segment_size: 64 * 1024,
        ..StoreConfig::default()
    }
}

/// Waits for a condition with a deadline instead of sleeping a fixed time.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn append_read_scan_delete_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, q) = {
        let store = Store::open(dir.path(), config()).unwrap();
        let q = store.stream("queue/orders").unwrap();
        assert_eq!(
            store.stream("queue/orders").unwrap(),
            q,
            "stream ids are stable"
        );
        let other = store.stream("session/dev-1").unwrap();
        assert_ne!(q, other);
        let mut ids = Vec::new();
        for i in 0..100u32 {
            ids.push(
                store
                    .append_blocking(q, format!("order {i}").into_bytes())
                    .unwrap(),
            );
        }
        store.append_blocking(other, &b"elsewhere"[..]).unwrap();
        assert!(
            ids.windows(2).all(|w| w[0].seq < w[1].seq),
            "sequence numbers grow"
        );
        assert_eq!(store.read(ids[7]).unwrap().payload, Bytes::from("order 7"));
        assert_eq!(store.mark_dead_blocking(&ids[..50]).unwrap(), 50);
        assert_eq!(
            store.mark_dead_blocking(&ids[..1]).unwrap(),
            0,
            "dead twice counts once"
        );
        assert!(store.read(ids[0]).is_none());
        let live = store.scan(q, 0, 1000);
        assert_eq!(live.len(), 50);
        assert_eq!(live[0].payload, Bytes::from("order 50"));
        assert_eq!(store.stream_size(q).0, 50);
        (ids, q)
    };
    let store = Store::open(dir.path(), config()).unwrap();
    assert_eq!(store.stream("queue/orders").unwrap(), q);
    assert!(store.read(ids[10]).is_none(), "deletes survive a restart");
    assert_eq!(
        store.read(ids[99]).unwrap().payload,
        Bytes::from("order 99")
    );
    let next = store.append_blocking(q, &b"after"[..]).unwrap();
    assert!(
        next.seq > ids[99].seq,
        "sequence numbers are never reused after a restart"
    );
    let names: Vec<String> = store
        .streams()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["queue/orders", "session/dev-1"]);
}

#[test]
fn scan_pages_through_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    let s = store.stream("s").unwrap();
    let ids = store
        .append_batch_blocking(s, (0..25u8).map(|i| Bytes::from(vec![i; 10])).collect())
        .unwrap();
    let mut from = 0;
    let mut seen = Vec::new();
    loop {
        let page = store.scan(s, from, 10);
        let Some(last) = page.last() else { break };
        from = last.id.seq + 1;
        seen.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(seen, ids);
}

#[test]
fn records_roll_across_many_segments_and_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    let s = store.stream("big").unwrap();
    let payload = |i: u32| Bytes::from(vec![(i % 251) as u8; 1000 + (i as usize % 3000)]);
    let ids: Vec<_> = (0..300)
        .map(|i| store.append_blocking(s, payload(i)).unwrap())
        .collect();
    assert!(store.stats().segments > 5, "{:?}", store.stats());
    drop(store);
    let store = Store::open(dir.path(), config()).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(store.read(*id).unwrap().payload, payload(i as u32));
    }
}

#[test]
fn concurrent_writers_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let s = store.stream("s").unwrap();
    let per = 200;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..per)
                    .map(|i| {
                        store
                            .append_blocking(s, format!("{t}/{i}").into_bytes())
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<RecordId> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(ids.len(), 8 * per);
    let stats = store.stats();
    assert!(
        stats.syncs < ids.len() as u64,
        "group commit: {} syncs for {} appends",
        stats.syncs,
        ids.len()
    );
    let mut seqs: Vec<u64> = ids.iter().map(|i| i.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        ids.len(),
        "every append got its own sequence number"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_api_and_sync_policies() {
    for sync in [
        SyncPolicy::Always,
        SyncPolicy::Interval(Duration::from_millis(20)),
        SyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig { sync, ..config() }).unwrap();
        let s = store.stream("a").unwrap();
        let id = store.append(s, &b"x"[..]).await.unwrap();
        let ids = store
            .append_batch(s, vec![Bytes::from("y"), Bytes::from("z")])
            .await
            .unwrap();
        store.sync().await.unwrap();
        assert_eq!(store.read(ids[1]).unwrap().payload, Bytes::from("z"));
        assert_eq!(store.mark_dead(&[id]).await.unwrap(), 1);
    }
}

#[test]
fn oversized_record_is_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    let s = store.stream("s").unwrap();
    let err = store.append_blocking(s, vec![0u8; 70 * 1024]).unwrap_err();
    assert!(matches!(err, StoreError::RecordTooLarge { .. }), "{err}");
    // The store still works.
    store.append_blocking(s, &b"fine"[..]).unwrap();
}

#[test]
fn a_second_process_cannot_open_the_same_folder() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path(), config()).unwrap();
    assert!(matches!(
        Store::open(dir.path(), config()),
        Err(StoreError::Locked)
    ));
}

#[test]
fn retention_by_age_and_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        reclaim_interval: Duration::from_millis(20),
        ..config()
    };
    let store = Store::open(dir.path(), cfg.clone()).unwrap();
    let by_bytes = store.stream("bytes").unwrap();
    store
        .set_retention(
            by_bytes,
            Retention {
                max_age: None,
                max_bytes: Some(1000),
            },
        )
        .unwrap();
    let ids: Vec<_> = (0..10)
        .map(|_| store.append_blocking(by_bytes, vec![1u8; 300]).unwrap())
        .collect();
    eventually("max_bytes to drop the oldest", || {
        store.stream_size(by_bytes).1 <= 1000
    });
    assert!(store.read(ids[9]).is_some(), "newest records stay");
    assert!(store.read(ids[0]).is_none(), "oldest records go");

    let by_age = store.stream("age").unwrap();
    store
        .set_retention(
            by_age,
            Retention {
                max_age: Some(Duration::from_millis(200)),
                max_bytes: None,
            },
        )
        .unwrap();
    let old = store.append_blocking(by_age, &b"old"[..]).unwrap();
    eventually("max_age to expire the record", || store.read(old).is_none());
    drop(store);
    // Expired records stay gone after a restart, and the rule is remembered.
    let store = Store::open(dir.path(), cfg).unwrap();
    assert!(store.read(old).is_none());
    assert!(store.read(ids[0]).is_none());
    let fresh = store.append_blocking(by_age, &b"new"[..]).unwrap();
    eventually("the remembered rule to expire a new record", || {
        store.read(fresh).is_none()
    });
}

#[test]
fn metadata_is_transactional_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), config()).unwrap();
        let meta = store.meta();
        meta.apply(&[
            MetaOp::Put {
                table: "queues",
                key: b"q/a",
                value: b"1",
            },
            MetaOp::Put {
                table: "queues",
                key: b"q/b",
                value: b"2",
            },
            MetaOp::Put {
                table: "queues",
                key: b"r/c",
                value: b"3",
            },
        ])
        .unwrap();
        meta.apply(&[MetaOp::Delete {
            table: "queues",
            key: b"q/a",
        }])
        .unwrap();
    }
    let store = Store::open(dir.path(), config()).unwrap();
    let meta = store.meta();
    assert_eq!(
        meta.get("queues", b"q/b").unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(meta.get("queues", b"q/a").unwrap(), None);
    assert_eq!(meta.get("missing-table", b"x").unwrap(), None);
    let q: Vec<_> = meta.scan("queues", b"q/").unwrap();
    assert_eq!(q, vec![(b"q/b".to_vec(), b"2".to_vec())]);
}

#[test]
fn removed_streams_leave_the_registry_and_come_back_new() {
    let dir = tempfile::tempdir().unwrap();
    let old = {
        let store = Store::open(dir.path(), config()).unwrap();
        let s = store.stream("session/gone").unwrap();
        let ids = store
            .append_batch_blocking(s, vec![Bytes::from_static(b"x")])
            .unwrap();
        store.mark_dead_blocking(&ids).unwrap();
        store.remove_stream("session/gone").unwrap();
        store.remove_stream("never/existed").unwrap();
        assert!(store.streams().unwrap().is_empty(), "the name is gone");
        s
    };
    let store = Store::open(dir.path(), config()).unwrap();
    assert!(store.streams().unwrap().is_empty(), "and stays gone");
    let again = store.stream("session/gone").unwrap();
    assert_ne!(again, old, "a new stream, not the old one");
    assert!(store.scan(again, 0, usize::MAX).is_empty());
}
