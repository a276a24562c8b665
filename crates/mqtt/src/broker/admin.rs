//! The data plane seen from outside a connection: what AWS IoT's data API (`iot-data`) asks of a
//! broker — a retained message, the list of retained topics, a client's connection and
//! subscriptions, and disconnecting a client on an operator's request.

use std::time::SystemTime;

use super::*;

/// What `GetConnection` reports of a client's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// A connection currently serves the session.
    pub connected: bool,
    /// The session ends with its connection (session expiry 0).
    pub clean_session: bool,
    /// Seconds the session outlives its connection (`u32::MAX`: forever).
    pub session_expiry: u32,
    /// When the session's connection ended, if it has.
    pub disconnected_since: Option<SystemTime>,
}

/// One retained message, as `ListRetainedMessages` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedSummary {
    /// Topic.
    pub topic: String,
    /// Payload bytes.
    pub payload_size: usize,
    /// QoS it was published with.
    pub qos: QoS,
}

impl Broker {
    /// The retained message of exactly `topic`.
    pub fn retained_message(&self, topic: &str) -> Option<(Arc<Message>, QoS)> {
        self.retained
            .lock()
            .tree
            .get(topic)
            .map(|r| (r.message.clone(), r.qos))
    }

    /// Retained messages in topic order, at most `max`, starting after `after`; and whether more
    /// follow.
    pub fn retained_page(&self, after: Option<&str>, max: usize) -> (Vec<RetainedSummary>, bool) {
        let mut all: Vec<RetainedSummary> = Vec::new();
        let retained = self.retained.lock();
        for filter in ["#", "$SYS/#"] {
            retained.tree.for_each_match(filter, |topic, r| {
                if after.is_none_or(|a| topic > a) {
                    all.push(RetainedSummary {
                        topic: topic.to_string(),
                        payload_size: r.message.payload.len(),
                        qos: r.qos,
                    });
                }
            });
        }
        drop(retained);
        all.sort_by(|a, b| a.topic.cmp(&b.topic));
        all.dedup_by(|a, b| a.topic == b.topic);
        let more = all.len() > max;
        all.truncate(max);
        (all, more)
    }

    /// The session of `client`, if there is one.
    pub fn connection_info(&self, client: &str) -> Option<ConnectionInfo> {
        let cell = self.sessions.read().map.get(client).cloned()?;
        let s = cell.state.lock();
        Some(ConnectionInfo {
            connected: s.connection.is_some(),
            clean_session: s.expiry == 0,
            session_expiry: s.expiry,
            disconnected_since: s
                .disconnected_at
                .and_then(|at| SystemTime::now().checked_sub(at.instant().elapsed())),
        })
    }

    /// The filters `client`'s session subscribes to (with their QoS), sorted; `None` when it has
    /// no session.
    pub fn client_subscriptions(&self, client: &str) -> Option<Vec<(String, QoS)>> {
        let cell = self.sessions.read().map.get(client).cloned()?;
        let s = cell.state.lock();
        let mut out: Vec<(String, QoS)> = s
            .subscriptions
            .iter()
            .map(|(filter, sub)| (filter.to_string(), sub.options.qos))
            .collect();
        out.sort();
        Some(out)
    }

    /// Disconnects `client` on an operator's request (MQTT 5 clients get DISCONNECT 0x98,
    /// Administrative action). `clean_session` ends its session too (queued messages and
    /// subscriptions go); `prevent_will` drops its will instead of publishing it. False when the
    /// client has no session.
    pub fn delete_connection(&self, client: &str, clean_session: bool, prevent_will: bool) -> bool {
        let Some(cell) = self.sessions.read().map.get(client).cloned() else {
            return false;
        };
        let key: Arc<str> = client.into();
        let connected = {
            let mut s = cell.state.lock();
            if prevent_will {
                s.will = None;
                self.wills.lock().retain(|(_, c, _)| **c != *client);
            }
            if clean_session {
                // The connection's end then ends the session (see `disconnect`).
                s.expiry = 0;
            }
            match &s.connection {
                Some(conn) => {
                    conn.signals.close(crate::Close::Administrative);
                    true
                }
                None => false,
            }
        };
        if clean_session && !connected {
            self.end_session_if(&key, |s, c| Arc::ptr_eq(c, &cell) && s.connection.is_none());
        }
        true
    }
}

/// One session, as an operator's list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// Client id.
    pub client_id: String,
    /// A connection serves it now.
    pub connected: bool,
    /// The identity of its connection (empty: anonymous, or none connected).
    pub identity: String,
    /// MQTT version of its connection (`None` when disconnected).
    pub version: Option<Version>,
    /// Its subscriptions.
    pub subscriptions: usize,
    /// Messages it holds: queued, or sent and not acknowledged.
    pub queued: usize,
    /// Seconds it outlives its connection.
    pub session_expiry: u32,
}

