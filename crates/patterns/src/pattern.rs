//! A parsed pattern: its tree, its validation against the dialect's rules and limits, and matching.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::matcher::{Excluded, Literal, Matcher, Op};
use crate::{Dialect, PatternError};

/// Deepest nesting of objects a pattern may have (including `$or` levels). Parsing and matching
/// follow the pattern's depth, so this bounds both.
pub const MAX_DEPTH: usize = 16;
/// SNS: most keys (leaf fields) in a filter policy.
const SNS_MAX_KEYS: usize = 5;
/// SNS: most combinations of values (the product of the array sizes, summed over `$or` branches).
const SNS_MAX_COMBINATIONS: usize = 150;
/// SNS: largest filter policy, in bytes.
const SNS_MAX_BYTES: usize = 256 * 1024;

/// An object level of a pattern: every field must match, and every `$or` group (one of its
/// alternatives).
#[derive(Debug, Clone, PartialEq)]
struct Node {
    fields: Vec<(String, Field)>,
    ors: Vec<Vec<Node>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Nested(Node),
    /// Any of the tests.
    Leaf(Vec<Matcher>),
}

/// A necessary condition on one field, from [`Pattern::index_keys`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IndexKey {
    /// The value equals this.
    Exact(String),
    /// The value starts with this (possibly empty).
    Prefix(String),
}

/// A validated filter policy or event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    root: Node,
    dialect: Dialect,
}

impl Pattern {
    /// Parses and validates `json` in `dialect`.
    pub fn parse(json: &str, dialect: Dialect) -> Result<Pattern, PatternError> {
        if dialect.is_sns() && json.len() > SNS_MAX_BYTES {
            return Err(PatternError::new(
                "Filter policy is too long: the maximum is 256 KB",
            ));
        }
        // serde_json refuses nesting beyond 128 levels itself (no unbounded recursion).
        let value: Value = serde_json::from_str(json)
            .map_err(|e| PatternError::new(format!("The pattern is not valid JSON: {e}")))?;
        Pattern::from_value(&value, dialect)
    }

    /// Validates an already parsed pattern.
    pub fn from_value(value: &Value, dialect: Dialect) -> Result<Pattern, PatternError> {
        let Value::Object(map) = value else {
            return Err(PatternError::new("The pattern must be a JSON object"));
        };
        let root = parse_node(map, dialect, 1)?;
        if dialect.is_sns() {
            let keys = count_keys(&root);
            if keys > SNS_MAX_KEYS {
                return Err(PatternError::new(format!(
                    "Filter policy can not have more than {SNS_MAX_KEYS} keys"
                )));
            }
            if combinations(&root) > SNS_MAX_COMBINATIONS {
                return Err(PatternError::new(format!(
                    "Filter policy is too complex: the combinations of its values exceed {SNS_MAX_COMBINATIONS}"
                )));
            }
        }
        Ok(Pattern { root, dialect })
    }

