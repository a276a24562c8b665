//! The publish tap: how the routing layer sees every client PUBLISH without the MQTT engine
//! knowing about rules, queues or topics.
//!
//! The engine offers each message a client publishes (not the broker's own: `$SYS`, the
//! routing layer's deliveries to MQTT targets, which would otherwise loop) to one tap. The tap
//! answers with nothing (no rule wants it, the common case) or a future that resolves once the
//! routed copies are durable; the publisher's PUBACK waits for that future as it waits for the
//! broker's own persistence.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use crate::persistence::{Durable, PersistError};
use crate::Message;

/// What a tap hands back for a message it took: resolves with an error text when a routed
/// copy could not be stored (the PUBACK then reports a failure).
pub type TapWait = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

/// Something that sees every message clients publish.
pub trait PublishTap: Send + Sync {
    /// Offers `message` from `client_id`; `Some` when the PUBACK must wait for the returned
    /// future.
    fn offer(&self, client_id: &str, message: &Message) -> Option<TapWait>;

    /// [`PublishTap::offer`], knowing the identity the publisher acts as (a tap that
    /// authorizes what it does with a message, such as the shadow service, needs it).
    fn offer_as(
        &self,
        who: &outpost_access::Identity,
        client_id: &str,
        message: &Message,
    ) -> Option<TapWait> {
        let _ = who;
        self.offer(client_id, message)
    }
}

/// A plug-in of a broker (the publish tap, the queue door): set once at start.
pub(crate) struct Slot<T: ?Sized>(OnceLock<Arc<T>>);

impl<T: ?Sized> Default for Slot<T> {
    fn default() -> Self {
        Slot(OnceLock::new())
    }
}

impl<T: ?Sized> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Slot(set)"
        } else {
            "Slot(empty)"
        })
    }
}

impl<T: ?Sized> Slot<T> {
    pub(crate) fn set(&self, value: Arc<T>) -> bool {
        self.0.set(value).is_ok()
    }

    pub(crate) fn get(&self) -> Option<&Arc<T>> {
        self.0.get()
    }
}

/// Hands a tap's (or door's) wait to `durable` through a task, so a PUBACK waits for it.
pub(crate) fn join(durable: &mut Durable, wait: TapWait) {
    let (done, rx) = tokio::sync::oneshot::channel();
    durable.push(rx);
    tokio::spawn(async move {
        let result = wait.await.map_err(|e| {
            tracing::warn!(error = %e, "a routed copy of a message could not be stored");
            PersistError::Failed
        });
        // The connection may be gone; then nobody waits.
        let _ = done.send(result);
    });
}

impl Slot<dyn PublishTap> {
    /// Offers a message; a wait the tap returns joins `durable`. True when the tap took it
    /// (a rule matched: the message has a receiver even without subscribers).
    pub(crate) fn offer(
        &self,
        who: &outpost_access::Identity,
        client_id: &str,
        message: &Message,
        durable: &mut Durable,
    ) -> bool {
        let Some(tap) = self.0.get() else {
            return false;
        };
        let Some(wait) = tap.offer_as(who, client_id, message) else {
            return false;
        };
        join(durable, wait);
        true
    }
}

/// Several taps as one (the event rules and the bridges): each sees every message, and the
/// PUBACK waits for every one that took it.
pub struct TapChain(pub Vec<Arc<dyn PublishTap>>);

impl PublishTap for TapChain {
    fn offer(&self, client_id: &str, message: &Message) -> Option<TapWait> {
        self.offer_as(&outpost_access::Identity::anonymous(""), client_id, message)
    }

    fn offer_as(
        &self,
        who: &outpost_access::Identity,
        client_id: &str,
        message: &Message,
    ) -> Option<TapWait> {
        all_of(
            self.0
                .iter()
                .filter_map(|t| t.offer_as(who, client_id, message))
                .collect(),
        )
    }
}

/// One wait for several: `None` for none, the first error of any.
pub fn all_of(mut waits: Vec<TapWait>) -> Option<TapWait> {
    match waits.len() {
        0 => None,
        1 => waits.pop(),
        _ => Some(Box::pin(async move {
            for w in waits {
                w.await?;
            }
            Ok(())
        })),
    }
}
