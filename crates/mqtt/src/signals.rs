//! What a connection's task waits for besides its socket, in one place: one notification, and
//! the reasons the broker may have for closing the connection. The connection's `select!` then
//! holds one `Notified` for all of them (issue 29: an idle connection's future held one for
//! deliveries, one for a takeover and a 160-byte watch future for the shutdown, each signal in an
//! allocation of its own).

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::OnceLock;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// Why the broker closes a connection; when several apply, the first listed wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The subscriber held its publishers back past the stall timeout (Quota exceeded).
    Stalled,
    /// An operator disconnected it (Administrative action).
    Administrative,
    /// Another connection took the session over (Session taken over).
    TakenOver,
    /// The broker is stopping (Server shutting down).
    ShuttingDown,
}

impl Close {
    const ALL: [Close; 4] = [
        Close::Stalled,
        Close::Administrative,
        Close::TakenOver,
        Close::ShuttingDown,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A connection's wake-up: something to send, or a reason to close.
#[derive(Debug, Default)]
pub struct Signals {
    notify: Notify,
    closing: AtomicU8,
    /// The connection is parked (idle, without a task: the door's parking lot holds it) under
    /// this token plus one; 0 while it runs.
    parked: AtomicU32,
}

/// What wakes a parked connection: set once by the door that parks connections.
static UNPARK: OnceLock<fn(u32)> = OnceLock::new();

/// Sets what a wake-up of a parked connection calls, with its token (once per process).
pub fn set_unparker(unpark: fn(u32)) {
    let _ = UNPARK.set(unpark);
}

impl Signals {
    /// The connection is parked under `token`: a wake-up from now on unparks it. The caller
    /// then looks for a wake-up that came before (a [`Signals::notified`] ready at once).
    pub fn park(&self, token: u32) {
        self.parked.store(token.wrapping_add(1), Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// Takes the parked token back (the connection runs again); `None` when a wake-up took it.
    pub fn unpark(&self) -> Option<u32> {
        match self.parked.swap(0, Ordering::SeqCst) {
            0 => None,
            t => Some(t - 1),
        }
    }

    /// A parked connection is woken by its parking lot.
    fn wake_parked(&self) {
        // After the notification (a parking connection writes its token, then looks for one):
        // one of the two sees the other. A load first, so a running connection's wake-ups write
        // nothing more.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) == 0 {
            return;
        }
        if let Some(token) = self.unpark() {
            if let Some(unpark) = UNPARK.get() {
                unpark(token);
            }
        }
    }

    /// Resolves at the next wake-up (at once when one came since the last).
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Something may be ready to send.
    pub(crate) fn wake(&self) {
        self.notify.notify_one();
        self.wake_parked();
    }

    /// Asks the connection to close, for `why`.
    pub(crate) fn close(&self, why: Close) {
        self.closing.fetch_or(why.bit(), Ordering::Release);
        self.notify.notify_one();
        self.wake_parked();
    }

    /// Why the connection is asked to close, if it is.
    pub fn closing(&self) -> Option<Close> {
        let bits = self.closing.load(Ordering::Acquire);
        Close::ALL.into_iter().find(|c| bits & c.bit() != 0)
    }

    /// True once asked to close for `why`.
    pub(crate) fn is(&self, why: Close) -> bool {
        self.closing.load(Ordering::Acquire) & why.bit() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_urgent_reason_wins_and_a_wake_is_not_a_close() {
        let s = Signals::default();
        s.wake();
        assert_eq!(s.closing(), None);
        s.close(Close::ShuttingDown);
        assert_eq!(s.closing(), Some(Close::ShuttingDown));
        s.close(Close::TakenOver);
        assert_eq!(s.closing(), Some(Close::TakenOver));
        s.close(Close::Stalled);
        assert_eq!(s.closing(), Some(Close::Stalled));
        assert!(s.is(Close::ShuttingDown));
        assert!(!s.is(Close::Administrative));
    }
}
