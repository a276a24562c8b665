//! Reclamation under a steady produce/consume load: ten times (and more) the segment size pushed
//! through, disk use stays a small multiple of the live data, long-lived records survive compaction.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::Bytes;
use outpost_store::*;

const SEGMENT: u64 = 64 * 1024;

/// Bytes the segment files really occupy on disk (allocated blocks; the files are sparse).
fn disk_usage(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .map(|e| e.metadata().unwrap().blocks() * 512)
        .sum()
}

#[test]
fn disk_use_stays_bounded_under_steady_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        segment_size: SEGMENT,
        sync: SyncPolicy::Never,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), config.clone()).unwrap();
    let q = store.stream("queue").unwrap();
    let retained = store.stream("retained").unwrap();
    // A few records that live for the whole test, like retained messages: they pin the oldest
    // segments until compaction moves them.
    let keep: Vec<_> = (0..5)
        .map(|i| {
            store
                .append_blocking(retained, Bytes::from(vec![i; 700]))
                .unwrap()
        })
        .collect();

    let payload = Bytes::from(vec![0x5a; 1000]);
    let lag = 20; // live queue depth
    let mut inflight = std::collections::VecDeque::new();
    let mut pushed = 0u64;
    let mut peak = 0;
    while pushed < 30 * SEGMENT {
        inflight.push_back(store.append_blocking(q, payload.clone()).unwrap());
        pushed += payload.len() as u64;
        if inflight.len() > lag {
            let done = inflight.pop_front().unwrap();
            store.mark_dead_blocking(&[done]).unwrap();
        }
        if pushed % (8 * 1024) < 1000 {
            peak = peak.max(disk_usage(dir.path()));
            store.reclaim_now();
            peak = peak.max(disk_usage(dir.path()));
        }
    }
    store.reclaim_now();
    let stats = store.stats();
    let live = stats.live_bytes;
    eprintln!("pushed {pushed} B, live {live} B, peak disk {peak} B, {stats:?}");
    assert!(
        stats.deleted_segments >= 20,
        "dead segments are deleted: {stats:?}"
    );
    assert!(
        stats.compactions >= 1,
        "long-lived records were compacted forward: {stats:?}"
    );
    // Live data is ~25 KiB; allow the active segment, one being filled/compacted and twice live.
    assert!(
        peak <= 3 * SEGMENT + 2 * live,
        "peak disk {peak} B for {live} B live"
    );
    for (i, id) in keep.iter().enumerate() {
        assert_eq!(
            store.read(*id).unwrap().payload,
            Bytes::from(vec![i as u8; 700])
        );
    }
    drop(store);
    let store = Store::open(dir.path(), config).unwrap();
    for (i, id) in keep.iter().enumerate() {
        assert_eq!(
            store.read(*id).unwrap().payload,
            Bytes::from(vec![i as u8; 700]),
            "after restart"
        );
    }
    assert_eq!(store.stream_size(q).0, lag as u64);
}