/// `offline`: messages it holds in the offline log.
fn summary(client_id: &str, s: &Session, offline: usize) -> SessionSummary {
    SessionSummary {
        client_id: client_id.to_string(),
        connected: s.connection.is_some(),
        identity: s
            .connection
            .as_ref()
            .map(|c| c.who.to_string())
            .unwrap_or_default(),
        version: s.connection.as_ref().map(|c| c.version),
        subscriptions: s.subscriptions.len(),
        queued: s.outbox.queued() + s.outbox.in_flight() + offline,
        session_expiry: s.expiry,
    }
}

/// A message a session holds, as an operator's inspection shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMessage {
    /// Its topic.
    pub topic: String,
    /// The QoS it is delivered with.
    pub qos: QoS,
    /// Payload bytes.
    pub bytes: usize,
    /// Sent and not yet acknowledged.
    pub in_flight: bool,
}

impl Broker {
    /// The first `max` messages `client`'s session holds (in flight, then queued); `None` when
    /// it has no session.
    pub fn session_messages(&self, client: &str, max: usize) -> Option<Vec<HeldMessage>> {
        let cell = self.sessions.read().map.get(client).cloned()?;
        let s = cell.state.lock();
        let mut held: Vec<HeldMessage> = s
            .outbox
            .peek(max)
            .into_iter()
            .map(|(d, in_flight)| HeldMessage {
                topic: d.message.topic.to_string(),
                qos: d.qos,
                bytes: d.message.payload.len(),
                in_flight,
            })
            .collect();
        // Then what waits in the offline log (it joins the queue's end when the client is back).
        let rest = max.saturating_sub(held.len());
        if rest > 0 {
            held.extend(
                self.offline_peek(&cell, rest)
                    .into_iter()
                    .map(|(m, qos)| HeldMessage {
                        topic: m.topic.to_string(),
                        qos,
                        bytes: m.payload.len(),
                        in_flight: false,
                    }),
            );
        }
        Some(held)
    }

    /// The session of `client`, summed up; `None` when it has none.
    pub fn session_summary(&self, client: &str) -> Option<SessionSummary> {
        let cell = self.sessions.read().map.get(client).cloned()?;
        let s = cell.state.lock();
        Some(summary(client, &s, self.offline_count(&cell)))
    }

    /// Sessions whose client id or identity contains `search` (all when empty), sorted by
    /// client id, from `offset`, at most `max`; and how many matched in all.
    pub fn session_page(
        &self,
        search: &str,
        offset: usize,
        max: usize,
    ) -> (Vec<SessionSummary>, usize) {
        let cells: Vec<(Arc<str>, Arc<SessionCell>)> = self
            .sessions
            .read()
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut all: Vec<SessionSummary> = cells
            .into_iter()
            .map(|(id, cell)| summary(&id, &cell.state.lock(), self.offline_count(&cell)))
            .filter(|s| {
                search.is_empty() || s.client_id.contains(search) || s.identity.contains(search)
            })
            .collect();
        all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let total = all.len();
        (all.into_iter().skip(offset).take(max).collect(), total)
    }

    /// Disconnects every connection logged in as `name` (MQTT 5 clients get DISCONNECT 0x98,
    /// Administrative action): a user disabled or deleted by dynamic security. Their sessions
    /// stay, as after any broken connection. Returns how many were connected.
    pub fn disconnect_identity(&self, name: &str) -> usize {
        let cells: Vec<Arc<SessionCell>> = self.sessions.read().map.values().cloned().collect();
        let mut n = 0;
        for cell in cells {
            let s = cell.state.lock();
            if let Some(conn) = s.connection.as_ref().filter(|c| &*c.who == name) {
                conn.signals.close(crate::Close::Administrative);
                n += 1;
            }
        }
        n
    }

    /// Publishes a message of the broker's own to this broker's subscribers only (not to the
    /// rules or bridges): the answers of `$CONTROL/…` commands.
    pub fn publish_local(&self, topic: &str, payload: Vec<u8>) -> usize {
        let message = Message::new(topic, payload, QoS::AtMostOnce, false);
        let mut durable = Durable::default();
        let mut wakes = Wakes::new();
        let routed = self.route(Self::BROKER, message, &mut durable, &mut wakes);
        wakes.wake_all();
        routed.matched
    }

    /// Clears the retained message of `topic` (an operator's purge), durably; `None` when the
    /// topic has none.
    pub fn clear_retained(&self, topic: &str) -> Option<Durable> {
        self.retained.lock().tree.get(topic)?;
        let message = Message::new(topic, Vec::new(), QoS::AtMostOnce, true);
        let mut durable = Durable::default();
        self.set_retained(Self::BROKER, &message, &mut durable);
        Some(durable)
    }
}
