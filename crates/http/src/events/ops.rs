//! EventBridge operations: JSON in, JSON out, in the shapes of botocore's `events` model
//! (timestamps as epoch seconds, tags as `[{Key, Value}]`).

use std::collections::BTreeMap;
use std::sync::Arc;

use outpost_rules::{
    ArchiveSummary, BusSummary, Events, EventsError, PutEntry, PutResult, ReplaySummary, Result,
    RuleSummary,
};
use serde_json::{json, Map, Value};

fn missing(field: &str) -> EventsError {
    EventsError::Validation(format!(
        "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
    ))
}

fn wrong_type(field: &str) -> EventsError {
    EventsError::Validation(format!(
        "1 validation error detected: Value at '{field}' has the wrong type"
    ))
}

/// An optional string member (`field` is the name AWS's messages use, lower camel case).
fn opt_str<'a>(p: &'a Value, key: &str, field: &str) -> Result<Option<&'a str>> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong_type(field)),
    }
}

fn req_str<'a>(p: &'a Value, key: &str, field: &str) -> Result<&'a str> {
    opt_str(p, key, field)?.ok_or_else(|| missing(field))
}

fn opt_int(p: &Value, key: &str, field: &str) -> Result<Option<i64>> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| wrong_type(field)),
    }
}

fn opt_bool(p: &Value, key: &str, field: &str) -> Result<bool> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(wrong_type(field)),
    }
}

fn str_list(p: &Value, key: &str, field: &str) -> Result<Vec<String>> {
    match p.get(key) {
        None | Some(Value::Null) => Err(missing(field)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong_type(field))
            })
            .collect(),
        Some(_) => Err(wrong_type(field)),
    }
}

/// `Tags: [{Key, Value}]` into a map (absent: empty).
fn tags(p: &Value) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match p.get("Tags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for t in items {
                let k = req_str(t, "Key", "tags.member.key")?;
                let v = req_str(t, "Value", "tags.member.value")?;
                out.insert(k.to_string(), v.to_string());
            }
        }
        Some(_) => return Err(wrong_type("tags")),
    }
    Ok(out)
}

/// Epoch seconds as JSON: a whole number when the time is a whole second.
fn seconds(ms: u64) -> Value {
    if ms.is_multiple_of(1000) {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

/// A timestamp parameter: epoch seconds (botocore's JSON form) as a number or numeric string.
fn timestamp_ms(v: &Value) -> Option<u64> {
    let secs = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (secs.is_finite() && (0.0..1e11).contains(&secs)).then(|| (secs * 1000.0).round() as u64)
}

fn bus_json(b: &BusSummary) -> Value {
    let mut o = Map::new();
    o.insert("Name".into(), json!(b.name));
    o.insert("Arn".into(), json!(b.arn));
    if let Some(d) = &b.description {
        o.insert("Description".into(), json!(d));
    }
    o.insert("CreationTime".into(), seconds(b.created_ms));
    o.insert("LastModifiedTime".into(), seconds(b.modified_ms));
    Value::Object(o)
}

fn rule_json(r: &RuleSummary) -> Value {
    let mut o = Map::new();
    o.insert("Name".into(), json!(r.name));
    o.insert("Arn".into(), json!(r.arn));
    if let Some(p) = &r.event_pattern {
        o.insert("EventPattern".into(), json!(p));
    }
    if let Some(s) = &r.schedule_expression {
        o.insert("ScheduleExpression".into(), json!(s));
    }
    o.insert("State".into(), json!(r.state));
    if let Some(d) = &r.description {
        o.insert("Description".into(), json!(d));
    }
    if let Some(a) = &r.role_arn {
        o.insert("RoleArn".into(), json!(a));
    }
    o.insert("EventBusName".into(), json!(r.bus));
    Value::Object(o)
}

fn with_token(mut v: Value, next: Option<String>) -> Value {
    if let (Some(t), Value::Object(o)) = (next, &mut v) {
        o.insert("NextToken".into(), json!(t));
    }
    v
}

fn put_entry(v: &Value) -> Result<PutEntry> {
    let f = "entries.member";
    let resources = match v.get("Resources") {
        None | Some(Value::Null) => Vec::new(),
        Some(_) => str_list(v, "Resources", "entries.member.resources")?,
    };
    let time_ms = match v.get("Time") {
        None | Some(Value::Null) => None,
        Some(t) => Some(timestamp_ms(t).ok_or_else(|| wrong_type("entries.member.time"))?),
    };
    Ok(PutEntry {
        source: opt_str(v, "Source", f)?.map(str::to_string),
        detail_type: opt_str(v, "DetailType", f)?.map(str::to_string),
        detail: opt_str(v, "Detail", f)?.map(str::to_string),
        resources,
        time_ms,
        bus: opt_str(v, "EventBusName", f)?.map(str::to_string),
    })
}

async fn put_events(events: &Arc<Events>, p: &Value) -> Result<Value> {
    let entries = match p.get("Entries") {
        None | Some(Value::Null) => return Err(missing("entries")),
        Some(Value::Array(items)) => items.iter().map(put_entry).collect::<Result<Vec<_>>>()?,
        Some(_) => return Err(wrong_type("entries")),
    };
    let results = events.put_events(entries).await?;
    let mut failed = 0;
    let out: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            PutResult::Ok(id) => json!({"EventId": id}),
            PutResult::Failed { code, message } => {
                failed += 1;
                json!({"ErrorCode": code, "ErrorMessage": message})
            }
        })
        .collect();
    Ok(json!({"FailedEntryCount": failed, "Entries": out}))
}

