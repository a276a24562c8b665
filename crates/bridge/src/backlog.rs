//! The backlog: what a bridge still owes its upstream, as one stream of the store.
//!
//! A message a rule forwards is appended here before the publisher's PUBACK (the store's fsync
//! policy decides when that is), read back in append order by the forwarder, and marked dead
//! only once the upstream acknowledged it. After a restart or `kill -9` the stream's live
//! records are exactly what is still owed, so forwarding resumes where it stopped (a message
//! the upstream acknowledged just before the crash may be sent again: at-least-once, as QoS 1
//! allows).
//!
//! While the link is up, the backlog also paces publishers: once it grew `pace_above` messages
//! past where it stood when the link came up, the PUBACK of a new one waits for the link to
//! catch up, as a slow subscriber holds its publishers back. Without it a flood is acknowledged far faster than any upstream takes it,
//! and on a small gateway the ingest takes the CPU the uplink needs (issue 29: live forwarding
//! at 0.6× mosquitto's bridge, which paces by forwarding in the loop that reads). A link that
//! is down never paces: store-and-forward takes what arrives, up to the bounds.
//!
//! The backlog is bounded by bytes and by age. Past a bound the oldest messages are dropped
//! (a gateway cut off for days keeps the newest readings, which are the ones worth having),
//! counted in the bridge's `dropped` metric and logged once per pass.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use outpost_store::{Record, RecordId, Store, StoreError, StreamId};
use tokio::sync::Notify;

use crate::status::Status;

/// Where an entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Upstream MQTT broker; the entry's PUBLISH carries the remote topic.
    Mqtt,
    /// A remote SQS queue (the entry's `address` is its URL).
    Sqs,
    /// A remote SNS topic (the entry's `address` is its ARN).
    Sns,
}

const VERSION: u8 = 1;

/// Entry flag: the message has an expiry interval (the link must count its time in the backlog).
pub(crate) const EXPIRES: u8 = 1;

/// One message owed to the upstream, decoded from its record.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub id: RecordId,
    /// Milliseconds since the epoch when it was appended.
    pub timestamp: u64,
    /// [`EXPIRES`].
    pub flags: u8,
    pub target: Target,
    /// Queue URL or topic ARN (empty for MQTT).
    pub address: String,
    /// The message as an MQTT 5 PUBLISH (topic, QoS, flags, properties, payload).
    pub publish: Bytes,
}

/// Encodes an entry's record.
#[cfg(test)]
pub(crate) fn encode(target: Target, address: &str, publish: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(7 + address.len() + publish.len());
    put_header(&mut out, target, 0, address);
    out.put_slice(publish);
    out.freeze()
}

/// Writes an entry's header; its PUBLISH follows.
pub(crate) fn put_header(out: &mut BytesMut, target: Target, flags: u8, address: &str) {
    out.put_u8(VERSION);
    out.put_u8(match target {
        Target::Mqtt => 0,
        Target::Sqs => 1,
        Target::Sns => 2,
    });
    out.put_u8(flags);
    out.put_u32(u32::try_from(address.len()).unwrap_or(u32::MAX));
    out.put_slice(address.as_bytes());
}

fn decode(r: Record) -> Option<Entry> {
    let b = &r.payload;
    if *b.first()? != VERSION {
        return None;
    }
    let target = match *b.get(1)? {
        0 => Target::Mqtt,
        1 => Target::Sqs,
        2 => Target::Sns,
        _ => return None,
    };
    let flags = *b.get(2)?;
    let len = u32::from_be_bytes(b.get(3..7)?.try_into().ok()?) as usize;
    let address = std::str::from_utf8(b.get(7..7 + len)?).ok()?.to_string();
    Some(Entry {
        id: r.id,
        timestamp: r.timestamp,
        flags,
        target,
        address,
        publish: r.payload.slice(7 + len..),
    })
}

/// One bridge's stream.
pub(crate) struct Backlog {
    store: Store,
    stream: StreamId,
    /// Woken after each append, so an idle forwarder sends at once.
    pub appended: Notify,
    max_bytes: u64,
    max_age: Option<Duration>,
    status: Arc<Status>,
    /// Messages appended and not yet done or dropped (what pacing looks at: the store's own
    /// count learns of lazy tombstones only when the writer gets to them).
    owed: AtomicU64,
    /// Pace publishers once the backlog grew this many messages past `floor` while the link
    /// is up (0: never).
    pace_above: u64,
    /// The smallest backlog since the link came up.
    floor: AtomicU64,
    /// When the link last took a message, or the backlog last was within the mark
    /// (milliseconds since the epoch).
    progress: AtomicU64,
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backlog")
            .field("stream", &self.stream)
            .finish()
    }
}

