//! Who may do what: allow and deny rules over identities, actions and resources, in IAM's
//! vocabulary so one file speaks for every door.
//!
//! ```toml
//! [[rules]]
//! effect = "allow"                      # or "deny"; a matching deny always wins
//! identities = ["*"]                    # names, "anonymous", or "*" (everyone)
//! actions = ["mqtt:publish", "mqtt:subscribe", "mqtt:receive"]
//! resources = ["devices/%c/#", "users/%u/#"]   # MQTT filters, %c client id, %u username
//!
//! [[rules]]
//! effect = "allow"
//! identities = ["ops"]
//! actions = ["sqs:*", "sns:Publish", "events:PutEvents"]
//! resources = ["arn:aws:sqs:*:*:orders-*", "*"]  # ARN patterns with * and ?
//! ```
//!
//! MQTT actions take MQTT topic filters as resources: `mqtt:publish` and `mqtt:receive` check a
//! topic name against them, `mqtt:subscribe` checks that the rule's filter covers the requested
//! filter (a rule on `a/+` does not grant `a/#`), as mosquitto's ACLs do. Every other action
//! (`sqs:SendMessage`, `sns:Subscribe`, `events:PutEvents`, `iot:Publish`, …) takes ARN patterns.
//! A rule whose resource names `%u` never matches an anonymous caller. Nothing allowed is denied.

use std::path::Path;

use serde::Deserialize;

use crate::{AuthError, Identity};

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Grants.
    Allow,
    /// Refuses, whatever else grants.
    Deny,
}

/// One rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Allow or deny.
    pub effect: Effect,
    /// Who it speaks of.
    pub identities: Vec<String>,
    /// Actions (`service:Operation`, `*` wildcards, case-insensitive as IAM's).
    pub actions: Vec<String>,
    /// Resources: MQTT filters for `mqtt:*` actions, ARN patterns for the others.
    #[serde(default = "everything")]
    pub resources: Vec<String>,
}

fn everything() -> Vec<String> {
    vec!["*".into()]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AclFile {
    #[serde(default)]
    rules: Vec<Rule>,
}

/// The rules of an ACL file.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
}

/// What the caller is doing, to what.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `service:Operation`.
    pub action: &'a str,
    /// A topic, a topic filter (for `mqtt:subscribe`) or an ARN.
    pub resource: &'a str,
    /// The MQTT client id, for `%c` (empty elsewhere).
    pub client_id: &'a str,
}

impl Acl {
    /// Reads an ACL file.
    pub fn load(path: &Path) -> Result<Acl, AuthError> {
        crate::load_file(path, Acl::parse)
    }

    /// Parses an ACL file's text.
    pub fn parse(text: &str) -> Result<Acl, String> {
        let file: AclFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        for (n, r) in file.rules.iter().enumerate() {
            if r.identities.is_empty() || r.actions.is_empty() || r.resources.is_empty() {
                return Err(format!(
                    "rule {}: identities, actions and resources must not be empty",
                    n + 1
                ));
            }
            for a in &r.actions {
                if a != "*" && !a.contains(':') {
                    return Err(format!(
                        "rule {}: action {a:?} is not service:Operation",
                        n + 1
                    ));
                }
            }
        }
        Ok(Acl { rules: file.rules })
    }