/// Runs one operation; `None` when EventBridge has no such operation here.
/// `who` is the caller: the rules and targets it puts act as it (ADR 0015).
pub async fn call(
    events: &Arc<Events>,
    who: &outpost_auth::Identity,
    op: &str,
    p: &Value,
) -> Option<Result<Value>> {
    Some(match op {
        "PutEvents" => put_events(events, p).await,
        "CreateEventBus" => create_event_bus(events, p).await,
        "DeleteEventBus" => match req_str(p, "Name", "name") {
            Ok(name) => events.delete_event_bus(name).await.map(|()| json!({})),
            Err(e) => Err(e),
        },
        "ListEventBuses" => list_event_buses(events, p),
        "DescribeEventBus" => opt_str(p, "Name", "name")
            .and_then(|name| events.describe_event_bus(name))
            .map(|b| bus_json(&b)),
        "PutRule" => put_rule(events, who, p).await,
        "DescribeRule" => describe_rule(events, p),
        "ListRules" => list_rules(events, p),
        "DeleteRule" => delete_rule(events, p).await,
        "EnableRule" => set_state(events, p, true).await,
        "DisableRule" => set_state(events, p, false).await,
        "PutTargets" => put_targets(events, who, p).await,
        "RemoveTargets" => remove_targets(events, p).await,
        "ListTargetsByRule" => list_targets(events, p),
        "ListRuleNamesByTarget" => list_rule_names(events, p),
        "TestEventPattern" => test_event_pattern(p),
        "TagResource" => tag_resource(events, p).await,
        "UntagResource" => untag_resource(events, p).await,
        "ListTagsForResource" => list_tags(events, p),
        "CreateArchive" => create_archive(events, p).await,
        "DescribeArchive" => req_str(p, "ArchiveName", "archiveName")
            .and_then(|n| events.describe_archive(n))
            .map(|a| archive_json(&a, true)),
        "ListArchives" => list_archives(events, p),
        "UpdateArchive" => update_archive(events, p).await,
        "DeleteArchive" => match req_str(p, "ArchiveName", "archiveName") {
            Ok(n) => events.delete_archive(n).await.map(|()| json!({})),
            Err(e) => Err(e),
        },
        "StartReplay" => start_replay(events, p).await,
        "DescribeReplay" => req_str(p, "ReplayName", "replayName")
            .and_then(|n| events.describe_replay(n))
            .map(|r| replay_json(&r, true)),
        "ListReplays" => list_replays(events, p),
        "CancelReplay" => match req_str(p, "ReplayName", "replayName") {
            Ok(n) => events
                .cancel_replay(n)
                .await
                .map(|r| json!({"ReplayArn": r.arn, "State": r.state})),
            Err(e) => Err(e),
        },
        _ => return None,
    })
}

async fn create_event_bus(events: &Events, p: &Value) -> Result<Value> {
    let name = req_str(p, "Name", "name")?;
    if p.get("EventSourceName").is_some_and(|v| !v.is_null()) {
        return Err(EventsError::Validation(
            "Partner event sources are not supported by Outpost.".into(),
        ));
    }
    let description = opt_str(p, "Description", "description")?.map(str::to_string);
    let arn = events
        .create_event_bus(name, description.clone(), tags(p)?)
        .await?;
    let mut out = json!({"EventBusArn": arn});
    if let (Some(d), Value::Object(o)) = (description, &mut out) {
        o.insert("Description".into(), json!(d));
    }
    Ok(out)
}

