//! The public face of the store: open, append, read, scan, mark dead; and the wiring of the writer and
//! reclaimer threads.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::oneshot;

use crate::index::Index;
use crate::meta::{MetaChange, MetaOp, MetaStore, RedbMeta};
use crate::recovery::{max_payload, recover, RecoveryReport};
use crate::writer::{Payload, Request, Writer};
use crate::{reclaim, record, RecordId, Result, Retention, StoreConfig, StoreError, StreamId};

const STREAMS: &str = "streams";
const RETENTION: &str = "stream_retention";
const COUNTERS: &str = "counters";

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its id.
    pub id: RecordId,
    /// When it was appended, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The payload: a slice of the memory-mapped segment, not a copy.
    pub payload: Bytes,
}

/// Counters for `/metrics` and `$SYS`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    /// Segment files on disk.
    pub segments: usize,
    /// Bytes written to segments still on disk.
    pub disk_bytes: u64,
    /// Bytes of live records.
    pub live_bytes: u64,
    /// Live records.
    pub live_records: u64,
    /// Records appended since open.
    pub appended_records: u64,
    /// `fdatasync` calls since open.
    pub syncs: u64,
    /// Segments compacted since open.
    pub compactions: u64,
    /// Segment files deleted since open.
    pub deleted_segments: u64,
    /// What recovery found at open.
    pub recovery: RecoveryReport,
    /// Appends, from request to durable answer.
    pub append_latency: crate::latency::LatencySnapshot,
    /// `fdatasync` calls.
    pub sync_latency: crate::latency::LatencySnapshot,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub appended_records: AtomicU64,
    pub syncs: AtomicU64,
    pub compactions: AtomicU64,
    pub deleted_segments: AtomicU64,
    pub append_latency: crate::latency::Latency,
    pub sync_latency: crate::latency::Latency,
}

/// State shared by the API, the writer and the reclaimer.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub config: StoreConfig,
    pub index: RwLock<Index>,
    pub segments: RwLock<BTreeMap<u64, Bytes>>,
    pub active_seg: AtomicU64,
    pub stats: Counters,
    pub retention: RwLock<HashMap<u64, Retention>>,
    pub meta: RedbMeta,
    pub recovery: RecoveryReport,
}

struct Handle {
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reclaimer: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    _lock: File,
}

impl Drop for Handle {
    fn drop(&mut self) {
        {
            let (flag, cv) = &*self.stop;
            *flag.lock() = true;
            cv.notify_all();
        }
        if let Some(t) = self.reclaimer.lock().take() {
            let _ = t.join();
        }
        // Dropping the last sender ends the writer after it has written what is queued.
        self.tx.lock().take();
        if let Some(t) = self.writer.lock().take() {
            let _ = t.join();
        }
    }
}

