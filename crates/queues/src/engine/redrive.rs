//! Dead-letter queues: moving messages past their maximum receive count, ListDeadLetterSourceQueues, and message move tasks (start, rate-limited redrive, cancel, list).

use super::*;

impl Queues {
    pub(super) fn dead_letter_target(&self, queue: &Queue) -> Option<(Arc<Queue>, u32)> {
        let policy = queue.inner.lock().settings.redrive.clone()?;
        let target = self.queue(&self.name_from_arn(&policy.target_arn)?).ok()?;
        Some((target, policy.max_receive_count))
    }

    /// Moves messages that exhausted their receives to the dead-letter queue.
    pub(super) async fn dead_letter(
        &self,
        source: &Queue,
        target: &Arc<Queue>,
        dead: Vec<(u64, Msg)>,
    ) -> Result<()> {
        let source_arn = self.arn(&source.name);
        let moved: Vec<StoredMessage> = dead
            .iter()
            .filter_map(|(seq, _)| self.store.read(source.message_record(*seq)))
            .filter_map(|r| StoredMessage::decode(&r.payload))
            .map(|mut m| {
                m.dead_letter_source = Some(source_arn.clone());
                m
            })
            .collect();
        tracing::debug!(queue = %source.name, dlq = %target.name, count = moved.len(), "dead-lettering messages");
        self.append_moved(target, moved).await?;
        self.kill_messages(source, &dead, true).await
    }

