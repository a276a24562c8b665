//! The ACL questions this door asks for its client: may it publish, subscribe to, or read a
//! topic. The listener asks them (it knows who the client proved to be); the engine routes what
//! is allowed.

use outpost_mqtt::ConnectionHandle;
use tokio::io::AsyncWrite;

use super::conn::Conn;

impl<W: AsyncWrite + Unpin> Conn<W> {
    /// Asks the ACL; the first refusal of a connection is logged, every one is counted.
    pub(super) fn may(&mut self, h: &ConnectionHandle, action: &str, topic: &str) -> bool {
        if self
            .kept
            .security
            .mqtt_allows(&h.identity, &h.client_id, action, topic)
        {
            return true;
        }
        self.kept.denials = self.kept.denials.saturating_add(1);
        if self.kept.denials == 1 {
            tracing::info!(peer = %self.kept.peer, client = &*h.client_id, user = &*h.identity.name, action, topic = %topic.chars().take(128).collect::<String>(), "denied by the ACL (further denials on this connection are counted, not logged)");
        }
        false
    }

    /// Whether the client may read a message on `topic`: `mqtt:receive`, and no deny of
    /// `mqtt:subscribe` on it whatever wider filter brought it (ADR 0015).
    pub(super) fn may_read(&mut self, h: &ConnectionHandle, topic: &str) -> bool {
        if self
            .kept
            .security
            .mqtt_denies(&h.identity, &h.client_id, "mqtt:subscribe", topic)
        {
            self.kept.denials = self.kept.denials.saturating_add(1);
            return false;
        }
        self.may(h, "mqtt:receive", topic)
    }
}
