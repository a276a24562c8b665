//! The outgoing side of a connection: what may be sent now, acknowledgements from the client, and flow control seen from the publisher's side (who still holds it back).

use super::*;

impl Broker {
    /// Messages that may be sent now on this connection (expired ones are dropped on the way).
    pub fn sendable(&self, h: &ConnectionHandle) -> Vec<Send<Delivery>> {
        let mut s = h.session.state.lock();
        if !s.owned_by(h.conn_id) {
            return Vec::new();
        }
        // From here on, a new delivery needs a new wake-up.
        s.woken = false;
        let now = Instant::now();
        let mut out = Vec::new();
        while let Some(send) = s.outbox.next_sendable() {
            if let Send::Publish { pkid, message, .. } = &send {
                if message.message.expired(now) {
                    // §3.3.2.3.3: an expired message is not delivered; release its identifier.
                    if *pkid != 0 {
                        if let Ok(d) = s.outbox.discard(*pkid) {
                            self.queue_released(&d);
                            self.complete(&s, &d);
                        }
                    }
                    continue;
                }
            }
            if let Send::Publish {
                pkid: 0, message, ..
            } = &send
            {
                // QoS 0 is done once sent.
                self.queue_acked(message);
            }
            out.push(send);
        }
        if s.flow.is_some() && s.outbox.queued() < self.config.flow_control_queue / 2 {
            s.release_publishers();
            s.flow = None;
        }
        out
    }

    /// Flow control: of the subscribers a publisher's messages went to, the first one that still
    /// holds it back (connected, over half the queue limit), with a future that resolves when
    /// that may have changed. A subscriber that has held publishers back longer than the stall
    /// timeout is disconnected here, and no longer holds anyone.
    pub fn holding_back(
        &self,
        clients: &mut Vec<Arc<str>>,
    ) -> Option<tokio::sync::futures::OwnedNotified> {
        let half = self.config.flow_control_queue / 2;
        while let Some(client) = clients.last().cloned() {
            let Some(cell) = self.session_of(&client) else {
                clients.pop();
                continue;
            };
            let mut s = cell.state.lock();
            let Some(conn) = &s.connection else {
                clients.pop();
                continue;
            };
            if conn.signals.is(crate::Close::Stalled) || s.stall_spent() || s.outbox.queued() < half
            {
                clients.pop();
                continue;
            }
            let signals = conn.signals.clone();
            let flow = s.flow.get_or_insert_with(Default::default);
            let since = *flow.over_since.get_or_insert_with(Instant::now);
            if flow.held_for + since.elapsed() >= self.config.stall_timeout {
                // It has not drained for the whole stall timeout: it is the one to go.
                self.stats.stalled.fetch_add(1, Ordering::Relaxed);
                flow.stall_spent = true;
                signals.close(crate::Close::Stalled);
                s.release_publishers();
                clients.pop();
                continue;
            }
            // Created under the lock, so a drain that happens after the check wakes it.
            return Some(flow.drained.clone().notified_owned());
        }
        None
    }

    /// Forgets an in-flight message the connection will not send (too large for the client).
    /// The window opened: the connection is woken to send what may follow.
    pub fn discard(&self, h: &ConnectionHandle, pkid: u16) {
        let _ = self.with_session(h, |s| {
            s.outbox.discard(pkid).map(|d| {
                self.queue_released(&d);
                self.complete(s, &d)
            })
        });
        h.signals.wake();
    }

    /// PUBACK from the client.
    pub fn puback(&self, h: &ConnectionHandle, pkid: u16) -> Result<(), AckError> {
        self.with_session(h, |s| {
            s.outbox.puback(pkid).map(|d| {
                self.queue_acked(&d);
                self.complete(s, &d)
            })
        })
    }

    /// PUBREC from the client: returns the PUBREL to send.
    pub fn pubrec(&self, h: &ConnectionHandle, pkid: u16) -> Result<Send<Delivery>, AckError> {
        self.with_session(h, |s| s.outbox.pubrec(pkid))
    }

    /// PUBCOMP from the client.
    pub fn pubcomp(&self, h: &ConnectionHandle, pkid: u16) -> Result<(), AckError> {
        self.with_session(h, |s| {
            s.outbox.pubcomp(pkid).map(|d| {
                self.queue_acked(&d);
                self.complete(s, &d)
            })
        })
    }

    /// PUBREL from the client: the reason code for PUBCOMP.
    pub fn pubrel(&self, h: &ConnectionHandle, pkid: u16) -> ReasonCode {
        self.with_session(h, |s| Ok(s.inbox.pubrel(pkid)))
            .unwrap_or(ReasonCode::PacketIdentifierNotFound)
    }

    pub(super) fn with_session<T>(
        &self,
        h: &ConnectionHandle,
        f: impl FnOnce(&mut Session) -> Result<T, AckError>,
    ) -> Result<T, AckError> {
        let mut s = h.session.state.lock();
        if s.ended {
            return Err(AckError::UnknownPacketId(0));
        }
        // An acknowledgement may open the window; the connection asks what to send after every
        // packet batch it handles, so no wake-up is needed here.
        f(&mut s)
    }
}
