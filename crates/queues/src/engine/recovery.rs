//! Recovery at start: queue definitions from the metadata store, and each queue's state rebuilt from its message and delivery records (the newest delivery record of a message wins).

use super::send::dedup_key;
use super::*;

impl Queues {
    pub(super) fn recover(&self) -> Result<()> {
        let now = now_ms();
        let defs = self.store.meta().scan(QUEUES_TABLE, b"")?;
        let mut live_ids = HashSet::new();
        for (_, value) in defs {
            let def: QueueDef = match serde_json::from_slice(&value) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "skipping an unreadable queue definition");
                    continue;
                }
            };
            live_ids.insert(def.id);
            let queue = self.build_queue(def)?;
            self.recover_messages(&queue, now);
            self.by_id.write().insert(queue.id, queue.clone());
            self.queues.write().insert(queue.name.clone(), queue);
        }
        // Streams of queues whose deletion was cut short by a crash.
        for (name, stream) in self.store.streams()? {
            let Some(rest) = name.strip_prefix("queue/") else {
                continue;
            };
            let id = rest.split('/').next().and_then(|s| s.parse::<u64>().ok());
            if id.is_some_and(|id| !live_ids.contains(&id)) {
                let ids: Vec<RecordId> = self
                    .store
                    .scan(stream, 0, usize::MAX)
                    .into_iter()
                    .map(|r| r.id)
                    .collect();
                if ids.is_empty() {
                    // Nothing left in it: the name goes too.
                    self.store.remove_stream(&name)?;
                } else {
                    self.store.mark_dead_later(&ids);
                }
            }
        }
        Ok(())
    }

    pub(super) fn build_queue(&self, def: QueueDef) -> Result<Arc<Queue>> {
        let (m, d) = Queue::stream_names(def.id);
        let messages = self.store.stream(&m)?;
        let deliveries = self.store.stream(&d)?;
        let settings = Settings::from_map(&def.attributes, def.fifo);
        Ok(Arc::new(Queue {
            id: def.id,
            name: def.name.clone(),
            fifo: def.fifo,
            messages,
            deliveries,
            inner: Mutex::new(Inner {
                state: QueueState::new(def.fifo),
                settings,
                def,
                next_sequence: 1,
                last_purge_ms: 0,
                attempts: HashMap::new(),
            }),
            notify: tokio::sync::Notify::new(),
            deleted: Default::default(),
            send_order: tokio::sync::Mutex::new(()),
        }))
    }

    pub(super) fn recover_messages(&self, queue: &Queue, now: u64) {
        let mut latest: HashMap<u64, (u64, Delivery)> = HashMap::new();
        let mut obsolete = Vec::new();
        for rec in self.store.scan(queue.deliveries, 0, usize::MAX) {
            let Some(d) = Delivery::decode(&rec.payload) else {
                obsolete.push(rec.id);
                continue;
            };
            if let Some((old, _)) = latest.insert(d.seq, (rec.id.seq, d)) {
                obsolete.push(queue.delivery_record(old));
            }
        }
        let mut inner = queue.inner.lock();
        let mut max_sequence = 0;
        for rec in self.store.scan(queue.messages, 0, usize::MAX) {
            let Some(m) = StoredMessage::decode(&rec.payload) else {
                tracing::error!(queue = %queue.name, seq = rec.id.seq, "dropping an unreadable message record");
                obsolete.push(rec.id);
                continue;
            };
            max_sequence = max_sequence.max(m.sequence);
            if queue.fifo && m.sent_ms + DEDUP_WINDOW_MS > now {
                if let Some(key) = dedup_key(&inner.settings, &m.group, &m.dedup) {
                    inner.state.dedup_insert(
                        key,
                        DedupEntry {
                            expires_ms: m.sent_ms + DEDUP_WINDOW_MS,
                            message_id: m.message_id(),
                            sequence: m.sequence,
                        },
                    );
                }
            }
            let delivery = latest.remove(&rec.id.seq);
            inner.state.insert(
                rec.id.seq,
                m.sent_ms,
                m.available_ms,
                m.group.as_deref().filter(|_| queue.fifo).map(Arc::from),
                rec.payload.len() as u64,
                delivery,
                now,
            );
        }
        inner.next_sequence = max_sequence + 1;
        drop(inner);
        // Deliveries of messages that are gone.
        obsolete.extend(latest.values().map(|(rec, _)| queue.delivery_record(*rec)));
        self.store.mark_dead_later(&obsolete);
    }
}
