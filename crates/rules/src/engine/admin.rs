//! Buses, rules, targets and tags: the definition operations.

use serde_json::Value;

use super::*;
use crate::json_path::clip;
use crate::rule::{parse_pattern, valid_rule_name, valid_state, RuleSummary};
use crate::schedule::Schedule;
use crate::target::{Target, MAX_TARGETS};

/// Buses per broker (EventBridge: 100 per account and region).
const MAX_BUSES: usize = 100;
/// Rules per bus (EventBridge: 300 by default, raisable; Outpost indexes them, so it allows more).
/// Tags per resource.
const MAX_TAGS: usize = 50;

/// What `ListEventBuses` and `DescribeEventBus` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusSummary {
    pub name: String,
    pub arn: String,
    pub description: Option<String>,
    pub created_ms: u64,
    pub modified_ms: u64,
}

fn valid_bus_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'))
}

/// One page: items from the offset in `token`, at most `limit` (1–100, default 100).
pub(super) fn page<T>(
    items: Vec<T>,
    token: Option<&str>,
    limit: Option<i64>,
) -> Result<(Vec<T>, Option<String>)> {
    let start = match token {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| EventsError::validation("The nextToken provided is invalid."))?,
    };
    let limit = match limit {
        None => 100,
        Some(l) if (1..=100).contains(&l) => l as usize,
        Some(_) => return Err(EventsError::validation("Limit must be between 1 and 100")),
    };
    let total = items.len();
    let out: Vec<T> = items.into_iter().skip(start).take(limit).collect();
    let next = (start + out.len() < total).then(|| (start + out.len()).to_string());
    Ok((out, next))
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(EventsError::LimitExceeded(
            "A resource can have at most 50 tags".into(),
        ));
    }
    for (k, v) in tags {
        if k.is_empty()
            || k.chars().count() > 128
            || v.chars().count() > 256
            || k.starts_with("aws:")
        {
            return Err(EventsError::validation(format!(
                "Tag {} is not valid",
                clip(k)
            )));
        }
    }
    Ok(())
}

impl Events {
    fn bus_summary(bus: &Bus) -> BusSummary {
        let d = bus.def.read();
        BusSummary {
            name: d.name.clone(),
            arn: bus.arn.clone(),
            description: d.description.clone(),
            created_ms: d.created_ms,
            modified_ms: d.modified_ms,
        }
    }

    /// `CreateEventBus`.
    pub async fn create_event_bus(
        &self,
        name: &str,
        description: Option<String>,
        tags: BTreeMap<String, String>,
    ) -> Result<String> {
        if !valid_bus_name(name) || name.starts_with("aws.") {
            return Err(EventsError::validation(format!(
                "Event bus name {} is not valid",
                clip(name)
            )));
        }
        check_description(description.as_deref())?;
        check_tags(&tags)?;
        let _defs = self.defs.lock().await;
        if self.buses.read().contains_key(name) {
            return Err(EventsError::ResourceAlreadyExists(format!(
                "Event bus {name} already exists."
            )));
        }
        if self.buses.read().len() >= MAX_BUSES {
            return Err(EventsError::LimitExceeded(
                "The requested resource exceeds the maximum number allowed.".into(),
            ));
        }
        let now = now_ms();
        let def = BusDef {
            name: name.to_string(),
            description,
            created_ms: now,
            modified_ms: now,
            tags,
        };
        self.save_bus(&def).await?;
        let arn = self.bus_arn(name);
        self.buses
            .write()
            .insert(name.to_string(), Arc::new(Bus::new(def, arn.clone())));
        Ok(arn)
    }

    /// `DeleteEventBus`: the bus and its rules (deleting a missing bus succeeds, as in AWS).
    pub async fn delete_event_bus(&self, name: &str) -> Result<()> {
        if name == DEFAULT_BUS {
            return Err(EventsError::validation("Cannot delete event bus default."));
        }
        let _defs = self.defs.lock().await;
        let Some(bus) = self.buses.read().get(name).cloned() else {
            return Ok(());
        };
        let mut ops = vec![(BUSES_TABLE, name.as_bytes().to_vec(), None)];
        for rule in bus.rules.read().keys() {
            ops.push((RULES_TABLE, rule_key(name, rule), None));
        }
        self.apply_meta(ops).await?;
        self.buses.write().remove(name);
        Ok(())
    }

