//! Fault injection: damaged segment files are detected and handled (skipped or cut, with a log line),
//! never a panic, never a damaged record returned, and the store keeps working afterwards.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use outpost_store::*;

const N: usize = 50;

fn config() -> StoreConfig {
    StoreConfig {
        segment_size: 1024 * 1024,
        ..StoreConfig::default()
    }
}

fn payload(i: usize) -> Bytes {
    Bytes::from(vec![(i % 250) as u8 + 1; 100 + i])
}

/// Writes N records into one segment; returns their ids and each record's offset in the file.
fn populate(dir: &Path) -> (Vec<RecordId>, Vec<u64>) {
    let store = Store::open(dir, config()).unwrap();
    let s = store.stream("s").unwrap();
    let ids = (0..N)
        .map(|i| store.append_blocking(s, payload(i)).unwrap())
        .collect();
    // Segment start record, then the records back to back.
    let mut offsets = Vec::new();
    let mut at = RECORD_OVERHEAD as u64;
    for i in 0..N {
        offsets.push(at);
        at += (RECORD_OVERHEAD + payload(i).len()) as u64;
    }
    (ids, offsets)
}

fn only_segment(dir: &Path) -> PathBuf {
    let segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    assert_eq!(segs.len(), 1);
    segs[0].clone()
}

fn flip(path: &Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], at).unwrap();
}

/// Reopens, checks which records survive, then checks the store still appends and reopens. Damage at
/// the tail is repaired (cut and zeroed); a hole in the middle of the log stays, and is reported again
/// at each open, until compaction retires its segment.
fn reopen_and_check(dir: &Path, ids: &[RecordId], lost: &[usize], tail: bool) -> RecoveryReport {
    let store = Store::open(dir, config()).unwrap();
    let report = store.stats().recovery;
    for (i, id) in ids.iter().enumerate() {
        match store.read(*id) {
            Some(r) => {
                assert!(!lost.contains(&i), "record {i} should be gone");
                assert_eq!(r.payload, payload(i), "record {i} intact");
            }
            None => assert!(lost.contains(&i), "record {i} lost"),
        }
    }
    let s = store.stream("s").unwrap();
    let extra = store.append_blocking(s, &b"after repair"[..]).unwrap();
    drop(store);
    let store = Store::open(dir, config()).unwrap();
    let again = store.stats().recovery.damaged;
    if tail {
        assert_eq!(again, 0, "the repair left a clean log");
    } else {
        assert_eq!(
            again, report.damaged,
            "a hole in the middle is reported, not hidden"
        );
    }
    assert_eq!(
        store.read(extra).unwrap().payload,
        Bytes::from("after repair")
    );
    report
}

#[test]
fn torn_tail_is_cut() {
    for cut in [1u64, 7, 39, 41, 90] {
        let dir = tempfile::tempdir().unwrap();
        let (ids, offsets) = populate(dir.path());
        let seg = only_segment(dir.path());
        let last = offsets[N - 1];
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(last + cut)
            .unwrap();
        let report = reopen_and_check(dir.path(), &ids, &[N - 1], true);
        assert_eq!(report.damaged, 1, "cut at +{cut}");
    }
}

#[test]
fn bit_flip_in_the_last_record_loses_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, offsets) = populate(dir.path());
    flip(&only_segment(dir.path()), offsets[N - 1] + 60);
    let report = reopen_and_check(dir.path(), &ids, &[N - 1], true);
    assert_eq!(report.damaged, 1);
}

#[test]
fn bit_flip_in_the_middle_skips_one_record_and_keeps_the_rest() {
    for field in [0u64, 5, 9, 20, 45] {
        let dir = tempfile::tempdir().unwrap();
        let (ids, offsets) = populate(dir.path());
        flip(&only_segment(dir.path()), offsets[20] + field);
        let report = reopen_and_check(dir.path(), &ids, &[20], false);
        assert_eq!(report.damaged, 1, "flip at +{field}");
    }
}

#[test]
fn garbage_after_the_tail_is_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, offsets) = populate(dir.path());
    let end = offsets[N - 1] + (RECORD_OVERHEAD + payload(N - 1).len()) as u64;
    let f = OpenOptions::new()
        .write(true)
        .open(only_segment(dir.path()))
        .unwrap();
    f.write_all_at(&[0xAB; 333], end + 17).unwrap();
    let report = reopen_and_check(dir.path(), &ids, &[], true);
    assert_eq!(report.damaged, 1);
}

#[test]
fn zeroed_middle_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, offsets) = populate(dir.path());
    let f = OpenOptions::new()
        .write(true)
        .open(only_segment(dir.path()))
        .unwrap();
    // Zero records 10 and 11 entirely (a lost write in the middle).
    f.write_all_at(
        &vec![0u8; (offsets[12] - offsets[10]) as usize],
        offsets[10],
    )
    .unwrap();
    let report = reopen_and_check(dir.path(), &ids, &[10, 11], false);
    assert_eq!(report.damaged, 1);
}

#[test]
fn a_segment_file_left_empty_by_a_crash_is_sized_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, _) = populate(dir.path());
    // A crash between creating the next segment file and sizing it leaves an empty file behind.
    let next = dir.path().join(format!("{:016x}.seg", 1));
    std::fs::File::create(&next).unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    let s = store.stream("s").unwrap();
    let fresh: Vec<_> = (0..20)
        .map(|i| store.append_blocking(s, payload(i)).unwrap())
        .collect();
    for (i, id) in fresh.iter().enumerate() {
        assert_eq!(
            store.read(*id).unwrap().payload,
            payload(i),
            "readable before a restart"
        );
    }
    drop(store);
    let store = Store::open(dir.path(), config()).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(store.read(*id).unwrap().payload, payload(i));
    }
    for (i, id) in fresh.iter().enumerate() {
        assert_eq!(store.read(*id).unwrap().payload, payload(i));
    }
}
