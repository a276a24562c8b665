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
    /// The pattern as alternatives (its `$or` groups multiplied out), each a list of conditions
    /// on dot-joined paths: what matching walks.
    branches: Vec<Vec<Cond>>,
}

/// One condition of a branch: the leaf values at `path` must satisfy one of `matchers`.
#[derive(Debug, Clone, PartialEq)]
struct Cond {
    path: String,
    matchers: Vec<Matcher>,
    /// The condition holds through an absence (`exists: false`): checked after the others, once
    /// they chose their array elements.
    absence: bool,
}

/// Most alternatives a pattern's `$or` groups multiply out to; more is "too complex", as AWS
/// says of such patterns.
const MAX_BRANCHES: usize = 1_000;
/// Most steps one match may take choosing array elements (a message with large arrays of
/// objects against a pattern of many fields): past it the message does not match.
const MATCH_BUDGET: u32 = 100_000;

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
            if combinations(&root, 1) > SNS_MAX_COMBINATIONS {
                return Err(PatternError::new(format!(
                    "Filter policy is too complex: the combinations of its values exceed {SNS_MAX_COMBINATIONS}"
                )));
            }
        }
        let branches = branches(&root, "")
            .filter(|b| b.len() <= MAX_BRANCHES)
            .ok_or_else(|| PatternError::new("Event pattern is too complex"))?;
        Ok(Pattern {
            root,
            dialect,
            branches,
        })
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

    /// True when every alternative of the pattern has a condition on the top-level `field`
    /// (MQTT's `$` topics reach only rules that name their `detail-type`, as `#` does not match
    /// them in a subscription).
    pub fn names(&self, field: &str) -> bool {
        !self.branches.is_empty()
            && self
                .branches
                .iter()
                .all(|b| b.iter().any(|c| c.path == field))
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
        let message = Some(message).filter(|_| object.is_some());
        let mut budget = MATCH_BUDGET;
        self.branches.iter().any(|branch| {
            let mut chosen = Vec::new();
            branch_matches(branch, 0, message, &mut chosen, self.dialect, &mut budget)
        })
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
                if m.is_empty() {
                    return Err(PatternError::new(format!(
                        "Empty objects are not allowed (key {key})"
                    )));
                }
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

/// Most stars in one wildcard value. AWS refuses patterns whose wildcards could keep too many
/// match positions alive at once ("Rule is too complex"), e.g. `*:*:*:*:*:event-bus/*`; Outpost
/// matches any wildcard in linear time, but refuses what AWS refuses so rules move both ways.
const MAX_WILDCARD_STARS: usize = 4;

/// A valid wildcard: no two stars in a row (AWS refuses them as needlessly expensive), at most
/// [`MAX_WILDCARD_STARS`] stars.
fn wildcard(w: &str, key: &str) -> Result<String, PatternError> {
    let stars = {
        let mut n = 0;
        let mut chars = w.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '*' => n += 1,
                _ => {}
            }
        }
        n
    };
    if stars > MAX_WILDCARD_STARS {
        return Err(PatternError::new(format!(
            "Rule is too complex - try using fewer wildcard characters or fewer repeating character sequences after a wildcard character (key {key})"
        )));
    }
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
        Value::Array(items) if !items.is_empty() => {
            let values = items
                .iter()
                .map(|v| {
                    scalar(v).ok_or_else(|| bad("anything-but values must be strings or numbers"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            // One type per list, as AWS requires.
            let strings = values.iter().filter(|l| matches!(l, Literal::Str(_))).count();
            if strings != 0 && strings != values.len() {
                return Err(bad(
                    "Inside anything but list, start|null|boolean is not supported; the values must all be strings or all numbers",
                ));
            }
            Ok(Excluded::Values(values))
        }
        Value::Object(m) if m.len() == 1 => {
            let (name, v) = m.iter().next().ok_or_else(|| bad("Empty anything-but"))?;
            // A string, or a non-empty array of strings; never an empty string.
            let strings = || -> Result<Vec<String>, PatternError> {
                let list: Vec<String> = match v {
                    Value::String(x) => vec![x.clone()],
                    Value::Array(xs) if !xs.is_empty() => xs
                        .iter()
                        .map(|x| {
                            x.as_str().map(str::to_string).ok_or_else(|| {
                                bad(&format!("anything-but {name} values must be strings"))
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    _ => {
                        return Err(bad(&format!(
                            "The value of anything-but {name} must be a string or an array of strings"
                        )))
                    }
                };
                if matches!(name.as_str(), "prefix" | "suffix") && list.iter().any(String::is_empty) {
                    return Err(bad(&format!(
                        "Null {name} is not allowed inside anything-but"
                    )));
                }
                Ok(list)
            };
            match name.as_str() {
                "prefix" => Ok(Excluded::Prefix(strings()?)),
                "suffix" => Ok(Excluded::Suffix(strings()?)),
                "wildcard" if d.has_wildcard() => Ok(Excluded::Wildcard(
                    strings()?
                        .iter()
                        .map(|w| wildcard(w, key))
                        .collect::<Result<_, _>>()?,
                )),
                "equals-ignore-case" if d.has_wildcard() => Ok(Excluded::EqualsIgnoreCase(
                    strings()?.iter().map(|x| x.to_lowercase()).collect(),
                )),
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

/// Combinations of values, as SNS counts them: the product over keys of their value counts,
/// each multiplied by the key's nesting level (1 at the top: AWS's example, 4 values at level 3,
/// 3 at level 2 and 3 at level 1, makes 12 × 6 × 3 = 216), an `$or` group contributing the sum
/// of its alternatives' (the policy split into one per alternative, summed).
fn combinations(node: &Node, level: usize) -> usize {
    let mut total: usize = 1;
    for (_, f) in &node.fields {
        let n = match f {
            Field::Leaf(ms) => ms.len().saturating_mul(level),
            Field::Nested(n) => combinations(n, level + 1),
        };
        total = total.saturating_mul(n);
    }
    for g in &node.ors {
        let sum = g
            .iter()
            .map(|alt| combinations(alt, level))
            .fold(0usize, usize::saturating_add);
        total = total.saturating_mul(sum);
    }
    total
}

/// The alternatives of `node` (keys under `prefix`: dot-joined keys of the enclosing pattern
/// objects, with a trailing dot), each a list of conditions, binding ones first; `None` past
/// [`MAX_BRANCHES`].
///
/// Keys are paths, as AWS's matcher (event-ruler) flattens both sides: a pattern key
/// `"state.status"` and a nested `{"state": {"status": …}}` name the same field, whichever way
/// the event spells it.
fn branches(node: &Node, prefix: &str) -> Option<Vec<Vec<Cond>>> {
    let mut own = Vec::new();
    let mut out: Vec<Vec<Cond>> = vec![Vec::new()];
    for (key, field) in &node.fields {
        let path = format!("{prefix}{key}");
        match field {
            Field::Leaf(ms) => own.push(Cond {
                path,
                absence: ms.contains(&Matcher::Exists(false)),
                matchers: ms.clone(),
            }),
            Field::Nested(n) => out = product(out, branches(n, &format!("{path}."))?)?,
        }
    }
    for group in &node.ors {
        let mut alternatives = Vec::new();
        for alt in group {
            alternatives.extend(branches(alt, prefix)?);
            if alternatives.len() > MAX_BRANCHES {
                return None;
            }
        }
        out = product(out, alternatives)?;
    }
    for b in &mut out {
        b.extend(own.iter().cloned());
        b.sort_by_key(|c| c.absence);
    }
    Some(out)
}

/// Every branch of `a` joined with every branch of `b`.
fn product(a: Vec<Vec<Cond>>, b: Vec<Vec<Cond>>) -> Option<Vec<Vec<Cond>>> {
    if a.len().saturating_mul(b.len()) > MAX_BRANCHES {
        return None;
    }
    Some(
        a.iter()
            .flat_map(|x| {
                b.iter().map(move |y| {
                    let mut j = x.clone();
                    j.extend(y.iter().cloned());
                    j
                })
            })
            .collect(),
    )
}

/// A leaf value of the message, and the array elements on its way: (array, index) pairs, the
/// array named by its address.
type Found<'a> = (&'a Value, Vec<(usize, usize)>);

/// Whether `branch[i..]` holds, given the array elements already `chosen` by earlier
/// conditions. Fields matched inside arrays of objects must come from the same element of each
/// array they share, as in AWS ("array consistency"): a pattern `{"a": {"x": [1], "y": [2]}}`
/// does not match `{"a": [{"x": 1, "y": 3}, {"x": 4, "y": 2}]}`.
fn branch_matches(
    branch: &[Cond],
    i: usize,
    message: Option<&Value>,
    chosen: &mut Vec<(usize, usize)>,
    d: Dialect,
    budget: &mut u32,
) -> bool {
    let Some(c) = branch.get(i) else {
        return true;
    };
    let mut values: Vec<Found<'_>> = Vec::new();
    if let Some(m) = message {
        values_at(m, &c.path, &mut Vec::new(), &mut values, 0);
    }
    // The values this condition may use, given the array elements chosen so far (none chosen,
    // the common case of a message without arrays of objects: all of them).
    if !chosen.is_empty() {
        values.retain(|(_, coords)| {
            coords
                .iter()
                .all(|(a, n)| chosen.iter().all(|(b, m)| a != b || n == m))
        });
    }
    let usable = &values;
    let present = if d.is_sns() {
        // SNS: the key must have a non-null, non-empty value.
        usable
            .iter()
            .any(|(v, _)| !v.is_null() && v.as_str().is_none_or(|s| !s.is_empty()))
    } else {
        // EventBridge: a leaf value, `null` included; an empty array or an object is none.
        !usable.is_empty()
    };
    for m in &c.matchers {
        match m {
            Matcher::Exists(false) if !present => {
                if branch_matches(branch, i + 1, message, chosen, d, budget) {
                    return true;
                }
            }
            Matcher::Exists(false) => {}
            _ => {
                for (v, coords) in usable {
                    if *budget == 0 {
                        return false;
                    }
                    *budget -= 1;
                    let ok = match m {
                        Matcher::Exists(_) => {
                            !d.is_sns()
                                || (!v.is_null() && v.as_str().is_none_or(|s| !s.is_empty()))
                        }
                        m => m.accepts(v),
                    };
                    if !ok {
                        continue;
                    }
                    let before = chosen.len();
                    chosen.extend(coords.iter().copied());
                    let rest = branch_matches(branch, i + 1, message, chosen, d, budget);
                    chosen.truncate(before);
                    if rest {
                        return true;
                    }
                }
            }
        }
    }
    false
}

/// Deepest nesting of the message followed when looking a path up (serde_json's own parser
/// limit is 128; this keeps the walk bounded whatever built the value).
const MAX_MESSAGE_DEPTH: usize = 128;

/// Collects the leaf values (strings, numbers, booleans, `null`; array elements one by one) at
/// the dot-joined `path` of `v`, each with the array elements passed on the way. An object key
/// may itself hold dots: `path` is matched against each key as a whole or as its first segments.
fn values_at<'a>(
    v: &'a Value,
    path: &str,
    coords: &mut Vec<(usize, usize)>,
    out: &mut Vec<Found<'a>>,
    depth: usize,
) {
    if depth > MAX_MESSAGE_DEPTH {
        return;
    }
    match v {
        Value::Array(items) => {
            let id = items.as_ptr() as usize;
            for (n, item) in items.iter().enumerate() {
                coords.push((id, n));
                values_at(item, path, coords, out, depth + 1);
                coords.pop();
            }
        }
        Value::Object(map) => {
            // The whole path as one key, then each split at a dot: `a.b.c` is looked up as
            // "a.b.c", then "a" + "b.c", then "a.b" + "c" (a lookup per dot, not a scan of keys).
            if let Some(child) = map.get(path) {
                leaves(child, coords, out, depth + 1);
            }
            for (at, _) in path.match_indices('.') {
                if let Some(child) = map.get(&path[..at]) {
                    values_at(child, &path[at + 1..], coords, out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// The leaf values of a field's value: itself, or the elements of an array (nested arrays
/// flattened); objects are not leaves.
fn leaves<'a>(v: &'a Value, coords: &[(usize, usize)], out: &mut Vec<Found<'a>>, depth: usize) {
    match v {
        Value::Array(items) if depth <= MAX_MESSAGE_DEPTH => {
            for item in items {
                leaves(item, coords, out, depth + 1);
            }
        }
        Value::Array(_) | Value::Object(_) => {}
        _ => out.push((v, coords.to_vec())),
    }
}