fn list_event_buses(events: &Events, p: &Value) -> Result<Value> {
    let (buses, next) = events.list_event_buses(
        opt_str(p, "NamePrefix", "namePrefix")?,
        opt_str(p, "NextToken", "nextToken")?,
        opt_int(p, "Limit", "limit")?,
    )?;
    let list: Vec<Value> = buses.iter().map(bus_json).collect();
    Ok(with_token(json!({"EventBuses": list}), next))
}

async fn put_rule(events: &Events, who: &outpost_auth::Identity, p: &Value) -> Result<Value> {
    let arn = events
        .put_rule(
            req_str(p, "Name", "name")?,
            opt_str(p, "EventBusName", "eventBusName")?,
            opt_str(p, "EventPattern", "eventPattern")?.map(str::to_string),
            opt_str(p, "ScheduleExpression", "scheduleExpression")?.map(str::to_string),
            opt_str(p, "State", "state")?.map(str::to_string),
            opt_str(p, "Description", "description")?.map(str::to_string),
            opt_str(p, "RoleArn", "roleArn")?.map(str::to_string),
            tags(p)?,
            who,
        )
        .await?;
    Ok(json!({"RuleArn": arn}))
}

fn describe_rule(events: &Events, p: &Value) -> Result<Value> {
    let rule = events.describe_rule(
        req_str(p, "Name", "name")?,
        opt_str(p, "EventBusName", "eventBusName")?,
    )?;
    let mut v = rule_json(&rule);
    if let Value::Object(o) = &mut v {
        o.insert("CreatedBy".into(), json!(events.config().account));
    }
    Ok(v)
}

fn list_rules(events: &Events, p: &Value) -> Result<Value> {
    let (rules, next) = events.list_rules(
        opt_str(p, "NamePrefix", "namePrefix")?,
        opt_str(p, "EventBusName", "eventBusName")?,
        opt_str(p, "NextToken", "nextToken")?,
        opt_int(p, "Limit", "limit")?,
    )?;
    let list: Vec<Value> = rules.iter().map(rule_json).collect();
    Ok(with_token(json!({"Rules": list}), next))
}

async fn delete_rule(events: &Events, p: &Value) -> Result<Value> {
    let name = req_str(p, "Name", "name")?;
    let bus = opt_str(p, "EventBusName", "eventBusName")?;
    opt_bool(p, "Force", "force")?;
    events.delete_rule(name, bus).await?;
    Ok(json!({}))
}

async fn set_state(events: &Events, p: &Value, enabled: bool) -> Result<Value> {
    events
        .set_rule_state(
            req_str(p, "Name", "name")?,
            opt_str(p, "EventBusName", "eventBusName")?,
            enabled,
        )
        .await?;
    Ok(json!({}))
}

async fn put_targets(events: &Events, who: &outpost_auth::Identity, p: &Value) -> Result<Value> {
    let rule = req_str(p, "Rule", "rule")?;
    let bus = opt_str(p, "EventBusName", "eventBusName")?;
    let targets = match p.get("Targets") {
        None | Some(Value::Null) => return Err(missing("targets")),
        Some(Value::Array(t)) => t.clone(),
        Some(_) => return Err(wrong_type("targets")),
    };
    events.put_targets(rule, bus, targets, who).await?;
    Ok(json!({"FailedEntryCount": 0, "FailedEntries": []}))
}

async fn remove_targets(events: &Events, p: &Value) -> Result<Value> {
    let rule = req_str(p, "Rule", "rule")?;
    let bus = opt_str(p, "EventBusName", "eventBusName")?;
    let ids = str_list(p, "Ids", "ids")?;
    opt_bool(p, "Force", "force")?;
    events.remove_targets(rule, bus, &ids).await?;
    Ok(json!({"FailedEntryCount": 0, "FailedEntries": []}))
}

fn list_targets(events: &Events, p: &Value) -> Result<Value> {
    let (targets, next) = events.list_targets_by_rule(
        req_str(p, "Rule", "rule")?,
        opt_str(p, "EventBusName", "eventBusName")?,
        opt_str(p, "NextToken", "nextToken")?,
        opt_int(p, "Limit", "limit")?,
    )?;
    Ok(with_token(json!({"Targets": targets}), next))
}