impl Backlog {
    /// The stream of bridge `name`, created at first use.
    pub fn open(
        store: Store,
        name: &str,
        max_bytes: u64,
        max_age: Option<Duration>,
        pace_above: u64,
        status: Arc<Status>,
    ) -> Result<Backlog, StoreError> {
        let stream = store.stream(&format!("bridge/{name}"))?;
        let owed = AtomicU64::new(store.stream_size(stream).0);
        Ok(Backlog {
            store,
            stream,
            appended: Notify::new(),
            max_bytes,
            max_age,
            status,
            owed,
            pace_above,
            floor: AtomicU64::new(0),
            progress: AtomicU64::new(0),
        })
    }

    /// Appends an entry now (its place in the order is fixed by this call) and returns the
    /// wait for its durability.
    pub fn append(
        self: &Arc<Self>,
        record: Bytes,
    ) -> Result<impl std::future::Future<Output = Result<(), String>> + Send + 'static, StoreError>
    {
        let wait = self.store.append_now(self.stream, record)?;
        let owed = self.owed.fetch_add(1, Ordering::Relaxed) + 1;
        if self.pace_above != 0
            && owed
                <= self
                    .floor
                    .load(Ordering::Relaxed)
                    .saturating_add(self.pace_above)
        {
            // Not behind: a stall is counted from when the backlog last was within the mark.
            self.progress
                .store(outpost_store::now_ms(), Ordering::Relaxed);
        }
        let me = self.clone();
        Ok(async move {
            let r = wait.await.map(|_| ()).map_err(|e| e.to_string());
            me.appended.notify_one();
            if r.is_ok() {
                me.room().await;
            }
            r
        })
    }

    /// The link went up or down. Up, the backlog it starts from is the floor pacing measures
    /// growth from: an outage's backlog drains without holding publishers back, but it may not
    /// grow while the link is up.
    pub fn link(&self, up: bool) {
        if up && !self.status.connected.load(Ordering::Relaxed) {
            self.floor
                .store(self.owed.load(Ordering::Relaxed), Ordering::Relaxed);
            self.progress
                .store(outpost_store::now_ms(), Ordering::Relaxed);
        }
        self.status.set_connected(up);
    }

    /// Whether a new message's PUBACK should wait for the link: it is up, it takes messages
    /// (it acknowledged one, or the backlog was within the mark, in the last
    /// [`crate::LONGEST_PACE`]: an upstream that is connected but takes nothing must not hold
    /// publishers until its keep-alive ends the link), and the backlog grew past the mark since
    /// it came up.
    fn behind(&self) -> bool {
        self.pace_above != 0
            && self.status.connected.load(Ordering::Relaxed)
            && self.owed.load(Ordering::Relaxed)
                > self
                    .floor
                    .load(Ordering::Relaxed)
                    .saturating_add(self.pace_above)
            && outpost_store::now_ms().saturating_sub(self.progress.load(Ordering::Relaxed))
                < crate::LONGEST_PACE.as_millis() as u64
    }

    /// Paces a publisher: returns once the link is no longer behind (it caught up, went down or
    /// stopped taking messages).
    async fn room(&self) {
        if !self.behind() {
            return;
        }
        Status::add(&self.status.paced, 1);
        loop {
            let woken = self.status.room.notified();
            tokio::pin!(woken);
            // Registered before the check, so a wake between the two is not missed.
            woken.as_mut().enable();
            if !self.behind() {
                return;
            }
            // Looked at again when the link has taken nothing for LONGEST_PACE.
            let since =
                outpost_store::now_ms().saturating_sub(self.progress.load(Ordering::Relaxed));
            let stall = crate::LONGEST_PACE.saturating_sub(Duration::from_millis(since));
            let _ = tokio::time::timeout(stall, woken).await;
        }
    }

