//! How dynamic security answers "may this identity do that?", as mosquitto's plugin does: the
//! client's own roles (highest priority first), then its groups' roles (groups by the client's
//! priority for them), each role's entries highest priority first; the first entry that matches
//! decides. Anonymous callers are checked against the anonymous group, when one is set. Nothing
//! matching: no verdict here (the caller applies the default access or the ACL file).

use outpost_access::Identity;

use super::model::{Entry, Model, Role};
use crate::acl::{covers, glob, topic_matches};
use crate::Effect;

/// What an MQTT client does, in mosquitto's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A PUBLISH from the client (`publishClientSend`).
    Send,
    /// A message delivered to the client (`publishClientReceive`).
    Receive,
    /// A SUBSCRIBE (`subscribeLiteral`, `subscribePattern`).
    Subscribe,
    /// An UNSUBSCRIBE (`unsubscribeLiteral`, `unsubscribePattern`).
    Unsubscribe,
}

impl Kind {
    /// The kind of an `mqtt:` action of the ACL file.
    /// (Asked at every decision: compared without case, without allocating.)
    pub fn of_action(action: &str) -> Option<Kind> {
        [
            ("mqtt:publish", Kind::Send),
            ("mqtt:receive", Kind::Receive),
            ("mqtt:subscribe", Kind::Subscribe),
            ("mqtt:unsubscribe", Kind::Unsubscribe),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(action))
        .map(|(_, kind)| kind)
    }
}

/// The ACL types mosquitto knows.
pub const MQTT_TYPES: [&str; 6] = [
    "publishClientSend",
    "publishClientReceive",
    "subscribeLiteral",
    "subscribePattern",
    "unsubscribeLiteral",
    "unsubscribePattern",
];

/// The canonical spelling of an ACL type (mosquitto compares them without case), or `None`
/// when it is neither an MQTT type nor an IAM action (`service:Operation`).
pub fn acltype(text: &str) -> Option<String> {
    if let Some(t) = MQTT_TYPES.iter().find(|t| t.eq_ignore_ascii_case(text)) {
        return Some((*t).to_string());
    }
    let (service, op) = text.split_once(':')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?' || c == '-')
    };
    (ok(service) && ok(op)).then(|| text.to_string())
}

/// The roles that apply to `who`, in the order they are checked; `None` when dynamic security
/// does not govern this identity (an unknown username, or anonymous without an anonymous group).
pub fn roles_of<'m>(model: &'m Model, who: &Identity) -> Option<Vec<&'m Role>> {
    let mut out = Vec::new();
    let by_name = |name: &str| model.roles.get(name);
    if who.is_anonymous() {
        let group = model.groups.get(model.anonymous_group.as_deref()?)?;
        out.extend(group.roles.iter().filter_map(|r| by_name(&r.name)));
        return Some(out);
    }
    let client = model.clients.get(&*who.name)?;
    out.extend(client.roles.iter().filter_map(|r| by_name(&r.name)));
    for g in &client.groups {
        if let Some(group) = model.groups.get(&g.name) {
            out.extend(group.roles.iter().filter_map(|r| by_name(&r.name)));
        }
    }
    Some(out)
}

fn verdict(e: &Entry) -> Effect {
    if e.allow {
        Effect::Allow
    } else {
        Effect::Deny
    }
}

/// The first matching entry's verdict for an MQTT action on a topic (or, subscribing, a filter).
pub fn mqtt(roles: &[&Role], kind: Kind, topic: &str) -> Option<Effect> {
    let (literal, pattern) = match kind {
        Kind::Send => ("", "publishClientSend"),
        Kind::Receive => ("", "publishClientReceive"),
        Kind::Subscribe => ("subscribeLiteral", "subscribePattern"),
        Kind::Unsubscribe => ("unsubscribeLiteral", "unsubscribePattern"),
    };
    for role in roles {
        // A literal entry of a role is looked at before its patterns, as mosquitto does.
        if let Some(e) = role
            .acls
            .iter()
            .find(|e| e.acltype == literal && e.topic == topic)
        {
            return Some(verdict(e));
        }
        let matching = |e: &&Entry| {
            e.acltype == pattern
                && match kind {
                    Kind::Send | Kind::Receive => topic_matches(&e.topic, topic),
                    Kind::Subscribe | Kind::Unsubscribe => covers(&e.topic, topic),
                }
        };
        if let Some(e) = role.acls.iter().find(matching) {
            return Some(verdict(e));
        }
    }
    None
}

/// The first matching entry's verdict for an IAM action on an ARN (Outpost's extension).
pub fn action(roles: &[&Role], action: &str, resource: &str) -> Option<Effect> {
    roles.iter().find_map(|role| {
        role.acls
            .iter()
            .find(|e| {
                e.acltype.contains(':')
                    && glob(&e.acltype, action, true)
                    && glob(&e.topic, resource, false)
            })
            .map(verdict)
    })
}

