//! Resource policies: the IAM policy documents a resource carries (a queue's `Policy` attribute,
//! written by `AddPermission` or `SetQueueAttributes`), evaluated for a caller beside the ACL.
//!
//! The subset evaluated is what `AddPermission` and the common hand-written policies use:
//! `Effect`, `Principal` (`"*"`, or `{"AWS": …}` naming account ids, `arn:aws:iam::<account>:root`
//! or user ARNs), `Action` and `Resource` (strings or lists, `*` wildcards). A statement with a
//! `Condition`, `NotPrincipal`, `NotAction` or `NotResource` cannot be checked here: an allow of
//! that kind grants nothing, a deny of that kind denies (the safe reading of both).

use serde_json::Value;

use crate::acl::{glob, Effect};
use crate::Identity;

/// The verdict of a policy document for `who` doing `action` on `resource`: `Some(Deny)` if a
/// deny applies, else `Some(Allow)` if an allow applies, else `None`. A document that is not
/// valid JSON says nothing.
pub fn decide(document: &str, who: &Identity, action: &str, resource: &str) -> Option<Effect> {
    let doc: Value = serde_json::from_str(document).ok()?;
    let statements: Vec<&Value> = match doc.get("Statement")? {
        Value::Array(a) => a.iter().collect(),
        one @ Value::Object(_) => vec![one],
        _ => return None,
    };
    let mut verdict = None;
    for s in statements {
        let effect = match s.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            _ => continue,
        };
        let uncheckable = ["Condition", "NotPrincipal", "NotAction", "NotResource"]
            .iter()
            .any(|k| s.get(*k).is_some());
        let applies = !uncheckable
            && principal_matches(s.get("Principal"), who)
            && strings(s.get("Action")).any(|a| glob(a, action, true))
            && strings(s.get("Resource")).any(|r| glob(r, resource, false));
        let names_action = strings(s.get("Action")).any(|a| glob(a, action, true));
        match (effect, applies, uncheckable) {
            (Effect::Deny, _, true) if names_action => return Some(Effect::Deny),
            (Effect::Deny, true, _) => return Some(Effect::Deny),
            (Effect::Allow, true, _) => verdict = Some(Effect::Allow),
            _ => {}
        }
    }
    verdict
}

fn strings(v: Option<&Value>) -> Box<dyn Iterator<Item = &str> + '_> {
    match v {
        Some(Value::String(s)) => Box::new(std::iter::once(s.as_str())),
        Some(Value::Array(a)) => Box::new(a.iter().filter_map(Value::as_str)),
        _ => Box::new(std::iter::empty()),
    }
}

fn principal_matches(p: Option<&Value>, who: &Identity) -> bool {
    let aws = match p {
        Some(Value::String(s)) if s == "*" => return true,
        Some(Value::Object(o)) => o.get("AWS"),
        _ => return false,
    };
    let arn = who.principal_arn();
    strings(aws).any(|name| {
        name == "*"
            || (!who.is_anonymous()
                && (name == &*who.account
                    || name == format!("arn:aws:iam::{}:root", who.account)
                    || glob(name, &arn, false)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Proof;

    fn someone(account: &str) -> Identity {
        Identity {
            name: "partner".into(),
            proof: Proof::AccessKey,
            account: account.into(),
        }
    }

    #[test]
    fn add_permission_statements() {
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Sid":"p1","Effect":"Allow",
            "Principal":{"AWS":["arn:aws:iam::111122223333:root"]},
            "Action":["SQS:SendMessage"],"Resource":"arn:aws:sqs:us-east-1:000000000000:q"}]}"#;
        let q = "arn:aws:sqs:us-east-1:000000000000:q";
        assert_eq!(
            decide(doc, &someone("111122223333"), "sqs:SendMessage", q),
            Some(Effect::Allow)
        );
        assert_eq!(
            decide(doc, &someone("111122223333"), "sqs:DeleteQueue", q),
            None
        );
        assert_eq!(
            decide(doc, &someone("444455556666"), "sqs:SendMessage", q),
            None
        );
        assert_eq!(
            decide(
                doc,
                &Identity::anonymous("000000000000"),
                "sqs:SendMessage",
                q
            ),
            None
        );
    }

    #[test]
    fn deny_and_conditions() {
        let doc = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sqs:*","Resource":"*"},
            {"Effect":"Deny","Principal":"*","Action":"sqs:DeleteQueue","Resource":"*","Condition":{"x":{}}}]}"#;
        let who = someone("111122223333");
        assert_eq!(
            decide(doc, &who, "sqs:SendMessage", "arn:q"),
            Some(Effect::Allow)
        );
        assert_eq!(
            decide(doc, &who, "sqs:DeleteQueue", "arn:q"),
            Some(Effect::Deny)
        );
        assert_eq!(decide("not json", &who, "sqs:SendMessage", "arn:q"), None);
    }
}
