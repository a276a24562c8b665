//! Events in: `PutEvents` entries and MQTT messages, matched against the rules of their bus.

use serde_json::Value;

use super::*;
use crate::event::{mqtt_event, Event, MqttEventSource, MAX_PUT_BYTES, MQTT_SOURCE};
use crate::json_path::clip;
use outpost_topics::BoxFuture;

/// Entries per `PutEvents` (EventBridge: 10).
pub const MAX_ENTRIES: usize = 10;

/// One `PutEvents` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutEntry {
    /// `Source`.
    pub source: Option<String>,
    /// `DetailType`.
    pub detail_type: Option<String>,
    /// `Detail` (a JSON object as text).
    pub detail: Option<String>,
    /// `Resources`.
    pub resources: Vec<String>,
    /// `Time`, ms since the epoch.
    pub time_ms: Option<u64>,
    /// `EventBusName` (a name or an ARN).
    pub bus: Option<String>,
}

/// One entry's outcome: the event id, or an error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutResult {
    /// Accepted.
    Ok(String),
    /// Refused or failed.
    Failed { code: String, message: String },
}

fn failed(code: &str, message: impl Into<String>) -> PutResult {
    PutResult::Failed {
        code: code.to_string(),
        message: message.into(),
    }
}

/// EventBridge's entry size: 14 bytes for the time, and the bytes of the rest.
fn entry_size(e: &PutEntry) -> usize {
    14 + e.source.as_ref().map_or(0, String::len)
        + e.detail_type.as_ref().map_or(0, String::len)
        + e.detail.as_ref().map_or(0, String::len)
        + e.resources.iter().map(String::len).sum::<usize>()
}

