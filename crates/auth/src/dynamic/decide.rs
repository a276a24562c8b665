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
    pub fn of_action(action: &str) -> Option<Kind> {
        let a = action.to_ascii_lowercase();
        match a.as_str() {
            "mqtt:publish" => Some(Kind::Send),
            "mqtt:receive" => Some(Kind::Receive),
            "mqtt:subscribe" => Some(Kind::Subscribe),
            "mqtt:unsubscribe" => Some(Kind::Unsubscribe),
            _ => None,
        }
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
