//! The single writer and its group commit.
//!
//! One thread owns the active segment. It blocks for the first request, then drains every request that
//! queued up meanwhile, writes them with one vectored write and makes them durable with one
//! `fdatasync`; only then does it answer them. While one batch syncs, the next one accumulates, so the
//! number of syncs per second stays at what the disk can do while the records per sync grow with
//! concurrency.
//!
//! The writer is also the only place where records enter or leave the index (the reclaimer's retention
//! aside), in log order, which is what makes replay after a crash reach the same state.
//!
//! Over 700 lines on purpose: batching, the sync policy and the order of replies are one piece of
//! logic whose invariants (nothing acknowledged before its fsync) must be read together.

use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::index::{Loc, Tomb};
use crate::record::{self, Kind, Parsed, HEADER_LEN};
use crate::store::Shared;
use crate::{segment, RecordId, Result, StoreError, SyncPolicy};

/// A payload waiting to be appended, with the CRC of its bytes (computed by the caller's thread).
pub(crate) struct Payload {
    pub bytes: Bytes,
    pub crc: u32,
}

pub(crate) enum Request {
    Append {
        stream: u64,
        payloads: Vec<Payload>,
        reply: oneshot::Sender<Result<Vec<RecordId>>>,
        /// When the request was made (for the append latency histogram).
        queued: Instant,
    },
    Kill {
        ids: Vec<RecordId>,
        reply: oneshot::Sender<Result<usize>>,
        /// Nobody waits for durability (`mark_dead_later`): a batch of only such kills is
        /// written without its own `fdatasync`; the next batch that needs one covers it.
        lazy: bool,
    },
    /// Copy a segment's live records to the head so the segment can be deleted.
    Relocate {
        seg: u64,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Make everything written so far durable (for `SyncPolicy::Interval`/`Never` callers).
    Sync { reply: oneshot::Sender<Result<()>> },
}

/// One record of the batch being built.
struct Out {
    header: [u8; HEADER_LEN],
    payload: Bytes,
}

/// What to do to the index once a record is durable.
enum Update {
    Insert {
        stream: u64,
        seq: u64,
        loc: Loc,
    },
    Kill {
        stream: u64,
        seq: u64,
        tomb_seg: u64,
        tomb_len: u32,
    },
    /// A live tombstone copied forward by compaction.
    CopyTomb {
        tomb_seg: u64,
        tomb: Tomb,
    },
    /// The tombstones of `seg` were copied forward and no longer count there.
    Relocated {
        seg: u64,
    },
}

enum Reply {
    Append(
        oneshot::Sender<Result<Vec<RecordId>>>,
        Vec<RecordId>,
        Option<Instant>,
    ),
    Kill(oneshot::Sender<Result<usize>>, usize),
    Unit(oneshot::Sender<Result<()>>),
}

impl Reply {
    fn send_ok(self) {
        // A caller that stopped waiting is not an error.
        match self {
            Reply::Append(tx, ids, _) => drop(tx.send(Ok(ids))),
            Reply::Kill(tx, n) => drop(tx.send(Ok(n))),
            Reply::Unit(tx) => drop(tx.send(Ok(()))),
        }
    }

