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
                .and_then(|at| SystemTime::now().checked_sub(at.elapsed())),
        })
    }

    /// The filters `client`'s session subscribes to (with their QoS), sorted; `None` when it has
    /// no session.
    pub fn client_subscriptions(&self, client: &str) -> Option<Vec<(String, QoS)>> {
        let cell = self.sessions.read().map.get(client).cloned()?;
        let s = cell.state.lock();
        let mut out: Vec<(String, QoS)> = s
            .subscriptions
            .values()
            .map(|sub| (sub.filter.to_string(), sub.options.qos))
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
                    conn.admin.store(true, Ordering::Relaxed);
                    conn.kick.notify_one();
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
