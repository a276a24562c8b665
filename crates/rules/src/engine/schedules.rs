//! Scheduled rules: a rule with a `ScheduleExpression` sends EventBridge's "Scheduled Event" to
//! its own targets at each tick, through the same durable delivery as matched events (input,
//! retries, dead-letter queues, the target owner's rights).
//!
//! What a restart must not change is which ticks fire. The last tick each rule fired for is kept
//! in the metadata store, written once its deliveries are held (delivered, or owed by a pending
//! record). Ticks missed while the broker was down fire once at start, as one event whose `time`
//! is the latest of them; a crash between the deliveries and that write fires the tick again
//! (at least once, as EventBridge's own delivery). Time comes from a [`Clock`], so tests move it
//! instead of sleeping.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::{now_ms, rule_key, uuid, Events, DEFAULT_BUS};
use crate::event::Event;
use crate::rule::Rule;

/// Where the last fired tick of each scheduled rule is kept (key: bus NUL rule name).
pub(super) const SCHEDULES_TABLE: &str = "events_schedules";
/// The longest the scheduler sleeps: a clock that jumps is noticed within it.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// A tick whose deliveries could not be stored is tried again after this long.
const RETRY_MS: u64 = 5_000;

/// The time scheduled rules go by, in milliseconds since the Unix epoch (UTC).
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// The system's clock.
#[derive(Debug)]
struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// The scheduler's state.
pub(super) struct Schedules {
    clock: RwLock<Arc<dyn Clock>>,
    /// The last tick each scheduled rule fired for, by rule key.
    fired: Mutex<BTreeMap<Vec<u8>, u64>>,
    /// One run at a time (the background task and a caller).
    running: tokio::sync::Mutex<()>,
    /// Woken when a rule changes, so the next tick is computed anew.
    changed: Notify,
}

impl Default for Schedules {
    fn default() -> Self {
        Schedules {
            clock: RwLock::new(Arc::new(SystemClock)),
            fired: Mutex::new(BTreeMap::new()),
            running: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
        }
    }
}

impl Events {
    /// Replaces the clock scheduled rules go by (tests inject one; the default is the system's).
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        *self.schedules.clock.write() = clock;
    }

    /// Now, by the scheduler's clock.
    pub(super) fn schedule_now(&self) -> u64 {
        self.schedules.clock.read().now_ms()
    }

    /// Loads the last fired ticks (at open).
    pub(super) fn recover_schedules(&self) -> crate::Result<()> {
        let mut fired = self.schedules.fired.lock();
        for (key, value) in self.store.meta().scan(SCHEDULES_TABLE, b"")? {
            match std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse().ok())
            {
                Some(tick) => {
                    fired.insert(key, tick);
                }
                None => tracing::warn!("an unreadable scheduled-rule state skipped"),
            }
        }
        Ok(())
    }

    /// A rule's schedule changed (set, replaced, removed) or the rule was enabled: no tick before
    /// `from` is owed. `from = None` forgets the rule's state (its schedule starts anew).
    pub(super) async fn reset_schedule(&self, bus: &str, name: &str, from: Option<u64>) {
        let key = rule_key(bus, name);
        let value = from.map(|t| t.to_string().into_bytes());
        {
            let mut fired = self.schedules.fired.lock();
            match from {
                Some(t) => fired.insert(key.clone(), t),
                None => fired.remove(&key),
            };
        }
        if let Err(e) = self.apply_meta(vec![(SCHEDULES_TABLE, key, value)]).await {
            tracing::warn!(rule = name, error = %e, "the state of a scheduled rule could not be stored");
        }
        self.schedules.changed.notify_one();
    }

    /// Fires every enabled scheduled rule whose tick is due by the clock, once each; the time of
    /// the next tick of any of them.
    pub async fn run_schedules(self: &Arc<Self>) -> Option<u64> {
        let _one = self.schedules.running.lock().await;
        let now = self.schedule_now();
        let bus = self.bus(Some(DEFAULT_BUS)).ok()?;
        let rules: Vec<Arc<Rule>> = bus
            .rules
            .read()
            .values()
            .filter(|r| r.schedule.is_some() && r.enabled())
            .cloned()
            .collect();
        let mut next: Option<u64> = None;
        let mut soonest = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        for rule in rules {
            let Some(schedule) = &rule.schedule else {
                continue;
            };
            let key = rule_key(&rule.def.bus, &rule.def.name);
            let since = rule.def.schedule_since_ms.unwrap_or(0);
            let last = self
                .schedules
                .fired
                .lock()
                .get(&key)
                .copied()
                .unwrap_or(since)
                .max(since);
            let Some(due) = schedule.next_after(since, last) else {
                continue;
            };
            if due > now {
                soonest(due);
                continue;
            }
            // Ticks missed while the broker was down fire once, as the latest of them.
            let tick = schedule
                .latest_at_or_before(since, now)
                .unwrap_or(due)
                .max(due);
            if self.fire(&rule, tick).await {
                self.schedules.fired.lock().insert(key.clone(), tick);
                let value = tick.to_string().into_bytes();
                if let Err(e) = self
                    .apply_meta(vec![(SCHEDULES_TABLE, key, Some(value))])
                    .await
                {
                    tracing::warn!(rule = %rule.def.name, error = %e, "the last tick of a scheduled rule could not be stored; it may fire again after a restart");
                }
                if let Some(n) = schedule.next_after(since, tick) {
                    soonest(n);
                }
            } else {
                tracing::warn!(rule = %rule.def.name, "a scheduled rule's deliveries could not be stored; trying again");
                soonest(now + RETRY_MS);
            }
        }
        next
    }

    /// Sends one tick's "Scheduled Event" to the rule's targets; true once every copy is
    /// delivered or owed by a pending record.
    async fn fire(self: &Arc<Self>, rule: &Arc<Rule>, tick: u64) -> bool {
        let event = Event::new(
            uuid(),
            DEFAULT_BUS,
            "aws.events",
            "Scheduled Event",
            vec![Value::String(rule.arn.clone())],
            json!({}),
            tick,
            &self.config.region,
            &self.config.account,
        );
        self.stats
            .events
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dispatch(vec![(event, vec![rule.clone()])])
            .await
            .first()
            .copied()
            .unwrap_or(false)
    }

    /// Runs the scheduler until the process ends: fires what is due, then sleeps until the next
    /// tick, a rule change, or [`MAX_SLEEP`].
    pub fn start_schedules(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let changed = this.schedules.changed.notified();
                let next = this.run_schedules().await;
                let now = this.schedule_now();
                let wait = next
                    .map_or(MAX_SLEEP, |n| {
                        Duration::from_millis(n.saturating_sub(now).max(1))
                    })
                    .min(MAX_SLEEP);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = changed => {}
                }
            }
        });
    }
}
