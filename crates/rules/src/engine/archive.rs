//! Archives: the events of a bus (all, or those an event pattern matches) kept in the store, one
//! stream per archive, each record the event's time (8 bytes, ms) and its JSON text. The store
//! counts them (`EventCount`, `SizeBytes`) and drops them by age (`RetentionDays`). An event is
//! archived before its put is answered, together with its deliveries; replayed events (they
//! carry `replay-name`) are not archived again.
//!
//! An event that several archives keep is stored once (ADR 0015): its text goes to the bus's
//! body stream, and each archive's stream holds a 25-byte reference to it (time, a marker byte,
//! the body's record id). The body stream keeps records as long as the longest-lived archive of
//! the bus; deleting an archive drops the bodies no other archive refers to. An event one archive
//! keeps is written inline, as before, so the common case costs one write.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use serde_json::Value;

use super::*;
use crate::event::Event;
use crate::json_path::clip;
use crate::rule::parse_pattern;
use outpost_patterns::Pattern;
use outpost_store::{RecordId, Retention};

pub(super) const ARCHIVES_TABLE: &str = "events_archives";
/// Archives per broker (EventBridge: 10,000 per account, but each is a stream here).
const MAX_ARCHIVES: usize = 100;

/// An archive as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ArchiveDef {
    pub name: String,
    pub bus: String,
    pub description: Option<String>,
    pub event_pattern: Option<String>,
    /// 0: kept for ever.
    pub retention_days: u32,
    pub created_ms: u64,
}

/// A live archive.
pub(crate) struct Archive {
    pub def: ArchiveDef,
    pub arn: String,
    pub pattern: Option<Pattern>,
    pub stream: StreamId,
}

/// What `DescribeArchive` and `ListArchives` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub name: String,
    pub arn: String,
    pub source_arn: String,
    pub description: Option<String>,
    pub event_pattern: Option<String>,
    pub state: &'static str,
    pub retention_days: u32,
    pub event_count: u64,
    pub size_bytes: u64,
    pub created_ms: u64,
}

fn valid_archive_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn stream_name(archive: &str) -> String {
    format!("events.archive.{archive}")
}

