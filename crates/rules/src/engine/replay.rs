//! Replays: the events of an archive whose time falls in a range, put through the rules of the
//! archive's bus again (all of them, or the rules the destination names), each carrying
//! `replay-name`. One task per replay reads the archive in order; its state (STARTING, RUNNING,
//! CANCELLING, then COMPLETED, CANCELLED or FAILED) and progress (`EventLastReplayedTime`) are kept
//! in the metadata store, with the archive position after the last page whose deliveries are
//! durable. A replay that was running when the broker stopped resumes from there after the
//! restart (at most one page of 100 events is delivered again: at least once, as EventBridge
//! delivers); one that was being cancelled ends CANCELLED.

use std::sync::atomic::AtomicBool;

use serde_json::Value;

use super::*;
use crate::event::Event;
use crate::json_path::clip;

pub(super) const REPLAYS_TABLE: &str = "events_replays";
/// Archive records read per step of a replay.
const PAGE: usize = 100;

/// A replay as stored (and reported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaySummary {
    pub name: String,
    pub arn: String,
    pub description: Option<String>,
    pub source_arn: String,
    pub destination_arn: String,
    pub filter_arns: Vec<String>,
    pub start_ms: u64,
    pub end_ms: u64,
    pub state: String,
    pub state_reason: Option<String>,
    pub replay_start_ms: u64,
    pub replay_end_ms: Option<u64>,
    pub last_replayed_ms: Option<u64>,
    /// The archive position to go on from (after the last page whose deliveries are durable).
    #[serde(default)]
    pub resume_from: u64,
}

/// A live replay.
pub(crate) struct Replay {
    pub summary: parking_lot::Mutex<ReplaySummary>,
    pub cancel: AtomicBool,
}

fn valid_replay_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

impl Events {
    async fn save_replay(&self, s: &ReplaySummary) -> Result<()> {
        let bytes =
            serde_json::to_vec(s).map_err(|e| EventsError::Internal(format!("encoding: {e}")))?;
        self.apply_meta(vec![(
            REPLAYS_TABLE,
            s.name.as_bytes().to_vec(),
            Some(bytes),
        )])
        .await
    }

    /// Replays found at start; one that was running is resumed by [`Events::resume_replays`],
    /// one that was being cancelled is over.
    pub(super) fn recover_replays(&self) -> Result<()> {
        for (_, value) in self.store.meta().scan(REPLAYS_TABLE, b"")? {
            let Ok(mut s) = serde_json::from_slice::<ReplaySummary>(&value) else {
                tracing::error!("a stored replay is unreadable; skipped");
                continue;
            };
            if s.state == "CANCELLING" {
                s.state = "CANCELLED".into();
                s.replay_end_ms = Some(now_ms());
            }
            self.replays.write().insert(
                s.name.clone(),
                Arc::new(Replay {
                    summary: parking_lot::Mutex::new(s),
                    cancel: AtomicBool::new(false),
                }),
            );
        }
        Ok(())
    }

    /// Restarts the replays a stop interrupted, from their saved positions. One whose archive or
    /// bus is gone meanwhile ends FAILED.
    pub(super) fn resume_replays(self: &Arc<Self>) {
        let interrupted: Vec<Arc<Replay>> = self
            .replays
            .read()
            .values()
            .filter(|r| matches!(r.summary.lock().state.as_str(), "STARTING" | "RUNNING"))
            .cloned()
            .collect();
        for replay in interrupted {
            let source = replay.summary.lock().source_arn.clone();
            let prefix = format!(
                "arn:aws:events:{}:{}:archive/",
                self.config.region, self.config.account
            );
            let found = source
                .strip_prefix(&prefix)
                .and_then(|name| self.archive_named(name).ok())
                .and_then(|a| Some((a.stream, self.bus(Some(&a.def.bus)).ok()?)));
            let this = self.clone();
            match found {
                Some((stream, bus)) => {
                    tracing::info!(replay = %replay.summary.lock().name, "resuming a replay the stop interrupted");
                    tokio::spawn(async move { this.run_replay(replay, stream, bus).await });
                }
                None => {
                    tokio::spawn(async move {
                        this.set_replay_state(
                            &replay,
                            "FAILED",
                            Some("The archive or its event bus is gone.".into()),
                        )
                        .await;
                    });
                }
            }
        }
    }

