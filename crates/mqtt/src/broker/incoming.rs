//! Incoming messages and subscriptions: PUBLISH from clients and from the broker itself, retained quotas, routing to sessions (with flow control and persistence), SUBSCRIBE and UNSUBSCRIBE.

use super::*;

impl Broker {
    /// Handles an incoming PUBLISH; an error is the reason code to disconnect with. Subscribers
    /// that got the message are added to `wakes`: wake them once the batch read is handled.
    /// `may_publish` is asked about the topic once a topic alias is resolved (the ACL); a topic
    /// it refuses is [`Published::Denied`], nothing routed.
    pub fn publish(
        &self,
        h: &ConnectionHandle,
        p: &Publish<'_>,
        payload: Bytes,
        wakes: &mut Wakes,
        may_publish: &dyn Fn(&str) -> bool,
    ) -> Result<(Published, Durable), ReasonCode> {
        let mut session = h.session.state.lock();
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
        // `$SYS/…`, the lifecycle events and the shadow service's answers are written by the
        // broker alone.
        if topic.starts_with("$SYS/")
            || *topic == *"$SYS"
            || super::lifecycle::broker_only(&topic)
            || !may_publish(&topic)
        {
            if p.qos == QoS::ExactlyOnce {
                // Nothing awaits PUBREL: the exchange ends with the acknowledgement.
                session.inbox.pubrel(p.pkid);
            }
            return Ok((Published::Denied, Durable::default()));
        }
        if topic.starts_with(crate::QUEUE_PREFIX) {
            drop(session);
            return Ok(self.publish_to_queue(h, p, &topic, payload));
        }
        if topic.starts_with(CONTROL_PREFIX) {
            // A command (dynamic security's): to its door only, never routed, retained, or
            // offered to rules and bridges, as it may carry passwords.
            drop(session);
            let message = Message::from_publish(&topic, p, payload);
            let mut durable = Durable::default();
            let took = self
                .control
                .offer(&h.identity, &h.client_id, &message, &mut durable);
            return Ok((Published::Routed(usize::from(took)), durable));
        }
        if p.retain
            && !payload.is_empty()
            && !self.retained_fits(&self.retained.lock(), &topic, topic.len() + payload.len())
        {
            if p.qos == QoS::ExactlyOnce {
                // Refused in PUBREC: the exchange ends there (§4.3.3), nothing awaits PUBREL.
                session.inbox.pubrel(p.pkid);
            }
            self.stats.refused_retained.fetch_add(1, Ordering::Relaxed);
            return Ok((
                Published::Refused(ReasonCode::QuotaExceeded),
                Durable::default(),
            ));
        }
        // The connection's own calls come one at a time: nothing else needs its session now.
        drop(session);
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_in
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let message = Message::from_publish(&topic, p, payload);
        let mut durable = Durable::default();
        let tapped = self
            .tap
            .offer(&h.identity, &h.client_id, &message, &mut durable);
        let routed = self.route(&h.client_id, message, &mut durable, wakes);
        if self.refuses(routed, tapped) {
            // No session took it: the publisher hears Quota exceeded (MQTT 3.1.1: the connection
            // closes without the acknowledgement, as for a failed write).
            if p.qos == QoS::ExactlyOnce {
                // Refused in PUBREC: the exchange ends there (§4.3.3).
                h.session.state.lock().inbox.pubrel(p.pkid);
            }
            return Ok((Published::Refused(ReasonCode::QuotaExceeded), durable));
        }
        // A message a rule took has a receiver: no "No matching subscribers" for it.
        let n = routed.matched + usize::from(tapped);
        Ok((Published::Routed(n), durable))
    }

