//! Deferred wake-ups. A publisher's connection routes everything it read in one go and wakes each
//! subscriber once at the end: a subscriber then finds a batch waiting and writes it with one
//! syscall, where waking it per message would have it write (and its client acknowledge) one
//! message at a time while the publisher is still routing.
//!
//! The messages' store jobs wait here too and go to the persistence task together, first: the
//! task (a thread of its own) is woken once per batch instead of once per message, and takes the
//! batch in one group commit.
//!
//! Whatever is collected is woken (and sent) when the set is dropped, so a path that forgets to
//! call [`Wakes::wake_all`] delays a wake-up, never loses one.

use std::sync::Arc;

use crate::persistence::{Job, Persister};
use crate::Signals;

/// Connections to wake, each once, and store jobs to send.
#[derive(Debug, Default)]
pub struct Wakes {
    signals: Vec<Arc<Signals>>,
    jobs: Vec<Job>,
    persister: Option<Persister>,
}

impl Wakes {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, n: Arc<Signals>) {
        self.signals.push(n);
    }

    /// Sends `job` with the others, at the latest when this set is woken. Only for jobs nothing
    /// sent directly depends on being behind (a message to store: its publisher waits for it).
    pub(crate) fn send_job(&mut self, p: &Persister, job: Job) {
        if self.persister.is_none() {
            self.persister = Some(p.clone());
        }
        self.jobs.push(job);
    }

    /// Sends the store jobs and wakes every connection collected so far.
    pub fn wake_all(&mut self) {
        if let Some(p) = &self.persister {
            for job in self.jobs.drain(..) {
                p.send(job);
            }
        }
        for n in self.signals.drain(..) {
            n.wake();
        }
    }
}

impl Drop for Wakes {
    fn drop(&mut self) {
        self.wake_all();
    }
}
