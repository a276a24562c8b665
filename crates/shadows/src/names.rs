//! Thing and shadow names, and the reserved topics that carry shadow requests
//! (`$aws/things/{thing}/shadow/{get,update,delete}`, the named form
//! `$aws/things/{thing}/shadow/name/{shadow}/…`) and their answers (`…/accepted`, `…/rejected`,
//! `update/delta`, `update/documents`).

/// A shadow operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Update,
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// Which shadow a topic names, and what it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic<'a> {
    pub thing: &'a str,
    /// `None`: the classic (unnamed) shadow.
    pub shadow: Option<&'a str>,
    pub op: Op,
    /// True for the broker's answers (`accepted`, `rejected`, `delta`, `documents`).
    pub answer: bool,
}

/// Names AWS accepts: 1 to `max` of letters, digits, `:`, `_` and `-`.
fn valid(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// A thing name (1 to 128 characters).
pub fn valid_thing(name: &str) -> bool {
    valid(name, 128)
}

/// A named shadow's name (1 to 64 characters).
pub fn valid_shadow(name: &str) -> bool {
    valid(name, 64)
}

/// The topic prefix of a shadow.
pub fn prefix(thing: &str, shadow: Option<&str>) -> String {
    match shadow {
        None => format!("$aws/things/{thing}/shadow"),
        Some(s) => format!("$aws/things/{thing}/shadow/name/{s}"),
    }
}

/// Reads a shadow topic; `None` for any other topic (or names AWS would refuse).
pub fn parse(topic: &str) -> Option<Topic<'_>> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let (thing, rest) = rest.split_once("/shadow/")?;
    if !valid_thing(thing) {
        return None;
    }
    let (shadow, rest) = match rest.strip_prefix("name/") {
        Some(named) => {
            let (name, rest) = named.split_once('/')?;
            if !valid_shadow(name) {
                return None;
            }
            (Some(name), rest)
        }
        None => (None, rest),
    };
    let (op, tail) = match rest.split_once('/') {
        Some((op, tail)) => (op, Some(tail)),
        None => (rest, None),
    };
    let op = match op {
        "get" => Op::Get,
        "update" => Op::Update,
        "delete" => Op::Delete,
        _ => return None,
    };
    let answer = match (op, tail) {
        (_, None) => false,
        (_, Some("accepted" | "rejected")) => true,
        (Op::Update, Some("delta" | "documents")) => true,
        _ => return None,
    };
    Some(Topic {
        thing,
        shadow,
        op,
        answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        let t = parse("$aws/things/lamp-1/shadow/update").expect("classic update");
        assert_eq!(
            (t.thing, t.shadow, t.op, t.answer),
            ("lamp-1", None, Op::Update, false)
        );
        let t = parse("$aws/things/lamp-1/shadow/name/cfg/get").expect("named get");
        assert_eq!((t.shadow, t.op, t.answer), (Some("cfg"), Op::Get, false));
        assert!(
            parse("$aws/things/lamp-1/shadow/update/delta")
                .expect("delta")
                .answer
        );
        assert!(
            parse("$aws/things/lamp-1/shadow/name/cfg/delete/accepted")
                .expect("named")
                .answer
        );
        assert_eq!(parse("$aws/things/lamp-1/shadow/get/delta"), None);
        assert_eq!(parse("$aws/things/lamp 1/shadow/get"), None);
        assert_eq!(parse("$aws/things/lamp-1/shadow/name//get"), None);
        assert_eq!(parse("$aws/things/lamp-1/shadow/other"), None);
        assert_eq!(parse("sensors/a"), None);
        assert_eq!(prefix("t", Some("n")), "$aws/things/t/shadow/name/n");
        assert!(valid_thing(&"a".repeat(128)) && !valid_thing(&"a".repeat(129)));
        assert!(valid_shadow(&"a".repeat(64)) && !valid_shadow(&"a".repeat(65)));
    }
}