    fn send_err(self, e: &StoreError) {
        let e = match e {
            StoreError::DiskFull => StoreError::DiskFull,
            StoreError::TooManyOpenFiles => StoreError::TooManyOpenFiles,
            StoreError::Poisoned(m) => StoreError::Poisoned(m.clone()),
            StoreError::RecordTooLarge { size, max } => StoreError::RecordTooLarge {
                size: *size,
                max: *max,
            },
            other => StoreError::Io {
                context: "append".into(),
                source: io::Error::other(other.to_string()),
            },
        };
        match self {
            Reply::Append(tx, _, _) => drop(tx.send(Err(e))),
            Reply::Kill(tx, _) => drop(tx.send(Err(e))),
            Reply::Unit(tx) => drop(tx.send(Err(e))),
        }
    }
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    seg: u64,
    file: File,
    tail: u64,
    next_seq: u64,
    last_sync: Instant,
    dirty: bool,
    poisoned: Option<String>,
    /// Set when a new segment could not be created; appends fail until one can (with "too many
    /// open files" when that was the reason, else "disk full").
    roll_error: Option<(String, bool)>,
    /// A `Sync` request is waiting in this batch.
    force_sync: bool,
    /// Some request of the batch being built waits for durability.
    durable_wanted: bool,
    /// Requests in the previous batch: how many callers are likely to be active.
    expected: usize,
    /// How long the last `fdatasync` took.
    last_sync_took: Duration,
    // The batch under construction.
    outs: Vec<Out>,
    updates: Vec<Update>,
    replies: Vec<Reply>,
    batch_bytes: u64,
}

/// Milliseconds since the Unix epoch: the clock of record timestamps, and the one every engine
/// reads so that ages computed from stored timestamps agree.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn header(
    kind: Kind,
    stream: u64,
    seq: u64,
    timestamp: u64,
    payload: &[u8],
    payload_crc: u32,
) -> [u8; HEADER_LEN] {
    let h = record::Header {
        kind,
        stream,
        seq,
        timestamp,
    };
    record::header_bytes(&h, payload.len(), payload_crc)
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, seg: u64, file: File, tail: u64, next_seq: u64) -> Self {
        Writer {
            shared,
            seg,
            file,
            tail,
            next_seq,
            last_sync: Instant::now(),
            dirty: false,
            poisoned: None,
            roll_error: None,
            force_sync: false,
            durable_wanted: false,
            expected: 1,
            last_sync_took: Duration::ZERO,
            outs: Vec::new(),
            updates: Vec::new(),
            replies: Vec::new(),
            batch_bytes: 0,
        }
    }

    /// The writer thread's loop; returns when every sender is gone.
    pub(crate) fn run(mut self, rx: Receiver<Request>) {
        let interval = match self.shared.config.sync {
            SyncPolicy::Interval(d) => Some(d),
            _ => None,
        };
        loop {
            let first = match interval {
                Some(d) if self.dirty => match rx.recv_timeout(d) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => {
                        self.sync_if_due(true);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                _ => match rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            self.gather(first, &rx);
            self.flush();
        }
        self.flush();
        if self.dirty {
            self.sync_if_due(true);
        }
    }

    /// Builds one batch from `first` and whatever else arrives in time.
    ///
    /// With `SyncPolicy::Always`, a batch is worth waiting for: after a sync, the callers just answered
    /// need a moment to wake up and send their next append, and starting the next sync before they do
    /// means many small syncs. So when the previous batch had more requests than this one has so far,
    /// the writer waits for more — at most half the last sync's duration, and never when one caller
    /// is alone (the previous batch then had one request).
    fn gather(&mut self, first: Request, rx: &Receiver<Request>) {
        let started = Instant::now();
        let mut budget = self.shared.config.max_batch_bytes;
        let mut count = 1;
        self.durable_wanted = false;
        budget = budget.saturating_sub(self.handle(first));
        let window = match self.shared.config.sync {
            SyncPolicy::Always => self.last_sync_took / 2,
            _ => Duration::ZERO,
        };
        while budget > 0 {
            let next = match rx.try_recv() {
                Ok(r) => Some(r),
                Err(_) if count >= self.expected || window.is_zero() => None,
                Err(_) => match window.checked_sub(started.elapsed()) {
                    Some(left) if !left.is_zero() => rx.recv_timeout(left).ok(),
                    _ => None,
                },
            };
            let Some(req) = next else { break };
            budget = budget.saturating_sub(self.handle(req));
            count += 1;
        }
        self.expected = count;
    }

    /// Adds one request to the batch; returns the bytes it added.
    fn handle(&mut self, req: Request) -> usize {
        if let Some(msg) = &self.poisoned {
            let e = StoreError::Poisoned(msg.clone());
            match req {
                Request::Append { reply, .. } => {
                    Reply::Append(reply, Vec::new(), None).send_err(&e)
                }
                Request::Kill { reply, .. } => Reply::Kill(reply, 0).send_err(&e),
                Request::Relocate { reply, .. } | Request::Sync { reply } => {
                    Reply::Unit(reply).send_err(&e)
                }
            }
            return 0;
        }
        if !matches!(req, Request::Kill { lazy: true, .. }) {
            self.durable_wanted = true;
        }
        match req {
            Request::Append {
                stream,
                payloads,
                reply,
                queued,
            } => {
                let now = now_ms();
                let mark = (
                    self.seg,
                    self.outs.len(),
                    self.updates.len(),
                    self.batch_bytes,
                );
                let mut ids = Vec::with_capacity(payloads.len());
                let mut added = 0;
                for p in payloads {
                    let seq = self.next_seq;
                    added += p.bytes.len();
                    let h = header(Kind::Data, stream, seq, now, &p.bytes, p.crc);
                    let pushed = self.push(h, p.bytes, |seg, offset, len| Loc {
                        seg,
                        offset,
                        len,
                        first_seg: seg,
                        timestamp: now,
                    });
                    match pushed {
                        Ok(loc) => {
                            self.next_seq += 1;
                            self.updates.push(Update::Insert { stream, seq, loc });
                            ids.push(RecordId {
                                stream: crate::StreamId(stream),
                                seq,
                            });
                        }
                        Err(e) => {
                            // Undo this request's part of the batch, unless a roll already wrote it.
                            if mark.0 == self.seg {
                                self.outs.truncate(mark.1);
                                self.updates.truncate(mark.2);
                                self.batch_bytes = mark.3;
                            }
                            Reply::Append(reply, Vec::new(), None).send_err(&e);
                            return 0;
                        }
                    }
                }
                self.shared
                    .stats
                    .appended_records
                    .fetch_add(ids.len() as u64, Ordering::Relaxed);
                self.replies.push(Reply::Append(reply, ids, Some(queued)));
                added
            }
            Request::Kill { ids, reply, .. } => {
                let now = now_ms();
                let mut live = 0;
                let mut seen = std::collections::HashSet::new();
                for id in ids {
                    if !seen.insert(id) {
                        continue;
                    }
                    let found = self.shared.index.read().get(id.stream.0, id.seq);
                    let Some(target) = found else { continue };
                    live += 1;
                    let empty = Bytes::new();
                    let h = header(
                        Kind::Tombstone,
                        id.stream.0,
                        id.seq,
                        now,
                        &empty,
                        crc32c::crc32c(&[]),
                    );
                    let pushed = self.push(h, empty, |seg, offset, len| Loc {
                        seg,
                        offset,
                        len,
                        first_seg: target.first_seg,
                        timestamp: now,
                    });
                    match pushed {
                        Ok(loc) => self.updates.push(Update::Kill {
                            stream: id.stream.0,
                            seq: id.seq,
                            tomb_seg: loc.seg,
                            tomb_len: loc.len,
                        }),
                        Err(e) => {
                            Reply::Kill(reply, 0).send_err(&e);
                            return 0;
                        }
                    }
                }
                self.replies.push(Reply::Kill(reply, live));
                live * HEADER_LEN
            }
            Request::Relocate { seg, reply } => {
                // Relocation must see the index with everything before it applied.
                self.flush();
                match self.relocate(seg) {
                    Ok(added) => {
                        self.replies.push(Reply::Unit(reply));
                        self.flush();
                        added
                    }
                    Err(e) => {
                        Reply::Unit(reply).send_err(&e);
                        0
                    }
                }
            }
            Request::Sync { reply } => {
                self.replies.push(Reply::Unit(reply));
                self.force_sync = true;
                0
            }
        }
    }

    /// Queues one record, rolling to a new segment when it does not fit. `loc` builds the index entry
    /// from (segment, offset, length).
    fn push(
        &mut self,
        header: [u8; HEADER_LEN],
        payload: Bytes,
        loc: impl FnOnce(u64, u32, u32) -> Loc,
    ) -> Result<Loc> {
        let len = (HEADER_LEN + payload.len()) as u64;
        if self.tail + self.batch_bytes + len > self.shared.config.segment_size {
            self.roll();
            if let Some(m) = &self.poisoned {
                return Err(StoreError::Poisoned(m.clone()));
            }
            if let Some((_, descriptors)) = &self.roll_error {
                return Err(if *descriptors {
                    StoreError::TooManyOpenFiles
                } else {
                    StoreError::DiskFull
                });
            }
        }
        let l = loc(self.seg, (self.tail + self.batch_bytes) as u32, len as u32);
        self.batch_bytes += len;
        self.outs.push(Out { header, payload });
        Ok(l)
    }

    /// Seals the active segment (after writing what is queued) and starts a new one.
    fn roll(&mut self) {
        self.write_out(true);
        if self.poisoned.is_some() || !self.outs.is_empty() {
            return;
        }
        let id = self.seg + 1;
        let size = self.shared.config.segment_size;
        let created =
            segment::create(&self.shared.dir, id, size).and_then(|f| Ok((segment::map(&f)?, f)));
        match created {
            Ok((map, file)) => {
                self.roll_error = None;
                // Published as active before it appears anywhere else, so the reclaimer, which spares
                // every segment from the active one on, can never take it for a dead one.
                self.shared.active_seg.store(id, Ordering::SeqCst);
                self.shared.segments.write().insert(id, map);
                self.shared.index.write().segments.entry(id).or_default();
                self.file = file;
                self.seg = id;
                self.tail = 0;
                let start = header(
                    Kind::SegmentStart,
                    0,
                    self.next_seq,
                    now_ms(),
                    &[],
                    crc32c::crc32c(&[]),
                );
                self.outs.push(Out {
                    header: start,
                    payload: Bytes::new(),
                });
                self.batch_bytes = HEADER_LEN as u64;
            }
            Err(e) => {
                // A half-created file would be found at the next open; remove it if it exists.
                let _ = std::fs::remove_file(segment::path(&self.shared.dir, id));
                let err = StoreError::io(format!("creating segment {id}"), e);
                if self.roll_error.is_none() {
                    tracing::error!(segment = id, error = %err, "cannot start a new segment; appends fail until it can");
                }
                let descriptors = matches!(err, StoreError::TooManyOpenFiles);
                self.roll_error = Some((err.to_string(), descriptors));
            }
        }
    }

    /// Copies the live records of `seg` to the head.
    fn relocate(&mut self, seg: u64) -> Result<usize> {
        let Some(map) = self.shared.segments.read().get(&seg).cloned() else {
            return Ok(0);
        };
        let used = self
            .shared
            .index
            .read()
            .segments
            .get(&seg)
            .map_or(0, |s| s.used) as usize;
        let now = now_ms();
        let mut added = 0;
        let mut off = 0usize;
        while off < used.min(map.len()) {
            let Parsed::Record { header: h, len } = record::parse(&map[off..used]) else {
                break;
            };
            if h.kind == Kind::Data {
                let live = self.shared.index.read().get(h.stream, h.seq);
                if let Some(old) = live.filter(|l| l.seg == seg && l.offset as usize == off) {
                    let payload = map.slice(off + HEADER_LEN..off + len);
                    let hd = header(
                        Kind::Data,
                        h.stream,
                        h.seq,
                        h.timestamp,
                        &payload,
                        crc32c::crc32c(&payload),
                    );
                    added += len;
                    let loc = self.push(hd, payload, |s, o, l| Loc {
                        seg: s,
                        offset: o,
                        len: l,
                        first_seg: old.first_seg,
                        timestamp: old.timestamp,
                    })?;
                    self.updates.push(Update::Insert {
                        stream: h.stream,
                        seq: h.seq,
                        loc,
                    });
                }
            }
            off += len;
        }
        // Tombstones that still protect older copies move forward too.
        let tombs: Vec<Tomb> = {
            let index = self.shared.index.read();
            index
                .segments
                .get(&seg)
                .map(|st| {
                    st.tombs
                        .iter()
                        .filter(|t| index.tomb_is_live(t, seg))
                        .copied()
                        .collect()
                })
                .unwrap_or_default()
        };
        for t in tombs {
            let h = header(
                Kind::Tombstone,
                t.stream,
                t.seq,
                now,
                &[],
                crc32c::crc32c(&[]),
            );
            let loc = self.push(h, Bytes::new(), |s, o, l| Loc {
                seg: s,
                offset: o,
                len: l,
                first_seg: t.pin,
                timestamp: now,
            })?;
            self.updates.push(Update::CopyTomb {
                tomb_seg: loc.seg,
                tomb: Tomb {
                    relocated: false,
                    len: loc.len,
                    ..t
                },
            });
            added += HEADER_LEN;
        }
        self.updates.push(Update::Relocated { seg });
        Ok(added)
    }

    /// Writes and syncs the batch, applies it to the index, answers its requests.
    fn flush(&mut self) {
        if self.outs.is_empty() && self.replies.is_empty() {
            return;
        }
        self.write_out(false);
    }

    fn write_out(&mut self, sealing: bool) {
        if self.outs.is_empty() && !sealing && !self.force_sync {
            if self.durable_wanted {
                self.sync_if_due(false);
            }
            self.answer();
            return;
        }
        let force = std::mem::take(&mut self.force_sync);
        let result = self.write_batch().and_then(|()| {
            self.dirty = true;
            if sealing || force {
                self.sync_now()
            } else {
                if self.durable_wanted {
                    self.sync_if_due(false);
                }
                match &self.poisoned {
                    Some(m) => Err(StoreError::Poisoned(m.clone())),
                    None => Ok(()),
                }
            }
        });
        match result {
            Ok(()) => {
                self.tail += self.batch_bytes;
                self.outs.clear();
                self.batch_bytes = 0;
                self.apply();
                if sealing {
                    if let Some(st) = self.shared.index.write().segments.get_mut(&self.seg) {
                        st.used = self.tail;
                    }
                }
                self.answer();
            }
            Err(e) => self.fail_batch(&e),
        }
    }

    fn fail_batch(&mut self, e: &StoreError) {
        if matches!(e, StoreError::DiskFull) {
            tracing::warn!(
                segment = self.seg,
                "disk full: appends refused until space is freed"
            );
        }
        // Bytes of a failed write may be on disk; zero them so recovery cannot find half a batch.
        if self.batch_bytes > 0 {
            if let Err(z) =
                segment::zero_from(&self.file, self.tail, self.shared.config.segment_size)
            {
                tracing::error!(error = %z, "cannot clear a failed write");
            }
            let _ = self.file.seek(SeekFrom::Start(self.tail));
        }
        self.outs.clear();
        self.updates.clear();
        self.batch_bytes = 0;
        for r in self.replies.drain(..) {
            r.send_err(e);
        }
    }

    fn write_batch(&mut self) -> Result<()> {
        #[cfg(feature = "failpoints")]
        fail::fail_point!("store-write", |_| Err(StoreError::io(
            format!("writing segment {} (injected fault)", self.seg),
            io::Error::other("injected I/O error"),
        )));
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.outs.len() * 2);
        for o in &self.outs {
            slices.push(IoSlice::new(&o.header));
            if !o.payload.is_empty() {
                slices.push(IoSlice::new(&o.payload));
            }
        }
        self.file
            .seek(SeekFrom::Start(self.tail))
            .map_err(|e| StoreError::io("seeking the active segment", e))?;
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        while !rest.is_empty() {
            let chunk = rest.len().min(1024);
            let n = match self.file.write_vectored(&rest[..chunk]) {
                Ok(0) => {
                    return Err(StoreError::io(
                        "writing a segment",
                        io::ErrorKind::WriteZero.into(),
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io(format!("writing segment {}", self.seg), e)),
            };
            IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    }

    fn sync_now(&mut self) -> Result<()> {
        if self.shared.config.sync == SyncPolicy::Never {
            self.dirty = false;
            return Ok(());
        }
        let started = Instant::now();
        match self.file.sync_data() {
            Ok(()) => {
                self.dirty = false;
                self.last_sync = Instant::now();
                let took = started.elapsed();
                self.shared.stats.sync_latency.record(took);
                self.last_sync_took = took.min(Duration::from_millis(5));
                self.shared.stats.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                // After a failed fsync the page cache may have dropped the data: stop promising anything.
                let msg = format!("fdatasync of segment {} failed: {e}", self.seg);
                tracing::error!("{msg}; the store refuses writes until it is reopened");
                self.poisoned = Some(msg.clone());
                Err(StoreError::Poisoned(msg))
            }
        }
    }

    fn sync_if_due(&mut self, force: bool) {
        if !self.dirty {
            return;
        }
        let due = match self.shared.config.sync {
            SyncPolicy::Always => true,
            SyncPolicy::Interval(d) => force || self.last_sync.elapsed() >= d,
            SyncPolicy::Never => false,
        };
        if due {
            let _ = self.sync_now();
        }
    }

    fn apply(&mut self) {
        if self.updates.is_empty() {
            return;
        }
        let mut index = self.shared.index.write();
        for u in self.updates.drain(..) {
            match u {
                Update::Insert { stream, seq, loc } => index.insert(stream, seq, loc),
                Update::Kill {
                    stream,
                    seq,
                    tomb_seg,
                    tomb_len,
                } => {
                    let pin = index.kill(stream, seq).map(|l| l.first_seg);
                    if let Some(pin) = pin {
                        index
                            .segments
                            .entry(tomb_seg)
                            .or_default()
                            .tombs
                            .push(Tomb {
                                stream,
                                seq,
                                pin,
                                len: tomb_len,
                                relocated: false,
                            });
                    }
                }
                Update::CopyTomb { tomb_seg, tomb } => {
                    index.segments.entry(tomb_seg).or_default().tombs.push(tomb);
                }
                Update::Relocated { seg } => {
                    if let Some(st) = index.segments.get_mut(&seg) {
                        for t in &mut st.tombs {
                            t.relocated = true;
                        }
                    }
                }
            }
        }
        if let Some(st) = index.segments.get_mut(&self.seg) {
            st.used = self.tail;
        }
    }

    fn answer(&mut self) {
        let now = Instant::now();
        for r in self.replies.drain(..) {
            if let Reply::Append(_, _, Some(queued)) = &r {
                self.shared
                    .stats
                    .append_latency
                    .record(now.saturating_duration_since(*queued));
            }
            r.send_ok();
        }
    }
}
