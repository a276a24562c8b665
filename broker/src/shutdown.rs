//! The order in which the broker stops, written once. One signal reaches every task: accept loops
//! stop, MQTT connections write what they have and close (MQTT 5: DISCONNECT 0x8B), long polls
//! answer now, HTTP requests in flight finish, bridge links stop. Then, in order: connections are
//! given up to 10 s to close, the MQTT engine's queue for the store is written (deliveries
//! acknowledged, sessions changed; up to 5 s), and the store syncs once more before it closes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_shutdown::Trigger;
use tokio::task::JoinHandle;

/// Everything that takes part in stopping.
pub(crate) struct Stopping {
    /// The one signal every task of the binary holds.
    pub trigger: Trigger,
    /// What `/ready` answers: false from the first moment of shutdown.
    pub ready: Arc<AtomicBool>,
    /// The accept loops (they also stop on the trigger; awaited so none accepts after it).
    pub accepting: Vec<JoinHandle<()>>,
    #[cfg(feature = "sqs")]
    pub queues: Arc<outpost_queues::Queues>,
    pub broker: Arc<outpost_mqtt::Broker>,
    pub gates: [outpost_net::Gate; 2],
    pub store: outpost_store::Store,
}

/// How long open connections get to close.
const CONNECTIONS_GRACE: Duration = Duration::from_secs(10);
/// How long the MQTT engine's store queue gets to drain.
const PERSISTENCE_GRACE: Duration = Duration::from_secs(5);

impl Stopping {
    pub(crate) async fn stop(self) {
        tracing::info!("shutting down");
        self.ready.store(false, Ordering::Relaxed);
        self.trigger.fire();
        #[cfg(feature = "sqs")]
        self.queues.shut_down();
        self.broker.shut_down();
        for task in self.accepting {
            let _ = task.await;
        }
        let open = || self.gates.iter().map(|g| g.open()).sum::<usize>();
        let deadline = Instant::now() + CONNECTIONS_GRACE;
        while open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if open() > 0 {
            tracing::warn!(
                mqtt = self.gates[0].open(),
                http = self.gates[1].open(),
                "connections still open after 10 s; closing anyway"
            );
        }
        match tokio::time::timeout(PERSISTENCE_GRACE, self.broker.flush_persistence().wait()).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the store failed while shutting down"),
            Err(_) => tracing::warn!("the store did not finish its queue within 5 s"),
        }
        if let Err(e) = self.store.sync().await {
            tracing::error!(error = %e, "the final store sync failed");
        }
        tracing::info!("stopped");
    }
}
