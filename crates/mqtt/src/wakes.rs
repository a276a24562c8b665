//! Deferred wake-ups. A publisher's connection routes everything it read in one go and wakes each
//! subscriber once at the end: a subscriber then finds a batch waiting and writes it with one
//! syscall, where waking it per message would have it write (and its client acknowledge) one
//! message at a time while the publisher is still routing.
//!
//! Whatever is collected is woken when the set is dropped, so a path that forgets to call
//! [`Wakes::wake_all`] delays a wake-up, never loses one.

use std::sync::Arc;

use crate::Signals;

/// Connections to wake, each once.
#[derive(Debug, Default)]
pub struct Wakes(Vec<Arc<Signals>>);

impl Wakes {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, n: Arc<Signals>) {
        self.0.push(n);
    }

    /// Wakes every connection collected so far.
    pub fn wake_all(&mut self) {
        for n in self.0.drain(..) {
            n.wake();
        }
    }
}

impl Drop for Wakes {
    fn drop(&mut self) {
        self.wake_all();
    }
}
