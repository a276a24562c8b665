//! What a bridge reports: counters the forwarder and the backlog keeper update lock-free, read
//! by `/metrics` and the `$SYS/broker/bridge/<name>/…` topics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Live counters of one bridge.
#[derive(Debug, Default)]
pub struct Status {
    pub(crate) connected: AtomicBool,
    pub(crate) forwarded: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) paced: AtomicU64,
    pub(crate) last_error: Mutex<String>,
    /// Woken when publishers paced by the backlog may go on: the link caught up or went down.
    pub(crate) room: Notify,
}

/// A bridge's state at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The bridge's name.
    pub name: String,
    /// `mqtt` or `aws`.
    pub kind: String,
    /// The link to the upstream is up.
    pub connected: bool,
    /// Messages waiting for the upstream's acknowledgement.
    pub backlog_messages: u64,
    /// Their bytes.
    pub backlog_bytes: u64,
    /// Age of the oldest one, in seconds (0 without a backlog).
    pub oldest_age_seconds: u64,
    /// Messages the upstream acknowledged since start.
    pub forwarded: u64,
    /// Messages the upstream acknowledged per second, over the last second or more.
    pub forwarded_per_second: f64,
    /// Messages brought in from the upstream since start.
    pub received: u64,
    /// Failed connection or delivery attempts since start.
    pub retries: u64,
    /// Messages dropped by the backlog's bounds since start.
    pub dropped: u64,
    /// Successful connections since start.
    pub connects: u64,
    /// Acknowledgements to local publishers that waited for the live link to catch up.
    pub paced: u64,
    /// The last error, empty when none happened.
    pub last_error: String,
}

impl Status {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records a failure: one retry and the error text.
    pub(crate) fn failed(&self, error: impl std::fmt::Display) {
        Self::add(&self.retries, 1);
        *self.last_error.lock() = error.to_string();
    }

    /// Marks the link up or down; a change from down to up counts one connection.
    pub(crate) fn set_connected(&self, up: bool) {
        let was = self.connected.swap(up, Ordering::Relaxed);
        if up && !was {
            Self::add(&self.connects, 1);
        }
        if !up && was {
            self.room.notify_waiters();
        }
    }

    pub(crate) fn load(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