    /// The verdict of the rules: `Some(Deny)` when a deny matches, else `Some(Allow)` when an
    /// allow matches, else `None` (nothing said).
    pub fn decide(&self, who: &Identity, req: &Request<'_>) -> Option<Effect> {
        let mut verdict = None;
        for r in &self.rules {
            if !r.identities.iter().any(|i| names(i, who)) {
                continue;
            }
            if !r.actions.iter().any(|a| glob(a, req.action, true)) {
                continue;
            }
            if !r
                .resources
                .iter()
                .any(|pattern| resource_matches(pattern, who, req))
            {
                continue;
            }
            match r.effect {
                Effect::Deny => return Some(Effect::Deny),
                Effect::Allow => verdict = Some(Effect::Allow),
            }
        }
        verdict
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True without rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn names(pattern: &str, who: &Identity) -> bool {
    match pattern {
        "*" => true,
        "anonymous" => who.is_anonymous(),
        name => !who.is_anonymous() && *who.name == *name,
    }
}

fn resource_matches(pattern: &str, who: &Identity, req: &Request<'_>) -> bool {
    let is_mqtt = req
        .action
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("mqtt:"));
    if !is_mqtt {
        if !pattern.contains("%c") && !pattern.contains("%u") {
            return glob(pattern, req.resource, false);
        }
        // An ARN naming the caller (`…:thing/%c`): a value that is empty or holds a glob
        // wildcard would widen the pattern, so it never matches.
        let unsafe_value = |v: &str| v.is_empty() || v.contains(['*', '?']);
        let user = who.username().unwrap_or("");
        if (pattern.contains("%c") && unsafe_value(req.client_id))
            || (pattern.contains("%u") && (who.is_anonymous() || unsafe_value(user)))
        {
            return false;
        }
        let arn = pattern.replace("%c", req.client_id).replace("%u", user);
        return glob(&arn, req.resource, false);
    }
    if pattern.contains("%u") && who.is_anonymous() {
        return false;
    }
    let filter = substitute(pattern, req.client_id, who.username().unwrap_or(""));
    if req.action.eq_ignore_ascii_case("mqtt:subscribe") {
        covers(&filter, req.resource)
    } else {
        topic_matches(&filter, req.resource)
    }
}

/// `%c` and `%u` replaced. A substituted value with MQTT wildcards or separators would widen the
/// pattern (a client id `#`), so such a value never matches: it yields an impossible filter.
fn substitute(pattern: &str, client_id: &str, username: &str) -> String {
    let unsafe_value = |v: &str| v.contains(['+', '#', '/']) || v.is_empty();
    if (pattern.contains("%c") && unsafe_value(client_id))
        || (pattern.contains("%u") && unsafe_value(username))
    {
        return "\u{0}".into();
    }
    pattern.replace("%c", client_id).replace("%u", username)
}

/// MQTT topic matching of a topic name against a filter (§4.7, wildcards at the first level do
/// not match `$` topics): the codec's, as the broker's router uses it.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    outpost_codec::topic::matches(filter, topic)
}