    /// A PUBLISH to `$queue/<name>`: a send to the queue through the queue door, never routed to
    /// subscribers (nor retained). Refused with Topic Name invalid when there is no such queue.
    fn publish_to_queue(
        &self,
        h: &ConnectionHandle,
        p: &Publish<'_>,
        topic: &str,
        payload: Bytes,
    ) -> (Published, Durable) {
        let message = Message::from_publish(topic, p, payload);
        let sent = match (self.queue_door.get(), crate::queue_name(topic)) {
            (Some(door), Some(name)) => door.send(&h.client_id, &h.identity, name, &message),
            _ => Err(ReasonCode::TopicNameInvalid),
        };
        match sent {
            Ok(wait) => {
                self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .bytes_in
                    .fetch_add(message.payload.len() as u64, Ordering::Relaxed);
                let mut durable = Durable::default();
                crate::tap::join(&mut durable, wait);
                (Published::Routed(1), durable)
            }
            Err(code) => {
                if p.qos == QoS::ExactlyOnce {
                    // Refused in PUBREC: the exchange ends there (§4.3.3).
                    h.session.state.lock().inbox.pubrel(p.pkid);
                }
                tracing::info!(client = &*h.client_id, topic = %topic.chars().take(128).collect::<String>(), "PUBLISH to a queue refused: no such queue");
                (Published::Refused(code), Durable::default())
            }
        }
    }

    /// True when retaining `size` bytes on `topic` stays within the retained quotas (replacing a
    /// topic's message frees the old one's bytes first).
    pub(super) fn retained_fits(&self, r: &RetainedIndex, topic: &str, size: usize) -> bool {
        let old = r.tree.get(topic).map(|r| r.message.size());
        let count = r.counted + usize::from(old.is_none());
        let bytes = r.bytes - old.unwrap_or(0) + size;
        count <= self.config.max_retained_messages && bytes <= self.config.max_retained_bytes
    }

    /// Publishes a message that came in by another door (HTTP publish), checked as a client's
    /// would be; see [`Broker::publish_as`]. Offered to the publish tap (the rules).
    pub fn publish_from_outside(
        &self,
        who: &outpost_access::Identity,
        message: Message,
    ) -> Result<(usize, Durable), ReasonCode> {
        self.publish_as(who, message, true)
    }

    /// Publishes a message that acts as `who` from another door: an HTTP publish, an SNS `mqtt`
    /// delivery, a rule's MQTT target, a bridge's in-rule (ADR 0015). Checked where it enters,
    /// as a client's PUBLISH would be: a topic name MQTT can carry, not the broker's own (`$`),
    /// within the level limit; properties MQTT can encode; `mqtt:publish` allowed for `who`;
    /// within the retained quota. The error is the reason code an MQTT client would have got.
    /// `tap`: offered to the publish tap (the rules); deliveries of the routing layer are not,
    /// or a rule could feed itself.
    pub fn publish_as(
        &self,
        who: &outpost_access::Identity,
        message: Message,
        tap: bool,
    ) -> Result<(usize, Durable), ReasonCode> {
        let topic = &*message.topic;
        // `$SYS` and the other `$` topics are the broker's own (`$queue/` is a SendMessage).
        if outpost_access::check_topic(topic).is_err() {
            return Err(ReasonCode::TopicNameInvalid);
        }
        if too_deep(topic, self.config.max_topic_levels) {
            self.stats
                .refused_deep_topics
                .fetch_add(1, Ordering::Relaxed);
            return Err(ReasonCode::TopicNameInvalid);
        }
        if !message.properties.fit_mqtt() {
            return Err(ReasonCode::PacketTooLarge);
        }
        if !self
            .gate
            .get()
            .topic(who, outpost_access::TopicVerb::Publish, topic)
        {
            return Err(ReasonCode::NotAuthorized);
        }
        if message.retain
            && !message.payload.is_empty()
            && !self.retained_fits(&self.retained.lock(), topic, message.size())
        {
            self.stats.refused_retained.fetch_add(1, Ordering::Relaxed);
            return Err(ReasonCode::QuotaExceeded);
        }
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_in
            .fetch_add(message.payload.len() as u64, Ordering::Relaxed);
        let mut durable = Durable::default();
        let tapped = tap && self.tap.offer(who, Self::BROKER, &message, &mut durable);
        let routed = self.route(Self::BROKER, message, &mut durable, &mut Wakes::new());
        if self.refuses(routed, tapped) {
            return Err(ReasonCode::QuotaExceeded);
        }
        Ok((routed.matched + usize::from(tapped), durable))
    }

    /// Publishes a message from the broker itself (e.g. `$SYS` topics, deliveries of the routing
    /// layer); not offered to the publish tap.
    pub fn publish_internal(&self, message: Message) -> (usize, Durable) {
        let mut durable = Durable::default();
        let routed = self.route(Self::BROKER, message, &mut durable, &mut Wakes::new());
        (routed.matched, durable)
    }

