//! A session's life on the engine side: CONNECT (new, resumed, taken over, refused), the end of a connection, and the end of a session.

use super::*;

impl Broker {
    /// The client identifier of a CONNECT (one is assigned when it is empty), and whether it
    /// was assigned.
    pub(super) fn client_id(&self, c: &Connect<'_>) -> Result<(Arc<str>, bool), ReasonCode> {
        if !c.client_id.is_empty() {
            return Ok((c.client_id.into(), false));
        }
        // §3.1.3.1: 3.1.1 allows an empty id only with Clean Session.
        if c.protocol == Version::V311 && !c.clean_start {
            return Err(ReasonCode::ClientIdentifierNotValid);
        }
        Ok((
            format!(
                "outpost-{:016x}",
                self.next_conn.fetch_add(1, Ordering::Relaxed) ^ random_seed()
            )
            .into(),
            true,
        ))
    }

    /// Handles CONNECT. An error is the CONNACK reason code to refuse with. A new persistent
    /// session's stream is created here, on a blocking thread (it is a metadata commit), before
    /// the engine's lock is taken.
    pub async fn connect(&self, c: &Connect<'_>) -> Result<Accepted, ReasonCode> {
        let (client_id, assigned) = self.client_id(c)?;
        let expiry = session_expiry(c, &self.config);
        let mut fresh = None;
        if let (Some(p), true) = (&self.persist, expiry > 0) {
            let has_stream = !c.clean_start
                && self
                    .state
                    .lock()
                    .sessions
                    .get(&client_id)
                    .is_some_and(|s| s.stream.is_some());
            if !has_stream {
                let name = persistence::new_session_stream(&client_id);
                let store = p.store.clone();
                let lookup = name.clone();
                match tokio::task::spawn_blocking(move || store.stream(&lookup)).await {
                    Ok(Ok(id)) => fresh = Some((id, Arc::<str>::from(name))),
                    Ok(Err(e)) => {
                        tracing::error!(client = &*client_id, error = %e, "no stream for a persistent session; connection refused");
                        return Err(ReasonCode::ServerUnavailable);
                    }
                    Err(e) => {
                        tracing::error!(client = &*client_id, error = %e, "no stream for a persistent session; connection refused");
                        return Err(ReasonCode::ServerUnavailable);
                    }
                }
            }
        }
        let result = self.connect_with(c, client_id, assigned, expiry, fresh.clone());
        if let (Err(_), Some((stream, name)), Some(p)) = (&result, fresh, &self.persist) {
            p.send(Job::DropStream { stream, name });
        }
        result
    }

