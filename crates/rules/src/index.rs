//! Which rules of a bus an event can match, found without trying every rule.
//!
//! Most rules name the `detail-type` or the `source` they want with exact values, prefixes or
//! wildcards (`sensors/*/telemetry` starts with `sensors/`). The index keeps such rules under
//! those keys ([`outpost_patterns::Pattern::index_keys`]); an event looks up its own
//! `detail-type` (every prefix of it, one hash lookup each) and `source`, and only the rules
//! found there, plus those the index can't place, are matched in full. A thousand rules on
//! different topics cost an event a handful of lookups, not a thousand matches.

use std::collections::HashMap;
use std::sync::Arc;

use outpost_patterns::IndexKey;
use serde_json::Value;

use crate::rule::Rule;

/// The fields tried as index keys, best first.
const FIELDS: [&str; 2] = ["detail-type", "source"];

#[derive(Debug, Default)]
struct FieldIndex {
    exact: HashMap<String, Vec<usize>>,
    prefix: HashMap<String, Vec<usize>>,
}

impl FieldIndex {
    fn add(&mut self, keys: Vec<IndexKey>, rule: usize) {
        for k in keys {
            let list = match k {
                IndexKey::Exact(s) => self.exact.entry(s).or_default(),
                IndexKey::Prefix(s) => self.prefix.entry(s).or_default(),
            };
            if list.last() != Some(&rule) {
                list.push(rule);
            }
        }
    }

    fn candidates(&self, value: &str, out: &mut Vec<usize>) {
        if let Some(l) = self.exact.get(value) {
            out.extend_from_slice(l);
        }
        if self.prefix.is_empty() {
            return;
        }
        for (at, _) in value
            .char_indices()
            .chain(std::iter::once((value.len(), ' ')))
        {
            if let Some(l) = self.prefix.get(&value[..at]) {
                out.extend_from_slice(l);
            }
        }
    }
}

/// The enabled rules of one bus, indexed.
#[derive(Debug, Default)]
pub struct RuleIndex {
    rules: Vec<Arc<Rule>>,
    fields: [FieldIndex; 2],
    always: Vec<usize>,
}

impl RuleIndex {
    /// Indexes the enabled ones of `rules`.
    pub fn build<'a>(rules: impl Iterator<Item = &'a Arc<Rule>>) -> RuleIndex {
        let mut index = RuleIndex::default();
        for rule in rules.filter(|r| r.enabled() && r.pattern.is_some()) {
            let at = index.rules.len();
            index.rules.push(rule.clone());
            let placed = FIELDS.iter().enumerate().find_map(|(f, field)| {
                rule.pattern
                    .as_ref()
                    .and_then(|p| p.index_keys(field))
                    .map(|keys| (f, keys))
            });
            match placed {
                Some((f, keys)) => index.fields[f].add(keys, at),
                None => index.always.push(at),
            }
        }
        index
    }

    /// True when no rule is enabled.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules that could match an event with this `source` and `detail-type`, before the
    /// full match (cheap: no event needs to exist yet).
    pub fn candidates(&self, source: &str, detail_type: &str) -> Vec<Arc<Rule>> {
        let mut at = self.always.clone();
        self.fields[0].candidates(detail_type, &mut at);
        self.fields[1].candidates(source, &mut at);
        at.sort_unstable();
        at.dedup();
        at.into_iter().map(|i| self.rules[i].clone()).collect()
    }

    /// The rules `event` matches.
    pub fn matching(&self, event: &Value) -> Vec<Arc<Rule>> {
        let text = |k: &str| event.get(k).and_then(Value::as_str).unwrap_or("");
        self.candidates(text("source"), text("detail-type"))
            .into_iter()
            .filter(|r| r.matches(event))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::RuleDef;
    use serde_json::json;

    fn rule(name: &str, pattern: &str) -> Arc<Rule> {
        Arc::new(
            Rule::new(
                RuleDef {
                    name: name.into(),
                    bus: "default".into(),
                    event_pattern: Some(pattern.into()),
                    schedule_expression: None,
                    schedule_since_ms: None,
                    state: "ENABLED".into(),
                    description: None,
                    role_arn: None,
                    tags: Default::default(),
                    targets: vec![],
                    owner: None,
                    target_owners: Default::default(),
                },
                format!("arn:{name}"),
                "r",
                "a",
            )
            .unwrap(),
        )
    }

    #[test]
    fn finds_exactly_the_matching_rules() {
        let mut rules = vec![
            rule(
                "wild",
                r#"{"detail-type":[{"wildcard":"sensors/*/telemetry"}]}"#,
            ),
            rule("exact", r#"{"detail-type":["sensors/a/telemetry"]}"#),
            rule("prefix", r#"{"detail-type":[{"prefix":"sensors/"}]}"#),
            rule("source", r#"{"source":["outpost.mqtt"]}"#),
            rule("other-source", r#"{"source":["app"]}"#),
            rule("numeric", r#"{"detail":{"temp":[{"numeric":[">",50]}]}}"#),
            rule("anything-but", r#"{"detail-type":[{"anything-but":"x"}]}"#),
        ];
        for i in 0..1000 {
            rules.push(rule(
                &format!("n{i}"),
                &format!(r#"{{"detail-type":["devices/{i}/status"]}}"#),
            ));
        }
        let index = RuleIndex::build(rules.iter());
        let event = json!({"source": "outpost.mqtt", "detail-type": "sensors/a/telemetry", "detail": {"temp": 61}});
        let mut names: Vec<String> = index
            .matching(&event)
            .iter()
            .map(|r| r.def.name.clone())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "anything-but",
                "exact",
                "numeric",
                "prefix",
                "source",
                "wild"
            ]
        );
        // Candidates stay few although 1,007 rules exist.
        assert!(
            index
                .candidates("outpost.mqtt", "sensors/a/telemetry")
                .len()
                <= 7
        );
        assert_eq!(
            index
                .matching(&json!({"source": "x", "detail-type": "devices/7/status"}))
                .len(),
            2
        );
    }
}