    /// The sender name of the broker's own messages (no client has an empty identifier).
    pub(super) const BROKER: &'static str = "";

    /// Sets or clears the retained message of the message's topic (the caller checked the quota).
    pub(super) fn set_retained(&self, from: &str, message: &Message, durable: &mut Durable) {
        let retained = (!message.payload.is_empty()).then(|| Retained {
            message: Arc::new(message.clone()),
            qos: message.qos,
        });
        // `$SYS` values are regenerated after a restart; storing them would only churn the disk.
        let keep = !message.topic.starts_with("$SYS/");
        let job = match (&self.persist, keep) {
            (Some(_), true) => {
                // Encoded before the lock is taken.
                let bytes = retained
                    .as_ref()
                    .map(|r| persistence::encode_message(&r.message, r.qos, true, &[]));
                let (done, rx) = tokio::sync::oneshot::channel();
                durable.push(rx);
                Some(Job::Retain {
                    topic: message.topic.clone(),
                    bytes,
                    done: Some(done),
                })
            }
            _ => None,
        };
        let added = retained.as_ref().map(|r| r.message.size());
        let mut r = self.retained.lock();
        if let (Some(p), Some(job)) = (&self.persist, job) {
            // Queued under the lock: the store sees a topic's changes in the order memory does.
            p.send(job);
        }
        let old = match retained {
            Some(m) => r.tree.set(&message.topic, m),
            None => r.tree.clear(&message.topic),
        };
        // The broker's own `$SYS` values do not count against the clients' quota.
        if !(from == Self::BROKER && message.topic.starts_with("$SYS/")) {
            let removed = old.map(|r| r.message.size());
            r.bytes = r.bytes + added.unwrap_or(0) - removed.unwrap_or(0);
            r.counted = r.counted + usize::from(added.is_some()) - usize::from(removed.is_some());
        }
    }

