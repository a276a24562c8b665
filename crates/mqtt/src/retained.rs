//! Retained messages by topic: set, replace, clear, and find every retained message a new
//! subscription's filter matches (MQTT §3.3.1.3).
//!
//! A trie over topic names, walked by the filter: a literal level follows one child, `+` every child,
//! `#` the whole subtree. A filter starting with a wildcard skips topics starting with `$` (§4.7.2).

use std::collections::HashMap;

#[derive(Debug)]
struct Node<V> {
    children: HashMap<Box<str>, Node<V>>,
    value: Option<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: HashMap::new(),
            value: None,
        }
    }
}

/// Retained messages keyed by topic name.
#[derive(Debug)]
pub struct RetainedTree<V> {
    root: Node<V>,
    len: usize,
}

impl<V> Default for RetainedTree<V> {
    fn default() -> Self {
        RetainedTree {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<V> RetainedTree<V> {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Retains `value` for `topic` (a valid topic name), returning the message it replaces.
    pub fn set(&mut self, topic: &str, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        let old = node.value.replace(value);
        self.len += usize::from(old.is_none());
        old
    }

    /// Clears the retained message of `topic` (a PUBLISH with an empty retained payload).
    pub fn clear(&mut self, topic: &str) -> Option<V> {
        let levels: Vec<&str> = topic.split('/').collect();
        let old = clear_at(&mut self.root, &levels);
        self.len -= usize::from(old.is_some());
        old
    }

    /// The retained message of exactly `topic`.
    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.value.as_ref()
    }

    /// Calls `f` with (topic, message) for every retained message `filter` (a valid, non-shared
    /// filter) matches.
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&str, &V)) {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut path = String::new();
        walk(&self.root, &levels, true, &mut path, &mut f);
    }
}

fn push_level(path: &mut String, level: &str, top: bool) -> usize {
    let len = path.len();
    if !top {
        path.push('/');
    }
    path.push_str(level);
    len
}

fn walk<V>(
    node: &Node<V>,
    levels: &[&str],
    top: bool,
    path: &mut String,
    f: &mut impl FnMut(&str, &V),
) {
    let Some((level, rest)) = levels.split_first() else {
        if let Some(v) = &node.value {
            f(path, v);
        }
        return;
    };
    match *level {
        "#" => {
            // `a/#` also matches `a` itself.
            if !top {
                if let Some(v) = &node.value {
                    f(path, v);
                }
            }
            for (name, child) in &node.children {
                if top && name.starts_with('$') {
                    continue;
                }
                let mark = push_level(path, name, top);
                every(child, path, f);
                path.truncate(mark);
            }
        }
        "+" => {
            for (name, child) in &node.children {
                if top && name.starts_with('$') {
                    continue;
                }
                let mark = push_level(path, name, top);
                walk(child, rest, false, path, f);
                path.truncate(mark);
            }
        }
        literal => {
            if let Some(child) = node.children.get(literal) {
                let mark = push_level(path, literal, top);
                walk(child, rest, false, path, f);
                path.truncate(mark);
            }
        }
    }
}

fn every<V>(node: &Node<V>, path: &mut String, f: &mut impl FnMut(&str, &V)) {
    if let Some(v) = &node.value {
        f(path, v);
    }
    for (name, child) in &node.children {
        let mark = push_level(path, name, false);
        every(child, path, f);
        path.truncate(mark);
    }
}

fn clear_at<V>(node: &mut Node<V>, levels: &[&str]) -> Option<V> {
    let Some((level, rest)) = levels.split_first() else {
        return node.value.take();
    };
    let child = node.children.get_mut(*level)?;
    let old = clear_at(child, rest);
    if child.value.is_none() && child.children.is_empty() {
        node.children.remove(*level);
    }
    old
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_codec::topic;
    use proptest::prelude::*;

    fn found(tree: &RetainedTree<u32>, filter: &str) -> Vec<(String, u32)> {
        let mut v = Vec::new();
        tree.for_each_match(filter, |t, x| v.push((t.to_string(), *x)));
        v.sort();
        v
    }

    #[test]
    fn set_replace_clear() {
        let mut tree = RetainedTree::new();
        assert_eq!(tree.set("a/b", 1), None);
        assert_eq!(tree.set("a/b", 2), Some(1));
        assert_eq!(tree.get("a/b"), Some(&2));
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.clear("a/b"), Some(2));
        assert_eq!(tree.clear("a/b"), None);
        assert!(tree.is_empty());
        assert!(tree.root.children.is_empty(), "cleared branches are pruned");
    }

    #[test]
    fn filters_find_their_topics() {
        let mut tree = RetainedTree::new();
        for (i, t) in [
            "sport",
            "sport/tennis",
            "sport/tennis/p1",
            "$SYS/uptime",
            "/x",
            "a//b",
        ]
        .iter()
        .enumerate()
        {
            tree.set(t, i as u32);
        }
        let topics = |f: &str| {
            found(&tree, f)
                .into_iter()
                .map(|(t, _)| t)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            topics("sport/#"),
            ["sport", "sport/tennis", "sport/tennis/p1"]
        );
        assert_eq!(topics("sport/+"), ["sport/tennis"]);
        assert_eq!(
            topics("#"),
            ["/x", "a//b", "sport", "sport/tennis", "sport/tennis/p1"]
        );
        assert_eq!(topics("$SYS/#"), ["$SYS/uptime"]);
        assert_eq!(topics("+/x"), ["/x"]);
        assert_eq!(topics("a/+/b"), ["a//b"]);
    }

    fn level() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("a"), Just("b"), Just(""), Just("$s")]
    }

    proptest! {
        /// The walk finds exactly the topics `topic::matches` accepts, each once.
        #[test]
        fn agrees_with_linear_matching(
            topics in proptest::collection::vec(proptest::collection::vec(level(), 1..4), 0..20),
            filter in (proptest::collection::vec(prop_oneof![level(), Just("+")], 0..3), any::<bool>()),
        ) {
            let mut tree = RetainedTree::new();
            let mut names: Vec<String> = topics.iter().map(|t| t.join("/")).collect();
            names.sort();
            names.dedup();
            for (i, t) in names.iter().enumerate() {
                tree.set(t, i as u32);
            }
            let mut f = filter.0.join("/");
            if filter.1 {
                f = if f.is_empty() { "#".into() } else { format!("{f}/#") };
            }
            prop_assume!(!f.is_empty());
            let got: Vec<String> = found(&tree, &f).into_iter().map(|(t, _)| t).collect();
            let expected: Vec<String> = names.iter().filter(|t| topic::matches(&f, t)).cloned().collect();
            prop_assert_eq!(got, expected, "filter {:?}", f);
        }
    }
}
