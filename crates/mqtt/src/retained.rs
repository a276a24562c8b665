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

    /// Clears the retained message of `topic` (a PUBLISH with an empty retained payload). Branches
    /// left empty are pruned.
    pub fn clear(&mut self, topic: &str) -> Option<V> {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut node = &mut self.root;
        for level in &levels {
            node = node.children.get_mut(*level)?;
        }
        let old = node.value.take()?;
        self.len -= 1;
        // The highest node on the path whose whole branch is now empty goes, with everything below.
        let mut chain: Vec<&Node<V>> = Vec::with_capacity(levels.len() + 1);
        let mut at = &self.root;
        chain.push(at);
        for level in &levels {
            match at.children.get(*level) {
                Some(next) => {
                    at = next;
                    chain.push(at);
                }
                None => return Some(old),
            }
        }
        let mut cut = None;
        for depth in (1..chain.len()).rev() {
            let n = chain[depth];
            let allowed_children = usize::from(cut.is_some());
            if n.value.is_some() || n.children.len() != allowed_children {
                break;
            }
            cut = Some(depth);
        }
        if let Some(depth) = cut {
            let mut parent = &mut self.root;
            for level in &levels[..depth - 1] {
                match parent.children.get_mut(*level) {
                    Some(next) => parent = next,
                    None => return Some(old),
                }
            }
            if let Some(branch) = parent.children.remove(levels[depth - 1]) {
                free(branch);
            }
        }
        Some(old)
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
        // Depth-first with an explicit stack (topics and filters are as deep as clients make
        // them: no recursion). One topic buffer is shared: an entry names its level and the length
        // of its parent's topic, and the stack order guarantees the buffer still starts with it.
        struct Entry<'a, V> {
            node: &'a Node<V>,
            /// `Some(d)`: match `levels[d..]` below this node; `None`: everything below (after `#`).
            depth: Option<usize>,
            name: &'a str,
            parent_len: usize,
            /// The node is a first-level one (no `/` before its name), or the root (no name).
            first: bool,
            root: bool,
        }
        let mut path = String::new();
        let mut stack = vec![Entry {
            node: &self.root,
            depth: Some(0),
            name: "",
            parent_len: 0,
            first: false,
            root: true,
        }];
        while let Some(e) = stack.pop() {
            path.truncate(e.parent_len);
            if !e.root {
                if !e.first {
                    path.push('/');
                }
                path.push_str(e.name);
            }
            let len = path.len();
            let child = |node, depth, name, first| Entry {
                node,
                depth,
                name,
                parent_len: len,
                first,
                root: false,
            };
            let Some(depth) = e.depth else {
                if let Some(v) = &e.node.value {
                    f(&path, v);
                }
                for (name, node) in &e.node.children {
                    stack.push(child(node, None, name, false));
                }
                continue;
            };
            let top = depth == 0;
            let Some(level) = levels.get(depth) else {
                if let Some(v) = &e.node.value {
                    f(&path, v);
                }
                continue;
            };
            match *level {
                "#" => {
                    // `a/#` also matches `a` itself.
                    if !top {
                        if let Some(v) = &e.node.value {
                            f(&path, v);
                        }
                    }
                    for (name, node) in &e.node.children {
                        if top && name.starts_with('$') {
                            continue;
                        }
                        stack.push(child(node, None, name, top));
                    }
                }
                "+" => {
                    for (name, node) in &e.node.children {
                        if top && name.starts_with('$') {
                            continue;
                        }
                        stack.push(child(node, Some(depth + 1), name, top));
                    }
                }
                literal => {
                    if let Some((name, node)) = e.node.children.get_key_value(literal) {
                        stack.push(child(node, Some(depth + 1), name, top));
                    }
                }
            }
        }
    }
}

/// Frees a branch node by node: the default drop would recurse once per level.
fn free<V>(branch: Node<V>) {
    let mut stack = vec![branch];
    while let Some(mut node) = stack.pop() {
        stack.extend(node.children.drain().map(|(_, n)| n));
    }
}

impl<V> Drop for RetainedTree<V> {
    fn drop(&mut self) {
        free(std::mem::take(&mut self.root));
    }
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
    fn deep_topics_are_walked_cleared_and_dropped_without_recursion() {
        let deep = vec!["a"; 100_000].join("/");
        let mut tree = RetainedTree::new();
        tree.set(&deep, 1u32);
        tree.set("a/b", 2u32);
        assert_eq!(found(&tree, "#").len(), 2);
        assert_eq!(found(&tree, &deep), [(deep.clone(), 1)]);
        assert_eq!(tree.clear(&deep), Some(1));
        assert_eq!(found(&tree, "#"), [("a/b".to_string(), 2)]);
        tree.set(&deep, 3u32);
        drop(tree);
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
