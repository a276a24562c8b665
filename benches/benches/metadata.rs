//! The metadata access pattern Outpost has — per-message queue state (receive count, visibility
//! deadline, receipt handle; ~32 B values keyed by queue and sequence number) — on `sled` 0.34 and
//! `redb`, with the same durability (synced before returning). The figures chose the metadata engine:
//! see `docs/adr/0001-metadata-store.md`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use outpost_store::{MetaOp, MetaStore, RedbMeta};
use redb::ReadableDatabase;

const TABLE: &str = "message_state";
const STATE: [u8; 32] = [7; 32];

fn key(queue: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&queue.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

// `let x = ..; x` keeps redb read guards alive until the value is computed (tail temporaries would
// outlive the table they borrow).
#[allow(clippy::let_and_return)]
fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("metadata");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    let dir = tempfile::tempdir().unwrap();
    let sled_db = sled::open(dir.path().join("sled")).unwrap();
    let redb_db = redb::Database::create(dir.path().join("redb")).unwrap();
    let meta = RedbMeta::open(&dir.path().join("meta")).unwrap();
    let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(TABLE);
    let mut seq = 0u64;

    // Preload 10,000 entries in queue 1 for reads and scans.
    {
        let tx = redb_db.begin_write().unwrap();
        {
            let mut t = tx.open_table(table).unwrap();
            for i in 0..10_000 {
                t.insert(&key(1, i)[..], &STATE[..]).unwrap();
            }
        }
        tx.commit().unwrap();
        for i in 0..10_000 {
            sled_db.insert(key(1, i), &STATE[..]).unwrap();
            meta.apply(&[MetaOp::Put {
                table: TABLE,
                key: &key(1, i),
                value: &STATE,
            }])
            .unwrap();
        }
        sled_db.flush().unwrap();
    }

    group.throughput(Throughput::Elements(1));
    group.bench_function("put-durable/sled", |b| {
        b.iter(|| {
            seq += 1;
            sled_db.insert(key(2, seq), &STATE[..]).unwrap();
            sled_db.flush().unwrap();
        })
    });
    group.bench_function("put-durable/redb", |b| {
        b.iter(|| {
            seq += 1;
            let tx = redb_db.begin_write().unwrap();
            tx.open_table(table)
                .unwrap()
                .insert(&key(2, seq)[..], &STATE[..])
                .unwrap();
            tx.commit().unwrap();
        })
    });
    group.bench_function("put-durable/outpost-meta-redb", |b| {
        b.iter(|| {
            seq += 1;
            meta.apply(&[MetaOp::Put {
                table: TABLE,
                key: &key(2, seq),
                value: &STATE,
            }])
            .unwrap();
        })
    });

    group.throughput(Throughput::Elements(10));
    group.bench_function("put10-one-txn/sled", |b| {
        b.iter(|| {
            let mut batch = sled::Batch::default();
            for _ in 0..10 {
                seq += 1;
                batch.insert(&key(3, seq)[..], &STATE[..]);
            }
            sled_db.apply_batch(batch).unwrap();
            sled_db.flush().unwrap();
        })
    });
    group.bench_function("put10-one-txn/redb", |b| {
        b.iter(|| {
            let tx = redb_db.begin_write().unwrap();
            {
                let mut t = tx.open_table(table).unwrap();
                for _ in 0..10 {
                    seq += 1;
                    t.insert(&key(3, seq)[..], &STATE[..]).unwrap();
                }
            }
            tx.commit().unwrap();
        })
    });

    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("get/sled", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            sled_db.get(key(1, i)).unwrap().unwrap().len()
        })
    });
    group.bench_function("get/redb", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            let tx = redb_db.begin_read().unwrap();
            let t = tx.open_table(table).unwrap();
            let v = t.get(&key(1, i)[..]).unwrap().unwrap().value().len();
            v
        })
    });

    group.bench_function("delete-durable/sled", |b| {
        b.iter_batched(
            || {
                seq += 1;
                sled_db.insert(key(4, seq), &STATE[..]).unwrap();
                seq
            },
            |s| {
                sled_db.remove(key(4, s)).unwrap();
                sled_db.flush().unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("delete-durable/redb", |b| {
        b.iter_batched(
            || {
                seq += 1;
                let tx = redb_db.begin_write().unwrap();
                tx.open_table(table)
                    .unwrap()
                    .insert(&key(4, seq)[..], &STATE[..])
                    .unwrap();
                tx.commit().unwrap();
                seq
            },
            |s| {
                let tx = redb_db.begin_write().unwrap();
                tx.open_table(table)
                    .unwrap()
                    .remove(&key(4, s)[..])
                    .unwrap();
                tx.commit().unwrap();
            },
            BatchSize::SmallInput,
        )
    });

    group.throughput(Throughput::Elements(100));
    group.bench_function("scan100/sled", |b| {
        b.iter(|| {
            i = (i + 7919) % 9_800;
            sled_db.range(key(1, i)..).take(100).count()
        })
    });
    group.bench_function("scan100/redb", |b| {
        b.iter(|| {
            i = (i + 7919) % 9_800;
            let tx = redb_db.begin_read().unwrap();
            let t = tx.open_table(table).unwrap();
            let n = t.range(&key(1, i)[..]..).unwrap().take(100).count();
            n
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
