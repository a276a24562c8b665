//! Offline persistent sessions and the shared offline log (ADR 0023): going offline, coming
//! back, ending, and routing a message to the offline sessions among its targets.
//!
//! Lock order: a session's lock, then the log's. Routing takes the log's alone (no session is
//! locked while it holds it), so a session that connects, under its own lock, empties its share
//! of the log before any message routed after it can reach its queue.

use super::*;
use crate::offline::{Added, Held};
use crate::persistence::RefSpec;

impl Broker {
    /// The session of `cell` just lost its connection (its lock is held as `s`): from now on the
    /// messages routed to it wait in the offline log, unless it keeps QoS 0 messages in its queue
    /// (a QoS 1 message may evict one when the queue is full: that stays the queue's business)
    /// or queues QoS 0 messages while offline.
    pub(super) fn go_offline(&self, cell: &SessionCell, s: &Session) {
        if s.expiry == 0
            || s.ended
            || self.config.queue_qos0_offline
            || cell.offline.load(Ordering::Relaxed) != 0
            || s.outbox.holds_qos0()
        {
            return;
        }
        let (max_count, max_bytes) = s.outbox.limits();
        let held = Held {
            count: s.outbox.queued(),
            bytes: s.outbox.queued_bytes() + s.outbox.in_flight_bytes(),
            max_count,
            max_bytes,
        };
        let stream = s.stream.as_deref().map(|(stream, _)| *stream);
        let mut log = self.offline.lock();
        let slot = log.register(held, stream);
        cell.offline.store(slot, Ordering::Release);
    }

    /// The session of `cell` is connected again, or is ending (its lock is held as `s`): its
    /// messages leave the log, onto its queue in order when `take`.
    pub(super) fn leave_offline(&self, cell: &SessionCell, s: &mut Session, take: bool) {
        if cell.offline.load(Ordering::Relaxed) == 0 {
            return;
        }
        let deliveries = {
            let mut log = self.offline.lock();
            let slot = cell.offline.swap(0, Ordering::AcqRel);
            log.leave(slot, take)
        };
        // Counted against the queue's limits when they were routed, and acknowledged to their
        // publishers: admitted whatever the queue holds now (a route that found the session
        // online a moment before it went offline may have queued one more meanwhile).
        for d in deliveries {
            s.outbox.admit(d);
        }
    }

    /// Messages the offline session of `cell` holds in the log.
    pub(super) fn offline_count(&self, cell: &SessionCell) -> usize {
        match cell.offline.load(Ordering::Acquire) {
            0 => 0,
            slot => self.offline.lock().count(slot),
        }
    }

    /// The first `max` messages the offline session of `cell` holds in the log.
    pub(super) fn offline_peek(&self, cell: &SessionCell, max: usize) -> Vec<(Arc<Message>, QoS)> {
        match cell.offline.load(Ordering::Acquire) {
            0 => Vec::new(),
            slot => self.offline.lock().peek(slot, max),
        }
    }

    /// Takes back a delivery whose store write failed from the log; true when it was there.
    pub(super) fn offline_unqueue(&self, stream: StreamId, id: u64) -> bool {
        self.offline.lock().unqueue(stream, id)
    }

    /// Routes `message` (key `key`) to the targets that are offline sessions in the log: one
    /// entry for all of them, no session locked (`sessions` is the sessions map, read-locked by
    /// the caller). Returns the targets left for their queues, each with its delivery id and its
    /// session; the references of what the log took go to `refs`, and the clients whose share of
    /// the log is full to `full`.
    pub(super) fn route_offline(
        &self,
        key: u64,
        message: &Arc<Message>,
        sessions: &HashMap<Arc<str>, Arc<SessionCell>>,
        matched: Vec<crate::Recipient<'_>>,
        (routed, refs, full): (&mut Routed, &mut Vec<RefSpec>, &mut Vec<Arc<str>>),
    ) -> Vec<(u64, crate::Target, Arc<SessionCell>)> {
        let cells: Vec<Option<&Arc<SessionCell>>> =
            matched.iter().map(|r| sessions.get(r.client)).collect();
        let mut online = Vec::with_capacity(matched.len());
        if cells
            .iter()
            .flatten()
            .all(|cell| cell.offline.load(Ordering::Acquire) == 0)
        {
            for ((id, r), cell) in (key + 1..).zip(matched).zip(cells) {
                if let Some(cell) = cell {
                    online.push((id, r.into_target(), cell.clone()));
                }
            }
            return online;
        }
        let mut took = 0;
        let mut log = self.offline.lock();
        let mut adding = log.adding(key, message.clone(), matched.len());
        for ((at, r), cell) in (0u32..).zip(matched).zip(cells) {
            let Some(cell) = cell else {
                continue;
            };
            let id = key + 1 + u64::from(at);
            // Read again under the log's lock: a session that connected meanwhile took its
            // share and goes through its queue now.
            let slot = cell.offline.load(Ordering::Acquire);
            if slot == 0 {
                online.push((id, r.into_target(), cell.clone()));
                continue;
            }
            if r.qos == QoS::AtMostOnce {
                // An offline session queues no QoS 0 message (it would be in its queue otherwise).
                continue;
            }
            routed.matched += 1;
            match adding.add(slot, at, r.qos, r.retain, r.subscription_ids.clone()) {
                Added::Held(stream) => {
                    took += 1;
                    if let (Some(_), Some(stream)) = (&self.persist, stream) {
                        refs.push(RefSpec {
                            stream,
                            delivery: id,
                            qos: r.qos,
                            retain: r.retain,
                            subscription_ids: r.subscription_ids,
                        });
                    }
                }
                Added::Full => {
                    routed.refused += 1;
                    full.push(r.client.clone());
                }
            }
        }
        adding.finish();
        drop(log);
        routed.took += took;
        self.stats
            .messages_out
            .fetch_add(took as u64, Ordering::Relaxed);
        online
    }
}
