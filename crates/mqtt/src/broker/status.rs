//! The engine's figures and housekeeping: the once-a-second tick (delayed wills, expired sessions,
//! refusal summaries), `/metrics` and `$SYS`.

use super::*;

impl Broker {
    /// Publishes delayed wills that are due and ends expired sessions. Call about once a second.
    pub fn tick(&self, now: Instant) {
        let due: Vec<_> = {
            let mut wills = self.wills.lock();
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut *wills)
                .into_iter()
                .partition(|(at, _, _)| *at <= now);
            *wills = later;
            due
        };
        let mut durable = Durable::default();
        for (_, client, will) in due {
            self.send_will(&client, *will, &mut durable);
        }
        let expired_at = |s: &Session| {
            s.connection.is_none()
                && s.expiry != u32::MAX
                && s.disconnected_at.is_some_and(|at| {
                    now.saturating_duration_since(at.instant())
                        >= Duration::from_secs(u64::from(s.expiry))
                })
        };
        let expired: Vec<Arc<str>> = self
            .sessions
            .read()
            .map
            .iter()
            .filter(|(_, s)| expired_at(&s.state.lock()))
            .map(|(k, _)| k.clone())
            .collect();
        for client in expired {
            // A will still waiting goes out when its session ends (§3.1.3.2.2).
            let pending: Vec<Box<Will>> = {
                let mut wills = self.wills.lock();
                let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut *wills)
                    .into_iter()
                    .partition(|(_, c, _)| *c == client);
                *wills = others;
                mine.into_iter().map(|(_, _, w)| w).collect()
            };
            for w in pending {
                self.send_will(&client, *w, &mut durable);
            }
            // Unless its client came back meanwhile.
            self.end_session_if(&client, |s, _| expired_at(s));
        }
        let clients = std::mem::take(&mut *self.refused_clients.lock());
        self.log_refusals(&clients);
        self.log_losses();
        self.forget_losses_of_ended_sessions();
    }

    /// Drops the loss counts of sessions that ended, unless `$SYS` still shows one (the next
    /// `publish_sys` clears that topic and drops the entry): the map never outgrows the sessions.
    fn forget_losses_of_ended_sessions(&self) {
        let sessions = self.sessions.read();
        self.losses
            .lock()
            .retain(|c, l| l.published > 0 || sessions.map.contains_key(c));
    }

    /// A QoS 1/2 message `client`'s full queue did not take: counted for that session.
    pub(super) fn session_lost(&self, client: &Arc<str>) {
        self.losses.lock().entry(client.clone()).or_default().count += 1;
    }

    /// Takes back deliveries whose store write failed (their publishers were told): a message
    /// refused for lack of space keeps no place in a queue.
    pub(crate) fn unqueue_unstored(&self, deliveries: &[(outpost_store::StreamId, u64)]) {
        // Those of offline sessions wait in the offline log.
        let deliveries: Vec<_> = deliveries
            .iter()
            .filter(|(stream, id)| !self.offline_unqueue(*stream, *id))
            .collect();
        if deliveries.is_empty() {
            return;
        }
        // A failed write is rare: the sessions are found by their streams in one pass.
        // The cells first, then each one's lock: no session is locked under the map's lock.
        let cells: Vec<Arc<SessionCell>> = self.sessions.read().map.values().cloned().collect();
        let by_stream: HashMap<outpost_store::StreamId, Arc<SessionCell>> = cells
            .into_iter()
            .filter_map(|cell| {
                let stream = cell.state.lock().stream.as_deref().map(|(s, _)| *s)?;
                Some((stream, cell))
            })
            .collect();
        for (stream, id) in deliveries {
            let Some(cell) = by_stream.get(stream) else {
                continue;
            };
            let mut s = cell.state.lock();
            if let Some(d) = s.outbox.unqueue(|d| d.id == *id) {
                self.queue_released(&d);
            }
        }
    }

    /// QoS 1/2 messages lost by each session whose queue was full, by client identifier (the
    /// sessions with a loss; at most `limit`, the largest first).
    pub fn session_losses(&self, limit: usize) -> Vec<(Arc<str>, u64)> {
        let mut all: Vec<(Arc<str>, u64)> = self
            .losses
            .lock()
            .iter()
            .map(|(c, l)| (c.clone(), l.count))
            .collect();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(limit);
        all
    }

    /// One log line a second naming the sessions that lost messages since the last one (a few
    /// by name, the rest counted), never a line per message.
    fn log_losses(&self) {
        const NAMED: usize = 10;
        let mut fresh: Vec<(Arc<str>, u64, u64)> = Vec::new();
        for (client, loss) in self.losses.lock().iter_mut() {
            if loss.count > loss.logged {
                fresh.push((client.clone(), loss.count - loss.logged, loss.count));
                loss.logged = loss.count;
            }
        }
        if fresh.is_empty() {
            return;
        }
        fresh.sort_unstable_by_key(|f| std::cmp::Reverse(f.1));
        let sessions = fresh.len();
        let named: Vec<String> = fresh
            .iter()
            .take(NAMED)
            .map(|(c, n, total)| format!("{c}: {n} (total {total})"))
            .collect();
        tracing::warn!(
            sessions,
            clients = ?named,
            "QoS 1/2 messages not queued: session queue full (max_queued_messages / max_queued_bytes)"
        );
    }

    /// One log line per kind of refusal that happened since the last call, with the count: a
    /// flood of refused messages or filters costs a counter each, not a line each.
    pub(super) fn log_refusals(&self, clients: &[Arc<str>]) {
        let mut logged = self.logged.lock();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let report = |last: &mut u64, now: u64, what: &str| {
            if now > *last {
                tracing::warn!(count = now - *last, total = now, "{what}");
                *last = now;
            }
        };
        report(
            &mut logged.subscriptions,
            load(&self.stats.refused_subscriptions),
            "subscriptions refused (quota, invalid or too deep filters)",
        );
        report(
            &mut logged.retained,
            load(&self.stats.refused_retained),
            "retained messages refused: retained quota reached",
        );
        report(
            &mut logged.deep,
            load(&self.stats.refused_deep_topics),
            "topics refused: more levels than max_topic_levels",
        );
        let sessions = load(&self.stats.refused_sessions);
        if sessions > logged.sessions {
            let names: Vec<&str> = clients.iter().map(|c| &**c).collect();
            tracing::warn!(
                count = sessions - logged.sessions,
                total = sessions,
                clients = ?names,
                "persistent sessions refused: max_persistent_sessions reached"
            );
            logged.sessions = sessions;
        }
    }
}