fn list_rule_names(events: &Events, p: &Value) -> Result<Value> {
    let (names, next) = events.list_rule_names_by_target(
        req_str(p, "TargetArn", "targetArn")?,
        opt_str(p, "EventBusName", "eventBusName")?,
        opt_str(p, "NextToken", "nextToken")?,
        opt_int(p, "Limit", "limit")?,
    )?;
    Ok(with_token(json!({"RuleNames": names}), next))
}

fn test_event_pattern(p: &Value) -> Result<Value> {
    let pattern = req_str(p, "EventPattern", "eventPattern")?;
    let event = req_str(p, "Event", "event")?;
    Ok(json!({"Result": Events::test_event_pattern(pattern, event)?}))
}

async fn tag_resource(events: &Events, p: &Value) -> Result<Value> {
    let arn = req_str(p, "ResourceARN", "resourceARN")?;
    if p.get("Tags").is_none_or(Value::is_null) {
        return Err(missing("tags"));
    }
    events.tag_resource(arn, tags(p)?).await?;
    Ok(json!({}))
}

async fn untag_resource(events: &Events, p: &Value) -> Result<Value> {
    let arn = req_str(p, "ResourceARN", "resourceARN")?;
    let keys = str_list(p, "TagKeys", "tagKeys")?;
    events.untag_resource(arn, &keys).await?;
    Ok(json!({}))
}

fn list_tags(events: &Events, p: &Value) -> Result<Value> {
    let tags = events.list_tags(req_str(p, "ResourceARN", "resourceARN")?)?;
    let list: Vec<Value> = tags
        .into_iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json!({"Tags": list}))
}

fn archive_json(a: &ArchiveSummary, full: bool) -> Value {
    let mut o = Map::new();
    o.insert("ArchiveName".into(), json!(a.name));
    if full {
        o.insert("ArchiveArn".into(), json!(a.arn));
        if let Some(d) = &a.description {
            o.insert("Description".into(), json!(d));
        }
        if let Some(p) = &a.event_pattern {
            o.insert("EventPattern".into(), json!(p));
        }
    }
    o.insert("EventSourceArn".into(), json!(a.source_arn));
    o.insert("State".into(), json!(a.state));
    o.insert("RetentionDays".into(), json!(a.retention_days));
    o.insert("SizeBytes".into(), json!(a.size_bytes));
    o.insert("EventCount".into(), json!(a.event_count));
    o.insert("CreationTime".into(), seconds(a.created_ms));
    Value::Object(o)
}

fn replay_json(r: &ReplaySummary, full: bool) -> Value {
    let mut o = Map::new();
    o.insert("ReplayName".into(), json!(r.name));
    if full {
        o.insert("ReplayArn".into(), json!(r.arn));
        if let Some(d) = &r.description {
            o.insert("Description".into(), json!(d));
        }
        let mut dest = json!({"Arn": r.destination_arn});
        if !r.filter_arns.is_empty() {
            dest["FilterArns"] = json!(r.filter_arns);
        }
        o.insert("Destination".into(), dest);
    }
    o.insert("EventSourceArn".into(), json!(r.source_arn));
    o.insert("State".into(), json!(r.state));
    if let Some(reason) = &r.state_reason {
        o.insert("StateReason".into(), json!(reason));
    }
    o.insert("EventStartTime".into(), seconds(r.start_ms));
    o.insert("EventEndTime".into(), seconds(r.end_ms));
    if let Some(t) = r.last_replayed_ms {
        o.insert("EventLastReplayedTime".into(), seconds(t));
    }
    o.insert("ReplayStartTime".into(), seconds(r.replay_start_ms));
    if let Some(t) = r.replay_end_ms {
        o.insert("ReplayEndTime".into(), seconds(t));
    }
    Value::Object(o)
}

async fn create_archive(events: &Events, p: &Value) -> Result<Value> {
    let (arn, created) = events
        .create_archive(
            req_str(p, "ArchiveName", "archiveName")?,
            req_str(p, "EventSourceArn", "eventSourceArn")?,
            opt_str(p, "Description", "description")?.map(str::to_string),
            opt_str(p, "EventPattern", "eventPattern")?.map(str::to_string),
            opt_int(p, "RetentionDays", "retentionDays")?,
        )
        .await?;
    Ok(json!({"ArchiveArn": arn, "State": "ENABLED", "CreationTime": seconds(created)}))
}

