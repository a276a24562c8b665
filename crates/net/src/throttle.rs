//! Token buckets: a rate with a burst, for one caller or one per address. Used for failed logins
//! (repeated failures from one address are refused until its bucket refills) and for the
//! message, byte and connection rates of the limits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

/// A rate and its burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second (0: unlimited).
    pub per_second: f64,
    /// Most tokens held (at least 1).
    pub burst: f64,
}

impl Default for Rate {
    fn default() -> Self {
        Rate::UNLIMITED
    }
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate {
        per_second: 0.0,
        burst: 0.0,
    };

    /// True when this rate limits nothing.
    pub fn is_unlimited(&self) -> bool {
        self.per_second <= 0.0
    }
}

/// One token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            tokens: rate.burst.max(1.0),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst.max(1.0));
        self.at = now;
    }

    /// Takes `n` tokens if there are that many; false (and nothing taken) otherwise. An
    /// unlimited bucket always gives.
    pub fn take(&mut self, n: f64, now: Instant) -> bool {
        if self.rate.is_unlimited() {
            return true;
        }
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens even into debt (a message already read is charged in full); the bucket
    /// then has no token until the debt is refilled.
    pub fn charge(&mut self, n: f64, now: Instant) {
        if self.rate.is_unlimited() {
            return;
        }
        self.refill(now);
        self.tokens -= n;
    }

    /// True when a token is available now (nothing taken).
    pub fn has_token(&mut self, now: Instant) -> bool {
        if self.rate.is_unlimited() {
            return true;
        }
        self.refill(now);
        self.tokens >= 1.0
    }
}

/// A bucket shared by many callers (a global rate); `None` inside when unlimited, so an
/// unconfigured limit costs no lock.
#[derive(Debug, Clone, Default)]
pub struct Shared(Option<std::sync::Arc<Mutex<TokenBucket>>>);

impl Shared {
    /// A shared bucket of `rate` (unlimited: no bucket at all).
    pub fn new(rate: Rate) -> Shared {
        if rate.is_unlimited() {
            Shared(None)
        } else {
            Shared(Some(std::sync::Arc::new(Mutex::new(TokenBucket::new(
                rate,
                Instant::now(),
            )))))
        }
    }

    /// Takes `n` tokens; false when there are not that many.
    pub fn take(&self, n: f64) -> bool {
        match &self.0 {
            None => true,
            Some(b) => b.lock().take(n, Instant::now()),
        }
    }
}

/// Most addresses tracked at once; past it, full buckets are forgotten first (an address that
/// is not failing needs no memory), then the map is cleared (a flood of addresses cannot grow it).
const MAX_ADDRESSES: usize = 65_536;

/// One bucket per IP address.
#[derive(Debug)]
pub struct PerAddress {
    rate: Rate,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl PerAddress {
    /// Buckets of `rate`, created full on first use.
    pub fn new(rate: Rate) -> PerAddress {
        PerAddress {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `addr`'s bucket; false when it is empty.
    pub fn take(&self, addr: IpAddr) -> bool {
        if self.rate.is_unlimited() {
            return true;
        }
        let now = Instant::now();
        let mut b = self.buckets.lock();
        if b.len() >= MAX_ADDRESSES && !b.contains_key(&addr) {
            let full = self.rate.burst.max(1.0);
            b.retain(|_, bucket| {
                bucket.refill(now);
                bucket.tokens < full
            });
            if b.len() >= MAX_ADDRESSES {
                b.clear();
            }
        }
        b.entry(addr)
            .or_insert_with(|| TokenBucket::new(self.rate, now))
            .take(1.0, now)
    }

    /// True when `addr` has a token (nothing taken).
    pub fn has_token(&self, addr: IpAddr) -> bool {
        if self.rate.is_unlimited() {
            return true;
        }
        let now = Instant::now();
        self.buckets
            .lock()
            .get_mut(&addr)
            .is_none_or(|bucket| bucket.has_token(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            Rate {
                per_second: 10.0,
                burst: 5.0,
            },
            t0,
        );
        for _ in 0..5 {
            assert!(b.take(1.0, t0));
        }
        assert!(!b.take(1.0, t0));
        assert!(b.take(1.0, t0 + Duration::from_millis(100)));
        assert!(!b.take(1.0, t0 + Duration::from_millis(100)));
        b.charge(10.0, t0 + Duration::from_millis(100));
        // Ten tokens of debt at ten a second: none for a second.
        assert!(!b.has_token(t0 + Duration::from_millis(1_050)));
        assert!(b.has_token(t0 + Duration::from_millis(1_300)));
    }

    #[test]
    fn addresses_are_separate() {
        let p = PerAddress::new(Rate {
            per_second: 0.001,
            burst: 2.0,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(p.take(a) && p.take(a));
        assert!(!p.take(a));
        assert!(!p.has_token(a));
        assert!(p.take(b));
    }
}
