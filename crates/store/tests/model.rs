//! Model-based test: random sequences of appends, deletes, reclamation passes and restarts, checked
//! after every step against a plain in-memory map of what should be live.

use std::collections::BTreeMap;

use bytes::Bytes;
use outpost_store::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append { stream: u8, len: usize, fill: u8 },
    AppendBatch { stream: u8, count: usize },
    Delete { pick: prop::sample::Index },
    DeleteMany { count: usize },
    Reclaim,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 0usize..1500, any::<u8>()).prop_map(|(stream, len, fill)| Op::Append { stream, len, fill }),
        2 => (0u8..3, 1usize..12).prop_map(|(stream, count)| Op::AppendBatch { stream, count }),
        4 => any::<prop::sample::Index>().prop_map(|pick| Op::Delete { pick }),
        1 => (1usize..20).prop_map(|count| Op::DeleteMany { count }),
        1 => Just(Op::Reclaim),
        1 => Just(Op::Reopen),
    ]
}

fn config() -> StoreConfig {
    StoreConfig {
        // Small segments: rolls, compaction and segment deletion happen within a few dozen ops.
        segment_size: 8 * 1024,
        sync: SyncPolicy::Never,
        compact_below: 0.5,
        ..StoreConfig::default()
    }
}

fn check(store: &Store, streams: &[StreamId], model: &BTreeMap<RecordId, Bytes>) {
    for (id, payload) in model {
        let got = store.read(*id).unwrap_or_else(|| panic!("{id:?} missing"));
        assert_eq!(&got.payload, payload, "{id:?}");
    }
    for s in streams {
        let live: Vec<RecordId> = store
            .scan(*s, 0, usize::MAX)
            .into_iter()
            .map(|r| r.id)
            .collect();
        let expected: Vec<RecordId> = model.keys().filter(|id| id.stream == *s).copied().collect();
        assert_eq!(live, expected, "stream {s:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), config()).unwrap();
        let streams: Vec<StreamId> = (0..3).map(|i| store.stream(&format!("s{i}")).unwrap()).collect();
        let mut model: BTreeMap<RecordId, Bytes> = BTreeMap::new();
        let mut max_seq = 0;
        for op in ops {
            match op {
                Op::Append { stream, len, fill } => {
                    let payload = Bytes::from(vec![fill; len]);
                    let id = store.append_blocking(streams[stream as usize], payload.clone()).unwrap();
                    prop_assert!(id.seq > max_seq, "sequence numbers only grow");
                    max_seq = id.seq;
                    model.insert(id, payload);
                }
                Op::AppendBatch { stream, count } => {
                    let payloads: Vec<Bytes> = (0..count).map(|i| Bytes::from(vec![i as u8; 100 + i])).collect();
                    let ids = store.append_batch_blocking(streams[stream as usize], payloads.clone()).unwrap();
                    for (id, p) in ids.into_iter().zip(payloads) {
                        prop_assert!(id.seq > max_seq);
                        max_seq = id.seq;
                        model.insert(id, p);
                    }
                }
                Op::Delete { pick } => {
                    if model.is_empty() { continue; }
                    let id = *model.keys().nth(pick.index(model.len())).unwrap();
                    prop_assert_eq!(store.mark_dead_blocking(&[id]).unwrap(), 1);
                    model.remove(&id);
                }
                Op::DeleteMany { count } => {
                    let ids: Vec<RecordId> = model.keys().take(count).copied().collect();
                    prop_assert_eq!(store.mark_dead_blocking(&ids).unwrap(), ids.len());
                    for id in ids { model.remove(&id); }
                }
                Op::Reclaim => store.reclaim_now(),
                Op::Reopen => {
                    drop(store);
                    store = Store::open(dir.path(), config()).unwrap();
                    prop_assert_eq!(store.stats().recovery.damaged, 0, "a clean stop leaves no damage");
                }
            }
            check(&store, &streams, &model);
        }
        // Whatever happened, a final reclaim and restart keep exactly the model.
        store.reclaim_now();
        drop(store);
        let store = Store::open(dir.path(), config()).unwrap();
        check(&store, &streams, &model);
        let stats = store.stats();
        prop_assert_eq!(stats.live_records, model.len() as u64);
    }
}
