//! Queue administration: create (idempotent for equal attributes), delete, list, attributes, tags, purge, and retention.

use super::*;

impl Queues {
    pub(super) async fn save_def(&self, def: &QueueDef) -> Result<()> {
        let value = serde_json::to_vec(def).map_err(|e| QueueError::Internal(e.to_string()))?;
        let key = meta_key(&def.name);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.meta().apply(&[MetaOp::Put {
                table: QUEUES_TABLE,
                key: &key,
                value: &value,
            }])
        })
        .await
        .map_err(|e| QueueError::Internal(e.to_string()))??;
        Ok(())
    }

    pub(super) fn check_redrive_target(
        &self,
        source_name: &str,
        fifo: bool,
        value: &str,
    ) -> Result<()> {
        let Some(policy) = attributes::parse_redrive(value)? else {
            return Ok(());
        };
        let invalid = |reason: &str| {
            QueueError::InvalidParameterValue(format!(
                "Value {value} for parameter RedrivePolicy is invalid. Reason: {reason}"
            ))
        };
        let target = self
            .name_from_arn(&policy.target_arn)
            .and_then(|n| self.queue(&n).ok())
            .ok_or_else(|| invalid("Dead letter target does not exist."))?;
        if target.fifo != fifo {
            return Err(invalid(
                "Dead-letter target queue must be of the same type as the source queue.",
            ));
        }
        if target.name == source_name {
            return Err(invalid("A queue cannot be its own dead-letter queue."));
        }
        let allow = target.inner.lock().settings.redrive_allow.clone();
        let source_arn = self.arn(source_name);
        match allow {
            RedriveAllow::AllowAll => Ok(()),
            RedriveAllow::ByQueue(arns) if arns.contains(&source_arn) => Ok(()),
            _ => Err(invalid(
                "The dead-letter queue's RedriveAllowPolicy does not allow this source queue.",
            )),
        }
    }

    pub(super) fn validate_attributes(
        &self,
        name: &str,
        fifo: bool,
        attrs: &BTreeMap<String, String>,
        creating: bool,
    ) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (k, v) in attrs {
            let v = attributes::validate(k, v, fifo, creating)?;
            if k == "RedrivePolicy" {
                self.check_redrive_target(name, fifo, &v)?;
            }
            out.insert(k.clone(), v);
        }
        if out.get("FifoThroughputLimit").map(String::as_str) == Some("perMessageGroupId")
            && out.get("DeduplicationScope").map(String::as_str) == Some("queue")
        {
            return Err(QueueError::InvalidAttributeValue(
                "The perMessageGroupId value is allowed only when the value for DeduplicationScope is messageGroup.".into(),
            ));
        }
        Ok(out)
    }

    /// `CreateQueue`: idempotent for equal attributes.
    pub async fn create_queue(
        &self,
        name: &str,
        attrs: &BTreeMap<String, String>,
        tags: &BTreeMap<String, String>,
    ) -> Result<()> {
        let fifo_attr = attrs
            .get("FifoQueue")
            .map(|v| v.eq_ignore_ascii_case("true"));
        let fifo = name.ends_with(".fifo");
        if !valid_queue_name(name)
            || fifo_attr.is_some_and(|f| f != fifo)
            || (fifo && fifo_attr.is_none())
        {
            return Err(QueueError::InvalidParameterValue(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length. A FIFO queue name must end with the .fifo suffix and be created with the FifoQueue attribute.".into(),
            ));
        }
        let _guard = self.defs.lock().await;
        let mut validated = self.validate_attributes(name, fifo, attrs, true)?;
        validated.remove("FifoQueue");
        if let Ok(existing) = self.queue(name) {
            let inner = existing.inner.lock();
            let current = attributes::with_defaults(&inner.def.attributes, fifo);
            let requested = attributes::with_defaults(&validated, fifo);
            for (k, v) in &validated {
                if current.get(k) != Some(v) || requested.get(k) != current.get(k) {
                    return Err(QueueError::QueueNameExists(format!(
                        "A queue already exists with the same name and a different value for attribute {k}"
                    )));
                }
            }
            return Ok(());
        }
        if tags.len() > 50 {
            return Err(QueueError::InvalidParameterValue(
                "Too many tags: a queue can have at most 50.".into(),
            ));
        }
        if self.queues.read().len() >= self.config.max_queues {
            return Err(QueueError::OverLimit(format!(
                "Too many queues (at most {}).",
                self.config.max_queues
            )));
        }
        let id = self.next_queue_id().await?;
        let now_s = now_ms() / 1000;
        let def = QueueDef {
            id,
            name: name.to_string(),
            fifo,
            attributes: validated,
            tags: tags.clone(),
            created: now_s,
            modified: now_s,
        };
        self.save_def(&def).await?;
        let queue = self.build_queue(def)?;
        self.by_id.write().insert(id, queue.clone());
        self.queues.write().insert(name.to_string(), queue);
        tracing::info!(queue = name, fifo, "queue created");
        Ok(())
    }

    pub(super) async fn next_queue_id(&self) -> Result<u64> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let meta = store.meta();
            let next = meta
                .get(COUNTERS_TABLE, b"next_id")?
                .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
                .unwrap_or(1);
            meta.apply(&[MetaOp::Put {
                table: COUNTERS_TABLE,
                key: b"next_id",
                value: &(next + 1).to_be_bytes(),
            }])?;
            Ok(next)
        })
        .await
        .map_err(|e| QueueError::Internal(e.to_string()))?
    }

    /// `DeleteQueue`: the queue and its messages are gone.
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        let _guard = self.defs.lock().await;
        let queue = self.queue(name)?;
        let key = meta_key(name);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.meta().apply(&[MetaOp::Delete {
                table: QUEUES_TABLE,
                key: &key,
            }])
        })
        .await
        .map_err(|e| QueueError::Internal(e.to_string()))??;
        self.queues.write().remove(name);
        self.by_id.write().remove(&queue.id);
        queue.deleted.store(true, Ordering::Release);
        queue.notify.notify_waiters();
        let drained = queue.inner.lock().state.drain();
        self.kill_messages(&queue, &drained, false).await?;
        // The queue's streams leave the store's registry once nothing in them is live (a crash
        // before that is finished by the next recovery). A failure here leaves only names behind.
        let mut ids: Vec<RecordId> = Vec::new();
        for stream in [queue.messages, queue.deliveries] {
            ids.extend(
                self.store
                    .scan(stream, 0, usize::MAX)
                    .into_iter()
                    .map(|r| r.id),
            );
        }
        match self.store.mark_dead(&ids).await {
            Ok(_) => {
                let store = self.store.clone();
                let names = Queue::stream_names(queue.id);
                let removed = tokio::task::spawn_blocking(move || {
                    store.remove_stream(&names.0)?;
                    store.remove_stream(&names.1)
                })
                .await;
                if let Ok(Err(e)) = removed {
                    tracing::warn!(queue = name, error = %e, "streams of a deleted queue not removed");
                }
            }
            Err(e) => {
                tracing::warn!(queue = name, error = %e, "records of a deleted queue not removed")
            }
        }
        tracing::info!(queue = name, "queue deleted");
        Ok(())
    }

    /// `ListQueues`: names with `prefix`, sorted, paginated.
    pub fn list_queues(
        &self,
        prefix: &str,
        max_results: Option<i64>,
        next_token: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>)> {
        let limit = match max_results {
            None => 1000,
            Some(n) if (1..=1000).contains(&n) => n as usize,
            Some(n) => {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Value {n} for parameter MaxResults is invalid. Reason: must be between 1 and 1000."
                )))
            }
        };
        let after = match next_token {
            Some(t) if !t.is_empty() => Some(
                URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        QueueError::InvalidParameterValue("Invalid NextToken value.".into())
                    })?,
            ),
            _ => None,
        };
        let queues = self.queues.read();
        let mut names: Vec<String> = queues
            .keys()
            .filter(|n| n.starts_with(prefix))
            .filter(|n| after.as_ref().is_none_or(|a| n.as_str() > a.as_str()))
            .take(limit + 1)
            .cloned()
            .collect();
        let token = if names.len() > limit && max_results.is_some() {
            names.truncate(limit);
            names.last().map(|n| URL_SAFE_NO_PAD.encode(n.as_bytes()))
        } else {
            names.truncate(limit);
            None
        };
        Ok((names, token))
    }

    /// The queue's own access policy (what `AddPermission` writes), asked beside the ACL;
    /// `None` for a queue without one or no such queue.
    pub fn policy(&self, name: &str) -> Option<String> {
        self.get_attributes(name, &["Policy".to_string()])
            .ok()
            .and_then(|mut a| a.remove("Policy"))
    }

    /// `GetQueueAttributes`: the named attributes (`All` for every one).
    pub fn get_attributes(&self, name: &str, names: &[String]) -> Result<BTreeMap<String, String>> {
        let queue = self.queue(name)?;
        for n in names {
            if n != "All" && !attributes::is_known(n) {
                return Err(QueueError::InvalidAttributeName(format!(
                    "Unknown Attribute {n}."
                )));
            }
        }
        let all = names.iter().any(|n| n == "All");
        let mut inner = queue.inner.lock();
        let mut out = attributes::with_defaults(&inner.def.attributes, queue.fifo);
        let (visible, inflight, delayed) = inner.state.counts(now_ms());
        out.insert("ApproximateNumberOfMessages".into(), visible.to_string());
        out.insert(
            "ApproximateNumberOfMessagesNotVisible".into(),
            inflight.to_string(),
        );
        out.insert(
            "ApproximateNumberOfMessagesDelayed".into(),
            delayed.to_string(),
        );
        out.insert("CreatedTimestamp".into(), inner.def.created.to_string());
        out.insert(
            "LastModifiedTimestamp".into(),
            inner.def.modified.to_string(),
        );
        out.insert("QueueArn".into(), self.arn(name));
        drop(inner);
        if !all {
            out.retain(|k, _| names.contains(k));
        }
        Ok(out)
    }

    /// `SetQueueAttributes`.
    pub async fn set_attributes(&self, name: &str, attrs: &BTreeMap<String, String>) -> Result<()> {
        let _guard = self.defs.lock().await;
        let queue = self.queue(name)?;
        let validated = self.validate_attributes(name, queue.fifo, attrs, false)?;
        let mut def = queue.inner.lock().def.clone();
        for (k, v) in validated {
            def.attributes.insert(k, v);
        }
        def.attributes.retain(|k, v| {
            !(v.is_empty()
                && matches!(
                    k.as_str(),
                    "RedrivePolicy" | "RedriveAllowPolicy" | "Policy"
                ))
        });
        def.modified = now_ms() / 1000;
        self.save_def(&def).await?;
        let mut inner = queue.inner.lock();
        inner.settings = Settings::from_map(&def.attributes, queue.fifo);
        inner.def = def;
        drop(inner);
        // A shorter retention or delay may make messages vanish or appear now.
        queue.notify.notify_waiters();
        Ok(())
    }

    /// `TagQueue`, `UntagQueue`: adds `add` and removes `remove`.
    pub async fn tag(
        &self,
        name: &str,
        add: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        let _guard = self.defs.lock().await;
        let queue = self.queue(name)?;
        let mut def = queue.inner.lock().def.clone();
        for (k, v) in add {
            if k.is_empty() || k.len() > 128 || v.len() > 256 {
                return Err(QueueError::InvalidParameterValue(
                    "Tag keys must be 1 to 128 characters and values at most 256.".into(),
                ));
            }
            def.tags.insert(k.clone(), v.clone());
        }
        for k in remove {
            def.tags.remove(k);
        }
        if def.tags.len() > 50 {
            return Err(QueueError::InvalidParameterValue(
                "Too many tags: a queue can have at most 50.".into(),
            ));
        }
        self.save_def(&def).await?;
        queue.inner.lock().def = def;
        Ok(())
    }

    /// `ListQueueTags`.
    pub fn tags(&self, name: &str) -> Result<BTreeMap<String, String>> {
        Ok(self.queue(name)?.inner.lock().def.tags.clone())
    }

    /// `PurgeQueue`: deletes every message; once per 60 s.
    pub async fn purge(&self, name: &str) -> Result<()> {
        let queue = self.queue(name)?;
        let now = now_ms();
        let drained = {
            let mut inner = queue.inner.lock();
            if inner.last_purge_ms != 0 && now < inner.last_purge_ms + 60_000 {
                return Err(QueueError::PurgeQueueInProgress(self.arn(name)));
            }
            inner.last_purge_ms = now;
            inner.state.drain()
        };
        self.kill_messages(&queue, &drained, true).await
    }

    /// Marks the records of removed messages dead.
    pub(super) async fn kill_messages(
        &self,
        queue: &Queue,
        msgs: &[(u64, Msg)],
        wait: bool,
    ) -> Result<()> {
        let ids = records_of(queue, msgs);
        if ids.is_empty() {
            return Ok(());
        }
        if wait {
            self.store.mark_dead(&ids).await?;
        } else {
            self.store.mark_dead_later(&ids);
        }
        Ok(())
    }

    /// Removes messages older than their queue's retention period, as of `now` (ms); the
    /// maintenance task calls it every second.
    pub fn expire_messages(&self, now: u64) {
        let queues: Vec<Arc<Queue>> = self.queues.read().values().cloned().collect();
        for q in queues {
            let expired = {
                let mut inner = q.inner.lock();
                let cutoff = now.saturating_sub(ms(inner.settings.retention_seconds));
                inner.state.expire(cutoff)
            };
            if !expired.is_empty() {
                tracing::debug!(queue = %q.name, count = expired.len(), "messages expired");
                self.store.mark_dead_later(&records_of(&q, &expired));
            }
        }
    }
}
