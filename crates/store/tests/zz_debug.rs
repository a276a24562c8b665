mod support;
use outpost_store::*;
use support::payload::Acks;
#[test]
fn dbg() {
    let mut acks = Acks::default();
    for l in std::fs::read_to_string("/tmp/tort.out").unwrap().lines() {
        acks.line(l);
    }
    let store = Store::open(
        "/tmp/tort",
        StoreConfig {
            segment_size: 262_144,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    eprintln!("{:?}", store.stats());
    let mut lost = Vec::new();
    for (&(s, q), &(w, n)) in &acks.appended {
        if acks.deleted.contains(&(s, q)) || acks.requested.contains(&(s, q)) {
            continue;
        }
        if store
            .read(RecordId {
                stream: StreamId(s),
                seq: q,
            })
            .is_none()
        {
            lost.push((q, w, n));
        }
    }
    lost.sort();
    eprintln!(
        "LOST {} of {}: {:?}",
        lost.len(),
        acks.appended.len(),
        &lost[..lost.len().min(20)]
    );
    assert!(lost.is_empty());
}
