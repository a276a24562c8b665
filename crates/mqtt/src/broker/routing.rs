//! Incoming messages and subscriptions: PUBLISH from clients and from the broker itself, retained quotas, routing to sessions (with flow control and persistence), SUBSCRIBE and UNSUBSCRIBE.

use super::*;

impl Broker {
    /// Handles an incoming PUBLISH; an error is the reason code to disconnect with.
    pub fn publish(
        &self,
        h: &ConnectionHandle,
        p: &Publish<'_>,
        payload: Bytes,
    ) -> Result<(Published, Durable), ReasonCode> {
        let mut st = self.state.lock();
        let session = st
            .sessions
            .get_mut(&h.client_id)
            .ok_or(ReasonCode::UnspecifiedError)?;
        if !session.owned_by(h.conn_id) {
            return Err(ReasonCode::SessionTakenOver);
        }
        // Checked before the alias table can remember it, so every alias names a checked topic.
        if too_deep(p.topic, self.config.max_topic_levels) {
            self.stats
                .refused_deep_topics
                .fetch_add(1, Ordering::Relaxed);
            return Err(ReasonCode::TopicNameInvalid);
        }
        let topic = match session.inbox.publish(p)? {
            Incoming::Duplicate => return Ok((Published::Duplicate, Durable::default())),
            Incoming::Deliver { topic } => topic,
        };
        if p.qos == QoS::AtLeastOnce {
            // Acknowledged once routed (held in memory).
            session.inbox.acked_qos1(p.pkid);
        }
        if p.retain
            && !payload.is_empty()
            && !self.retained_fits(&st, &topic, topic.len() + payload.len())
        {
            if p.qos == QoS::ExactlyOnce {
                // Refused in PUBREC: the exchange ends there (§4.3.3), nothing awaits PUBREL.
                if let Some(s) = st.sessions.get_mut(&h.client_id) {
                    s.inbox.pubrel(p.pkid);
                }
            }
            self.stats.refused_retained.fetch_add(1, Ordering::Relaxed);
            return Ok((
                Published::Refused(ReasonCode::QuotaExceeded),
                Durable::default(),
            ));
        }
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_in
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let message = Message::from_publish(&topic, p, payload);
        let mut durable = Durable::default();
        let n = self.route_locked(&mut st, &h.client_id, message, &mut durable);
        Ok((Published::Routed(n), durable))
    }

    /// True when retaining `size` bytes on `topic` stays within the retained quotas (replacing a
    /// topic's message frees the old one's bytes first).
    pub(super) fn retained_fits(&self, st: &State, topic: &str, size: usize) -> bool {
        let old = st.router.retained(topic).map(|r| retained_size(&r.message));
        let count = st.retained_counted + usize::from(old.is_none());
        let bytes = st.retained_bytes - old.unwrap_or(0) + size;
        count <= self.config.max_retained_messages && bytes <= self.config.max_retained_bytes
    }

    /// Publishes a message from the broker itself (e.g. `$SYS` topics, HTTP publish).
    pub fn publish_internal(&self, message: Message) -> (usize, Durable) {
        let mut st = self.state.lock();
        let mut durable = Durable::default();
        let n = self.route_locked(&mut st, "", message, &mut durable);
        (n, durable)
    }

    pub(super) fn route_locked(
        &self,
        st: &mut State,
        from: &str,
        message: Message,
        durable: &mut Durable,
    ) -> usize {
        if message.retain {
            let retained = (!message.payload.is_empty()).then(|| Retained {
                message: Arc::new(message.clone()),
                qos: message.qos,
            });
            // `$SYS` values are regenerated after a restart; storing them would only churn the disk.
            let keep = !message.topic.starts_with("$SYS/");
            if let (Some(p), true) = (&self.persist, keep) {
                let (done, rx) = tokio::sync::oneshot::channel();
                durable.push(rx);
                let bytes = retained
                    .as_ref()
                    .map(|r| persistence::encode_message(&r.message, r.qos, true, &[]));
                p.send(Job::Retain {
                    topic: message.topic.clone(),
                    bytes,
                    done: Some(done),
                });
            }
            let added = retained.as_ref().map(|r| retained_size(&r.message));
            let old = st.router.retain(&message.topic, retained);
            // The broker's own `$SYS` values do not count against the clients' quota.
            if !(from.is_empty() && message.topic.starts_with("$SYS/")) {
                let removed = old.map(|r| retained_size(&r.message));
                st.retained_bytes = st.retained_bytes + added.unwrap_or(0) - removed.unwrap_or(0);
                st.retained_counted = st.retained_counted + usize::from(added.is_some())
                    - usize::from(removed.is_some());
            }
        }
        let sessions = &st.sessions;
        let available = |c: &str| sessions.get(c).is_some_and(|s| s.connection.is_some());
        let targets = st
            .router
            .route(from, &message.topic, message.qos, message.retain, available);
        let message = Arc::new(message);
        let mut delivered = 0;
        // Persistent sessions this message is stored for: one record of the message, a small
        // reference per session (written by the persistence task, encoded there, off this lock).
        let mut refs = Vec::new();
        for t in targets {
            let Some(s) = st.sessions.get_mut(&t.client) else {
                continue;
            };
            if s.connection.is_none() && t.qos == QoS::AtMostOnce && !self.config.queue_qos0_offline
            {
                continue;
            }
            let d = Delivery {
                id: self.next_delivery.fetch_add(1, Ordering::Relaxed),
                message: message.clone(),
                qos: t.qos,
                retain: t.retain,
                subscription_ids: t.subscription_ids,
            };
            if let (Some(_), Some((stream, _)), true) =
                (&self.persist, &s.stream, t.qos != QoS::AtMostOnce)
            {
                refs.push(RefSpec {
                    stream: *stream,
                    delivery: d.id,
                    qos: d.qos,
                    retain: d.retain,
                    subscription_ids: d.subscription_ids.clone(),
                });
            }
            let qos = d.qos;
            self.offer(s, d);
            if s.connection.is_some() {
                if s.outbox.queued() >= PRESSURE_QUEUE {
                    durable.set_pressure();
                }
                // Flow control (never against oneself: a client's own queue drains only as it
                // reads, and it reads nothing while it waits).
                if qos != QoS::AtMostOnce
                    && *t.client != *from
                    && s.outbox.queued() >= self.config.flow_control_queue
                {
                    s.over_since.get_or_insert_with(Instant::now);
                    durable.hold_for(t.client.clone());
                }
            }
            delivered += 1;
        }
        if let (Some(p), false) = (&self.persist, refs.is_empty()) {
            let (done, rx) = tokio::sync::oneshot::channel();
            durable.push(rx);
            p.send(Job::Store {
                message,
                key: self.next_delivery.fetch_add(1, Ordering::Relaxed),
                refs,
                done,
            });
        }
        delivered
    }

