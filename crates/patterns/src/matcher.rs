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
    Prefix(String),
    Suffix(String),
    Wildcard(String),
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
                Excluded::Prefix(p) => as_str(v).is_some_and(|s| !s.starts_with(p.as_str())),
                Excluded::Suffix(p) => as_str(v).is_some_and(|s| !s.ends_with(p.as_str())),
                Excluded::Wildcard(w) => as_str(v).is_some_and(|s| !wildcard_match(w, s)),
                Excluded::EqualsIgnoreCase(es) => {
                    as_str(v).is_some_and(|s| !es.contains(&s.to_lowercase()))
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

/// `*` matches any run of characters (none included); `\*` is a literal star and `\\` a
/// backslash. Iterative, with one backtracking point (the last star): linear in practice and never
/// recursive, whatever the pattern.
pub(crate) fn wildcard_match(pattern: &str, s: &str) -> bool {
    // The pattern as tokens: Some(c) a literal character, None a star.
    let tokens: Vec<Option<char>> = {
        let mut out = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(Some(chars.next().unwrap_or('\\'))),
                '*' => out.push(None),
                c => out.push(Some(c)),
            }
        }
        out
    };
    let text: Vec<char> = s.chars().collect();
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Some(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(None) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(Option::is_none)
}

#[cfg(test)]
mod tests {
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