    /// Routes a message to every matching session: the index and the session map are read
    /// together (a consistent view of who subscribes), then let go; each target session is then
    /// locked in turn to queue its delivery. A session whose queue is full does not take a QoS 1/2
    /// delivery: nothing of it is queued or stored, the loss is counted for that session, and
    /// [`Routed::refused`] says so (the publisher is refused when nobody took the message).
    pub(super) fn route(
        &self,
        from: &str,
        message: Message,
        durable: &mut Durable,
        wakes: &mut Wakes,
    ) -> Routed {
        if message.retain {
            self.set_retained(from, &message, durable);
        }
        let message = Arc::new(message);
        let mut routed = Routed::default();
        // Persistent sessions this message is stored for: one record of the message, a small
        // reference per session (written by the persistence task, encoded there, off any lock).
        let mut refs = Vec::new();
        let mut full = Vec::new();
        let (key, targets) = {
            let sessions = self.sessions.read();
            let index = self.index.read();
            let available = |c: &str| {
                sessions
                    .map
                    .get(c)
                    .is_some_and(|s| s.connected.load(Ordering::Relaxed))
            };
            let matched =
                index.route_borrowed(from, &message.topic, message.qos, message.retain, available);
            // The message's key, then its deliveries' ids right after it: the persistence task
            // finds a completed delivery's reference through its message (see `Stored`).
            let key = self
                .next_delivery
                .fetch_add(matched.len() as u64 + 1, Ordering::Relaxed);
            if self.persist.is_some() {
                refs.reserve(matched.len());
            }
            // Offline sessions first, all in one entry of the offline log, while the maps are
            // read (no session is locked, no name or session counted up and down); the others
            // each in its queue, below, with the maps let go.
            let targets = self.route_offline(
                key,
                &message,
                &sessions.map,
                matched,
                (&mut routed, &mut refs, &mut full),
            );
            (key, targets)
        };
        for client in full {
            // Counted here, logged once a second by `tick`. Nothing of it was stored.
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.stats.refused_overflow.fetch_add(1, Ordering::Relaxed);
            self.session_lost(&client);
        }
        for (id, t, cell) in targets {
            let mut s = cell.state.lock();
            if s.ended {
                continue;
            }
            if s.connection.is_none() && t.qos == QoS::AtMostOnce && !self.config.queue_qos0_offline
            {
                continue;
            }
            routed.matched += 1;
            let d = Delivery {
                id,
                message: message.clone(),
                qos: t.qos,
                retain: t.retain,
                subscription_ids: t.subscription_ids,
                queue: None,
            };
            let spec = match (&self.persist, s.stream.as_deref(), t.qos != QoS::AtMostOnce) {
                (Some(_), Some((stream, _)), true) => Some(RefSpec {
                    stream: *stream,
                    delivery: d.id,
                    qos: d.qos,
                    retain: d.retain,
                    subscription_ids: d.subscription_ids.clone(),
                }),
                _ => None,
            };
            let qos = d.qos;
            if !self.offer(&mut s, d, wakes) {
                if qos != QoS::AtMostOnce {
                    routed.refused += 1;
                    drop(s);
                    self.session_lost(&t.client);
                }
                continue;
            }
            routed.took += 1;
            refs.extend(spec);
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
                    let flow = s.flow.get_or_insert_with(Default::default);
                    flow.over_since.get_or_insert_with(Instant::now);
                    durable.hold_for(t.client.clone());
                }
            }
        }
        if let (Some(p), false) = (&self.persist, refs.is_empty()) {
            let (done, rx) = tokio::sync::oneshot::channel();
            durable.push(rx);
            wakes.send_job(
                p,
                Job::Store {
                    message,
                    key,
                    refs,
                    done,
                },
            );
        }
        routed
    }

    /// True when a QoS 1/2 message must be refused to its publisher: some matching session could
    /// not take it, none did, no rule or bridge took it, and the overflow policy refuses. (Only
    /// QoS 1/2 deliveries are ever refused, so a QoS 0 message never is.)
    pub(super) fn refuses(&self, routed: Routed, tapped: bool) -> bool {
        routed.refused > 0
            && routed.took == 0
            && !tapped
            && self.config.overflow == OverflowPolicy::Refuse
    }

    /// Queues a delivery; false when the session did not take it (its queue is full).
    pub(super) fn offer(&self, s: &mut Session, d: Delivery, wakes: &mut Wakes) -> bool {
        let took = match s.outbox.offer(d) {
            Offer::Queued => true,
            Offer::QueuedEvicting(old) => {
                self.queue_released(&old);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Offer::DroppedQoS0 => {
                // Only QoS 0 messages are dropped here; they are never stored.
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            Offer::Overflow(d) => {
                // Counted here, logged once a second by `tick` (never a line per message, never
                // under a lock). Nothing of it was stored.
                self.queue_released(&d);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.refused_overflow.fetch_add(1, Ordering::Relaxed);
                false
            }
        };
        if took {
            self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
            s.wake(wakes);
        }
        took
    }

    /// Handles SUBSCRIBE: one reason code per filter (for SUBACK); retained messages are queued.
    /// The `Durable` resolves once a persistent session's new subscriptions are stored: send SUBACK then.
    pub fn subscribe(
        &self,
        h: &ConnectionHandle,
        sub: &Subscribe<'_>,
    ) -> (Vec<ReasonCode>, Durable) {
        let (codes, durable) = self.subscribe_filters(h, sub);
        let granted = sub.filters.iter().zip(&codes);
        self.announce_subscriptions(
            h,
            "subscribed",
            granted
                .filter(|(_, c)| !c.is_error())
                .map(|(f, _)| f.filter),
        );
        (codes, durable)
    }

    fn subscribe_filters(
        &self,
        h: &ConnectionHandle,
        sub: &Subscribe<'_>,
    ) -> (Vec<ReasonCode>, Durable) {
        let refuse = |code: ReasonCode| match h.version {
            Version::V311 => ReasonCode::UnspecifiedError,
            Version::V5 => code,
        };
        let mut s = h.session.state.lock();
        if !s.owned_by(h.conn_id) {
            // Taken over: the new connection owns the session; this one is closing.
            let codes = sub
                .filters
                .iter()
                .map(|_| refuse(ReasonCode::SessionTakenOver))
                .collect();
            return (codes, Durable::default());
        }
        let id = sub.properties.subscription_identifier;
        let mut codes = Vec::new();
        let mut send_retained = Vec::new();
        let mut changes = Vec::new();
        let mut index = self.index.write();
        for f in sub.filters.iter() {
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
            if s.subscriptions.len() >= self.config.max_subscriptions_per_session
                && !s.subscriptions.contains_key(f.filter)
            {
                self.stats
                    .refused_subscriptions
                    .fetch_add(1, Ordering::Relaxed);
                codes.push(refuse(ReasonCode::QuotaExceeded));
                continue;
            }
            let mut options = f.options;
            if f.filter.starts_with(crate::QUEUE_PREFIX) {
                // A queue consumer: at most QoS 1 (a PUBACK deletes the message).
                let started = match (self.queue_door.get(), crate::queue_name(f.filter)) {
                    (Some(door), Some(name)) => {
                        door.subscribe(h.client_id.clone(), Some(&h.identity), name)
                    }
                    _ => Err(ReasonCode::TopicFilterInvalid),
                };
                if let Err(code) = started {
                    self.stats
                        .refused_subscriptions
                        .fetch_add(1, Ordering::Relaxed);
                    codes.push(refuse(code));
                    continue;
                }
                options.qos = options.qos.min(QoS::AtLeastOnce);
            }
            let filter: Arc<str> = f.filter.into();
            match index.subscribe(h.client_id.clone(), filter.clone(), options, id) {
                Ok(done) => {
                    codes.push(match done.granted {
                        QoS::AtMostOnce => ReasonCode::Success,
                        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
                    });
                    s.subscriptions
                        .insert(filter.clone(), Subscription::new(options, id));
                    changes.push(SubChange::Put(filter, options, id));
                    if let Some(bare) = done.send_retained {
                        send_retained.push((bare, options.qos));
                    }
                }
                Err(code) => {
                    self.stats
                        .refused_subscriptions
                        .fetch_add(1, Ordering::Relaxed);
                    codes.push(refuse(code));
                }
            }
        }
        // Routing goes on while the retained messages are looked up. A retained PUBLISH racing
        // this SUBSCRIBE is either found here or routed to the new subscription (it is in the
        // index already), never missed.
        drop(index);
        let durable = self.save_session(&h.client_id, &s, Save::Changes(changes));
        let retained: Vec<_> = {
            let r = self.retained.lock();
            send_retained
                .iter()
                .flat_map(|(bare, max)| crate::retained_matching(&r.tree, bare, *max))
                .collect()
        };
        for (_, m, qos) in retained {
            let d = Delivery {
                id: self.next_delivery.fetch_add(1, Ordering::Relaxed),
                message: m,
                qos,
                retain: true,
                subscription_ids: id.into_iter().collect(),
                queue: None,
            };
            self.offer(&mut s, d, &mut Wakes::new());
        }
        (codes, durable)
    }

    /// Handles UNSUBSCRIBE: one reason code per filter (for the MQTT 5 UNSUBACK). The session's
    /// stored subscriptions change in one write, whatever the number of filters; the `Durable`
    /// resolves once it is stored (send UNSUBACK then: a crash must not bring the subscription
    /// back after the client was told it is gone).
    pub fn unsubscribe(
        &self,
        h: &ConnectionHandle,
        u: &Unsubscribe<'_>,
    ) -> (Vec<ReasonCode>, Durable) {
        let (codes, durable) = self.unsubscribe_filters(h, u);
        let removed = u.filters.iter().zip(&codes);
        self.announce_subscriptions(
            h,
            "unsubscribed",
            removed.filter(|(_, c)| !c.is_error()).map(|(f, _)| f),
        );
        (codes, durable)
    }

    fn unsubscribe_filters(
        &self,
        h: &ConnectionHandle,
        u: &Unsubscribe<'_>,
    ) -> (Vec<ReasonCode>, Durable) {
        let mut s = h.session.state.lock();
        if !s.owned_by(h.conn_id) {
            let codes = u
                .filters
                .iter()
                .map(|_| ReasonCode::SessionTakenOver)
                .collect();
            return (codes, Durable::default());
        }
        let mut changes = Vec::new();
        let mut index = self.index.write();
        let codes = u
            .filters
            .iter()
            .map(|f| {
                let removed = index.unsubscribe(&h.client_id, f);
                if let Some((filter, _)) = s.subscriptions.remove_entry(f) {
                    changes.push(SubChange::Delete(filter));
                }
                if removed {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
            })
            .collect();
        drop(index);
        let durable = self.save_session(&h.client_id, &s, Save::Changes(changes));
        (codes, durable)
    }
}
