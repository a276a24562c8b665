//! Durable append throughput of the segment log against the same records written durably to `sled`
//! and `redb`, and against the raw limit: a plain sequential `write` + `fdatasync` of the same bytes.
//! Also read throughput and recovery time for 1,000,000 records.
//!
//! Durability is the same everywhere: an append counts only once it has been synced (Outpost
//! `SyncPolicy::Always`, `sled` `flush()`, `redb` commit with immediate durability). W writer threads
//! append concurrently; the raw limit gets the best case for W writers — one `fdatasync` per W records.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use outpost_store::{Store, StoreConfig, SyncPolicy, RECORD_OVERHEAD};

const SIZES: [usize; 3] = [64, 1024, 64 * 1024];
const WRITERS: [usize; 3] = [1, 8, 64];

/// Runs `total` operations spread over `writers` threads; `op(thread, i)` does one.
fn parallel(total: u64, writers: usize, op: impl Fn(usize, u64) + Sync) -> Duration {
    let next = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..writers {
            let (next, op) = (&next, &op);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                op(t, i);
            });
        }
    });
    start.elapsed()
}

fn bench_append(c: &mut Criterion) {
    for size in SIZES {
        let mut group = c.benchmark_group(format!("durable_append_{size}B"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        group.throughput(Throughput::Elements(1));
        let payload = Bytes::from(vec![0xA5u8; size]);
        for writers in WRITERS {
            // Raw limit: the same bytes (record header included), sequential, one sync per `writers`.
            group.bench_with_input(
                BenchmarkId::new("raw-write-fdatasync", writers),
                &writers,
                |b, &w| {
                    let dir = tempfile::tempdir().unwrap();
                    let mut f = File::create(dir.path().join("raw")).unwrap();
                    let record = vec![0xA5u8; size + RECORD_OVERHEAD];
                    let mut batch = Vec::with_capacity(record.len() * w);
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        let mut left = iters;
                        while left > 0 {
                            let n = left.min(w as u64);
                            batch.clear();
                            for _ in 0..n {
                                batch.extend_from_slice(&record);
                            }
                            f.write_all(&batch).unwrap();
                            f.sync_data().unwrap();
                            left -= n;
                        }
                        start.elapsed()
                    });
                },
            );
            group.bench_with_input(BenchmarkId::new("outpost", writers), &writers, |b, &w| {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
                let s = store.stream("bench").unwrap();
                b.iter_custom(|iters| {
                    parallel(iters, w, |_, _| {
                        store.append_blocking(s, payload.clone()).unwrap();
                    })
                });
            });
            // The broker appends from async tasks, not OS threads: W tasks on a 2-thread runtime.
            group.bench_with_input(
                BenchmarkId::new("outpost-async", writers),
                &writers,
                |b, &w| {
                    let dir = tempfile::tempdir().unwrap();
                    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
                    let s = store.stream("bench").unwrap();
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .build()
                        .unwrap();
                    b.iter_custom(|iters| {
                        let next = Arc::new(AtomicU64::new(0));
                        let start = Instant::now();
                        rt.block_on(async {
                            let tasks: Vec<_> = (0..w)
                                .map(|_| {
                                    let (store, next, payload) =
                                        (store.clone(), next.clone(), payload.clone());
                                    tokio::spawn(async move {
                                        while next.fetch_add(1, Ordering::Relaxed) < iters {
                                            store.append(s, payload.clone()).await.unwrap();
                                        }
                                    })
                                })
                                .collect();
                            for t in tasks {
                                t.await.unwrap();
                            }
                        });
                        start.elapsed()
                    });
                },
            );
            group.bench_with_input(BenchmarkId::new("sled", writers), &writers, |b, &w| {
                let dir = tempfile::tempdir().unwrap();
                let db = sled::open(dir.path()).unwrap();
                let seq = AtomicU64::new(0);
                b.iter_custom(|iters| {
                    parallel(iters, w, |_, _| {
                        let k = seq.fetch_add(1, Ordering::Relaxed).to_be_bytes();
                        db.insert(k, &payload[..]).unwrap();
                        db.flush().unwrap();
                    })
                });
            });
            group.bench_with_input(BenchmarkId::new("redb", writers), &writers, |b, &w| {
                let dir = tempfile::tempdir().unwrap();
                let db = Arc::new(redb::Database::create(dir.path().join("db")).unwrap());
                let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log");
                let seq = AtomicU64::new(0);
                b.iter_custom(|iters| {
                    parallel(iters, w, |_, _| {
                        let k = seq.fetch_add(1, Ordering::Relaxed);
                        let tx = db.begin_write().unwrap();
                        tx.open_table(table)
                            .unwrap()
                            .insert(k, &payload[..])
                            .unwrap();
                        tx.commit().unwrap();
                    })
                });
            });
        }
        group.finish();
    }
}

/// A store for benchmark setup, where durability does not matter.
fn unsynced_store(dir: &std::path::Path) -> Store {
    Store::open(
        dir,
        StoreConfig {
            sync: SyncPolicy::Never,
            ..StoreConfig::default()
        },
    )
    .unwrap()
}

fn bench_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().unwrap();
    let store = unsynced_store(dir.path());
    let s = store.stream("bench").unwrap();
    let ids: Vec<_> = (0..100)
        .flat_map(|_| {
            store
                .append_batch_blocking(s, vec![Bytes::from(vec![1u8; 1024]); 1000])
                .unwrap()
        })
        .collect();
    let mut i = 0usize;
    group.bench_function("outpost-read-1KiB-zero-copy", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            store.read(ids[i]).unwrap().payload.len()
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("outpost-scan-100x1KiB", |b| {
        b.iter(|| {
            i = (i + 7919) % (ids.len() - 200);
            store.scan(s, ids[i].seq, 100).len()
        })
    });
    group.finish();
}

fn bench_recovery(c: &mut Criterion) {
    let mut group = c.benchmark_group("recovery");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(1_000_000));
    let dir = tempfile::tempdir().unwrap();
    {
        let store = unsynced_store(dir.path());
        let s = store.stream("bench").unwrap();
        for _ in 0..1000 {
            store
                .append_batch_blocking(s, vec![Bytes::from(vec![3u8; 64]); 1000])
                .unwrap();
        }
    }
    group.bench_function("open-1M-records-64B", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
                total += start.elapsed();
                assert_eq!(store.stats().live_records, 1_000_000);
                drop(store);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench_append, bench_read, bench_recovery);
criterion_main!(benches);