    pub(super) fn offer(&self, s: &mut Session, d: Delivery) {
        match s.outbox.offer(d) {
            Offer::Queued => {}
            Offer::QueuedEvicting(_) | Offer::DroppedQoS0 => {
                // Only QoS 0 messages are dropped here; they are never stored.
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Offer::Overflow(d) => {
                // Counted here, logged once a second by `tick` (never a line per message, never
                // under the lock).
                self.complete(s, &d);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.refused_overflow.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &s.connection {
            c.wake.notify_one();
        }
    }

    /// Handles SUBSCRIBE: one reason code per filter (for SUBACK); retained messages are queued.
    /// The `Durable` resolves once a persistent session's new subscriptions are stored: send SUBACK then.
    pub fn subscribe(
        &self,
        h: &ConnectionHandle,
        sub: &Subscribe<'_>,
    ) -> (Vec<ReasonCode>, Durable) {
        let mut st = self.state.lock();
        let mut codes = Vec::new();
        let mut retained = Vec::new();
        let mut changes = Vec::new();
        let refuse = |code: ReasonCode| match h.version {
            Version::V311 => ReasonCode::UnspecifiedError,
            Version::V5 => code,
        };
        for f in sub.filters.iter() {
            let id = sub.properties.subscription_identifier;
            if too_deep(f.filter, self.config.max_topic_levels) {
                self.stats
                    .refused_deep_topics
                    .fetch_add(1, Ordering::Relaxed);
                self.stats
                    .refused_subscriptions
                    .fetch_add(1, Ordering::Relaxed);
                codes.push(refuse(ReasonCode::TopicFilterInvalid));
                continue;
            }
            let full = st.sessions.get(&h.client_id).is_some_and(|s| {
                s.subscriptions.len() >= self.config.max_subscriptions_per_session
                    && !s.subscriptions.contains_key(f.filter)
            });
            if full {
                self.stats
                    .refused_subscriptions
                    .fetch_add(1, Ordering::Relaxed);
                codes.push(refuse(ReasonCode::QuotaExceeded));
                continue;
            }
            match st.router.subscribe(&h.client_id, f.filter, f.options, id) {
                Ok(done) => {
                    codes.push(match done.granted {
                        QoS::AtMostOnce => ReasonCode::Success,
                        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
                    });
                    let filter: Arc<str> = f.filter.into();
                    if let Some(s) = st.sessions.get_mut(&h.client_id) {
                        s.subscriptions.insert(
                            filter.clone(),
                            Subscription {
                                filter: filter.clone(),
                                options: f.options,
                                id,
                            },
                        );
                    }
                    changes.push(SubChange::Put(filter, f.options, id));
                    retained.extend(done.retained.into_iter().map(|(_, m, qos)| (m, qos, id)));
                }
                Err(code) => {
                    self.stats
                        .refused_subscriptions
                        .fetch_add(1, Ordering::Relaxed);
                    codes.push(refuse(code));
                }
            }
        }
        let mut durable = Durable::default();
        if let Some(s) = st.sessions.get_mut(&h.client_id) {
            durable = self.save_session(&h.client_id, s, Save::Changes(changes));
            for (m, qos, id) in retained {
                let d = Delivery {
                    id: self.next_delivery.fetch_add(1, Ordering::Relaxed),
                    message: m,
                    qos,
                    retain: true,
                    subscription_ids: id.into_iter().collect(),
                };
                self.offer(s, d);
            }
        }
        (codes, durable)
    }

    /// Handles UNSUBSCRIBE: one reason code per filter (for the MQTT 5 UNSUBACK). The session's
    /// stored subscriptions change in one write, whatever the number of filters.
    pub fn unsubscribe(&self, h: &ConnectionHandle, u: &Unsubscribe<'_>) -> Vec<ReasonCode> {
        let mut st = self.state.lock();
        let mut changes = Vec::new();
        let codes = u
            .filters
            .iter()
            .map(|f| {
                let removed = st.router.unsubscribe(&h.client_id, f);
                if let Some(s) = st.sessions.get_mut(&h.client_id) {
                    if let Some(sub) = s.subscriptions.remove(f) {
                        changes.push(SubChange::Delete(sub.filter));
                    }
                }
                if removed {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
            })
            .collect();
        if let Some(s) = st.sessions.get(&h.client_id) {
            self.save_session(&h.client_id, s, Save::Changes(changes));
        }
        codes
    }
}