/// The default access of a kind. `$CONTROL/…` is never reached by default: it must be granted.
pub fn default_allows(model: &Model, kind: Kind, topic: &str) -> bool {
    if topic.starts_with("$CONTROL") {
        return false;
    }
    let d = &model.default_access;
    match kind {
        Kind::Send => d.publish_client_send,
        Kind::Receive => d.publish_client_receive,
        Kind::Subscribe => d.subscribe,
        Kind::Unsubscribe => d.unsubscribe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamic::model::{Attached, Client, Group};
    use outpost_access::Proof;

    fn entry(acltype: &str, topic: &str, priority: i64, allow: bool) -> Entry {
        Entry {
            acltype: acltype.into(),
            topic: topic.into(),
            priority,
            allow,
        }
    }

    fn user(name: &str) -> Identity {
        Identity {
            name: name.into(),
            proof: Proof::Password,
            account: "1".into(),
        }
    }

    fn attached(name: &str, priority: i64) -> Attached {
        Attached {
            name: name.into(),
            priority,
        }
    }

    /// alice: her own role `own` (deny a/secret), then group `g` (priority 5) with role `wide`
    /// (allow a/#), then group `h` (priority 1) with role `none` (deny #).
    fn model() -> Model {
        let mut m = Model::default();
        m.roles.insert(
            "own".into(),
            Role {
                acls: vec![entry("publishClientSend", "a/secret", 0, false)],
                ..Role::default()
            },
        );
        m.roles.insert(
            "wide".into(),
            Role {
                acls: vec![
                    entry("publishClientSend", "a/#", 0, true),
                    entry("subscribePattern", "a/+", 0, true),
                    entry("subscribeLiteral", "a/+", 0, false),
                    entry("sqs:Send*", "arn:aws:sqs:*:*:jobs", 0, true),
                ],
                ..Role::default()
            },
        );
        m.roles.insert(
            "none".into(),
            Role {
                acls: vec![entry("publishClientSend", "#", 0, false)],
                ..Role::default()
            },
        );
        m.groups.insert(
            "g".into(),
            Group {
                roles: vec![attached("wide", 0)],
                ..Group::default()
            },
        );
        m.groups.insert(
            "h".into(),
            Group {
                roles: vec![attached("none", 0)],
                ..Group::default()
            },
        );
        m.clients.insert(
            "alice".into(),
            Client {
                roles: vec![attached("own", 0)],
                groups: vec![attached("g", 5), attached("h", 1)],
                ..Client::default()
            },
        );
        m
    }

    #[test]
    fn the_first_matching_entry_decides_in_mosquittos_order() {
        let m = model();
        let roles = roles_of(&m, &user("alice")).expect("governed");
        // Her own role before her groups' roles.
        assert_eq!(mqtt(&roles, Kind::Send, "a/secret"), Some(Effect::Deny));
        // The higher-priority group's role before the lower one's.
        assert_eq!(mqtt(&roles, Kind::Send, "a/b"), Some(Effect::Allow));
        assert_eq!(mqtt(&roles, Kind::Send, "b/c"), Some(Effect::Deny));
        // Within a role, a literal subscription entry is looked at before the patterns.
        assert_eq!(mqtt(&roles, Kind::Subscribe, "a/+"), Some(Effect::Deny));
        assert_eq!(mqtt(&roles, Kind::Subscribe, "a/b"), Some(Effect::Allow));
        // A pattern covers only narrower filters.
        assert_eq!(mqtt(&roles, Kind::Subscribe, "a/#"), None);
        assert_eq!(mqtt(&roles, Kind::Receive, "a/b"), None);
        assert_eq!(
            action(&roles, "sqs:SendMessage", "arn:aws:sqs:us-east-1:1:jobs"),
            Some(Effect::Allow)
        );
        assert_eq!(
            action(&roles, "sqs:DeleteQueue", "arn:aws:sqs:us-east-1:1:jobs"),
            None
        );
    }

    #[test]
    fn who_is_governed_and_what_silence_means() {
        let mut m = model();
        assert!(
            roles_of(&m, &user("bob")).is_none(),
            "unknown to dynamic security"
        );
        assert!(
            roles_of(&m, &Identity::anonymous("1")).is_none(),
            "no anonymous group"
        );
        m.anonymous_group = Some("g".into());
        let anon = roles_of(&m, &Identity::anonymous("1")).expect("governed");
        assert_eq!(mqtt(&anon, Kind::Send, "a/x"), Some(Effect::Allow));
        assert!(default_allows(&m, Kind::Receive, "x"));
        assert!(default_allows(&m, Kind::Unsubscribe, "x"));
        assert!(!default_allows(&m, Kind::Send, "x"));
        assert!(!default_allows(&m, Kind::Subscribe, "x"));
        m.default_access.publish_client_receive = true;
        assert!(
            !default_allows(&m, Kind::Receive, "$CONTROL/dynamic-security/v1/response"),
            "never $CONTROL by default"
        );
        assert_eq!(
            acltype("PUBLISHCLIENTSEND").as_deref(),
            Some("publishClientSend")
        );
        assert_eq!(acltype("sqs:*").as_deref(), Some("sqs:*"));
        assert_eq!(acltype("publish"), None);
        assert_eq!(acltype("sqs:"), None);
    }
}
