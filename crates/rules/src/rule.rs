//! Rules: an event pattern on a bus, a state, and up to five targets.

use std::collections::BTreeMap;

use outpost_patterns::{Dialect, Pattern};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{EventsError, Result};
use crate::json_path::clip;
use crate::schedule::Schedule;
use crate::target::Target;

/// A rule as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleDef {
    pub name: String,
    pub bus: String,
    pub event_pattern: Option<String>,
    /// `rate(…)` or `cron(…)`: the rule also fires on this schedule (default bus only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
    /// When the schedule was set: a rate counts its periods from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_since_ms: Option<u64>,
    pub state: String,
    pub description: Option<String>,
    pub role_arn: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Targets in AWS's JSON shape, in the order they were put.
    #[serde(default)]
    pub targets: Vec<Value>,
    /// Who last put the rule ([`outpost_access::Identity::encode`]): the rule reads MQTT events
    /// as this principal (ADR 0015). `None` for rules stored before owners were kept: they act
    /// as the anonymous caller.
    #[serde(default)]
    pub owner: Option<String>,
    /// Who put each target, by target id: the target writes as this principal.
    #[serde(default)]
    pub target_owners: BTreeMap<String, String>,
}

impl RuleDef {
    /// The principal the rule reads as.
    pub fn owner(&self, account: &str) -> outpost_access::Identity {
        principal(self.owner.as_deref(), account)
    }

    /// The principal target `id` writes as.
    pub fn target_owner(&self, id: &str, account: &str) -> outpost_access::Identity {
        principal(
            self.target_owners
                .get(id)
                .map(String::as_str)
                .or(self.owner.as_deref()),
            account,
        )
    }
}

/// A stored principal, or the account's anonymous caller.
pub(crate) fn principal(encoded: Option<&str>, account: &str) -> outpost_access::Identity {
    encoded
        .and_then(outpost_access::Identity::decode)
        .unwrap_or_else(|| outpost_access::Identity::anonymous(account))
}

/// A live rule: its definition, parsed pattern or schedule (or both), and targets.
#[derive(Debug)]
pub struct Rule {
    pub def: RuleDef,
    pub arn: String,
    /// `None`: a scheduled rule that matches no events.
    pub pattern: Option<Pattern>,
    pub schedule: Option<Schedule>,
    pub targets: Vec<Target>,
}

/// What `ListRules` and `DescribeRule` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSummary {
    pub name: String,
    pub arn: String,
    pub bus: String,
    pub event_pattern: Option<String>,
    pub schedule_expression: Option<String>,
    pub state: String,
    pub description: Option<String>,
    pub role_arn: Option<String>,
}

pub(crate) fn valid_rule_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Parses an event pattern, mapping grammar errors to `InvalidEventPatternException`.
pub(crate) fn parse_pattern(text: &str) -> Result<Pattern> {
    if text.len() > 4096 {
        return Err(EventsError::InvalidEventPattern(
            "Event pattern is longer than 4096 characters".into(),
        ));
    }
    Pattern::parse(text, Dialect::EventPattern).map_err(|e| {
        EventsError::InvalidEventPattern(format!("Event pattern is not valid. Reason: {e}"))
    })
}

impl Rule {
    pub(crate) fn new(def: RuleDef, arn: String, region: &str, account: &str) -> Result<Rule> {
        let pattern = def
            .event_pattern
            .as_deref()
            .map(parse_pattern)
            .transpose()?;
        let schedule = def
            .schedule_expression
            .as_deref()
            .map(Schedule::parse)
            .transpose()?;
        if pattern.is_none() && schedule.is_none() {
            return Err(EventsError::validation(
                "Parameter(s) EventPattern or ScheduleExpression must be specified.",
            ));
        }
        let targets = def
            .targets
            .iter()
            .map(|t| Target::parse(t, region, account))
            .collect::<Result<Vec<_>>>()?;
        Ok(Rule {
            def,
            arn,
            pattern,
            schedule,
            targets,
        })
    }

    /// Whether `event` matches the rule's pattern (a rule without one matches nothing).
    pub(crate) fn matches(&self, event: &Value) -> bool {
        self.pattern.as_ref().is_some_and(|p| p.matches(event))
    }

    pub(crate) fn enabled(&self) -> bool {
        self.def.state != "DISABLED"
    }

    pub(crate) fn summary(&self) -> RuleSummary {
        RuleSummary {
            name: self.def.name.clone(),
            arn: self.arn.clone(),
            bus: self.def.bus.clone(),
            event_pattern: self.def.event_pattern.clone(),
            schedule_expression: self.def.schedule_expression.clone(),
            state: self.def.state.clone(),
            description: self.def.description.clone(),
            role_arn: self.def.role_arn.clone(),
        }
    }
}

/// Validates `State`.
pub(crate) fn valid_state(s: &str) -> Result<()> {
    match s {
        "ENABLED" | "DISABLED" | "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS" => Ok(()),
        other => Err(EventsError::validation(format!(
            "1 validation error detected: Value '{}' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED, ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS]",
            clip(other)
        ))),
    }
}
