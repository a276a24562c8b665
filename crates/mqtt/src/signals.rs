//! What a connection's task waits for besides its socket, in one place: one notification, and
//! the reasons the broker may have for closing the connection. The connection's `select!` then
//! holds one `Notified` for all of them (issue 29: an idle connection's future held one for
//! deliveries, one for a takeover and a 160-byte watch future for the shutdown, each signal in an
//! allocation of its own).

use std::sync::atomic::{AtomicU8, Ordering};

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
}

impl Signals {
    /// Resolves at the next wake-up (at once when one came since the last).
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Something may be ready to send.
    pub(crate) fn wake(&self) {
        self.notify.notify_one();
    }

    /// Asks the connection to close, for `why`.
    pub(crate) fn close(&self, why: Close) {
        self.closing.fetch_or(why.bit(), Ordering::Release);
        self.notify.notify_one();
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
