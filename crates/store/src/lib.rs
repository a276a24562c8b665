//! Outpost's persistent message store: the part of the broker that must never lose an acknowledged
//! message and must be the fastest part of the system.
//!
//! - **Segment log** ([`Store`]): records are appended to fixed-size segment files and read back
//!   through memory maps as `bytes::Bytes` slices, without copying.
//! - **Group commit**: one writer thread batches concurrent appends into one write and one
//!   `fdatasync`; an append resolves only when its batch is durable ([`SyncPolicy`]).
//! - **Crash recovery**: opening replays the log, checks every record's CRC, skips damaged bytes and
//!   cuts a torn tail.
//! - **Reclamation**: deletes become tombstones; dead segments are deleted and mostly-dead ones are
//!   compacted in the background, so disk use follows live data.
//! - **Metadata** ([`MetaStore`]): a transactional KV for definitions and per-message state.
//!
//! Records live in *streams* (one per queue, per session, …) and are named by a [`RecordId`]:
//! the stream and a sequence number that is never reused.

mod config;
mod error;
mod index;
pub mod latency;
mod meta;
mod reclaim;
mod record;
mod recovery;
mod segment;
mod store;
mod writer;

pub use config::{Retention, StoreConfig, SyncPolicy};
pub use error::{Result, StoreError};
pub use meta::{MetaChange, MetaOp, MetaStore, RedbMeta};
pub use record::HEADER_LEN as RECORD_OVERHEAD;
pub use recovery::RecoveryReport;
pub use store::{Record, Store, StoreStats};
pub use writer::now_ms;

/// A stream: an ordered set of records owned by one queue, session or other consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// The name of one record for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    /// Its stream.
    pub stream: StreamId,
    /// Its sequence number, unique across the store and never reused.
    pub seq: u64,
}
