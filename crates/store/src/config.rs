//! Store configuration. The sync policy is an explicit type because it is the one durability/speed
//! trade-off an operator must choose knowingly.

use std::time::Duration;

/// When appended records reach the disk, and so when an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// `fdatasync` before an append's future resolves. An acknowledged record survives power loss.
    /// Concurrent appends share one write and one sync (group commit), so throughput grows with
    /// concurrency. The default.
    #[default]
    Always,
    /// Acknowledge after the write; `fdatasync` at most once per interval. A crash of the process
    /// loses nothing (the page cache survives), a power loss loses at most the last interval.
    Interval(Duration),
    /// Never sync explicitly; the kernel writes back when it likes. For caches and tests.
    Never,
}

/// Limits that make old records of one stream disappear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Records older than this are dropped.
    pub max_age: Option<Duration>,
    /// When the stream's live payload bytes exceed this, its oldest records are dropped.
    pub max_bytes: Option<u64>,
}

/// How the store is laid out and how it behaves.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Size of each segment file. Records never span segments, so this is also the largest record.
    pub segment_size: u64,
    /// Durability of appends.
    pub sync: SyncPolicy,
    /// Largest number of bytes one group commit writes before syncing.
    pub max_batch_bytes: usize,
    /// A sealed segment whose live bytes fall below this fraction of its size is compacted.
    pub compact_below: f64,
    /// How often the background reclaimer looks for dead segments and expired records.
    pub reclaim_interval: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            segment_size: 64 * 1024 * 1024,
            sync: SyncPolicy::Always,
            max_batch_bytes: 4 * 1024 * 1024,
            compact_below: 0.5,
            reclaim_interval: Duration::from_millis(500),
        }
    }
}