    /// What any matching message's top-level `field` must hold, for indexing many patterns: the
    /// field's string value (or one element of its array) equals one of the `Exact` keys or starts
    /// with one of the `Prefix` keys. `None` when the pattern does not constrain the field that
    /// way (the field is absent from the pattern, sits under `$or`, or has a test such as
    /// `anything-but`, `numeric` or `exists`): such a pattern must be tried on every message.
    pub fn index_keys(&self, field: &str) -> Option<Vec<IndexKey>> {
        let (_, Field::Leaf(matchers)) = self.root.fields.iter().find(|(k, _)| k == field)? else {
            return None;
        };
        matchers
            .iter()
            .map(|m| match m {
                Matcher::Exact(Literal::Str(s)) => Some(IndexKey::Exact(s.clone())),
                Matcher::Prefix(p, false) => Some(IndexKey::Prefix(p.clone())),
                Matcher::Wildcard(w) => {
                    // The literal text before the first star or escape.
                    let end = w.find(['*', '\\']).unwrap_or(w.len());
                    Some(if end == w.len() {
                        IndexKey::Exact(w.clone())
                    } else {
                        IndexKey::Prefix(w[..end].to_string())
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// The dialect it was written in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// True when `message` (a JSON object: an event, a message body, or attributes from
    /// [`crate::attributes_to_json`]) matches. A message that is not an object matches only a
    /// pattern without keys.
    pub fn matches(&self, message: &Value) -> bool {
        let object = message.as_object();
        // SNS: `"exists": false` matches only a message with at least one attribute; an empty
        // set of attributes matches no policy that names a key.
        if self.dialect == Dialect::SnsAttributes
            && object.is_none_or(Map::is_empty)
            && !self.root.fields.is_empty()
        {
            return false;
        }
        node_matches(&self.root, object, self.dialect)
    }
}

fn parse_node(map: &Map<String, Value>, d: Dialect, depth: usize) -> Result<Node, PatternError> {
    if depth > MAX_DEPTH {
        return Err(PatternError::new(format!(
            "The pattern is nested more than {MAX_DEPTH} levels deep"
        )));
    }
    let mut node = Node {
        fields: Vec::new(),
        ors: Vec::new(),
    };
    for (key, value) in map {
        if key == "$or" {
            let Value::Array(alternatives) = value else {
                return Err(PatternError::new("$or must be an array of objects"));
            };
            if alternatives.len() < 2 {
                return Err(PatternError::new("$or must list at least two alternatives"));
            }
            let mut group = Vec::with_capacity(alternatives.len());
            for alt in alternatives {
                let Value::Object(m) = alt else {
                    return Err(PatternError::new("$or must be an array of objects"));
                };
                group.push(parse_node(m, d, depth + 1)?);
            }
            node.ors.push(group);
            continue;
        }
        let field = match value {
            Value::Array(items) => Field::Leaf(parse_leaf(key, items, d)?),
            Value::Object(m) => {
                if d == Dialect::SnsAttributes {
                    return Err(PatternError::new(format!(
                        "Filter policy scope MessageAttributes does not support nested filter policy (key {key})"
                    )));
                }
                Field::Nested(parse_node(m, d, depth + 1)?)
            }
            _ => {
                return Err(PatternError::new(format!(
                    "Match value of {key} must be an array or an object"
                )))
            }
        };
        node.fields.push((key.clone(), field));
    }
    Ok(node)
}

fn parse_leaf(key: &str, items: &[Value], d: Dialect) -> Result<Vec<Matcher>, PatternError> {
    if items.is_empty() {
        return Err(PatternError::new(format!(
            "Empty arrays are not allowed (key {key})"
        )));
    }
    items
        .iter()
        .map(|item| parse_matcher(key, item, d))
        .collect()
}

fn literal(v: &Value) -> Option<Literal> {
    Some(match v {
        Value::String(s) => Literal::Str(s.clone()),
        Value::Number(n) => Literal::Num(n.as_f64()?),
        Value::Bool(b) => Literal::Bool(*b),
        Value::Null => Literal::Null,
        _ => return None,
    })
}

fn parse_matcher(key: &str, item: &Value, d: Dialect) -> Result<Matcher, PatternError> {
    let bad = |what: &str| PatternError::new(format!("{what} (key {key})"));
    let Value::Object(op) = item else {
        return literal(item).map(Matcher::Exact).ok_or_else(|| {
            bad("Match values must be strings, numbers, booleans, null or objects")
        });
    };
    let mut entries = op.iter();
    let (Some((name, arg)), None) = (entries.next(), entries.next()) else {
        return Err(bad("A match object must have exactly one operator"));
    };
    let string = |v: &Value, what: &str| -> Result<String, PatternError> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| bad(&format!("The value of {what} must be a string")))
    };
    // `prefix`/`suffix` take a string, or (event patterns) {"equals-ignore-case": string}.
    let affix = |what: &str| -> Result<(String, bool), PatternError> {
        match arg {
            Value::String(s) => Ok((s.clone(), false)),
            Value::Object(m) if d.has_wildcard() && m.len() == 1 => {
                match m.get("equals-ignore-case") {
                    Some(Value::String(s)) => Ok((s.to_lowercase(), true)),
                    _ => Err(bad(&format!("Unsupported {what} match"))),
                }
            }
            _ => Err(bad(&format!("The value of {what} must be a string"))),
        }
    };
    Ok(match name.as_str() {
        "prefix" => {
            let (p, fold) = affix("prefix")?;
            Matcher::Prefix(p, fold)
        }
        "suffix" => {
            let (p, fold) = affix("suffix")?;
            Matcher::Suffix(p, fold)
        }
        "equals-ignore-case" => {
            Matcher::EqualsIgnoreCase(string(arg, "equals-ignore-case")?.to_lowercase())
        }
        "wildcard" if d.has_wildcard() => {
            Matcher::Wildcard(wildcard(&string(arg, "wildcard")?, key)?)
        }
        "anything-but" => Matcher::AnythingBut(parse_anything_but(key, arg, d)?),
        "numeric" => Matcher::Numeric(parse_numeric(key, arg, d)?),
        "exists" => match arg {
            Value::Bool(b) => Matcher::Exists(*b),
            _ => return Err(bad("The value of exists must be true or false")),
        },
        "cidr" => {
            let s = string(arg, "cidr")?;
            let (ip, len) = parse_cidr(&s).ok_or_else(|| bad(&format!("Malformed CIDR {s}")))?;
            Matcher::Cidr(ip, len)
        }
        other => return Err(bad(&format!("Unrecognized match type {other}"))),
    })
}

/// A valid wildcard: no two stars in a row (AWS refuses them as needlessly expensive).
fn wildcard(w: &str, key: &str) -> Result<String, PatternError> {
    let mut prev_star = false;
    let mut chars = w.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
                prev_star = false;
            }
            '*' if prev_star => {
                return Err(PatternError::new(format!(
                    "Consecutive wildcard characters are not allowed (key {key})"
                )))
            }
            '*' => prev_star = true,
            _ => prev_star = false,
        }
    }
    Ok(w.to_string())
}

fn parse_anything_but(key: &str, arg: &Value, d: Dialect) -> Result<Excluded, PatternError> {
    let bad = |what: &str| PatternError::new(format!("{what} (key {key})"));
    let scalar = |v: &Value| match v {
        Value::String(_) | Value::Number(_) => literal(v),
        _ => None,
    };
    match arg {
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|v| scalar(v).ok_or_else(|| bad("anything-but values must be strings or numbers")))
            .collect::<Result<Vec<_>, _>>()
            .map(Excluded::Values),
        Value::Object(m) if m.len() == 1 => {
            let (name, v) = m.iter().next().ok_or_else(|| bad("Empty anything-but"))?;
            let s = || {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(&format!("The value of anything-but {name} must be a string")))
            };
            match name.as_str() {
                "prefix" => Ok(Excluded::Prefix(s()?)),
                "suffix" => Ok(Excluded::Suffix(s()?)),
                "wildcard" if d.has_wildcard() => Ok(Excluded::Wildcard(wildcard(&s()?, key)?)),
                "equals-ignore-case" if d.has_wildcard() => match v {
                    Value::String(x) => Ok(Excluded::EqualsIgnoreCase(vec![x.to_lowercase()])),
                    Value::Array(xs) if !xs.is_empty() => xs
                        .iter()
                        .map(|x| {
                            x.as_str().map(str::to_lowercase).ok_or_else(|| {
                                bad("anything-but equals-ignore-case values must be strings")
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(Excluded::EqualsIgnoreCase),
                    _ => Err(bad("anything-but equals-ignore-case takes a string or an array of strings")),
                },
                other => Err(bad(&format!("Unsupported anything-but match {other}"))),
            }
        }
        v => scalar(v)
            .map(|l| Excluded::Values(vec![l]))
            .ok_or_else(|| bad("anything-but takes a string, a number, an array of them, or a prefix/suffix object")),
    }
}

fn parse_numeric(key: &str, arg: &Value, d: Dialect) -> Result<Vec<(Op, f64)>, PatternError> {
    let bad = |what: &str| PatternError::new(format!("{what} (key {key})"));
    let Value::Array(items) = arg else {
        return Err(bad("numeric takes an array of operators and numbers"));
    };
    if items.len() != 2 && items.len() != 4 {
        return Err(bad("numeric takes one or two comparisons"));
    }
    let limit = d.numeric_limit();
    let mut conds = Vec::new();
    for pair in items.chunks(2) {
        let op = pair[0]
            .as_str()
            .and_then(Op::parse)
            .ok_or_else(|| bad("Unrecognized numeric range operator"))?;
        let n = pair[1]
            .as_f64()
            .ok_or_else(|| bad("Value of numeric comparison must be a number"))?;
        if n.abs() > limit {
            return Err(bad(&format!(
                "Value of numeric comparison must be between -{limit:e} and {limit:e}"
            )));
        }
        conds.push((op, n));
    }
    if let [(first, low), (second, high)] = conds[..] {
        let lower = matches!(first, Op::Gt | Op::Ge);
        let upper = matches!(second, Op::Lt | Op::Le);
        if !lower || !upper {
            return Err(bad(
                "A numeric range is a lower bound (> or >=) then an upper bound (< or <=)",
            ));
        }
        if low >= high {
            return Err(bad("The bottom of a numeric range must be below its top"));
        }
    }
    Ok(conds)
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let ip: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// Leaf keys, counting each `$or` group as its largest alternative.
fn count_keys(node: &Node) -> usize {
    let own: usize = node
        .fields
        .iter()
        .map(|(_, f)| match f {
            Field::Leaf(_) => 1,
            Field::Nested(n) => count_keys(n),
        })
        .sum();
    own + node
        .ors
        .iter()
        .map(|g| g.iter().map(count_keys).max().unwrap_or(0))
        .sum::<usize>()
}

/// Combinations of values: the product over keys of their value counts, an `$or` group
/// contributing the sum of its alternatives'.
fn combinations(node: &Node) -> usize {
    let mut total: usize = 1;
    for (_, f) in &node.fields {
        let n = match f {
            Field::Leaf(ms) => ms.len(),
            Field::Nested(n) => combinations(n),
        };
        total = total.saturating_mul(n);
    }
    for g in &node.ors {
        let sum = g
            .iter()
            .map(combinations)
            .fold(0usize, usize::saturating_add);
        total = total.saturating_mul(sum);
    }
    total
}

/// True when `object` (absent: the field does not exist) satisfies `node`.
fn node_matches(node: &Node, object: Option<&Map<String, Value>>, d: Dialect) -> bool {
    node.fields.iter().all(|(key, field)| {
        let value = object.and_then(|o| o.get(key));
        match field {
            Field::Nested(n) => node_matches(n, value.and_then(Value::as_object), d),
            Field::Leaf(ms) => ms.iter().any(|m| leaf_matches(m, value, d)),
        }
    }) && node
        .ors
        .iter()
        .all(|g| g.iter().any(|alt| node_matches(alt, object, d)))
}

fn leaf_matches(m: &Matcher, value: Option<&Value>, d: Dialect) -> bool {
    if let Matcher::Exists(want) = m {
        let present = match value {
            None => false,
            // SNS: the key must have a non-null, non-empty value.
            Some(v) if d.is_sns() => {
                !matches!(v, Value::Null)
                    && v.as_str().is_none_or(|s| !s.is_empty())
                    && v.as_array().is_none_or(|a| !a.is_empty())
            }
            // EventBridge: `exists` concerns leaves; an object is not one.
            Some(v) => !v.is_object(),
        };
        return present == *want;
    }
    match value {
        None => false,
        // An array matches when any element does.
        Some(Value::Array(items)) => items.iter().any(|v| m.accepts(v)),
        Some(v) => m.accepts(v),
    }
}