    /// `StartReplay`: the replay's ARN, state and start time.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_replay(
        self: &Arc<Self>,
        name: &str,
        description: Option<String>,
        source_arn: &str,
        start_ms: u64,
        end_ms: u64,
        destination_arn: &str,
        filter_arns: Vec<String>,
    ) -> Result<ReplaySummary> {
        if !valid_replay_name(name) {
            return Err(EventsError::validation(format!(
                "Replay name {} is not valid: 1 to 64 of [.-_A-Za-z0-9]",
                clip(name)
            )));
        }
        check_description(description.as_deref())?;
        if end_ms <= start_ms {
            return Err(EventsError::validation(
                "Parameter EventEndTime is not valid. Reason: EventStartTime must be before EventEndTime.",
            ));
        }
        let archive_name = source_arn
            .strip_prefix(&format!(
                "arn:aws:events:{}:{}:archive/",
                self.config.region, self.config.account
            ))
            .ok_or_else(|| {
                EventsError::not_found(format!("Archive {} does not exist.", clip(source_arn)))
            })?;
        let archive = self.archive_named(archive_name)?;
        if destination_arn != self.bus_arn(&archive.def.bus) {
            return Err(EventsError::validation(
                "Parameter Destination.Arn is not valid. Reason: Cross event bus replay is not permitted.",
            ));
        }
        let bus = self.bus(Some(&archive.def.bus))?;
        for f in &filter_arns {
            if !bus.rules.read().values().any(|r| &r.arn == f) {
                return Err(EventsError::not_found(format!(
                    "Rule {} does not exist on the destination event bus.",
                    clip(f)
                )));
            }
        }
        let _defs = self.defs.lock().await;
        if self.replays.read().contains_key(name) {
            return Err(EventsError::ResourceAlreadyExists(format!(
                "Replay {name} already exists."
            )));
        }
        let summary = ReplaySummary {
            name: name.to_string(),
            arn: format!(
                "arn:aws:events:{}:{}:replay/{name}",
                self.config.region, self.config.account
            ),
            description,
            source_arn: source_arn.to_string(),
            destination_arn: destination_arn.to_string(),
            filter_arns,
            start_ms,
            end_ms,
            state: "STARTING".into(),
            state_reason: None,
            replay_start_ms: now_ms(),
            replay_end_ms: None,
            last_replayed_ms: None,
            resume_from: 0,
        };
        self.save_replay(&summary).await?;
        let replay = Arc::new(Replay {
            summary: parking_lot::Mutex::new(summary.clone()),
            cancel: AtomicBool::new(false),
        });
        self.replays
            .write()
            .insert(name.to_string(), replay.clone());
        let this = self.clone();
        tokio::spawn(async move { this.run_replay(replay, archive.stream, bus).await });
        Ok(summary)
    }

    async fn set_replay_state(&self, replay: &Replay, state: &str, reason: Option<String>) {
        let s = {
            let mut s = replay.summary.lock();
            s.state = state.to_string();
            s.state_reason = reason;
            if matches!(state, "COMPLETED" | "CANCELLED" | "FAILED") {
                s.replay_end_ms = Some(now_ms());
            }
            s.clone()
        };
        if let Err(e) = self.save_replay(&s).await {
            tracing::error!(replay = %s.name, error = %e, "replay state could not be saved");
        }
    }

    async fn run_replay(self: Arc<Self>, replay: Arc<Replay>, stream: StreamId, bus: Arc<Bus>) {
        self.set_replay_state(&replay, "RUNNING", None).await;
        let (name, start, end, filters, mut from) = {
            let s = replay.summary.lock();
            (
                s.name.clone(),
                s.start_ms,
                s.end_ms,
                s.filter_arns.clone(),
                s.resume_from,
            )
        };
        loop {
            if replay.cancel.load(Ordering::Relaxed) {
                self.set_replay_state(&replay, "CANCELLED", None).await;
                return;
            }
            let page = self.store.scan(stream, from, PAGE);
            let Some(last) = page.last() else { break };
            from = last.id.seq + 1;
            let mut items = Vec::new();
            for record in &page {
                let Some((time, mut json)) = self.read_archived(&record.payload) else {
                    continue;
                };
                if time < start || time >= end {
                    continue;
                }
                if let Value::Object(o) = &mut json {
                    o.insert("replay-name".into(), Value::String(name.clone()));
                }
                // A replayed MQTT event reaches only the rules whose owner may read its topic,
                // as it did live (ADR 0015).
                let topic = (json.get("source").and_then(Value::as_str)
                    == Some(crate::event::MQTT_SOURCE))
                .then(|| {
                    json.get("mqtt")
                        .and_then(|m| m.get("topic"))
                        .and_then(Value::as_str)
                })
                .flatten();
                let rules: Vec<Arc<Rule>> = bus
                    .snapshot()
                    .matching(&json)
                    .into_iter()
                    .filter(|r| filters.is_empty() || filters.contains(&r.arn))
                    .filter(|r| topic.is_none_or(|t| self.may_read(r, t)))
                    .collect();
                let event = Event {
                    id: json
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    bus: bus.def.read().name.clone(),
                    json,
                    time_ms: time,
                };
                items.push((event, rules));
            }
            let latest = items.iter().map(|(e, _)| e.time_ms).max();
            let ok = self.dispatch(items).await;
            if ok.iter().any(|ok| !ok) {
                self.set_replay_state(
                    &replay,
                    "FAILED",
                    Some("Replayed events could not be delivered or recorded.".into()),
                )
                .await;
                return;
            }
            // The page's deliveries are durable: a restart goes on after it.
            let saved = {
                let mut s = replay.summary.lock();
                if let Some(t) = latest {
                    s.last_replayed_ms = Some(s.last_replayed_ms.map_or(t, |l| l.max(t)));
                }
                s.resume_from = from;
                s.clone()
            };
            if let Err(e) = self.save_replay(&saved).await {
                tracing::warn!(replay = %saved.name, error = %e, "replay progress could not be saved");
            }
        }
        let state = {
            let s = replay.summary.lock();
            if replay.cancel.load(Ordering::Relaxed) || s.state == "CANCELLING" {
                "CANCELLED"
            } else {
                "COMPLETED"
            }
        };
        self.set_replay_state(&replay, state, None).await;
    }

    /// `DescribeReplay`.
    pub fn describe_replay(&self, name: &str) -> Result<ReplaySummary> {
        self.replays
            .read()
            .get(name)
            .map(|r| r.summary.lock().clone())
            .ok_or_else(|| EventsError::not_found(format!("Replay {} does not exist.", clip(name))))
    }

    /// `ListReplays`.
    pub fn list_replays(
        &self,
        prefix: Option<&str>,
        state: Option<&str>,
        source_arn: Option<&str>,
        token: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(Vec<ReplaySummary>, Option<String>)> {
        let all: Vec<ReplaySummary> = self
            .replays
            .read()
            .values()
            .map(|r| r.summary.lock().clone())
            .filter(|r| prefix.is_none_or(|p| r.name.starts_with(p)))
            .filter(|r| state.is_none_or(|s| r.state == s))
            .filter(|r| source_arn.is_none_or(|s| r.source_arn == s))
            .collect();
        super::admin::page(all, token, limit)
    }

    /// `CancelReplay`: only a replay that is starting or running.
    pub async fn cancel_replay(&self, name: &str) -> Result<ReplaySummary> {
        let replay = self.replays.read().get(name).cloned().ok_or_else(|| {
            EventsError::not_found(format!("Replay {} does not exist.", clip(name)))
        })?;
        let s = {
            let mut s = replay.summary.lock();
            if !matches!(s.state.as_str(), "STARTING" | "RUNNING") {
                return Err(EventsError::IllegalStatus(format!(
                    "Replay {name} is {} and cannot be cancelled.",
                    s.state
                )));
            }
            // Checked and set under the lock: the replay's task sees the flag before it ends.
            replay.cancel.store(true, Ordering::Relaxed);
            s.state = "CANCELLING".into();
            s.clone()
        };
        self.save_replay(&s).await?;
        Ok(s)
    }
}