/// The store. Cheap to clone; all clones share one log. Closed when the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.handle.shared.dir)
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, replaying the log.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
            .map_err(|e| StoreError::io("opening the lock file", e))?;
        lock.try_lock().map_err(|_| StoreError::Locked)?;
        let meta = RedbMeta::open(&dir.join("meta.redb"))?;

        let rec = recover(&dir, &config)?;
        tracing::info!(
            segments = rec.report.segments,
            records = rec.report.records,
            damaged = rec.report.damaged,
            millis = rec.report.millis,
            "store opened"
        );
        let mut retention = HashMap::new();
        for (k, v) in meta.scan(RETENTION, b"")? {
            if let (Ok(k), Some(r)) = (<[u8; 8]>::try_from(k.as_slice()), decode_retention(&v)) {
                retention.insert(u64::from_be_bytes(k), r);
            }
        }
        let shared = Arc::new(Shared {
            dir,
            config: config.clone(),
            index: RwLock::new(rec.index),
            segments: RwLock::new(rec.maps),
            active_seg: AtomicU64::new(rec.active),
            stats: Counters::default(),
            retention: RwLock::new(retention),
            meta,
            recovery: rec.report,
        });

        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(shared.clone(), rec.active, rec.file, rec.tail, rec.next_seq);
        let writer = std::thread::Builder::new()
            .name("outpost-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::io("starting the writer thread", e))?;

        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        // Retention is enforced once before anyone reads.
        reclaim::pass(&shared, &tx);
        let reclaimer = {
            let (shared, tx, stop) = (shared.clone(), tx.clone(), stop.clone());
            std::thread::Builder::new()
                .name("outpost-store-reclaim".into())
                .spawn(move || reclaim::run(shared, tx, stop))
                .map_err(|e| StoreError::io("starting the reclaimer thread", e))?
        };
        Ok(Store {
            handle: Arc::new(Handle {
                shared,
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
                reclaimer: Mutex::new(Some(reclaimer)),
                stop,
                _lock: lock,
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    fn send(&self, req: Request) -> Result<()> {
        let tx = self.handle.tx.lock();
        tx.as_ref()
            .ok_or(StoreError::Closed)?
            .send(req)
            .map_err(|_| StoreError::Closed)
    }

    /// The id of the stream called `name`, created (durably) if it does not exist.
    pub fn stream(&self, name: &str) -> Result<StreamId> {
        let meta = &self.shared().meta;
        if let Some(v) = meta.get(STREAMS, name.as_bytes())? {
            return decode_u64(&v)
                .map(StreamId)
                .ok_or_else(|| StoreError::Meta("bad stream id".into()));
        }
        // Creation is rare; a lock keeps two creators from picking the same id.
        static CREATE: Mutex<()> = Mutex::new(());
        let _guard = CREATE.lock();
        if let Some(v) = meta.get(STREAMS, name.as_bytes())? {
            return decode_u64(&v)
                .map(StreamId)
                .ok_or_else(|| StoreError::Meta("bad stream id".into()));
        }
        let next = meta
            .get(COUNTERS, b"next_stream")?
            .and_then(|v| decode_u64(&v))
            .unwrap_or(1);
        let id = next.to_be_bytes();
        let after = (next + 1).to_be_bytes();
        meta.apply(&[
            MetaOp::Put {
                table: STREAMS,
                key: name.as_bytes(),
                value: &id,
            },
            MetaOp::Put {
                table: COUNTERS,
                key: b"next_stream",
                value: &after,
            },
        ])?;
        Ok(StreamId(next))
    }

    /// All streams by name.
    pub fn streams(&self) -> Result<Vec<(String, StreamId)>> {
        Ok(self
            .shared()
            .meta
            .scan(STREAMS, b"")?
            .into_iter()
            .filter_map(|(k, v)| Some((String::from_utf8(k).ok()?, StreamId(decode_u64(&v)?))))
            .collect())
    }

    /// Forgets the stream called `name` (its records should already be dead): its name and
    /// retention leave the metadata, so streams of ended sessions and deleted queues do not pile
    /// up. A later [`Store::stream`] with the same name makes a new, empty stream.
    pub fn remove_stream(&self, name: &str) -> Result<()> {
        let meta = &self.shared().meta;
        let Some(id) = meta
            .get(STREAMS, name.as_bytes())?
            .and_then(|v| decode_u64(&v))
        else {
            return Ok(());
        };
        let key = id.to_be_bytes();
        meta.apply(&[
            MetaOp::Delete {
                table: STREAMS,
                key: name.as_bytes(),
            },
            MetaOp::Delete {
                table: RETENTION,
                key: &key,
            },
        ])?;
        self.shared().retention.write().remove(&id);
        Ok(())
    }

    /// Sets (durably) how long records of `stream` live at most.
    pub fn set_retention(&self, stream: StreamId, retention: Retention) -> Result<()> {
        let key = stream.0.to_be_bytes();
        let value = encode_retention(&retention);
        self.shared().meta.apply(&[MetaOp::Put {
            table: RETENTION,
            key: &key,
            value: &value,
        }])?;
        self.shared().retention.write().insert(stream.0, retention);
        Ok(())
    }

    /// The metadata store.
    pub fn meta(&self) -> &dyn MetaStore {
        &self.shared().meta
    }

    /// Applies owned metadata changes in one transaction, off the async workers (a metadata
    /// commit syncs the disk): each `(table, key, Some(value))` is a put, `None` a delete.
    pub async fn apply_changes(&self, changes: Vec<MetaChange>) -> Result<()> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let ops: Vec<MetaOp<'_>> = changes
                .iter()
                .map(|(table, key, value)| match value {
                    Some(v) => MetaOp::Put {
                        table,
                        key,
                        value: v,
                    },
                    None => MetaOp::Delete { table, key },
                })
                .collect();
            store.meta().apply(&ops)
        })
        .await
        .map_err(|e| StoreError::Meta(format!("metadata task: {e}")))?
    }

    fn payloads(&self, payloads: Vec<Bytes>) -> Result<Vec<Payload>> {
        let max = max_payload(self.shared().config.segment_size);
        payloads
            .into_iter()
            .map(|bytes| {
                if bytes.len() > max {
                    return Err(StoreError::RecordTooLarge {
                        size: bytes.len(),
                        max,
                    });
                }
                // The CRC is computed here, on the caller's thread, so the writer does not serialize it.
                let crc = crc32c::crc32c(&bytes);
                Ok(Payload { bytes, crc })
            })
            .collect()
    }

    fn start_append(
        &self,
        stream: StreamId,
        payloads: Vec<Bytes>,
    ) -> Result<oneshot::Receiver<Result<Vec<RecordId>>>> {
        let payloads = self.payloads(payloads)?;
        let (reply, rx) = oneshot::channel();
        self.send(Request::Append {
            stream: stream.0,
            payloads,
            reply,
            queued: std::time::Instant::now(),
        })?;
        Ok(rx)
    }

    /// Appends one record; resolves when it is durable (per the sync policy).
    pub async fn append(&self, stream: StreamId, payload: impl Into<Bytes>) -> Result<RecordId> {
        let rx = self.start_append(stream, vec![payload.into()])?;
        let ids = rx.await.map_err(|_| StoreError::Closed)??;
        ids.into_iter().next().ok_or(StoreError::Closed)
    }

    /// Appends several records of one stream atomically with respect to group commit.
    pub async fn append_batch(
        &self,
        stream: StreamId,
        payloads: Vec<Bytes>,
    ) -> Result<Vec<RecordId>> {
        let rx = self.start_append(stream, payloads)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Appends records to several streams at once: every request reaches the writer before the
    /// first answer is awaited, so they share one group commit. One result per stream, in order.
    /// The records are handed to the writer by this call, not by the first poll of the future:
    /// a caller can prepare its next batch while this one is written and synced, and batches
    /// started in order are logged in that order.
    pub fn append_batches(
        &self,
        batches: Vec<(StreamId, Vec<Bytes>)>,
    ) -> impl std::future::Future<Output = Vec<Result<Vec<RecordId>>>> + Send + 'static {
        let pending: Vec<_> = batches
            .into_iter()
            .map(|(stream, payloads)| self.start_append(stream, payloads))
            .collect();
        async move {
            let mut out = Vec::with_capacity(pending.len());
            for p in pending {
                out.push(match p {
                    Ok(rx) => rx.await.map_err(|_| StoreError::Closed).and_then(|r| r),
                    Err(e) => Err(e),
                });
            }
            out
        }
    }

    /// Starts appending one record now and returns the wait for its durability. The record's
    /// place in its stream is fixed by this call, not by the first poll of the future, so a
    /// caller that starts appends in order (one publisher's messages) gets them in that order.
    pub fn append_now(
        &self,
        stream: StreamId,
        payload: impl Into<Bytes>,
    ) -> Result<impl std::future::Future<Output = Result<RecordId>> + Send + 'static> {
        let rx = self.start_append(stream, vec![payload.into()])?;
        Ok(async move {
            let ids = rx.await.map_err(|_| StoreError::Closed)??;
            ids.into_iter().next().ok_or(StoreError::Closed)
        })
    }

    /// [`Store::append`] for threads without an async runtime.
    pub fn append_blocking(&self, stream: StreamId, payload: impl Into<Bytes>) -> Result<RecordId> {
        let rx = self.start_append(stream, vec![payload.into()])?;
        let ids = rx.blocking_recv().map_err(|_| StoreError::Closed)??;
        ids.into_iter().next().ok_or(StoreError::Closed)
    }

    /// [`Store::append_batch`] for threads without an async runtime.
    pub fn append_batch_blocking(
        &self,
        stream: StreamId,
        payloads: Vec<Bytes>,
    ) -> Result<Vec<RecordId>> {
        let rx = self.start_append(stream, payloads)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    fn start_kill(&self, ids: &[RecordId], lazy: bool) -> Result<oneshot::Receiver<Result<usize>>> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Kill {
            ids: ids.to_vec(),
            reply,
            lazy,
        })?;
        Ok(rx)
    }

    /// Marks records dead (durably: a tombstone is appended). Returns how many were live.
    pub async fn mark_dead(&self, ids: &[RecordId]) -> Result<usize> {
        self.start_kill(ids, false)?
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// [`Store::mark_dead`] for threads without an async runtime.
    pub fn mark_dead_blocking(&self, ids: &[RecordId]) -> Result<usize> {
        self.start_kill(ids, false)?
            .blocking_recv()
            .map_err(|_| StoreError::Closed)?
    }

    /// Marks records dead without waiting for the tombstone: for records that a newer record
    /// already supersedes, where losing the tombstone in a crash only costs a little disk until the
    /// next reclaim.
    pub fn mark_dead_later(&self, ids: &[RecordId]) {
        if !ids.is_empty() {
            // The reply is dropped unread; the writer ignores a closed reply channel.
            let _ = self.start_kill(ids, true);
        }
    }

    /// Makes everything appended so far durable, whatever the sync policy.
    pub async fn sync(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Sync { reply })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    fn record_at(&self, stream: u64, seq: u64, loc: crate::index::Loc) -> Option<Record> {
        let segments = self.shared().segments.read();
        let map = segments.get(&loc.seg)?;
        let start = loc.offset as usize + record::HEADER_LEN;
        let end = loc.offset as usize + loc.len as usize;
        if end > map.len() || start > end {
            return None;
        }
        Some(Record {
            id: RecordId {
                stream: StreamId(stream),
                seq,
            },
            timestamp: loc.timestamp,
            payload: map.slice(start..end),
        })
    }

    /// Reads a live record.
    pub fn read(&self, id: RecordId) -> Option<Record> {
        let loc = self.shared().index.read().get(id.stream.0, id.seq)?;
        self.record_at(id.stream.0, id.seq, loc)
    }

    /// Live records of `stream` with sequence number `from` or later, oldest first, at most `limit`.
    pub fn scan(&self, stream: StreamId, from: u64, limit: usize) -> Vec<Record> {
        let locs: Vec<(u64, crate::index::Loc)> = {
            let index = self.shared().index.read();
            let Some(s) = index.streams.get(&stream.0) else {
                return Vec::new();
            };
            s.records
                .range((Bound::Included(from), Bound::Unbounded))
                .take(limit)
                .map(|(&seq, &loc)| (seq, loc))
                .collect()
        };
        locs.into_iter()
            .filter_map(|(seq, loc)| self.record_at(stream.0, seq, loc))
            .collect()
    }

    /// Live records and payload bytes of a stream.
    pub fn stream_size(&self, stream: StreamId) -> (u64, u64) {
        let index = self.shared().index.read();
        index
            .streams
            .get(&stream.0)
            .map_or((0, 0), |s| (s.records.len() as u64, s.live_bytes))
    }

    /// Runs one reclamation pass now (deleting dead segments, compacting, enforcing retention)
    /// instead of waiting for the background thread.
    pub fn reclaim_now(&self) {
        if let Some(tx) = self.handle.tx.lock().as_ref() {
            reclaim::pass(&self.handle.shared, tx);
        }
    }

    /// Current counters.
    pub fn stats(&self) -> StoreStats {
        let shared = self.shared();
        let index = shared.index.read();
        StoreStats {
            segments: index.segments.len(),
            disk_bytes: index.segments.values().map(|s| s.used).sum(),
            live_bytes: index.streams.values().map(|s| s.live_bytes).sum(),
            live_records: index.streams.values().map(|s| s.records.len() as u64).sum(),
            appended_records: shared.stats.appended_records.load(Ordering::Relaxed),
            syncs: shared.stats.syncs.load(Ordering::Relaxed),
            compactions: shared.stats.compactions.load(Ordering::Relaxed),
            deleted_segments: shared.stats.deleted_segments.load(Ordering::Relaxed),
            recovery: shared.recovery.clone(),
            append_latency: shared.stats.append_latency.snapshot(),
            sync_latency: shared.stats.sync_latency.snapshot(),
        }
    }

    /// The folder the store lives in.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }
}

fn decode_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

fn encode_retention(r: &Retention) -> [u8; 16] {
    let mut out = [0u8; 16];
    let age = r.max_age.map_or(u64::MAX, |d| d.as_millis() as u64);
    out[..8].copy_from_slice(&age.to_be_bytes());
    out[8..].copy_from_slice(&r.max_bytes.unwrap_or(u64::MAX).to_be_bytes());
    out
}

fn decode_retention(v: &[u8]) -> Option<Retention> {
    let age = decode_u64(v.get(..8)?)?;
    let bytes = decode_u64(v.get(8..16)?)?;
    Some(Retention {
        max_age: (age != u64::MAX).then(|| std::time::Duration::from_millis(age)),
        max_bytes: (bytes != u64::MAX).then_some(bytes),
    })
}