impl Events {
    fn make_event(
        &self,
        e: PutEntry,
        now: u64,
    ) -> std::result::Result<(Event, Arc<Bus>), PutResult> {
        let bus = self
            .bus(e.bus.as_deref())
            .map_err(|err| failed("InvalidArgument", err.to_string()))?;
        let source = e.source.filter(|s| !s.is_empty()).ok_or_else(|| {
            failed(
                "InvalidArgument",
                "Parameter Source is not valid. Reason: Source is a required argument.",
            )
        })?;
        let detail_type = e.detail_type.filter(|s| !s.is_empty()).ok_or_else(|| {
            failed(
                "InvalidArgument",
                "Parameter DetailType is not valid. Reason: DetailType is a required argument.",
            )
        })?;
        let detail = e.detail.ok_or_else(|| {
            failed(
                "InvalidArgument",
                "Parameter Detail is not valid. Reason: Detail is a required argument.",
            )
        })?;
        // `aws.` sources are AWS's; `outpost.` ones the broker's own (an `outpost.mqtt` event
        // says an MQTT client published it, which a PutEvents caller cannot).
        if source.starts_with("aws.") || source.starts_with("outpost.") {
            return Err(failed(
                "NotAuthorizedForSourceException",
                format!("Not authorized for the source {}.", clip(&source)),
            ));
        }
        // serde_json refuses nesting beyond 128 levels (no unbounded recursion on input).
        let detail: Value = match serde_json::from_str(&detail) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Err(failed("MalformedDetail", "Detail is malformed.")),
        };
        let resources = e.resources.into_iter().map(Value::String).collect();
        let bus_name = bus.def.read().name.clone();
        let event = Event::new(
            uuid(),
            &bus_name,
            &source,
            &detail_type,
            resources,
            detail,
            e.time_ms.unwrap_or(now),
            &self.config.region,
            &self.config.account,
        );
        Ok((event, bus))
    }

    /// `PutEvents`: one result per entry, in order. An accepted entry's targets hold their
    /// copies, or a durable pending record owes them.
    pub async fn put_events(self: &Arc<Self>, entries: Vec<PutEntry>) -> Result<Vec<PutResult>> {
        if entries.is_empty() || entries.len() > MAX_ENTRIES {
            return Err(EventsError::validation(format!(
                "1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length less than or equal to {MAX_ENTRIES} and greater than or equal to 1"
            )));
        }
        if entries.iter().map(entry_size).sum::<usize>() > MAX_PUT_BYTES {
            return Err(EventsError::validation(
                "Total size of the entries in the request is over the limit.",
            ));
        }
        let now = now_ms();
        let mut results: Vec<Option<PutResult>> = Vec::with_capacity(entries.len());
        let mut routed: Vec<(usize, Event, Vec<Arc<Rule>>)> = Vec::new();
        for (at, e) in entries.into_iter().enumerate() {
            match self.make_event(e, now) {
                Ok((event, bus)) => {
                    let rules = bus.snapshot().matching(&event.json);
                    results.push(None);
                    routed.push((at, event, rules));
                }
                Err(r) => results.push(Some(r)),
            }
        }
        self.stats
            .events
            .fetch_add(routed.len() as u64, Ordering::Relaxed);
        let ids: Vec<(usize, String)> = routed
            .iter()
            .map(|(at, e, _)| (*at, e.id.clone()))
            .collect();
        // Archive copies are written while the targets get theirs.
        let archived: Vec<Event> = if self.archives.read().is_empty() {
            Vec::new()
        } else {
            routed.iter().map(|(_, e, _)| e.clone()).collect()
        };
        let refs: Vec<&Event> = archived.iter().collect();
        let (outcomes, kept) = tokio::join!(
            self.dispatch(routed.into_iter().map(|(_, e, r)| (e, r)).collect()),
            self.archive(&refs)
        );
        let outcomes = outcomes
            .into_iter()
            .zip(kept.into_iter().chain(std::iter::repeat(true)))
            .map(|(a, b)| a && b);
        for ((at, id), ok) in ids.into_iter().zip(outcomes) {
            results[at] = Some(if ok {
                PutResult::Ok(id)
            } else {
                failed(
                    "InternalFailure",
                    "The request processing has failed because of an unknown error, exception or failure.",
                )
            });
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// Offers an MQTT message to the rules of the default bus. `None` when no rule matches (the
    /// common case costs an index lookup, no event is built); otherwise a future that resolves
    /// once every matched target holds its copy or a pending record owes it — the publisher's
    /// PUBACK waits for it.
    pub fn offer_mqtt(
        self: &Arc<Self>,
        m: &MqttEventSource<'_>,
    ) -> Option<BoxFuture<'static, std::result::Result<(), String>>> {
        let bus = self.buses.read().get(DEFAULT_BUS).cloned()?;
        let index = bus.snapshot();
        let archiving = self.archives_bus(DEFAULT_BUS);
        if index.is_empty() && !archiving {
            return None;
        }
        let candidates = index.candidates(MQTT_SOURCE, m.topic);
        if candidates.is_empty() && !archiving {
            return None;
        }
        let event = mqtt_event(
            m,
            uuid(),
            now_ms(),
            &self.config.region,
            &self.config.account,
        );
        // A rule reads MQTT events as its owner: only topics the owner may read (ADR 0015).
        // The broker's own `$` topics (lifecycle events) reach only rules that name their
        // detail-type, as `#` does not match them in an MQTT subscription.
        let reserved = m.topic.starts_with('$');
        let rules: Vec<Arc<Rule>> = candidates
            .into_iter()
            .filter(|r| {
                (!reserved || r.pattern.as_ref().is_some_and(|p| p.names("detail-type")))
                    && r.matches(&event.json)
                    && self.may_read(r, m.topic)
            })
            .collect();
        if rules.is_empty() && !archiving {
            return None;
        }
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        Some(Box::pin(async move {
            let copy = if archiving { Some(event.clone()) } else { None };
            let refs: Vec<&Event> = copy.iter().collect();
            let (delivered, kept) =
                tokio::join!(this.dispatch(vec![(event, rules)]), this.archive(&refs));
            match (delivered.first(), kept.first()) {
                (Some(true), None | Some(true)) => Ok(()),
                _ => Err("the routed or archived copies could not be stored".to_string()),
            }
        }))
    }
}
