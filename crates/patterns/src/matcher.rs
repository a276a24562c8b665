//! One value test: what an element of a pattern's array says about a field's value.

use std::net::IpAddr;

use serde_json::Value;

/// A literal in a pattern: matches an equal value of the same JSON type (numbers by value, so
/// `301` matches `301.0`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

impl Literal {
    fn equals(&self, v: &Value) -> bool {
        match (self, v) {
            (Literal::Str(s), Value::String(x)) => s == x,
            (Literal::Num(n), Value::Number(x)) => x.as_f64().is_some_and(|x| x == *n),
            (Literal::Bool(b), Value::Bool(x)) => b == x,
            (Literal::Null, Value::Null) => true,
            _ => false,
        }
    }
}

/// A numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub(crate) fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "=" => Op::Eq,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            _ => return None,
        })
    }

    fn holds(self, v: f64, bound: f64) -> bool {
        match self {
            Op::Eq => v == bound,
            Op::Lt => v < bound,
            Op::Le => v <= bound,
            Op::Gt => v > bound,
            Op::Ge => v >= bound,
        }
    }
}

/// What `anything-but` excludes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Excluded {
    Values(Vec<Literal>),
    /// Any of these prefixes (and the same below): a value that is not a string (a number,
    /// `null`) has none of them, so it matches, as in AWS.
    Prefix(Vec<String>),
    Suffix(Vec<String>),
    Wildcard(Vec<String>),
    /// Lowercased.
    EqualsIgnoreCase(Vec<String>),
}

/// One element of a pattern's array.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Matcher {
    Exact(Literal),
    /// The prefix, and whether case is ignored (then it is lowercased).
    Prefix(String, bool),
    Suffix(String, bool),
    /// Lowercased.
    EqualsIgnoreCase(String),
    Wildcard(String),
    AnythingBut(Excluded),
    /// All conditions hold.
    Numeric(Vec<(Op, f64)>),
    Exists(bool),
    /// Network address and prefix length.
    Cidr(IpAddr, u8),
}

impl Matcher {
    /// True when this test accepts `v`, one value of the field (an array's elements are offered
    /// one by one by the caller). `exists` is decided by the caller.
    pub(crate) fn accepts(&self, v: &Value) -> bool {
        match self {
            Matcher::Exact(l) => l.equals(v),
            Matcher::Prefix(p, fold) => {
                as_str(v).is_some_and(|s| fold_case(s, *fold).starts_with(p.as_str()))
            }
            Matcher::Suffix(p, fold) => {
                as_str(v).is_some_and(|s| fold_case(s, *fold).ends_with(p.as_str()))
            }
            Matcher::EqualsIgnoreCase(e) => as_str(v).is_some_and(|s| s.to_lowercase() == *e),
            Matcher::Wildcard(w) => as_str(v).is_some_and(|s| wildcard_match(w, s)),
            Matcher::AnythingBut(x) => match x {
                Excluded::Values(ls) => {
                    matches!(
                        v,
                        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null
                    ) && !ls.iter().any(|l| l.equals(v))
                }
                Excluded::Prefix(ps) => {
                    !as_str(v).is_some_and(|s| ps.iter().any(|p| s.starts_with(p.as_str())))
                }
                Excluded::Suffix(ps) => {
                    !as_str(v).is_some_and(|s| ps.iter().any(|p| s.ends_with(p.as_str())))
                }
                Excluded::Wildcard(ws) => {
                    !as_str(v).is_some_and(|s| ws.iter().any(|w| wildcard_match(w, s)))
                }
                Excluded::EqualsIgnoreCase(es) => {
                    !as_str(v).is_some_and(|s| es.contains(&s.to_lowercase()))
                }
            },
            Matcher::Numeric(conds) => v
                .as_f64()
                .is_some_and(|n| conds.iter().all(|(op, b)| op.holds(n, *b))),
            Matcher::Exists(_) => false,
            Matcher::Cidr(net, len) => as_str(v)
                .and_then(|s| s.parse::<IpAddr>().ok())
                .is_some_and(|ip| in_network(ip, *net, *len)),
        }
    }
}