    pub(super) fn connect_with(
        &self,
        c: &Connect<'_>,
        client_id: Arc<str>,
        assigned: bool,
        expiry: u32,
        fresh: Option<(StreamId, Arc<str>)>,
    ) -> Result<Accepted, ReasonCode> {
        if let Some(w) = &c.will {
            if too_deep(w.topic, self.config.max_topic_levels) {
                self.stats
                    .refused_deep_topics
                    .fetch_add(1, Ordering::Relaxed);
                return Err(ReasonCode::TopicNameInvalid);
            }
        }
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let kick = Arc::new(Notify::new());
        let will = c.will.map(|w| Will {
            message: Message {
                topic: w.topic.into(),
                payload: Bytes::copy_from_slice(w.payload),
                qos: w.qos,
                retain: w.retain,
                properties: crate::message::MessageProperties {
                    payload_format_indicator: w.properties.payload_format_indicator,
                    message_expiry_interval: w.properties.message_expiry_interval,
                    content_type: w.properties.content_type.map(str::to_string),
                    response_topic: w.properties.response_topic.map(str::to_string),
                    correlation_data: w.properties.correlation_data.map(Bytes::copy_from_slice),
                    user_properties: w
                        .properties
                        .user_properties
                        .iter()
                        .map(|u| (u.name.to_string(), u.value.to_string()))
                        .collect(),
                },
                received: Some(Instant::now()),
            },
            delay: w.properties.will_delay_interval.unwrap_or(0),
        });

        let mut st = self.state.lock();
        // The persistent-session quota counts sessions kept in the store; a client that already
        // has one (resuming it or starting it anew) is never refused.
        let has_persistent = st
            .sessions
            .get(&client_id)
            .is_some_and(|s| s.stream.is_some());
        if expiry > 0
            && self.persist.is_some()
            && !has_persistent
            && st.persistent >= self.config.max_persistent_sessions
        {
            self.stats.refused_sessions.fetch_add(1, Ordering::Relaxed);
            if st.refused_clients.len() < 5 {
                st.refused_clients.push(client_id.clone());
            }
            return Err(match c.protocol {
                Version::V5 => ReasonCode::QuotaExceeded,
                Version::V311 => ReasonCode::ServerUnavailable,
            });
        }
        let mut due_now = Vec::new();
        // A resumed session cancels a will still waiting for its delay (§3.1.3.2.2).
        st.wills.retain(|(_, id, _)| *id != client_id);
        if let Some(old) = st.sessions.get_mut(&client_id) {
            if let Some(conn) = old.connection.take() {
                // Takeover (§3.1.4): the old connection is closed; its will goes out unless the
                // session continues and the will was delayed.
                conn.kick.notify_one();
                if let Some(w) = old.will.take() {
                    if c.clean_start || w.delay == 0 {
                        due_now.push(w.message);
                    }
                }
            }
        }
        let mut session_present = false;
        if c.clean_start {
            self.end_session(&mut st, &client_id);
        } else {
            session_present = st.sessions.contains_key(&client_id);
        }
        // §3.3.4 / MQTT 5 Receive Maximum: the client's window, but never more than the server's.
        let receive_maximum = match c.protocol {
            Version::V5 => c
                .properties
                .receive_maximum
                .unwrap_or(u16::MAX)
                .min(self.config.max_inflight.max(1)),
            Version::V311 => self.config.outbox.receive_maximum,
        };
        let session = st
            .sessions
            .entry(client_id.clone())
            .or_insert_with(|| Box::new(self.new_session(expiry, None)));
        let mut became_persistent = false;
        let mut unused = fresh;
        if expiry > 0 && session.stream.is_none() {
            session.stream = unused.take();
            became_persistent = session.stream.is_some();
        }
        session.outbox.set_receive_maximum(receive_maximum);
        session.inbox.reset_aliases();
        let expiry_changed = session.expiry != expiry;
        session.expiry = expiry;
        session.disconnected_at = None;
        session.will = will.map(Box::new);
        let stalled = Arc::new(AtomicBool::new(false));
        session.connection = Some(Connection {
            id: conn_id,
            wake: wake.clone(),
            kick: kick.clone(),
            stalled: stalled.clone(),
        });
        session.over_since = None;
        let resend = session.outbox.resend();
        let mut persistent_delta: isize = 0;
        if expiry > 0 {
            if became_persistent {
                persistent_delta = 1;
                self.save_session(&client_id, session, Save::Whole);
            } else if expiry_changed {
                self.save_session(&client_id, session, Save::Record);
            }
        } else if let (Some(p), Some(stream)) = (&self.persist, session.stream.take()) {
            // The session stopped being persistent: forget what was stored for it.
            persistent_delta = -1;
            p.send(Job::DropSession {
                client: client_id.clone(),
                stream: Some(stream),
            });
        }
        st.persistent = st.persistent.saturating_add_signed(persistent_delta);
        if let (Some(p), Some((stream, name))) = (&self.persist, unused) {
            // Another connection of this client made the session persistent meanwhile.
            p.send(Job::DropStream { stream, name });
        }
        let mut durable = Durable::default();
        for m in due_now {
            self.route_locked(&mut st, &client_id, m, &mut durable);
        }
        Ok(Accepted {
            handle: ConnectionHandle {
                client_id: client_id.clone(),
                conn_id,
                wake,
                kick,
                stalled,
                version: c.protocol,
            },
            session_present,
            assigned_client_id: assigned.then_some(client_id),
            resend,
        })
    }

    /// The connection ended. `session_expiry` is a new expiry the client sent in DISCONNECT.
    pub fn disconnect(&self, h: &ConnectionHandle, how: Disconnect, session_expiry: Option<u32>) {
        let mut st = self.state.lock();
        let Some(s) = st.sessions.get_mut(&h.client_id) else {
            return;
        };
        if !s.owned_by(h.conn_id) {
            return; // taken over: the new connection owns the session
        }
        s.connection = None;
        s.disconnected_at = Some(Instant::now());
        // Publishers held back by this subscriber go on: an offline session holds no one.
        s.over_since = None;
        s.drained.notify_waiters();
        if let Some(e) = session_expiry {
            s.expiry = e;
        }
        let will = s.will.take();
        let expiry = s.expiry;
        if session_expiry.is_some() && expiry > 0 {
            self.save_session(&h.client_id, s, Save::Record);
        }
        if let (Some(w), true) = (will, how != Disconnect::Normal) {
            let delay = w.delay.min(expiry);
            if delay == 0 {
                let mut durable = Durable::default();
                self.route_locked(&mut st, &h.client_id, w.message, &mut durable);
            } else {
                st.wills.push((
                    Instant::now() + Duration::from_secs(u64::from(delay)),
                    h.client_id.clone(),
                    w.message,
                ));
            }
        }
        if expiry == 0 {
            self.end_session(&mut st, &h.client_id);
        }
    }

    pub(super) fn end_session(&self, st: &mut State, client: &Arc<str>) {
        if let Some(old) = st.sessions.remove(client) {
            old.drained.notify_waiters();
            let filters: Vec<Arc<str>> = old.subscriptions.keys().cloned().collect();
            st.router.remove_client(client, &filters);
            if let (Some(p), Some(stream)) = (&self.persist, old.stream) {
                st.persistent = st.persistent.saturating_sub(1);
                p.send(Job::DropSession {
                    client: client.clone(),
                    stream: Some(stream),
                });
            }
        }
    }
}
