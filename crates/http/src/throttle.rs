//! Request rates and concurrent long polls of the HTTP port, API Gateway-style: a token bucket
//! per caller address and one for the whole port, each with a burst; past them a request is
//! refused at once in its API's shape (SQS `RequestThrottled`, SNS `Throttled` 429, EventBridge
//! `ThrottlingException`, IoT data `ThrottlingException` 429), counted, and logged at most once a
//! second. Long polls (`ReceiveMessage` waiting for messages) each hold a connection and a task
//! for up to 20 s, so how many wait at once is capped too.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use outpost_net::{PerAddress, Rate, Shared};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The HTTP port's rates.
#[derive(Debug)]
pub struct HttpRates {
    per_address: Option<PerAddress>,
    total: Shared,
    long_polls: Arc<Semaphore>,
    /// Requests refused for a request rate.
    pub refused_rate: AtomicU64,
    /// `ReceiveMessage` calls refused because too many were waiting.
    pub refused_long_polls: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

impl Default for HttpRates {
    fn default() -> Self {
        HttpRates::new(Rate::UNLIMITED, Rate::UNLIMITED, 4096)
    }
}

impl HttpRates {
    /// Rates per address and in total, and the most concurrent `ReceiveMessage` calls.
    pub fn new(per_address: Rate, total: Rate, max_long_polls: usize) -> HttpRates {
        HttpRates {
            per_address: (!per_address.is_unlimited()).then(|| PerAddress::new(per_address)),
            total: Shared::new(total),
            long_polls: Arc::new(Semaphore::new(max_long_polls.max(1))),
            refused_rate: AtomicU64::new(0),
            refused_long_polls: AtomicU64::new(0),
            last_log: Mutex::new(None),
        }
    }

    /// Whether a request from `addr` is within the rates.
    pub(crate) fn admit(&self, addr: IpAddr) -> bool {
        let ok = self.per_address.as_ref().is_none_or(|p| p.take(addr)) && self.total.take(1.0);
        if !ok {
            let n = self.refused_rate.fetch_add(1, Ordering::Relaxed) + 1;
            self.log(addr, "request rate", n);
        }
        ok
    }

    /// A slot for one `ReceiveMessage` call; `None` when every slot is taken.
    pub(crate) fn long_poll(&self, addr: IpAddr) -> Option<OwnedSemaphorePermit> {
        let permit = self.long_polls.clone().try_acquire_owned().ok();
        if permit.is_none() {
            let n = self.refused_long_polls.fetch_add(1, Ordering::Relaxed) + 1;
            self.log(addr, "concurrent ReceiveMessage calls", n);
        }
        permit
    }

    fn log(&self, addr: IpAddr, limit: &str, total: u64) {
        let mut last = self.last_log.lock();
        if last.is_none_or(|t| t.elapsed().as_secs() >= 1) {
            *last = Some(Instant::now());
            drop(last);
            tracing::warn!(peer = %addr, limit, refused_total = total, "HTTP request over a limit: refused (logged at most once a second)");
        }
    }
}
