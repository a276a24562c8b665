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
        self.connect_as(c, outpost_access::Identity::anonymous(""))
            .await
    }

    /// Handles CONNECT of a client that logged in as `identity` (what it publishes, its will
    /// included, acts as it).
    pub async fn connect_as(
        &self,
        c: &Connect<'_>,
        identity: outpost_access::Identity,
    ) -> Result<Accepted, ReasonCode> {
        let (client_id, assigned) = self.client_id(c)?;
        // The will is checked now as this client's PUBLISH would be (and again when it is sent).
        if let Some(w) = &c.will {
            if let Some(why) = self.will_refusal(&identity, &client_id, w.topic) {
                tracing::info!(client = &*client_id, user = &*identity.name, topic = %w.topic.chars().take(128).collect::<String>(), why, "connection refused: its will may not be published");
                return Err(ReasonCode::NotAuthorized);
            }
        }
        let expiry = session_expiry(c, &self.config);
        let mut fresh = None;
        if let (Some(p), true) = (&self.persist, expiry > 0) {
            let has_stream = !c.clean_start
                && self
                    .session_of(&client_id)
                    .is_some_and(|s| s.state.lock().stream.is_some());
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
        let result = self.connect_with(c, identity, client_id, assigned, expiry, fresh.clone());
        if let (Err(_), Some((stream, name)), Some(p)) = (&result, fresh, &self.persist) {
            p.send(Job::DropStream { stream, name });
        }
        result
    }

    pub(super) fn connect_with(
        &self,
        c: &Connect<'_>,
        identity: outpost_access::Identity,
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
        let signals = Arc::new(crate::Signals::default());
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
            identity: identity.clone(),
        });

        let mut due_now = Vec::new();
        let mut unused = fresh;
        let (cell, session_present, resend) = {
            let mut sessions = self.sessions.write();
            let old = sessions.map.get(&client_id).cloned();
            // The persistent-session quota counts sessions kept in the store; a client that
            // already has one (resuming it or starting it anew) is never refused.
            let has_persistent = old
                .as_ref()
                .is_some_and(|s| s.state.lock().stream.is_some());
            if expiry > 0
                && self.persist.is_some()
                && !has_persistent
                && sessions.persistent >= self.config.max_persistent_sessions
            {
                drop(sessions);
                self.stats.refused_sessions.fetch_add(1, Ordering::Relaxed);
                let mut refused = self.refused_clients.lock();
                if refused.len() < 5 {
                    refused.push(client_id.clone());
                }
                return Err(match c.protocol {
                    Version::V5 => ReasonCode::QuotaExceeded,
                    Version::V311 => ReasonCode::ServerUnavailable,
                });
            }
            // A resumed session cancels a will still waiting for its delay (§3.1.3.2.2).
            self.wills.lock().retain(|(_, id, _)| *id != client_id);
            if let Some(old) = &old {
                let mut o = old.state.lock();
                if let Some(conn) = o.connection.take() {
                    // Takeover (§3.1.4): the old connection is closed; its will goes out unless
                    // the session continues and the will was delayed.
                    old.connected.store(false, Ordering::Relaxed);
                    conn.signals.close(crate::Close::TakenOver);
                    if let Some(w) = o.will.take() {
                        if c.clean_start || w.delay == 0 {
                            due_now.push(w);
                        }
                    }
                }
            }
            if c.clean_start {
                self.end_session_in(&mut sessions, &client_id);
            }
            let session_present = sessions.map.contains_key(&client_id);
            // §3.3.4 / MQTT 5 Receive Maximum: the client's window, never more than the server's.
            let receive_maximum = match c.protocol {
                Version::V5 => c
                    .properties
                    .receive_maximum
                    .unwrap_or(u16::MAX)
                    .min(self.config.max_inflight.max(1)),
                // MQTT 3.1.1 has no Receive Maximum: the server's window.
                Version::V311 => self.config.max_inflight.max(1),
            };
            let cell = sessions
                .map
                .entry(client_id.clone())
                .or_insert_with(|| SessionCell::new(self.new_session(expiry, None)))
                .clone();
            let mut session = cell.state.lock();
            let mut became_persistent = false;
            if expiry > 0 && session.stream.is_none() {
                session.stream = unused.take().map(Box::new);
                became_persistent = session.stream.is_some();
            }
            session.outbox.set_receive_maximum(receive_maximum);
            session.inbox.reset_aliases();
            let expiry_changed = session.expiry != expiry;
            session.expiry = expiry;
            session.disconnected_at = None;
            session.will = will.map(Box::new);
            session.connection = Some(Connection {
                id: conn_id,
                signals: signals.clone(),
                who: identity.name.clone(),
                version: c.protocol,
            });
            cell.connected.store(true, Ordering::Relaxed);
            // Under the sessions lock, as `shut_down` signals: a connection registered after it
            // looked is told here.
            if self.shutdown.fired() {
                signals.close(crate::Close::ShuttingDown);
            }
            // A backlog's stall budget is not renewed by reconnecting (`held_for`,
            // `stall_spent` stay); the clock runs only while connected.
            if let Some(flow) = &mut session.flow {
                flow.over_since = None;
            }
            // The resend below is what the connection sends first; anything queued after it
            // wakes the connection anew.
            session.woken = false;
            let resend = session.outbox.resend();
            if expiry > 0 {
                if became_persistent {
                    sessions.persistent += 1;
                    self.save_session(&client_id, &session, Save::Whole);
                } else if expiry_changed {
                    self.save_session(&client_id, &session, Save::Record);
                }
            } else if let (Some(p), Some(stream)) = (&self.persist, session.stream.take()) {
                // The session stopped being persistent: forget what was stored for it.
                sessions.persistent = sessions.persistent.saturating_sub(1);
                p.send(Job::DropSession {
                    client: client_id.clone(),
                    stream: Some(*stream),
                });
            }
            // What waited in the offline log joins the queue, behind what was queued before
            // (and behind the resend). Thousands of messages may wait there: the other clients
            // connect and route meanwhile (the sessions map is let go), this session's lock
            // keeps its routes behind the ones taken.
            drop(sessions);
            self.leave_offline(&cell, &mut session, true);
            drop(session);
            (cell, session_present, resend)
        };
        if let (Some(p), Some((stream, name))) = (&self.persist, unused) {
            // Another connection of this client made the session persistent meanwhile.
            p.send(Job::DropStream { stream, name });
        }
        let mut durable = Durable::default();
        for w in due_now {
            self.send_will(&client_id, *w, &mut durable);
        }
        Ok(Accepted {
            handle: ConnectionHandle {
                client_id: client_id.clone(),
                conn_id,
                signals,
                version: c.protocol,
                identity,
                session: cell,
            },
            session_present,
            assigned_client_id: assigned.then_some(client_id),
            resend,
        })
    }

    /// The connection ended. `session_expiry` is a new expiry the client sent in DISCONNECT.
    pub fn disconnect(&self, h: &ConnectionHandle, how: Disconnect, session_expiry: Option<u32>) {
        let (will, expiry) = {
            let mut s = h.session.state.lock();
            if !s.owned_by(h.conn_id) {
                return; // taken over: the new connection owns the session
            }
            s.connection = None;
            h.session.connected.store(false, Ordering::Relaxed);
            s.disconnected_at = Some(crate::moment::Moment::now());
            // Publishers held back by this subscriber go on: an offline session holds no one.
            // The time it held them counts against its next connection's stall budget.
            if let Some(flow) = &mut s.flow {
                if let Some(since) = flow.over_since.take() {
                    flow.held_for += since.elapsed();
                }
            }
            s.release_publishers();
            if let Some(e) = session_expiry {
                s.expiry = e;
            }
            let expiry = s.expiry;
            if session_expiry.is_some() && expiry > 0 {
                self.save_session(&h.client_id, &s, Save::Record);
            }
            self.go_offline(&h.session, &s);
            (s.will.take(), expiry)
        };
        if let (Some(w), true) = (will, how != Disconnect::Normal) {
            let delay = w.delay.min(expiry);
            if delay == 0 {
                self.send_will(&h.client_id, *w, &mut Durable::default());
            } else {
                self.wills.lock().push((
                    Instant::now() + Duration::from_secs(u64::from(delay)),
                    h.client_id.clone(),
                    w,
                ));
            }
        }
        if expiry == 0 {
            // Unless a new connection resumed the session meanwhile.
            self.end_session_if(&h.client_id, |s, cell| {
                Arc::ptr_eq(cell, &h.session) && s.connection.is_none()
            });
        }
    }

    /// Publishes a will as the client that set it, checked now as a PUBLISH of that client
    /// would be (the ACL may have changed since CONNECT): the topic is not the broker's own
    /// (`$SYS`), the identity may still publish there, a retained will fits the retained quota,
    /// and a will to `$queue/<name>` is a SendMessage the queue door checks. A refused will is
    /// counted and logged, never routed.
    pub(super) fn send_will(&self, client: &Arc<str>, w: Will, durable: &mut Durable) {
        let topic = w.message.topic.clone();
        let refuse = |why: &str| {
            self.stats.refused_wills.fetch_add(1, Ordering::Relaxed);
            tracing::info!(client = &**client, user = &*w.identity.name, topic = %topic.chars().take(128).collect::<String>(), why, "will not published");
        };
        if let Some(why) = self.will_refusal(&w.identity, client, &topic) {
            return refuse(why);
        }
        if topic.starts_with(crate::QUEUE_PREFIX) {
            let sent = match (self.queue_door.get(), crate::queue_name(&topic)) {
                (Some(door), Some(name)) => door.send(client, &w.identity, name, &w.message),
                _ => Err(ReasonCode::TopicNameInvalid),
            };
            match sent {
                Ok(wait) => crate::tap::join(durable, wait),
                Err(_) => refuse("the queue refused it"),
            }
            return;
        }
        if w.message.retain
            && !w.message.payload.is_empty()
            && !self.retained_fits(&self.retained.lock(), &topic, w.message.size())
        {
            self.stats.refused_retained.fetch_add(1, Ordering::Relaxed);
            return refuse("over the retained quota");
        }
        self.route(client, w.message, durable, &mut Wakes::new());
    }

    /// Why `who` may not have a will on `topic` now (at CONNECT and when it is sent); `None`
    /// when it may. `$SYS` and the other `$` topics but `$queue/` are the broker's own.
    fn will_refusal(
        &self,
        who: &outpost_access::Identity,
        client: &str,
        topic: &str,
    ) -> Option<&'static str> {
        if topic.starts_with('$') && !topic.starts_with(crate::QUEUE_PREFIX) {
            return Some("the topic is the broker's own");
        }
        if !self.gate.get().mqtt(who, client, "mqtt:publish", topic) {
            return Some("denied by the ACL");
        }
        None
    }

    /// Ends the session of `client` if `still` holds for it (checked under the locks, so a
    /// connection that resumed it in between keeps it).
    pub(super) fn end_session_if(
        &self,
        client: &Arc<str>,
        still: impl FnOnce(&Session, &Arc<SessionCell>) -> bool,
    ) {
        let mut sessions = self.sessions.write();
        let Some(cell) = sessions.map.get(client).cloned() else {
            return;
        };
        if still(&cell.state.lock(), &cell) {
            self.end_session_in(&mut sessions, client);
        }
    }

    /// Ends a session: out of the map, its subscriptions out of the index, its stored state
    /// dropped. Called with the map locked, so no connection can resume it half-way.
    fn end_session_in(&self, sessions: &mut Sessions, client: &Arc<str>) {
        let Some(cell) = sessions.map.remove(client) else {
            return;
        };
        let mut old = cell.state.lock();
        old.ended = true;
        cell.connected.store(false, Ordering::Relaxed);
        self.leave_offline(&cell, &mut old, false);
        old.release_publishers();
        let filters: Vec<Arc<str>> = old.subscriptions.keys().cloned().collect();
        self.index.write().remove_client(client, &filters);
        if let (Some(p), Some(stream)) = (&self.persist, old.stream.take()) {
            sessions.persistent = sessions.persistent.saturating_sub(1);
            p.send(Job::DropSession {
                client: client.clone(),
                stream: Some(*stream),
            });
        }
    }
}