    /// `n` messages left the backlog (forwarded, refused or dropped).
    fn left(&self, n: usize) {
        let n = n as u64;
        let _ = self
            .owed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some(o.saturating_sub(n))
            });
        let owed = self.owed.load(Ordering::Relaxed);
        self.floor.fetch_min(owed, Ordering::Relaxed);
        self.progress
            .store(outpost_store::now_ms(), Ordering::Relaxed);
        if !self.behind() {
            self.status.room.notify_waiters();
        }
    }

    /// Up to `limit` entries from sequence number `from` on, oldest first. Records that do not
    /// decode (written by a newer version) are dropped with a log line rather than blocking the
    /// stream forever.
    pub fn read(&self, from: u64, limit: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for r in self.store.scan(self.stream, from, limit) {
            let id = r.id;
            match decode(r) {
                Some(e) => out.push(e),
                None => bad.push(id),
            }
        }
        if !bad.is_empty() {
            tracing::warn!(
                count = bad.len(),
                "bridge backlog records that cannot be read were dropped"
            );
            Status::add(&self.status.dropped, bad.len() as u64);
            self.store.mark_dead_later(&bad);
            self.left(bad.len());
        }
        out
    }

    /// Forgets entries the upstream acknowledged. The tombstone is not waited for: losing it in
    /// a crash only sends those messages again (QoS 1 allows a duplicate).
    pub fn done(&self, ids: &[RecordId]) {
        self.forget(ids);
        self.acknowledged(ids.len());
    }

    /// The upstream acknowledged `n` messages whose records [`Backlog::forget`] marks dead
    /// later, in a batch: pacing counts them gone now.
    pub fn acknowledged(&self, n: usize) {
        self.left(n);
    }

    /// Marks acknowledged records dead (their count already left with
    /// [`Backlog::acknowledged`]).
    pub fn forget(&self, ids: &[RecordId]) {
        self.store.mark_dead_later(ids);
    }

    /// Messages and bytes waiting.
    pub fn size(&self) -> (u64, u64) {
        self.store.stream_size(self.stream)
    }

    /// Age of the oldest waiting message.
    pub fn oldest_age(&self) -> Duration {
        let now = outpost_store::now_ms();
        self.store
            .scan(self.stream, 0, 1)
            .first()
            .map_or(Duration::ZERO, |r| {
                Duration::from_millis(now.saturating_sub(r.timestamp))
            })
    }

    /// Drops the oldest entries past the bounds; returns how many were dropped.
    pub async fn enforce_bounds(&self) -> u64 {
        let mut dropped = 0u64;
        let now = outpost_store::now_ms();
        loop {
            let (_, bytes) = self.size();
            let batch = self.store.scan(self.stream, 0, 256);
            let mut over = bytes.saturating_sub(self.max_bytes);
            let mut ids = Vec::new();
            for r in &batch {
                let too_old = self
                    .max_age
                    .is_some_and(|age| now.saturating_sub(r.timestamp) > age.as_millis() as u64);
                if over == 0 && !too_old {
                    break;
                }
                over = over.saturating_sub(r.payload.len() as u64);
                ids.push(r.id);
            }
            if ids.is_empty() {
                break;
            }
            if let Err(e) = self.store.mark_dead(&ids).await {
                tracing::warn!(error = %e, "bridge backlog: dropping old messages failed");
                break;
            }
            // Counted as they go, so the backlog and the drop counter always add up.
            dropped += ids.len() as u64;
            Status::add(&self.status.dropped, ids.len() as u64);
            self.left(ids.len());
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let rec = encode(Target::Sqs, "http://q", b"publish-bytes");
        let e = decode(Record {
            id: RecordId {
                stream: StreamId(1),
                seq: 7,
            },
            timestamp: 5,
            payload: rec,
        })
        .expect("decodes");
        assert_eq!(e.target, Target::Sqs);
        assert_eq!(e.address, "http://q");
        assert_eq!(&e.publish[..], b"publish-bytes");
    }

    #[tokio::test]
    async fn the_oldest_are_dropped_past_the_byte_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), outpost_store::StoreConfig::default()).expect("store");
        let status = Arc::new(Status::default());
        let backlog = Arc::new(
            Backlog::open(store, "b", 10 * 110, None, 0, status.clone()).expect("backlog"),
        );
        for i in 0..20u8 {
            backlog
                .append(encode(Target::Mqtt, "", &[i; 100]))
                .expect("append")
                .await
                .expect("durable");
        }
        let dropped = backlog.enforce_bounds().await;
        assert!(dropped >= 10, "dropped {dropped}");
        let (n, bytes) = backlog.size();
        assert!(bytes <= 10 * 110, "{bytes} bytes left");
        assert_eq!(n + dropped, 20);
        // The newest survive.
        let left = backlog.read(0, 100);
        assert_eq!(left.last().map(|e| e.publish[0]), Some(19));
        assert_eq!(Status::load(&status.dropped), dropped);
    }
}