    /// Appends messages moved in from another queue (dead-lettered or redriven).
    pub(super) async fn append_moved(
        &self,
        target: &Arc<Queue>,
        mut msgs: Vec<StoredMessage>,
    ) -> Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        {
            let mut inner = target.inner.lock();
            for m in &mut msgs {
                m.available_ms = now;
                if target.fifo {
                    m.sequence = inner.next_sequence;
                    inner.next_sequence += 1;
                }
            }
        }
        let records: Vec<Bytes> = msgs.iter().map(StoredMessage::encode).collect();
        let sizes: Vec<u64> = records.iter().map(|r| r.len() as u64).collect();
        let ids = self.store.append_batch(target.messages, records).await?;
        {
            let mut inner = target.inner.lock();
            for ((m, id), size) in msgs.iter().zip(&ids).zip(sizes) {
                inner.state.insert(
                    id.seq,
                    m.sent_ms,
                    m.available_ms,
                    m.group.as_deref().filter(|_| target.fifo).map(Arc::from),
                    size,
                    None,
                    now,
                );
            }
        }
        target.notify.notify_waiters();
        Ok(())
    }

    /// `ListDeadLetterSourceQueues`: queues whose redrive policy targets `name`.
    pub fn dead_letter_sources(&self, name: &str) -> Result<Vec<String>> {
        self.queue(name)?;
        let arn = self.arn(name);
        Ok(self
            .queues
            .read()
            .values()
            .filter(|q| {
                q.inner
                    .lock()
                    .settings
                    .redrive
                    .as_ref()
                    .is_some_and(|r| r.target_arn == arn)
            })
            .map(|q| q.name.clone())
            .collect())
    }

    /// `StartMessageMoveTask`: moves a dead-letter queue's messages back to their source queues
    /// (or to `destination_arn`), at most `rate` per second.
    pub fn start_move_task(
        self: &Arc<Self>,
        source_arn: &str,
        destination_arn: Option<&str>,
        rate: Option<i64>,
    ) -> Result<String> {
        let source_name = self.name_from_arn(source_arn).ok_or_else(|| {
            QueueError::ResourceNotFound(
                "The resource that you specified for the SourceArn parameter doesn't exist.".into(),
            )
        })?;
        let source = self.queue(&source_name).map_err(|_| {
            QueueError::ResourceNotFound(
                "The resource that you specified for the SourceArn parameter doesn't exist.".into(),
            )
        })?;
        if self.dead_letter_sources(&source_name)?.is_empty() {
            return Err(QueueError::InvalidParameterValue(
                "Source queue must be configured as a Dead Letter Queue.".into(),
            ));
        }
        if let Some(dest) = destination_arn {
            let dest_queue = self
                .name_from_arn(dest)
                .and_then(|n| self.queue(&n).ok())
                .ok_or_else(|| QueueError::ResourceNotFound("The resource that you specified for the DestinationArn parameter doesn't exist.".into()))?;
            if dest_queue.fifo != source.fifo || dest_queue.name == source.name {
                return Err(QueueError::InvalidParameterValue(
                    "The destination must be a different queue of the same type.".into(),
                ));
            }
        }
        let rate = match rate {
            None => None,
            Some(r) if (1..=500).contains(&r) => Some(r as u32),
            Some(r) => {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Value {r} for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: must be between 1 and 500."
                )))
            }
        };
        let mut tasks = self.tasks.lock();
        if tasks
            .iter()
            .any(|t| t.source_arn == source_arn && t.is_running())
        {
            return Err(QueueError::UnsupportedOperation(
                "There is already a task running. Only one active task is allowed for a source queue arn at a given time.".into(),
            ));
        }
        let to_move = source.inner.lock().state.counts(now_ms()).0;
        let task = Arc::new(MoveTask::new(
            source_arn.to_string(),
            destination_arn.map(str::to_string),
            rate,
            to_move,
        ));
        tasks.retain(|t| t.is_running() || tasks_recent(t));
        tasks.push(task.clone());
        drop(tasks);
        let engine = Arc::downgrade(self);
        let handle = task.handle.clone();
        tokio::spawn(async move { MoveTask::run(task, engine).await });
        Ok(handle)
    }

    /// Moves up to `limit` visible messages out of a dead-letter queue; returns how many moved and
    /// whether the queue had no more visible messages.
    pub(crate) async fn redrive_some(
        &self,
        source_name: &str,
        destination_arn: Option<&str>,
        limit: usize,
    ) -> Result<(u64, bool)> {
        let source = self.queue(source_name)?;
        let picked: Vec<(u64, Msg)> = {
            let mut inner = source.inner.lock();
            let seqs = inner.state.visible_seqs(now_ms(), limit);
            seqs.into_iter()
                .filter_map(|s| inner.state.remove(s).map(|m| (s, m)))
                .collect()
        };
        if picked.is_empty() {
            return Ok((0, true));
        }
        let mut by_dest: BTreeMap<String, Vec<StoredMessage>> = BTreeMap::new();
        for (seq, _) in &picked {
            let Some(m) = self
                .store
                .read(source.message_record(*seq))
                .and_then(|r| StoredMessage::decode(&r.payload))
            else {
                continue;
            };
            let dest = destination_arn
                .map(str::to_string)
                .or_else(|| m.dead_letter_source.clone())
                .unwrap_or_default();
            let mut m = m;
            m.dead_letter_source = None;
            by_dest.entry(dest).or_default().push(m);
        }
        let mut failure = None;
        for (dest, msgs) in by_dest {
            match self.name_from_arn(&dest).and_then(|n| self.queue(&n).ok()) {
                Some(q) => self.append_moved(&q, msgs).await?,
                None => failure = Some(dest),
            }
        }
        if let Some(dest) = failure {
            // Put back what could not go anywhere; the task fails.
            let now = now_ms();
            let mut inner = source.inner.lock();
            for (seq, m) in &picked {
                inner
                    .state
                    .insert(*seq, m.sent_ms, now, m.group.clone(), m.bytes, None, now);
            }
            return Err(QueueError::ResourceNotFound(format!(
                "Destination queue {dest} does not exist."
            )));
        }
        let moved = picked.len() as u64;
        self.kill_messages(&source, &picked, true).await?;
        Ok((moved, false))
    }

    /// `CancelMessageMoveTask`: returns how many messages were moved.
    pub fn cancel_move_task(&self, handle: &str) -> Result<u64> {
        let tasks = self.tasks.lock();
        let task = tasks
            .iter()
            .find(|t| t.handle == handle)
            .ok_or_else(|| QueueError::ResourceNotFound("Task does not exist.".into()))?;
        if !task.is_running() {
            return Err(QueueError::UnsupportedOperation(
                "Only active tasks can be cancelled.".into(),
            ));
        }
        task.cancel();
        Ok(task.moved())
    }

    /// `ListMessageMoveTasks`: the newest tasks of a dead-letter queue first.
    pub fn list_move_tasks(&self, source_arn: &str, max: Option<i64>) -> Result<Vec<MoveTaskInfo>> {
        let max = match max {
            None => 1,
            Some(n) if (1..=10).contains(&n) => n as usize,
            Some(n) => {
                return Err(QueueError::InvalidParameterValue(format!(
                "Value {n} for parameter MaxResults is invalid. Reason: must be between 1 and 10."
            )))
            }
        };
        let name = self.name_from_arn(source_arn).ok_or_else(|| {
            QueueError::ResourceNotFound(
                "The resource that you specified for the SourceArn parameter doesn't exist.".into(),
            )
        })?;
        self.queue(&name).map_err(|_| {
            QueueError::ResourceNotFound(
                "The resource that you specified for the SourceArn parameter doesn't exist.".into(),
            )
        })?;
        let tasks = self.tasks.lock();
        Ok(tasks
            .iter()
            .rev()
            .filter(|t| t.source_arn == source_arn)
            .take(max)
            .map(|t| t.info())
            .collect())
    }
}