    /// `ListEventBuses`.
    pub fn list_event_buses(
        &self,
        prefix: Option<&str>,
        token: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(Vec<BusSummary>, Option<String>)> {
        let all: Vec<BusSummary> = self
            .buses
            .read()
            .values()
            .filter(|b| prefix.is_none_or(|p| b.def.read().name.starts_with(p)))
            .map(|b| Self::bus_summary(b))
            .collect();
        page(all, token, limit)
    }

    /// `DescribeEventBus`.
    pub fn describe_event_bus(&self, name_or_arn: Option<&str>) -> Result<BusSummary> {
        Ok(Self::bus_summary(&*self.bus(name_or_arn)?))
    }

    /// `PutRule`: creates or updates (tags only on creation, targets kept); the rule ARN.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_rule(
        &self,
        name: &str,
        bus: Option<&str>,
        event_pattern: Option<String>,
        schedule: Option<String>,
        state: Option<String>,
        description: Option<String>,
        role_arn: Option<String>,
        tags: BTreeMap<String, String>,
        owner: &outpost_access::Identity,
    ) -> Result<String> {
        if !valid_rule_name(name) {
            return Err(EventsError::validation(format!(
                "1 validation error detected: Value '{}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+",
                clip(name)
            )));
        }
        if let Some(p) = &event_pattern {
            parse_pattern(p)?;
        }
        if let Some(s) = &schedule {
            Schedule::parse(s)?;
        }
        if event_pattern.is_none() && schedule.is_none() {
            return Err(EventsError::validation(
                "Parameter(s) EventPattern or ScheduleExpression must be specified.",
            ));
        }
        if let Some(s) = &state {
            valid_state(s)?;
        }
        check_description(description.as_deref())?;
        check_tags(&tags)?;
        let bus = self.bus(bus)?;
        let bus_name = bus.def.read().name.clone();
        if schedule.is_some() && bus_name != DEFAULT_BUS {
            return Err(EventsError::validation(
                "ScheduleExpression is supported only on the default event bus.",
            ));
        }
        let _defs = self.defs.lock().await;
        let old = bus.rules.read().get(name).cloned();
        // A schedule starts when it is set; putting the same one again keeps its start.
        let kept = old
            .as_ref()
            .filter(|o| o.def.schedule_expression == schedule)
            .and_then(|o| o.def.schedule_since_ms);
        let since = schedule
            .as_ref()
            .map(|_| kept.unwrap_or_else(|| self.schedule_now()));
        if old.is_none() && bus.rules.read().len() >= self.config.max_rules_per_bus {
            return Err(EventsError::LimitExceeded(
                "The requested resource exceeds the maximum number allowed.".into(),
            ));
        }
        let def = RuleDef {
            name: name.to_string(),
            bus: bus_name.clone(),
            event_pattern,
            schedule_expression: schedule,
            schedule_since_ms: since,
            state: state.unwrap_or_else(|| {
                old.as_ref()
                    .map_or("ENABLED".to_string(), |o| o.def.state.clone())
            }),
            description,
            role_arn,
            tags: old.as_ref().map_or(tags, |o| o.def.tags.clone()),
            targets: old
                .as_ref()
                .map_or_else(Vec::new, |o| o.def.targets.clone()),
            owner: Some(owner.encode()),
            target_owners: old
                .as_ref()
                .map_or_else(BTreeMap::new, |o| o.def.target_owners.clone()),
        };
        let had_schedule = old.is_some_and(|o| o.def.schedule_expression.is_some());
        let arn = self.replace_rule(&bus, def).await?;
        if kept.is_none() && (since.is_some() || had_schedule) {
            // A new schedule (or none): what the old one fired no longer counts.
            self.reset_schedule(&bus_name, name, None).await;
        }
        Ok(arn)
    }

    /// Stores `def` and swaps the live rule; the ARN.
    async fn replace_rule(&self, bus: &Bus, def: RuleDef) -> Result<String> {
        let arn = self.rule_arn(&def.bus, &def.name);
        let rule = Rule::new(def, arn.clone(), &self.config.region, &self.config.account)?;
        self.save_rule(&rule.def).await?;
        bus.rules
            .write()
            .insert(rule.def.name.clone(), Arc::new(rule));
        bus.reindex();
        Ok(arn)
    }

    fn rule(&self, name: &str, bus: Option<&str>) -> Result<(Arc<Bus>, Arc<Rule>)> {
        let bus = self.bus(bus)?;
        let rule = bus.rules.read().get(name).cloned().ok_or_else(|| {
            EventsError::not_found(format!(
                "Rule {} does not exist on EventBus {}.",
                clip(name),
                bus.def.read().name
            ))
        })?;
        Ok((bus, rule))
    }

