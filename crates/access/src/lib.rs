//! Who a message acts as, and the one question every door asks about it.
//!
//! Outpost's doors meet in one broker: an MQTT will, an SNS `mqtt` subscription, an EventBridge
//! target or an HTTP publish all end up writing into the MQTT topic space, a queue or a topic.
//! None of those paths may be a way around the ACL (ADR 0015), so every message carries the
//! [`Identity`] it acts for, and the engines ask one [`Authorizer`] about it where the message
//! enters them. The engines do not know how the answer is made (password files, access keys,
//! ACL files live in `outpost-auth`, which implements the trait); they only know whom to ask.
//! A principal is kept with what it created (a subscription, a rule's target) as a short text
//! ([`Identity::encode`]), so a right revoked by an ACL reload stops the deliveries made in its
//! name.

mod identity;

use std::sync::{Arc, OnceLock};

pub use identity::{Identity, Proof};

/// Decides whether an identity may do an action on a resource. `outpost-auth`'s `Security`
/// answers with the ACL file and resource policies; [`Open`] allows everything.
pub trait Authorizer: Send + Sync + std::fmt::Debug {
    /// An MQTT action (`mqtt:publish`, `mqtt:subscribe`, `mqtt:receive`) on a topic or filter,
    /// for a client id (`%c`; empty when no MQTT client acts).
    fn mqtt(&self, who: &Identity, client_id: &str, action: &str, topic: &str) -> bool;
    /// True when a rule explicitly denies the MQTT action (a deny of `mqtt:subscribe` on
    /// `secret/#` asked about the topic name `secret/x`): what a wider grant cannot override.
    fn mqtt_denied(&self, who: &Identity, client_id: &str, action: &str, topic: &str) -> bool;
    /// Any other action (`sqs:SendMessage`, `sns:Publish`, …) on an ARN, with the resource's own
    /// policy document if it has one.
    fn http(&self, who: &Identity, action: &str, resource: &str, policy: Option<&str>) -> bool;
    /// Whether a principal of another door (an access key that made a subscription or a rule
    /// target, an HTTP caller) may publish to or read an MQTT topic. MQTT's and AWS IoT's words
    /// both count: allowed when `mqtt:publish` or `iot:Publish` on the topic's ARN allows it
    /// (reading: `mqtt:receive` or `iot:Receive`), and no rule denies either (reading: nor
    /// `mqtt:subscribe` / `iot:Subscribe` on it).
    fn topic(&self, who: &Identity, verb: TopicVerb, topic: &str) -> bool;
    /// An action on an ARN taken by an MQTT client (the shadow service's `iot:UpdateThingShadow`
    /// on `…:thing/{thing}` from a PUBLISH): as [`Authorizer::http`], with `%c` in the rules'
    /// ARNs naming the client id.
    fn client_arn(&self, who: &Identity, client_id: &str, action: &str, resource: &str) -> bool {
        let _ = client_id;
        self.http(who, action, resource, None)
    }
    /// True when everything is allowed (no ACL in force): callers skip the lookups a check
    /// would need (a queue's policy, say).
    fn is_open(&self) -> bool {
        false
    }
}

/// What a principal of another door does with an MQTT topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicVerb {
    /// Publishes to it.
    Publish,
    /// Reads what is published there.
    Read,
}

/// Allows everything: no ACL in force (tests, embedded uses).
#[derive(Debug, Default, Clone, Copy)]
pub struct Open;

impl Authorizer for Open {
    fn mqtt(&self, _: &Identity, _: &str, _: &str, _: &str) -> bool {
        true
    }
    fn mqtt_denied(&self, _: &Identity, _: &str, _: &str, _: &str) -> bool {
        false
    }
    fn http(&self, _: &Identity, _: &str, _: &str, _: Option<&str>) -> bool {
        true
    }
    fn topic(&self, _: &Identity, _: TopicVerb, _: &str) -> bool {
        true
    }
    fn is_open(&self) -> bool {
        true
    }
}

/// The authorizer an engine asks: set once at start, [`Open`] until then.
#[derive(Default)]
pub struct Gate(OnceLock<Arc<dyn Authorizer>>);

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Gate(set)"
        } else {
            "Gate(open)"
        })
    }
}

impl Gate {
    /// Installs the authorizer; false when one was set already.
    pub fn set(&self, authorizer: Arc<dyn Authorizer>) -> bool {
        self.0.set(authorizer).is_ok()
    }

    /// The authorizer in force.
    pub fn get(&self) -> &dyn Authorizer {
        match self.0.get() {
            Some(a) => a.as_ref(),
            None => &Open,
        }
    }
}

/// Why a message cannot enter the MQTT topic space from another door, checked where it enters:
/// MQTT can carry it, and it is not a topic only the broker writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRefusal {
    /// Empty, with wildcards or NUL, or longer than MQTT's 65,535 bytes.
    Invalid,
    /// `$SYS/…` and other `$` topics: written by the broker alone (`$queue/…` is a SendMessage).
    Reserved,
}

/// Checks a topic name that another door (a rule template, an SNS `mqtt` endpoint, a will)
/// wants to publish to.
pub fn check_topic(topic: &str) -> Result<(), TopicRefusal> {
    if topic.is_empty() || topic.len() > 65_535 || topic.contains(['+', '#', '\0']) {
        return Err(TopicRefusal::Invalid);
    }
    if topic.starts_with('$') {
        return Err(TopicRefusal::Reserved);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_from_other_doors() {
        assert_eq!(check_topic("a/b"), Ok(()));
        assert_eq!(check_topic("$SYS/broker/x"), Err(TopicRefusal::Reserved));
        assert_eq!(check_topic("$queue/jobs"), Err(TopicRefusal::Reserved));
        assert_eq!(check_topic("a/#"), Err(TopicRefusal::Invalid));
        assert_eq!(check_topic(""), Err(TopicRefusal::Invalid));
        assert_eq!(check_topic(&"a".repeat(65_536)), Err(TopicRefusal::Invalid));
    }

    #[test]
    fn identities_survive_their_encoding() {
        for who in [
            Identity::anonymous("000000000000"),
            Identity {
                name: "ops:with:colons".into(),
                proof: Proof::AccessKey,
                account: "123456789012".into(),
            },
            Identity {
                name: "dev-1".into(),
                proof: Proof::Certificate,
                account: "1".into(),
            },
        ] {
            assert_eq!(Identity::decode(&who.encode()), Some(who));
        }
        assert_eq!(Identity::decode("garbage"), None);
    }
}