fn as_str(v: &Value) -> Option<&str> {
    v.as_str()
}

fn fold_case(s: &str, fold: bool) -> std::borrow::Cow<'_, str> {
    if fold {
        std::borrow::Cow::Owned(s.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// True when `ip` lies in `net`/`len` (same address family).
pub(crate) fn in_network(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// EventBridge's wildcard: `*` matches any run of characters (none included); `\*` is a literal
/// star and `\\` a backslash. Our own, not `wildmatch` (which the ACL's IAM globs use): it knows
/// no escapes, and it backtracks where this is linear by construction. Linear in the pattern and the value together, whatever either holds: the
/// literal runs between stars are found left to right with `str::find` (two-way search, linear),
/// the first run anchored at the start and the last at the end. Taking each middle run at its
/// leftmost place is never wrong for `*`-only patterns (a later place only leaves less room for
/// what follows), so there is no backtracking at all (ADR 0015: a 4,000-character pattern over
/// a 3 MB value once took seconds).
pub(crate) fn wildcard_match(pattern: &str, s: &str) -> bool {
    // The literal runs between stars.
    let mut runs: Vec<String> = vec![String::new()];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => runs
                .last_mut()
                .map_or((), |r| r.push(chars.next().unwrap_or('\\'))),
            '*' => runs.push(String::new()),
            c => runs.last_mut().map_or((), |r| r.push(c)),
        }
    }
    let (first, rest) = match runs.split_first() {
        Some(x) => x,
        None => return s.is_empty(),
    };
    let Some((last, middle)) = rest.split_last() else {
        return s == first;
    };
    if s.len() < first.len() + last.len() || !s.starts_with(first.as_str()) {
        return false;
    }
    let Some(tail_at) = s.len().checked_sub(last.len()) else {
        return false;
    };
    if !s.is_char_boundary(tail_at) || !s.ends_with(last.as_str()) {
        return false;
    }
    // The middle runs, in order, inside what the first and last leave.
    let mut window = &s[first.len()..tail_at];
    for run in middle {
        match window.find(run.as_str()) {
            Some(at) => window = &window[at + run.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    /// The case that once took 4.4 s a match: a long pattern over a 3 MB value is linear now.
    #[test]
    fn long_patterns_over_long_values_are_linear() {
        let pattern = format!("*{}b", "a".repeat(4_000));
        let value = "a".repeat(3_000_000);
        let started = std::time::Instant::now();
        for _ in 0..8 {
            assert!(!super::wildcard_match(&pattern, &value));
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("dir/*.png", "dir/a.png"));
        assert!(wildcard_match("dir/*.png", "dir/.png"));
        assert!(!wildcard_match("dir/*.png", "dir/a.jpg"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
        assert!(wildcard_match("a\\*b", "a*b"));
        assert!(!wildcard_match("a\\*b", "aXb"));
        assert!(wildcard_match("sensors/*/telemetry", "sensors/7/telemetry"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("a*", "a"));
        assert!(
            !wildcard_match("ab*ba", "aba"),
            "first and last runs must not overlap"
        );
        assert!(wildcard_match("*ab*ab*", "xabyab"));
        assert!(!wildcard_match("*ab*ab*", "xaby"));
        assert!(wildcard_match("é*ü", "éxyzü"));
        assert!(!wildcard_match("abc", "abcd"));
        assert!(wildcard_match("", ""));
        assert!(!wildcard_match("", "a"));
    }

    #[test]
    fn networks() {
        let net: IpAddr = "10.0.0.0".parse().unwrap();
        assert!(in_network("10.0.0.255".parse().unwrap(), net, 24));
        assert!(!in_network("10.0.1.0".parse().unwrap(), net, 24));
        assert!(in_network("192.168.1.1".parse().unwrap(), net, 0));
        let v6: IpAddr = "2001:db8::".parse().unwrap();
        assert!(in_network("2001:db8::1".parse().unwrap(), v6, 32));
        assert!(!in_network("2001:db9::1".parse().unwrap(), v6, 32));
        assert!(
            !in_network("10.0.0.1".parse().unwrap(), v6, 0),
            "families differ"
        );
    }
}