async fn update_archive(events: &Events, p: &Value) -> Result<Value> {
    let (arn, created) = events
        .update_archive(
            req_str(p, "ArchiveName", "archiveName")?,
            opt_str(p, "Description", "description")?.map(str::to_string),
            opt_str(p, "EventPattern", "eventPattern")?.map(str::to_string),
            opt_int(p, "RetentionDays", "retentionDays")?,
        )
        .await?;
    Ok(json!({"ArchiveArn": arn, "State": "ENABLED", "CreationTime": seconds(created)}))
}

fn list_archives(events: &Events, p: &Value) -> Result<Value> {
    let (list, next) = events.list_archives(
        opt_str(p, "NamePrefix", "namePrefix")?,
        opt_str(p, "EventSourceArn", "eventSourceArn")?,
        opt_str(p, "State", "state")?,
        opt_str(p, "NextToken", "nextToken")?,
        opt_int(p, "Limit", "limit")?,
    )?;
    let list: Vec<Value> = list.iter().map(|a| archive_json(a, false)).collect();
    Ok(with_token(json!({"Archives": list}), next))
}

fn req_time(p: &Value, key: &str, field: &str) -> Result<u64> {
    match p.get(key) {
        None | Some(Value::Null) => Err(missing(field)),
        Some(v) => timestamp_ms(v).ok_or_else(|| wrong_type(field)),
    }
}

async fn start_replay(events: &Arc<Events>, p: &Value) -> Result<Value> {
    let dest = match p.get("Destination") {
        Some(d @ Value::Object(_)) => d,
        None | Some(Value::Null) => return Err(missing("destination")),
        Some(_) => return Err(wrong_type("destination")),
    };
    let filters = match dest.get("FilterArns") {
        None | Some(Value::Null) => Vec::new(),
        Some(_) => str_list(dest, "FilterArns", "destination.filterArns")?,
    };
    let r = events
        .start_replay(
            req_str(p, "ReplayName", "replayName")?,
            opt_str(p, "Description", "description")?.map(str::to_string),
            req_str(p, "EventSourceArn", "eventSourceArn")?,
            req_time(p, "EventStartTime", "eventStartTime")?,
            req_time(p, "EventEndTime", "eventEndTime")?,
            req_str(dest, "Arn", "destination.arn")?,
            filters,
        )
        .await?;
    Ok(json!({"ReplayArn": r.arn, "State": r.state, "ReplayStartTime": seconds(r.replay_start_ms)}))
}

fn list_replays(events: &Events, p: &Value) -> Result<Value> {
    let (list, next) = events.list_replays(
        opt_str(p, "NamePrefix", "namePrefix")?,
        opt_str(p, "State", "state")?,
        opt_str(p, "EventSourceArn", "eventSourceArn")?,
        opt_str(p, "NextToken", "nextToken")?,
        opt_int(p, "Limit", "limit")?,
    )?;
    let list: Vec<Value> = list.iter().map(|r| replay_json(r, false)).collect();
    Ok(with_token(json!({"Replays": list}), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_epoch_seconds() {
        assert_eq!(timestamp_ms(&json!(1_700_000_000)), Some(1_700_000_000_000));
        assert_eq!(timestamp_ms(&json!(1.5)), Some(1500));
        assert_eq!(timestamp_ms(&json!("12")), Some(12_000));
        assert_eq!(timestamp_ms(&json!(-1)), None);
        assert_eq!(timestamp_ms(&json!(true)), None);
        assert_eq!(seconds(2000), json!(2));
        assert_eq!(seconds(2500), json!(2.5));
    }

    #[test]
    fn missing_and_mistyped_members_are_validation_errors() {
        let p = json!({"Name": 5});
        assert!(matches!(
            req_str(&p, "Name", "name"),
            Err(EventsError::Validation(_))
        ));
        assert!(matches!(
            req_str(&p, "Other", "other"),
            Err(EventsError::Validation(_))
        ));
        assert!(tags(&json!({"Tags": [{"Key": "a"}]})).is_err());
        assert_eq!(
            tags(&json!({"Tags": [{"Key": "a", "Value": "b"}]})).ok(),
            Some(BTreeMap::from([("a".to_string(), "b".to_string())]))
        );
    }
}
