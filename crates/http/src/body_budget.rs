//! Bytes of request bodies on their way in: bounded in all and per address.
//!
//! A body is read before anything shared is taken: a slow sender holds only its own socket and
//! its share of this budget, never a parsing permit every other caller needs (ADR 0015). The
//! budget is taken by the declared `Content-Length` (or the largest body for a chunked one) and
//! without waiting: when the caller's address or the broker has no room, the request is refused
//! at once with a throttling answer, and the others go on.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// The shared budget.
#[derive(Debug)]
pub struct BodyBudget {
    total: u64,
    per_address: u64,
    state: Mutex<(u64, HashMap<IpAddr, u64>)>,
}

/// Bytes taken for one body; given back when dropped.
#[derive(Debug)]
pub struct BodyBytes {
    budget: Arc<BodyBudget>,
    ip: IpAddr,
    bytes: u64,
}

impl BodyBudget {
    /// A budget of `total` bytes, at most `per_address` of them for one address.
    pub fn new(total: u64, per_address: u64) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            total,
            per_address: per_address.min(total),
            state: Mutex::new((0, HashMap::new())),
        })
    }

    /// Takes `bytes` for a body from `ip`; `None` when the address or the broker has no room.
    pub fn take(self: &Arc<Self>, ip: IpAddr, bytes: u64) -> Option<BodyBytes> {
        let mut s = self.state.lock();
        let mine = s.1.get(&ip).copied().unwrap_or(0);
        if s.0 + bytes > self.total || mine + bytes > self.per_address {
            return None;
        }
        s.0 += bytes;
        s.1.insert(ip, mine + bytes);
        Some(BodyBytes {
            budget: self.clone(),
            ip,
            bytes,
        })
    }

    /// Bytes taken now (in all).
    pub fn in_flight(&self) -> u64 {
        self.state.lock().0
    }
}

impl Drop for BodyBytes {
    fn drop(&mut self) {
        let mut s = self.budget.state.lock();
        s.0 -= self.bytes;
        if let Some(mine) = s.1.get_mut(&self.ip) {
            *mine -= self.bytes;
            if *mine == 0 {
                s.1.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_take_the_whole_budget() {
        let b = BodyBudget::new(1000, 300);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<_> = (0..3).filter_map(|_| b.take(a, 100)).collect();
        assert_eq!(held.len(), 3);
        assert!(b.take(a, 1).is_none(), "over the address's share");
        assert!(b.take(other, 300).is_some(), "another address goes on");
        drop(held);
        assert!(b.take(a, 300).is_some(), "given back when dropped");
        assert_eq!(b.in_flight(), 0);
    }
}