/// The stored form of an archived event.
pub(super) fn encode_archived(event: &Event) -> Bytes {
    let text = event.text();
    let mut out = Vec::with_capacity(8 + text.len());
    out.extend_from_slice(&event.time_ms.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    Bytes::from(out)
}

/// (event time in ms, the event) of an archive record.
pub(super) fn decode_archived(payload: &[u8]) -> Option<(u64, Value)> {
    let time = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    let json = serde_json::from_slice(payload.get(8..)?).ok()?;
    Some((time, json))
}

/// Marks a reference record (an event's JSON never starts with a NUL byte).
const REFERENCE: u8 = 0;

/// A reference to a body stored once for several archives.
fn encode_reference(time_ms: u64, body: RecordId) -> Bytes {
    let mut out = Vec::with_capacity(25);
    out.extend_from_slice(&time_ms.to_be_bytes());
    out.push(REFERENCE);
    out.extend_from_slice(&body.stream.0.to_be_bytes());
    out.extend_from_slice(&body.seq.to_be_bytes());
    Bytes::from(out)
}

/// The body a reference record points to; `None` for an inline record.
fn reference_of(payload: &[u8]) -> Option<RecordId> {
    if payload.len() != 25 || payload[8] != REFERENCE {
        return None;
    }
    let stream = u64::from_be_bytes(payload[9..17].try_into().ok()?);
    let seq = u64::from_be_bytes(payload[17..25].try_into().ok()?);
    Some(RecordId {
        stream: StreamId(stream),
        seq,
    })
}

fn body_stream_name(bus: &str) -> String {
    format!("events.archive-bodies.{bus}")
}

impl Events {
    /// (event time in ms, the event) of an archive record, inline or by reference.
    pub(super) fn read_archived(&self, payload: &[u8]) -> Option<(u64, Value)> {
        match reference_of(payload) {
            None => decode_archived(payload),
            Some(body) => decode_archived(&self.store.read(body)?.payload),
        }
    }

    /// The bus's body stream, kept as long as its longest-lived archive keeps events (or
    /// removed with the bus's last archive).
    fn refresh_bodies(&self, bus: &str) -> Result<()> {
        let days: Vec<u32> = self
            .archives_of(bus)
            .iter()
            .map(|a| a.def.retention_days)
            .collect();
        if days.is_empty() {
            self.store.remove_stream(&body_stream_name(bus))?;
            return Ok(());
        }
        let stream = self.store.stream(&body_stream_name(bus))?;
        let max_age = (!days.contains(&0)).then(|| {
            Duration::from_secs(u64::from(days.iter().copied().max().unwrap_or(0)) * 86_400)
        });
        self.store.set_retention(
            stream,
            Retention {
                max_age,
                max_bytes: None,
            },
        )?;
        Ok(())
    }

    fn archive_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:events:{}:{}:archive/{name}",
            self.config.region, self.config.account
        )
    }

    pub(super) fn open_archive(&self, def: ArchiveDef) -> Result<Archive> {
        let pattern = def
            .event_pattern
            .as_deref()
            .map(parse_pattern)
            .transpose()?;
        let stream = self.store.stream(&stream_name(&def.name))?;
        let retention = Retention {
            max_age: (def.retention_days > 0)
                .then(|| Duration::from_secs(u64::from(def.retention_days) * 86_400)),
            max_bytes: None,
        };
        self.store.set_retention(stream, retention)?;
        Ok(Archive {
            arn: self.archive_arn(&def.name),
            def,
            pattern,
            stream,
        })
    }

    pub(super) fn archive_summary(&self, a: &Archive) -> ArchiveSummary {
        let (count, bytes) = self.store.stream_size(a.stream);
        ArchiveSummary {
            name: a.def.name.clone(),
            arn: a.arn.clone(),
            source_arn: self.bus_arn(&a.def.bus),
            description: a.def.description.clone(),
            event_pattern: a.def.event_pattern.clone(),
            state: "ENABLED",
            retention_days: a.def.retention_days,
            event_count: count,
            size_bytes: bytes,
            created_ms: a.def.created_ms,
        }
    }

    pub(super) fn archive_named(&self, name: &str) -> Result<Arc<Archive>> {
        self.archives.read().get(name).cloned().ok_or_else(|| {
            EventsError::not_found(format!("Archive {} does not exist.", clip(name)))
        })
    }

    async fn save_archive(&self, def: &ArchiveDef) -> Result<()> {
        let bytes =
            serde_json::to_vec(def).map_err(|e| EventsError::Internal(format!("encoding: {e}")))?;
        self.apply_meta(vec![(
            ARCHIVES_TABLE,
            def.name.as_bytes().to_vec(),
            Some(bytes),
        )])
        .await
    }

    fn check_archive_fields(
        description: Option<&String>,
        retention_days: Option<i64>,
    ) -> Result<u32> {
        check_description(description.map(String::as_str))?;
        match retention_days {
            None => Ok(0),
            Some(d) if (0..=i64::from(u32::MAX)).contains(&d) => Ok(d as u32),
            Some(_) => Err(EventsError::validation("RetentionDays must be 0 or more")),
        }
    }

    /// `CreateArchive`: the archive's ARN and creation time.
    pub async fn create_archive(
        &self,
        name: &str,
        source_arn: &str,
        description: Option<String>,
        event_pattern: Option<String>,
        retention_days: Option<i64>,
    ) -> Result<(String, u64)> {
        if !valid_archive_name(name) {
            return Err(EventsError::validation(format!(
                "Archive name {} is not valid: 1 to 48 of [.-_A-Za-z0-9]",
                clip(name)
            )));
        }
        let retention_days = Self::check_archive_fields(description.as_ref(), retention_days)?;
        if let Some(p) = &event_pattern {
            parse_pattern(p)?;
        }
        let bus_name = source_arn
            .strip_prefix(&format!(
                "arn:aws:events:{}:{}:event-bus/",
                self.config.region, self.config.account
            ))
            .ok_or_else(|| {
                EventsError::not_found(format!("Event bus {} does not exist.", clip(source_arn)))
            })?;
        self.bus(Some(bus_name))?;
        let _defs = self.defs.lock().await;
        if self.archives.read().contains_key(name) {
            return Err(EventsError::ResourceAlreadyExists(format!(
                "Archive {name} already exists."
            )));
        }
        let on_bus = self.archives_of(bus_name).len();
        if self.archives.read().len() >= MAX_ARCHIVES || on_bus >= self.config.max_archives_per_bus
        {
            return Err(EventsError::LimitExceeded(
                "The requested resource exceeds the maximum number allowed.".into(),
            ));
        }
        let def = ArchiveDef {
            name: name.to_string(),
            bus: bus_name.to_string(),
            description,
            event_pattern,
            retention_days,
            created_ms: now_ms(),
        };
        self.install_archive(def).await
    }

    /// Stores an archive's definition and puts it in force (created or updated): its ARN and
    /// creation time.
    async fn install_archive(&self, def: ArchiveDef) -> Result<(String, u64)> {
        let archive = self.open_archive(def.clone())?;
        self.save_archive(&def).await?;
        let arn = archive.arn.clone();
        self.archives
            .write()
            .insert(def.name.clone(), Arc::new(archive));
        self.refresh_bodies(&def.bus)?;
        Ok((arn, def.created_ms))
    }

    /// `DescribeArchive`.
    pub fn describe_archive(&self, name: &str) -> Result<ArchiveSummary> {
        Ok(self.archive_summary(&*self.archive_named(name)?))
    }

    /// `ListArchives`.
    pub fn list_archives(
        &self,
        prefix: Option<&str>,
        source_arn: Option<&str>,
        state: Option<&str>,
        token: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(Vec<ArchiveSummary>, Option<String>)> {
        let all: Vec<ArchiveSummary> = self
            .archives
            .read()
            .values()
            .map(|a| self.archive_summary(a))
            .filter(|a| prefix.is_none_or(|p| a.name.starts_with(p)))
            .filter(|a| source_arn.is_none_or(|s| a.source_arn == s))
            .filter(|a| state.is_none_or(|s| a.state == s))
            .collect();
        super::admin::page(all, token, limit)
    }

    /// `UpdateArchive`: description, pattern and retention (absent fields stay).
    pub async fn update_archive(
        &self,
        name: &str,
        description: Option<String>,
        event_pattern: Option<String>,
        retention_days: Option<i64>,
    ) -> Result<(String, u64)> {
        let _defs = self.defs.lock().await;
        let old = self.archive_named(name)?;
        let mut def = old.def.clone();
        let retention = Self::check_archive_fields(description.as_ref(), retention_days)?;
        if description.is_some() {
            def.description = description;
        }
        if let Some(p) = event_pattern {
            parse_pattern(&p)?;
            def.event_pattern = Some(p);
        }
        if retention_days.is_some() {
            def.retention_days = retention;
        }
        self.install_archive(def).await
    }

    /// `DeleteArchive`: the archive and every event in it.
    pub async fn delete_archive(&self, name: &str) -> Result<()> {
        let _defs = self.defs.lock().await;
        let archive = self.archive_named(name)?;
        self.apply_meta(vec![(ARCHIVES_TABLE, name.as_bytes().to_vec(), None)])
            .await?;
        self.archives.write().remove(name);
        let records = self.store.scan(archive.stream, 0, usize::MAX);
        // Bodies this archive referred to that no other archive of the bus does.
        let mut bodies: std::collections::BTreeSet<RecordId> = records
            .iter()
            .filter_map(|r| reference_of(&r.payload))
            .collect();
        let others = self.archives_of(&archive.def.bus);
        if !bodies.is_empty() {
            for other in &others {
                for r in self.store.scan(other.stream, 0, usize::MAX) {
                    if let Some(b) = reference_of(&r.payload) {
                        bodies.remove(&b);
                    }
                }
            }
        }
        if others.is_empty() {
            // Every body goes with the bus's last archive, referred to or not.
            if let Ok(stream) = self.store.stream(&body_stream_name(&archive.def.bus)) {
                bodies.extend(
                    self.store
                        .scan(stream, 0, usize::MAX)
                        .into_iter()
                        .map(|r| r.id),
                );
            }
        }
        let ids: Vec<_> = records.into_iter().map(|r| r.id).chain(bodies).collect();
        if !ids.is_empty() {
            self.store.mark_dead(&ids).await?;
        }
        self.refresh_bodies(&archive.def.bus)?;
        self.store.remove_stream(&stream_name(name))?;
        Ok(())
    }

    /// The archives of `bus`.
    fn archives_of(&self, bus: &str) -> Vec<Arc<Archive>> {
        self.archives
            .read()
            .values()
            .filter(|a| a.def.bus == bus)
            .cloned()
            .collect()
    }

    /// True when some archive may take events of `bus` (cheap: read before building events).
    pub(super) fn archives_bus(&self, bus: &str) -> bool {
        self.archives.read().values().any(|a| a.def.bus == bus)
    }

    /// Archives the events their archives want; false for an event whose archive copy could
    /// not be stored. An event several archives want is stored once, in the bus's body stream,
    /// and referred to from each (first the bodies, then every archive's records in event order).
    pub(super) async fn archive(&self, events: &[&Event]) -> Vec<bool> {
        let archives: Vec<Arc<Archive>> = self.archives.read().values().cloned().collect();
        let mut ok = vec![true; events.len()];
        if archives.is_empty() {
            return ok;
        }
        // Which archives want each event.
        let wanted: Vec<Vec<usize>> = events
            .iter()
            .map(|e| {
                archives
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| {
                        e.bus == a.def.bus
                            && e.json.get("replay-name").is_none()
                            && a.pattern.as_ref().is_none_or(|p| p.matches(&e.json))
                    })
                    .map(|(k, _)| k)
                    .collect()
            })
            .collect();
        // Bodies of the events more than one archive keeps, one batch per bus.
        let mut by_bus: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, w) in wanted.iter().enumerate() {
            if w.len() > 1 {
                by_bus.entry(events[i].bus.as_str()).or_default().push(i);
            }
        }
        let mut bodies: BTreeMap<usize, RecordId> = BTreeMap::new();
        for (bus, which) in by_bus {
            let stored = match self.store.stream(&body_stream_name(bus)) {
                Ok(stream) => {
                    let records = which.iter().map(|i| encode_archived(events[*i])).collect();
                    self.store.append_batch(stream, records).await
                }
                Err(e) => Err(e),
            };
            match stored {
                Ok(ids) => bodies.extend(which.into_iter().zip(ids)),
                Err(e) => {
                    tracing::error!(error = %e, "archived events could not be stored");
                    for i in which {
                        ok[i] = false;
                    }
                }
            }
        }
        let mut writes = Vec::new();
        for (k, a) in archives.iter().enumerate() {
            let mut which = Vec::new();
            let mut records = Vec::new();
            for (i, e) in events.iter().enumerate() {
                if !wanted[i].contains(&k) || !ok[i] {
                    continue;
                }
                which.push(i);
                records.push(match bodies.get(&i) {
                    Some(body) => encode_reference(e.time_ms, *body),
                    None => encode_archived(e),
                });
            }
            if !records.is_empty() {
                writes.push((which, self.store.append_batch(a.stream, records)));
            }
        }
        let (which, futures): (Vec<Vec<usize>>, Vec<_>) = writes.into_iter().unzip();
        for (which, r) in which.into_iter().zip(join_all(futures).await) {
            if let Err(e) = r {
                tracing::error!(error = %e, "archived events could not be stored");
                for i in which {
                    ok[i] = false;
                }
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archived_records_round_trip() {
        let e = Event {
            id: "1".into(),
            bus: "default".into(),
            json: serde_json::json!({"source": "a"}),
            time_ms: 1_700_000_000_123,
        };
        let (t, v) = decode_archived(&encode_archived(&e)).expect("decodes");
        assert_eq!((t, v), (1_700_000_000_123, e.json));
        assert_eq!(decode_archived(b"short"), None);
    }
}
