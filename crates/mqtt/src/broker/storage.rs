//! What the engine keeps in the store: restoring it at start, saving session changes, completed deliveries, and store failures.

use super::*;

/// A session read from the store, with its deliveries by message key (none for a message of the
/// first layout).
type RestoredSession = (Arc<str>, Session, Vec<(Option<u64>, Delivery)>);

impl Broker {
    /// `n` changes could not be stored: counted, and logged at most once a second (a full disk
    /// fails every write; one line says so).
    pub(crate) fn persistence_failed(&self, n: usize, error: &dyn std::fmt::Display) {
        self.stats
            .persist_failures
            .fetch_add(n as u64, Ordering::Relaxed);
        let mut log = self.failure_log.lock();
        log.1 += n as u64;
        if log.0.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            tracing::error!(
                failed = log.1,
                %error,
                "store writes failed; acknowledgements that depended on them report the failure"
            );
            *log = (Some(Instant::now()), 0);
        }
    }

    /// True while the store is far behind the engine ([`Broker::wait_for_persistence`] would
    /// wait).
    pub fn persistence_behind(&self) -> bool {
        self.persist.as_ref().is_some_and(|p| p.behind())
    }

    /// Waits while the store is far behind the engine (a flood of messages to persistent sessions
    /// or retained topics): connections call it before reading more, so publishers slow down
    /// instead of memory growing.
    pub async fn wait_for_persistence(&self) {
        if let Some(p) = &self.persist {
            p.wait_for_room().await;
        }
    }

    pub(super) fn restore(&self, store: &Store) -> Result<Stored, StoreError> {
        let max_levels = self.config.max_topic_levels;
        // Nothing else runs yet: the locks are taken once, for the whole restore.
        let mut map = self.sessions.write();
        let mut index = self.index.write();
        let mut retained = self.retained.lock();
        let mut skipped = 0usize;
        for (m, qos) in persistence::stored_retained(store) {
            if too_deep(&m.topic, max_levels) {
                // Stored under other limits; today's would refuse it. Never crash on it.
                skipped += 1;
                continue;
            }
            let topic = m.topic.clone();
            retained.bytes += m.size();
            retained.counted += 1;
            retained.tree.set(
                &topic,
                Retained {
                    message: Arc::new(m),
                    qos,
                },
            );
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                max_topic_levels = max_levels,
                "stored retained messages with too many topic levels skipped"
            );
        }
        self.migrate_legacy_sessions(store)?;
        let records = store.meta().scan(persistence::SESSIONS, b"")?;
        let mut subscriptions: HashMap<
            String,
            Vec<(String, outpost_codec::SubscribeOptions, Option<u32>)>,
        > = HashMap::new();
        for (k, v) in store.meta().scan(persistence::SUBSCRIPTIONS, b"")? {
            let (Some((client, filter)), Some((options, id))) = (
                persistence::split_subscription_key(&k),
                persistence::decode_subscription(&v),
            ) else {
                tracing::warn!("an unreadable stored subscription skipped");
                continue;
            };
            subscriptions.entry(client.to_string()).or_default().push((
                filter.to_string(),
                options,
                id,
            ));
        }
        let now_ms = outpost_store::now_ms();
        // Messages stored once for persistent sessions, by key; keys and delivery ids continue
        // after the largest key seen, so they stay unique across restarts.
        let mut stored = Stored::default();
        let mut shared: HashMap<u64, Arc<Message>> = HashMap::new();
        let mut dangling = Vec::new();
        // Messages with a delivery set (ADR 0023), handed to their sessions once every session
        // and its cursor is read: their keys and records.
        let mut sets: Vec<(u64, Bytes)> = Vec::new();
        let messages_stream = store.stream(persistence::MESSAGES_STREAM)?;
        for r in store.scan(messages_stream, 0, usize::MAX) {
            let age = Duration::from_millis(now_ms.saturating_sub(r.timestamp));
            let Some((key, m, set)) = persistence::decode_message_record(&r.payload, age) else {
                tracing::warn!("an unreadable stored message skipped");
                continue;
            };
            // A delivery in the message's set takes the id its place gives it, right after the
            // key; ids given below (and keys from now on) come after all of them.
            self.next_delivery
                .fetch_max(key + 1 + set.len() as u64, Ordering::Relaxed);
            stored.add_message(key, r.id);
            shared.insert(key, Arc::new(m));
            if !set.is_empty() {
                // Read again below: holding every member of every message here would take tens
                // of bytes per queued delivery for the whole restore.
                sets.push((key, r.payload));
            }
        }
        let mut sessions = 0;
        let mut messages = 0;
        let mut deep_filters = 0usize;
        // Sessions read, with what they hold, and each one's place by its stream.
        let mut restored: Vec<RestoredSession> = Vec::new();
        let mut by_stream: HashMap<StreamId, usize> = HashMap::new();
        for (key, value) in records {
            let (Ok(client), Some((expiry, stream_name))) = (
                String::from_utf8(key),
                persistence::decode_session_record(&value),
            ) else {
                tracing::warn!("an unreadable stored session skipped");
                continue;
            };
            let stream = Some((store.stream(stream_name)?, Arc::<str>::from(stream_name)));
            let client: Arc<str> = client.into();
            let mut session = self.new_session(expiry, stream.clone());
            session.disconnected_at = Some(crate::moment::Moment::now());
            for (filter, options, id) in subscriptions.remove(&*client).unwrap_or_default() {
                if too_deep(&filter, max_levels) {
                    deep_filters += 1;
                    continue;
                }
                let filter: Arc<str> = filter.into();
                if index
                    .subscribe(client.clone(), filter.clone(), options, id)
                    .is_ok()
                {
                    session
                        .subscriptions
                        .insert(filter, Subscription::new(options, id));
                }
            }
            // (key, delivery): sorted by key before they are queued, so the set deliveries
            // found below take their places among the references.
            let mut found: Vec<(Option<u64>, Delivery)> = Vec::new();
            if let Some((stream, _)) = stream {
                for r in store.scan(stream, 0, usize::MAX) {
                    if let Some(cursor) = persistence::decode_cursor(&r.payload) {
                        dangling.extend(stored.add_cursor(stream, cursor, r.id));
                        continue;
                    }
                    let age = Duration::from_millis(now_ms.saturating_sub(r.timestamp));
                    let Some(held) = persistence::decode_deliveries(&r.payload, age) else {
                        continue;
                    };
                    let mut live = 0;
                    for d in held {
                        let (message, key, qos, retain, ids) = match d {
                            StoredDelivery::Reference {
                                key,
                                qos,
                                retain,
                                subscription_ids,
                            } => match shared.get(&key) {
                                Some(m) => (m.clone(), Some(key), qos, retain, subscription_ids),
                                // Its message is gone (removed with a last reference before a
                                // crash): nothing to deliver.
                                None => continue,
                            },
                            StoredDelivery::Whole(m, qos, retain, ids) => {
                                (Arc::new(m), None, qos, retain, ids)
                            }
                        };
                        let id = self.next_delivery.fetch_add(1, Ordering::Relaxed);
                        stored.add_delivery(id, r.id, key);
                        found.push((
                            key,
                            Delivery {
                                id,
                                message,
                                qos,
                                retain,
                                subscription_ids: ids,
                                queue: None,
                            },
                        ));
                        live += 1;
                    }
                    if live == 0 {
                        dangling.push(r.id);
                    }
                }
            }
            if let Some((stream, _)) = &stream {
                by_stream.insert(*stream, restored.len());
            }
            restored.push((client, session, found));
        }
        // Each set delivery goes to its session when the session still exists (a stream is
        // never reused) and its cursor is not past the message: to the offline log (24 bytes a
        // delivery, as when it was routed), or, for a session with deliveries of other kinds
        // in its queue or one that will not wait in the log, to its queue among them in key
        // order. Its id is the one after the message's key given by its place in the set.
        messages += restored
            .iter()
            .map(|(_, _, found)| found.len())
            .sum::<usize>();
        let to_log = |(_, session, found): &RestoredSession| {
            found.is_empty() && session.expiry != 0 && !self.config.queue_qos0_offline
        };
        for (key, record) in &sets {
            let (Some(message), Some(set)) =
                (shared.get(key), persistence::decode_delivery_set(record))
            else {
                continue;
            };
            for (at, member) in (0u32..).zip(set) {
                let Some(&i) = by_stream.get(&member.stream) else {
                    continue;
                };
                if *key < stored.cursor(member.stream) {
                    continue;
                }
                if !stored.add_restored_set(*key, member.stream, at) {
                    continue;
                }
                messages += 1;
                if to_log(&restored[i]) {
                    continue;
                }
                restored[i].2.push((
                    Some(*key),
                    Delivery {
                        id: key + 1 + u64::from(at),
                        message: message.clone(),
                        qos: QoS::AtLeastOnce,
                        retain: member.retain,
                        subscription_ids: member.subscription_ids,
                        queue: None,
                    },
                ));
            }
        }
        // The sessions, offline from the start: each waits in the offline log.
        let mut slots: HashMap<StreamId, u32> = HashMap::new();
        // Sessions meant for the log that it did not take: their set deliveries join their
        // queues instead (never dropped for a mismatch of the two rules).
        let mut unlogged: HashMap<StreamId, Arc<SessionCell>> = HashMap::new();
        for restored in restored {
            let logged = to_log(&restored);
            let (client, mut session, mut found) = restored;
            // In the order they were routed (messages of the first layout, without a key, first).
            found.sort_by_key(|(key, _)| *key);
            for (_, d) in found {
                let _ = session.outbox.offer(d);
            }
            let cell = SessionCell::new(session);
            {
                let s = cell.state.lock();
                self.go_offline(&cell, &s);
                if let (true, Some((stream, _))) = (logged, s.stream.as_deref()) {
                    match cell.offline.load(Ordering::Relaxed) {
                        0 => {
                            unlogged.insert(*stream, cell.clone());
                        }
                        slot => {
                            slots.insert(*stream, slot);
                        }
                    }
                }
            }
            map.map.insert(client, cell);
            map.persistent += 1;
            sessions += 1;
        }
        for (key, record) in &sets {
            if slots.is_empty() && unlogged.is_empty() {
                break;
            }
            let (Some(message), Some(set), true) = (
                shared.get(key),
                persistence::decode_delivery_set(record),
                stored.has_message(*key),
            ) else {
                continue;
            };
            // Sessions are locked before the log, never under it (ADR 0023's lock order).
            for (at, member) in (0u32..).zip(&set) {
                if let (Some(cell), false) = (
                    unlogged.get(&member.stream),
                    *key < stored.cursor(member.stream),
                ) {
                    cell.state.lock().outbox.admit(Delivery {
                        id: key + 1 + u64::from(at),
                        message: message.clone(),
                        qos: QoS::AtLeastOnce,
                        retain: member.retain,
                        subscription_ids: member.subscription_ids.clone(),
                        queue: None,
                    });
                }
            }
            let mut log = self.offline.lock();
            let mut adding = log.adding(*key, message.clone(), set.len());
            for (at, member) in (0u32..).zip(set) {
                if let (Some(&slot), false) = (
                    slots.get(&member.stream),
                    *key < stored.cursor(member.stream),
                ) {
                    adding.admit(slot, at, member.retain, member.subscription_ids);
                }
            }
            adding.finish();
        }
        if deep_filters > 0 {
            tracing::warn!(
                skipped = deep_filters,
                max_topic_levels = max_levels,
                "stored subscriptions with too many topic levels skipped"
            );
        }
        tracing::info!(
            sessions,
            queued_messages = messages,
            retained = retained.tree.len(),
            "MQTT state restored from the store"
        );
        if !dangling.is_empty() {
            store.mark_dead_later(&dangling);
        }
        Ok(stored)
    }

    /// Moves sessions stored in the first layout (one value holding every subscription) to the
    /// current one (a record per session, an entry per subscription), once, at startup.
    pub(super) fn migrate_legacy_sessions(&self, store: &Store) -> Result<(), StoreError> {
        let legacy = store.meta().scan(persistence::LEGACY_SESSIONS, b"")?;
        if legacy.is_empty() {
            return Ok(());
        }
        let mut owned: Vec<MetaChange> = Vec::new();
        for (key, value) in &legacy {
            owned.push((persistence::LEGACY_SESSIONS, key.clone(), None));
            let (Ok(client), Some(saved)) =
                (std::str::from_utf8(key), persistence::decode_session(value))
            else {
                continue;
            };
            owned.push((
                persistence::SESSIONS,
                key.clone(),
                Some(persistence::encode_session_record(
                    saved.expiry,
                    &persistence::legacy_session_stream(client),
                )),
            ));
            for (filter, options, id) in saved.subscriptions {
                let mut k = persistence::subscriptions_prefix(client);
                k.extend_from_slice(filter.as_bytes());
                owned.push((
                    persistence::SUBSCRIPTIONS,
                    k,
                    Some(persistence::encode_subscription(&options, id).to_vec()),
                ));
            }
        }
        let ops: Vec<outpost_store::MetaOp<'_>> = owned
            .iter()
            .map(|(table, key, value)| match value {
                Some(value) => outpost_store::MetaOp::Put { table, key, value },
                None => outpost_store::MetaOp::Delete { table, key },
            })
            .collect();
        store.meta().apply(&ops)?;
        tracing::info!(
            sessions = legacy.len(),
            "stored sessions moved to the current layout"
        );
        Ok(())
    }

    /// A delivery is complete (acknowledged, expired or discarded): its record, if any, goes.
    pub(super) fn complete(&self, s: &Session, d: &Delivery) {
        // Queue deliveries are never stored with the session: the queue holds them.
        if s.stream.is_none() || d.qos == QoS::AtMostOnce || d.queue.is_some() {
            return;
        }
        if let Some(p) = &self.persist {
            // The persistence task knows which record holds it (no round trip to this lock).
            p.send(Job::Done(d.id));
        }
    }

    /// Queues a change of a persistent session for the metadata store; the returned `Durable`
    /// resolves once it is saved. Only what changed is written (a SUBSCRIBE of one filter writes
    /// one entry, whatever the session holds).
    pub(super) fn save_session(&self, client: &Arc<str>, s: &Session, what: Save) -> Durable {
        let mut durable = Durable::default();
        let (Some(p), Some((_, stream))) = (&self.persist, s.stream.as_deref()) else {
            return durable;
        };
        let record = Some((s.expiry, stream.clone()));
        let (record, replace, changes) = match what {
            Save::Record => (record, false, Vec::new()),
            Save::Whole => (
                record,
                true,
                s.subscriptions
                    .iter()
                    .map(|(filter, sub)| {
                        SubChange::Put(filter.clone(), sub.options, sub.identifier())
                    })
                    .collect(),
            ),
            Save::Changes(changes) if changes.is_empty() => return durable,
            Save::Changes(changes) => (None, false, changes),
        };
        let (done, rx) = tokio::sync::oneshot::channel();
        durable.push(rx);
        p.send(Job::SaveSession {
            client: client.clone(),
            record,
            replace,
            changes,
            done: Some(done),
        });
        durable
    }

    /// Resolves once everything queued for the store so far is stored (for a graceful shutdown).
    pub fn flush_persistence(&self) -> Durable {
        let mut durable = Durable::default();
        if let Some(p) = &self.persist {
            for rx in p.flush() {
                durable.push(rx);
            }
        }
        durable
    }
}
