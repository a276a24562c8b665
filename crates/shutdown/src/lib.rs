//! One shutdown signal for every long-lived task, as mini-redis does it: the binary holds the
//! [`Trigger`] and fires it once; every accept loop, connection, bridge link and background task
//! holds a [`Shutdown`] and stops when it fires. What must happen in order after that (waiting for
//! connections to close, flushing the store) is written once, in the binary's `shutdown` module,
//! not spread over ad-hoc channels.
//!
//! A dropped trigger counts as fired: a task whose owner is gone has nothing left to serve.

use std::future::Future;

use tokio::sync::watch;

/// The sending side, fired once.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

impl Trigger {
    /// A trigger not yet fired.
    pub fn new() -> Trigger {
        Trigger(watch::channel(false).0)
    }

    /// A receiver for one more task.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }

    /// Tells every receiver, now and later, that the broker is stopping.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// True once fired.
    pub fn fired(&self) -> bool {
        *self.0.borrow()
    }
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger::new()
    }
}

/// The receiving side, one per task (clone it).
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// True once the trigger fired (or was dropped).
    pub fn is_shutdown(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once the trigger fires (at once if it already has). Cancel-safe; holds no lock
    /// across an await, so it can sit in a `select!` beside anything.
    pub async fn recv(&mut self) {
        // The guard `wait_for` returns is dropped at once.
        drop(self.0.wait_for(|down| *down).await);
    }

    /// Runs `task` until it ends or the trigger fires; `None` when the shutdown came first.
    pub async fn until<F: Future>(mut self, task: F) -> Option<F::Output> {
        tokio::select! {
            out = task => Some(out),
            _ = self.recv() => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_receiver_learns_it_once_fired_even_a_late_one() {
        let trigger = Trigger::new();
        let mut early = trigger.subscribe();
        assert!(!early.is_shutdown());
        let waiting = tokio::spawn(async move { early.recv().await });
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("an early receiver wakes")
            .expect("no panic");
        let mut late = trigger.subscribe();
        assert!(late.is_shutdown());
        tokio::time::timeout(Duration::from_secs(5), late.recv())
            .await
            .expect("a late receiver returns at once");
        assert!(trigger.fired());
    }

    #[tokio::test]
    async fn until_stops_a_task_that_would_run_forever() {
        let trigger = Trigger::new();
        let s = trigger.subscribe();
        let task = tokio::spawn(s.until(std::future::pending::<()>()));
        trigger.fire();
        let out = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stopped")
            .expect("no panic");
        assert_eq!(out, None);
        let other = Trigger::new();
        assert_eq!(other.subscribe().until(async { 7 }).await, Some(7));
    }

    #[tokio::test]
    async fn a_dropped_trigger_counts_as_fired() {
        let trigger = Trigger::new();
        let mut s = trigger.subscribe();
        drop(trigger);
        assert!(s.is_shutdown());
        tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await
            .expect("returns");
    }
}