impl Broker {
    /// `$SYS/broker/sessions/<client id>/messages/dropped` for the sessions whose count changed
    /// since the last publish; an empty value (the retained topic cleared) for a session that is
    /// gone, whose entry then goes too. `+` and `#`, which a topic name cannot hold, become `_`.
    fn loss_values(&self) -> Vec<(String, String)> {
        let gone: Vec<Arc<str>> = {
            // The map first, the leaf after (the engine's lock order).
            let sessions = self.sessions.read();
            let losses = self.losses.lock();
            losses
                .keys()
                .filter(|c| !sessions.map.contains_key(*c))
                .cloned()
                .collect()
        };
        let topic = |c: &str| {
            let c: String = c
                .chars()
                .map(|ch| if ch == '+' || ch == '#' { '_' } else { ch })
                .collect();
            format!("sessions/{c}/messages/dropped")
        };
        let mut values = Vec::new();
        let mut losses = self.losses.lock();
        for c in gone {
            if let Some(l) = losses.remove(&c) {
                if l.published > 0 {
                    values.push((topic(&c), String::new()));
                }
            }
        }
        for (c, l) in losses.iter_mut() {
            if l.count > l.published {
                l.published = l.count;
                values.push((topic(c), l.count.to_string()));
            }
        }
        values
    }
}

/// The engine's figures, for `$SYS` topics and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStatus {
    /// Connected clients.
    pub connected: u64,
    /// Sessions (connected or kept for later).
    pub sessions: u64,
    /// Retained messages.
    pub retained: u64,
    /// Subscriptions.
    pub subscriptions: u64,
    /// PUBLISH packets received.
    pub messages_in: u64,
    /// PUBLISH packets sent.
    pub messages_out: u64,
    /// Messages dropped by backpressure.
    pub dropped: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
}

impl Broker {
    /// Current figures.
    pub fn status(&self) -> BrokerStatus {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BrokerStatus {
            connected: self.connected() as u64,
            sessions: self.sessions() as u64,
            retained: self.retained() as u64,
            subscriptions: self.index.read().subscriptions() as u64,
            messages_in: load(&self.stats.messages_in),
            messages_out: load(&self.stats.messages_out),
            dropped: load(&self.stats.dropped),
            bytes_in: load(&self.stats.bytes_in),
        }
    }

    /// What the engine refused or dropped since start, by reason (for `/metrics`).
    pub fn refusals(&self) -> [(&'static str, u64); 9] {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("queue_full", load(&self.stats.refused_overflow)),
            ("subscription", load(&self.stats.refused_subscriptions)),
            ("retained_quota", load(&self.stats.refused_retained)),
            ("topic_depth", load(&self.stats.refused_deep_topics)),
            ("session_quota", load(&self.stats.refused_sessions)),
            ("persist_failure", load(&self.stats.persist_failures)),
            ("stalled_subscriber", load(&self.stats.stalled)),
            ("dropped", load(&self.stats.dropped)),
            ("will", load(&self.stats.refused_wills)),
        ]
    }

    /// Publishes the `$SYS/broker/...` status topics (retained, like mosquitto), so monitoring tools
    /// see the broker's state. `extra` adds values the engine does not know (store size, ...).
    pub fn publish_sys(&self, uptime: Duration, extra: &[(&str, String)]) {
        let s = self.status();
        let mut values = vec![
            ("version", format!("outpost {}", env!("CARGO_PKG_VERSION"))),
            ("uptime", format!("{} seconds", uptime.as_secs())),
            ("clients/connected", s.connected.to_string()),
            ("clients/total", s.sessions.to_string()),
            ("subscriptions/count", s.subscriptions.to_string()),
            ("retained messages/count", s.retained.to_string()),
            ("messages/received", s.messages_in.to_string()),
            ("messages/sent", s.messages_out.to_string()),
            ("messages/dropped", s.dropped.to_string()),
            ("bytes/received", s.bytes_in.to_string()),
        ];
        values.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        let losses = self.loss_values();
        values.extend(losses.iter().map(|(k, v)| (k.as_str(), v.clone())));
        for (name, value) in values {
            let topic = format!("$SYS/broker/{name}");
            let _ = self.publish_internal(Message::new(
                &topic,
                Bytes::from(value),
                QoS::AtMostOnce,
                true,
            ));
        }
    }
}