    /// `DescribeRule`.
    pub fn describe_rule(&self, name: &str, bus: Option<&str>) -> Result<RuleSummary> {
        Ok(self.rule(name, bus)?.1.summary())
    }

    /// `ListRules`.
    pub fn list_rules(
        &self,
        prefix: Option<&str>,
        bus: Option<&str>,
        token: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(Vec<RuleSummary>, Option<String>)> {
        let bus = self.bus(bus)?;
        let all: Vec<RuleSummary> = bus
            .rules
            .read()
            .values()
            .filter(|r| prefix.is_none_or(|p| r.def.name.starts_with(p)))
            .map(|r| r.summary())
            .collect();
        page(all, token, limit)
    }

    /// `DeleteRule`: refused while the rule has targets (AWS's rule); a missing rule is no error.
    pub async fn delete_rule(&self, name: &str, bus: Option<&str>) -> Result<()> {
        let bus = self.bus(bus)?;
        let _defs = self.defs.lock().await;
        let Some(rule) = bus.rules.read().get(name).cloned() else {
            return Ok(());
        };
        if !rule.def.targets.is_empty() {
            return Err(EventsError::validation(
                "Rule can't be deleted since it has targets.",
            ));
        }
        self.apply_meta(vec![(RULES_TABLE, rule_key(&rule.def.bus, name), None)])
            .await?;
        bus.rules.write().remove(name);
        bus.reindex();
        if rule.schedule.is_some() {
            self.reset_schedule(&rule.def.bus, name, None).await;
        }
        Ok(())
    }

    /// `EnableRule` / `DisableRule`.
    pub async fn set_rule_state(&self, name: &str, bus: Option<&str>, enabled: bool) -> Result<()> {
        let _defs = self.defs.lock().await;
        let (bus, rule) = self.rule(name, bus)?;
        let mut def = rule.def.clone();
        def.state = if enabled { "ENABLED" } else { "DISABLED" }.to_string();
        let (bus_name, was_enabled) = (def.bus.clone(), rule.enabled());
        self.replace_rule(&bus, def).await?;
        // Ticks that passed while a rule was disabled are not owed when it is enabled again.
        if rule.schedule.is_some() && enabled && !was_enabled {
            self.reset_schedule(&bus_name, name, Some(self.schedule_now()))
                .await;
        }
        Ok(())
    }

    /// `PutTargets`: adds or replaces targets by `Id`. Every target is validated first; an
    /// invalid one fails the call (`ValidationException`), as AWS does for malformed targets.
    pub async fn put_targets(
        &self,
        rule: &str,
        bus: Option<&str>,
        targets: Vec<Value>,
        owner: &outpost_access::Identity,
    ) -> Result<()> {
        if targets.is_empty() || targets.len() > 10 {
            return Err(EventsError::validation(
                "Targets must list between 1 and 10 targets",
            ));
        }
        let parsed = targets
            .iter()
            .map(|t| Target::parse(t, &self.config.region, &self.config.account))
            .collect::<Result<Vec<_>>>()?;
        // A target writes as the one who put it: it must be allowed to write there now (and is
        // asked again for every event it delivers).
        for t in &parsed {
            if let Err(why) = self.may_write(owner, &t.destination, t.dead_letter_queue.as_deref())
            {
                return Err(EventsError::AccessDenied(why));
            }
        }
        let _defs = self.defs.lock().await;
        let (bus, rule) = self.rule(rule, bus)?;
        let mut def = rule.def.clone();
        for t in &parsed {
            def.target_owners.insert(t.id.clone(), owner.encode());
        }
        for (t, raw) in parsed.iter().zip(targets) {
            match def
                .targets
                .iter_mut()
                .find(|x| x.get("Id").and_then(Value::as_str) == Some(&t.id))
            {
                Some(slot) => *slot = raw,
                None => def.targets.push(raw),
            }
        }
        if def.targets.len() > MAX_TARGETS {
            return Err(EventsError::LimitExceeded(format!(
                "The requested resource exceeds the maximum number allowed: a rule has at most {MAX_TARGETS} targets."
            )));
        }
        self.replace_rule(&bus, def).await.map(|_| ())
    }

    /// `RemoveTargets` (ids the rule doesn't have are ignored).
    pub async fn remove_targets(
        &self,
        rule: &str,
        bus: Option<&str>,
        ids: &[String],
    ) -> Result<()> {
        if ids.is_empty() || ids.len() > 100 {
            return Err(EventsError::validation(
                "Ids must list between 1 and 100 ids",
            ));
        }
        let _defs = self.defs.lock().await;
        let (bus, rule) = self.rule(rule, bus)?;
        let mut def = rule.def.clone();
        def.targets.retain(|t| {
            !t.get("Id")
                .and_then(Value::as_str)
                .is_some_and(|id| ids.iter().any(|x| x == id))
        });
        def.target_owners.retain(|id, _| !ids.contains(id));
        self.replace_rule(&bus, def).await.map(|_| ())
    }

    /// `ListTargetsByRule`: targets in AWS's shape.
    pub fn list_targets_by_rule(
        &self,
        rule: &str,
        bus: Option<&str>,
        token: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let (_, rule) = self.rule(rule, bus)?;
        page(rule.def.targets.clone(), token, limit)
    }

    /// `ListRuleNamesByTarget`.
    pub fn list_rule_names_by_target(
        &self,
        target_arn: &str,
        bus: Option<&str>,
        token: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(Vec<String>, Option<String>)> {
        let bus = self.bus(bus)?;
        let names: Vec<String> = bus
            .rules
            .read()
            .values()
            .filter(|r| r.targets.iter().any(|t| t.arn == target_arn))
            .map(|r| r.def.name.clone())
            .collect();
        page(names, token, limit)
    }

    /// The bus or rule an ARN names.
    fn resource(&self, arn: &str) -> Result<(Arc<Bus>, Option<Arc<Rule>>)> {
        let prefix = format!(
            "arn:aws:events:{}:{}:",
            self.config.region, self.config.account
        );
        let missing = || EventsError::not_found(format!("Resource {} does not exist.", clip(arn)));
        let rest = arn.strip_prefix(&prefix).ok_or_else(missing)?;
        if let Some(bus) = rest.strip_prefix("event-bus/") {
            return Ok((self.bus(Some(bus)).map_err(|_| missing())?, None));
        }
        let path = rest.strip_prefix("rule/").ok_or_else(missing)?;
        let (bus, name) = path.rsplit_once('/').unwrap_or((DEFAULT_BUS, path));
        let (bus, rule) = self.rule(name, Some(bus)).map_err(|_| missing())?;
        Ok((bus, Some(rule)))
    }

    /// `TagResource`.
    pub async fn tag_resource(&self, arn: &str, tags: BTreeMap<String, String>) -> Result<()> {
        self.change_tags(arn, |t| t.extend(tags.clone())).await
    }

    /// `UntagResource`.
    pub async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<()> {
        self.change_tags(arn, |t| t.retain(|k, _| !keys.contains(k)))
            .await
    }

    async fn change_tags(
        &self,
        arn: &str,
        change: impl Fn(&mut BTreeMap<String, String>),
    ) -> Result<()> {
        let _defs = self.defs.lock().await;
        match self.resource(arn)? {
            (bus, Some(rule)) => {
                let mut def = rule.def.clone();
                change(&mut def.tags);
                check_tags(&def.tags)?;
                self.replace_rule(&bus, def).await.map(|_| ())
            }
            (bus, None) => {
                let mut def = bus.def.read().clone();
                change(&mut def.tags);
                check_tags(&def.tags)?;
                self.save_bus(&def).await?;
                *bus.def.write() = def;
                Ok(())
            }
        }
    }

    /// `ListTagsForResource`.
    pub fn list_tags(&self, arn: &str) -> Result<BTreeMap<String, String>> {
        Ok(match self.resource(arn)? {
            (_, Some(rule)) => rule.def.tags.clone(),
            (bus, None) => bus.def.read().tags.clone(),
        })
    }

    /// `TestEventPattern`.
    pub fn test_event_pattern(pattern: &str, event: &str) -> Result<bool> {
        let pattern = parse_pattern(pattern)?;
        let event: Value = serde_json::from_str(event)
            .map_err(|_| EventsError::validation("Parameter Event is not valid."))?;
        let Value::Object(o) = &event else {
            return Err(EventsError::validation("Parameter Event is not valid."));
        };
        // AWS evaluates an event without `resources`, and a `detail-type` that is not a string
        // (an array of them, say); the other envelope fields must be strings.
        for field in ["id", "account", "source", "time", "region", "detail-type"] {
            let ok = match o.get(field) {
                Some(v) if field == "detail-type" => !v.is_null(),
                Some(v) => v.is_string(),
                None => false,
            };
            if !ok {
                return Err(EventsError::validation(format!(
                    "Parameter Event is not valid. Reason: Provided Event is missing required field {field}"
                )));
            }
        }
        if o.get("resources").is_some_and(|r| !r.is_array()) {
            return Err(EventsError::validation(
                "Parameter Event is not valid. Reason: resources must be an array",
            ));
        }
        Ok(pattern.matches(&event))
    }
}