/// True when every topic `requested` can match is matched by `granted` (both filters).
pub fn covers(granted: &str, requested: &str) -> bool {
    // A shared subscription is checked by its topic filter.
    let requested = strip_share(requested);
    let mut g = granted.split('/');
    let mut r = requested.split('/');
    let mut first = true;
    loop {
        match (g.next(), r.next()) {
            (Some("#"), Some(level)) => return !(first && level.starts_with('$')),
            (Some("#"), None) => return true,
            (Some("+"), Some("#")) => return false,
            (Some("+"), Some(level)) => {
                if first && level.starts_with('$') {
                    return false;
                }
            }
            (Some(a), Some(b)) => {
                if a != b {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

/// `$share/<group>/<filter>` → `<filter>`.
fn strip_share(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, f)| f)
}

/// IAM-style glob: `*` any run of characters, `?` one character (the `wildmatch` crate, which
/// matches without recursion).
pub fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    type Glob = wildmatch::WildMatchPattern<'*', '?'>;
    if ignore_case {
        Glob::new_case_insensitive(pattern).matches(text)
    } else {
        Glob::new(pattern).matches(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Proof;

    fn user(name: &str) -> Identity {
        Identity {
            name: name.into(),
            proof: Proof::Password,
            account: "000000000000".into(),
        }
    }

    fn mqtt<'a>(action: &'a str, resource: &'a str, client_id: &'a str) -> Request<'a> {
        Request {
            action,
            resource,
            client_id,
        }
    }

    #[test]
    fn topic_and_filter_matching() {
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(topic_matches("a/#", "a"));
        assert!(topic_matches("#", "a/b"));
        assert!(!topic_matches("#", "$SYS/x"));
        assert!(!topic_matches("+/x", "$SYS/x"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("a/#", "a/#"));
        assert!(!covers("a/+", "a/#"));
        assert!(covers("a/+", "a/+"));
        assert!(!covers("a/b", "a/+"));
        assert!(covers("a/#", "$share/g/a/b"));
    }

    #[test]
    fn globs() {
        assert!(glob("sqs:*", "sqs:SendMessage", true));
        assert!(glob("SQS:sendmessage", "sqs:SendMessage", true));
        assert!(!glob("sqs:Send*", "sns:SendMessage", true));
        assert!(glob(
            "arn:aws:sqs:*:*:orders-?",
            "arn:aws:sqs:us-east-1:000000000000:orders-1",
            false
        ));
        assert!(!glob(
            "arn:aws:sqs:*:*:orders-?",
            "arn:aws:sqs:us-east-1:000000000000:orders-12",
            false
        ));
        assert!(glob("*", "", false));
        assert!(glob(&"*a".repeat(20), &"a".repeat(40), false));
    }

    #[test]
    fn deny_wins_and_substitution() {
        let acl = Acl::parse(
            r##"
[[rules]]
effect = "allow"
identities = ["*"]
actions = ["mqtt:publish", "mqtt:subscribe"]
resources = ["devices/%c/#", "users/%u/#"]

[[rules]]
effect = "deny"
identities = ["mallory"]
actions = ["mqtt:*"]
resources = ["#"]
"##,
        )
        .unwrap();
        let alice = user("alice");
        let anon = Identity::anonymous("000000000000");
        assert_eq!(
            acl.decide(&alice, &mqtt("mqtt:publish", "devices/d1/t", "d1")),
            Some(Effect::Allow)
        );
        assert_eq!(
            acl.decide(&alice, &mqtt("mqtt:publish", "devices/d2/t", "d1")),
            None
        );
        assert_eq!(
            acl.decide(&alice, &mqtt("mqtt:publish", "users/alice/x", "d1")),
            Some(Effect::Allow)
        );
        assert_eq!(
            acl.decide(&anon, &mqtt("mqtt:publish", "users//x", "d1")),
            None
        );
        assert_eq!(
            acl.decide(&user("mallory"), &mqtt("mqtt:publish", "devices/m/t", "m")),
            Some(Effect::Deny)
        );
        // A client id with wildcards does not widen a %c rule.
        assert_eq!(
            acl.decide(&alice, &mqtt("mqtt:subscribe", "devices/#", "#")),
            None
        );
        assert_eq!(
            acl.decide(&alice, &mqtt("mqtt:subscribe", "devices/d1/#", "d1")),
            Some(Effect::Allow)
        );
        assert_eq!(
            acl.decide(&alice, &mqtt("mqtt:receive", "devices/d1/x", "d1")),
            None
        );
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(
            Acl::parse("[[rules]]\neffect = \"maybe\"\nidentities=[\"*\"]\nactions=[\"*\"]\n")
                .is_err()
        );
        assert!(
            Acl::parse("[[rules]]\neffect = \"allow\"\nidentities=[]\nactions=[\"*\"]\n").is_err()
        );
        assert!(Acl::parse(
            "[[rules]]\neffect = \"allow\"\nidentities=[\"*\"]\nactions=[\"publish\"]\n"
        )
        .is_err());
    }

    #[test]
    fn arns_name_the_client_without_widening() {
        let acl = Acl::parse(
            r#"
[[rules]]
effect = "allow"
identities = ["*"]
actions = ["iot:UpdateThingShadow"]
resources = ["arn:aws:iot:*:*:thing/%c"]
"#,
        )
        .expect("parsed");
        let dev = user("dev");
        let arn = "arn:aws:iot:us-east-1:000000000000:thing/pump-1";
        let asks = |client: &'static str| mqtt("iot:UpdateThingShadow", arn, client);
        assert_eq!(acl.decide(&dev, &asks("pump-1")), Some(Effect::Allow));
        assert_eq!(acl.decide(&dev, &asks("pump-2")), None);
        assert_eq!(
            acl.decide(&dev, &asks("*")),
            None,
            "a glob client id does not widen"
        );
        assert_eq!(
            acl.decide(&dev, &asks("")),
            None,
            "HTTP callers have no client id"
        );
    }
}
