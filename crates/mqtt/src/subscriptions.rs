//! The subscription tree: which subscriptions match a topic, fast with many thousands of filters.
//!
//! A trie keyed by topic level. Matching walks the topic's levels once, following the exact child, the
//! `+` child and collecting `#` entries on the way, so its cost depends on the topic's depth and the
//! matches, not on the number of subscriptions. Rules (MQTT §4.7): `#` also matches the parent level
//! (`a/#` matches `a`), `+` matches exactly one level (possibly empty), and topics starting with `$`
//! are not matched by a filter whose first level is a wildcard.
//!
//! Entries are keyed (`K`, e.g. client id and share group) so a client's subscription to a filter can
//! be replaced or removed, with values (`V`, e.g. subscription options) stored alongside.
//!
//! Most filters have one subscriber (a device's own command topic), so a node keeps its entries in
//! a [`SmallMap`]: a short list, a hash map only past a few entries.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::OnceLock;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use crate::small_map::SmallMap;
#[cfg(test)]
use crate::small_map::FEW;

#[derive(Debug)]
struct Node<K, V> {
    children: Children<K, V>,
    plus: Option<Box<Node<K, V>>>,
    /// Subscriptions whose filter ends here.
    exact: SmallMap<K, V>,
    /// Subscriptions whose filter is this node's path followed by `/#`.
    multi: Boxed<K, V>,
}

/// A [`SmallMap`] boxed when its first entry comes and dropped with its last: most nodes have
/// no `/#` subscription, and a node (one per distinct topic level subscribed to, so one per
/// client for a client's own topic) is 16 bytes smaller (issue 29).
#[derive(Debug)]
struct Boxed<K, V>(Option<Box<SmallMap<K, V>>>);

impl<K, V> Boxed<K, V> {
    fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|m| m.is_empty())
    }

    fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().flat_map(|m| m.iter())
    }
}

impl<K: Eq + Hash, V> Boxed<K, V> {
    fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.0.get_or_insert_with(Box::default).insert(key, value)
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let map = self.0.as_mut()?;
        let removed = map.remove(key);
        if map.is_empty() {
            self.0 = None;
        }
        removed
    }
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node {
            children: Children(None),
            plus: None,
            exact: SmallMap::default(),
            multi: Boxed(None),
        }
    }
}

impl<K, V> Node<K, V> {
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.multi.is_empty()
    }
}

/// Subscriptions by topic filter.
#[derive(Debug)]
pub struct SubscriptionTree<K, V> {
    root: Node<K, V>,
    len: usize,
}

impl<K, V> Default for SubscriptionTree<K, V> {
    fn default() -> Self {
        SubscriptionTree {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<K: Eq + Hash, V> SubscriptionTree<K, V> {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (filter, key) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces the entry of `key` for `filter` (a valid, non-shared topic filter); returns the
    /// value it replaced.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                let old = node.multi.insert(key, value);
                self.len += usize::from(old.is_none());
                return old;
            }
            node = match level {
                "+" => node.plus.get_or_insert_with(Box::default),
                l => node.children.entry(l),
            };
        }
        let old = node.exact.insert(key, value);
        self.len += usize::from(old.is_none());
        old
    }

    /// Removes the entry of `key` for `filter`; returns its value. Branches left empty are pruned.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let levels: Vec<&str> = filter.split('/').collect();
        let (last, path) = match levels.split_last() {
            Some((&"#", path)) => (Level::Multi, path),
            _ => (Level::Exact, &levels[..]),
        };
        // Down to the node that holds the entry (a loop: the filter's depth is the client's choice).
        let mut node = &mut self.root;
        for level in path {
            node = node.child_mut(level)?;
        }
        let removed = match last {
            Level::Multi => node.multi.remove(key),
            Level::Exact => node.exact.remove(key),
        }?;
        self.len -= 1;
        // Prune: find the highest node on the path whose whole remaining branch is now empty, and cut
        // it from its parent.
        let mut chain: Vec<&Node<K, V>> = Vec::with_capacity(path.len() + 1);
        let mut at = &self.root;
        chain.push(at);
        for level in path {
            match at.child(level) {
                Some(next) => {
                    at = next;
                    chain.push(at);
                }
                None => return Some(removed),
            }
        }
        // `cut` is the depth of the first node that can go with everything below it.
        let mut cut = None;
        for depth in (1..chain.len()).rev() {
            let n = chain[depth];
            let only_path_child = n.exact.is_empty()
                && n.multi.is_empty()
                && match cut {
                    // The deepest node: nothing at all below it.
                    None => n.children.is_empty() && n.plus.is_none(),
                    // An inner node: its only child is the one being cut.
                    Some(_) => n.children.len() + usize::from(n.plus.is_some()) == 1,
                };
            if !only_path_child {
                break;
            }
            cut = Some(depth);
        }
        if let Some(depth) = cut {
            let mut parent = &mut self.root;
            for level in &path[..depth - 1] {
                match parent.child_mut(level) {
                    Some(next) => parent = next,
                    None => return Some(removed),
                }
            }
            parent.remove_child(path[depth - 1]);
        }
        Some(removed)
    }

    /// Calls `f` for every entry whose filter matches `topic` (a valid topic name). Returns how
    /// many filters had entries: with one, no key was seen twice.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(&'a K, &'a V)) -> usize {
        let mut filters = 0;
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar_topic = topic.starts_with('$');
        // Depth-first with an explicit stack of (node, levels consumed): the topic's depth is the
        // client's choice, so no recursion.
        let mut stack: Vec<(&'a Node<K, V>, usize)> = vec![(&self.root, 0)];
        while let Some((node, depth)) = stack.pop() {
            // §4.7.2: a topic starting with `$` is not matched by a filter starting with a wildcard.
            let wildcards_allowed = !(depth == 0 && dollar_topic);
            if wildcards_allowed && !node.multi.is_empty() {
                filters += 1;
                node.multi.iter().for_each(|(k, v)| f(k, v));
            }
            let Some(level) = levels.get(depth) else {
                filters += usize::from(!node.exact.is_empty());
                node.exact.iter().for_each(|(k, v)| f(k, v));
                continue;
            };
            if wildcards_allowed {
                if let Some(plus) = &node.plus {
                    stack.push((plus, depth + 1));
                }
            }
            if let Some(child) = node.children.get(level) {
                stack.push((child, depth + 1));
            }
        }
        filters
    }

    /// The entries whose filter matches `topic`.
    pub fn matches(&self, topic: &str) -> Vec<(&K, &V)> {
        let mut out = Vec::new();
        self.for_each_match(topic, |k, v| out.push((k, v)));
        out
    }
}

/// A node's children by level name. Boxed when the first arrives: most nodes are leaves, and an
/// empty map is 48 bytes in every node, in its parent's table too (issue 29: a client's own topic
/// is a leaf, and these bytes were paid per client).
///
/// A table of pointers, each child (its name and node) in an allocation of its own: a table
/// grows by doubling, so each of its slots is paid for up to twice over; with a child inline a
/// slot was 57 bytes, with a pointer it is 9 (a topic with 10,000 clients' own topics under it
/// held ~90–190 bytes of table per client, now ~15–30 and the child's 64-byte allocation).
#[derive(Debug)]
struct Children<K, V>(Option<Box<ChildMap<K, V>>>);

type ChildMap<K, V> = HashTable<Box<Child<K, V>>>;

/// A child node and its level's name.
#[derive(Debug)]
struct Child<K, V> {
    name: Box<str>,
    node: Node<K, V>,
}

/// Level names hashed with the process's random keys (SipHash: filters are the clients' choice,
/// and a table must not be flooded with one bucket's names).
fn hash(level: &str) -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new).hash_one(level)
}

impl<K, V> Children<K, V> {
    fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|m| m.is_empty())
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    fn get(&self, level: &str) -> Option<&Node<K, V>> {
        let child = self.0.as_ref()?.find(hash(level), |c| *c.name == *level)?;
        Some(&child.node)
    }

    fn get_mut(&mut self, level: &str) -> Option<&mut Node<K, V>> {
        let child = self
            .0
            .as_mut()?
            .find_mut(hash(level), |c| *c.name == *level)?;
        Some(&mut child.node)
    }

    /// The child named `level`, made if missing.
    fn entry(&mut self, level: &str) -> &mut Node<K, V> {
        let map = self.0.get_or_insert_with(Default::default);
        let child = match map.entry(hash(level), |c| *c.name == *level, |c| hash(&c.name)) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e
                .insert(Box::new(Child {
                    name: level.into(),
                    node: Node::default(),
                }))
                .into_mut(),
        };
        &mut child.node
    }

    /// Takes the child named `level` out; the map goes when its last child does.
    fn remove(&mut self, level: &str) -> Option<Node<K, V>> {
        let map = self.0.as_mut()?;
        let child = match map.find_entry(hash(level), |c| *c.name == *level) {
            Ok(e) => Some(e.remove().0.node),
            Err(_) => None,
        };
        if map.is_empty() {
            self.0 = None;
        }
        child
    }
}

enum Level {
    Exact,
    Multi,
}

impl<K, V> Node<K, V> {
    fn child(&self, level: &str) -> Option<&Node<K, V>> {
        match level {
            "+" => self.plus.as_deref(),
            l => self.children.get(l),
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<K, V>> {
        match level {
            "+" => self.plus.as_deref_mut(),
            l => self.children.get_mut(l),
        }
    }

    /// Cuts a child off, freeing its branch without recursion.
    fn remove_child(&mut self, level: &str) {
        let branch = match level {
            "+" => self.plus.take().map(|b| *b),
            l => self.children.remove(l),
        };
        if let Some(branch) = branch {
            let mut stack = vec![branch];
            while let Some(mut node) = stack.pop() {
                node.drain_into(&mut stack);
            }
        }
    }

    /// Moves every child onto `stack` (for an iterative drop).
    fn drain_into(&mut self, stack: &mut Vec<Node<K, V>>) {
        if let Some(children) = self.children.0.take() {
            stack.extend(children.into_iter().map(|c| c.node));
        }
        if let Some(plus) = self.plus.take() {
            stack.push(*plus);
        }
    }
}

impl<K, V> Drop for SubscriptionTree<K, V> {
    /// Frees the nodes one by one: the default drop would recurse once per level.
    fn drop(&mut self) {
        let mut stack = Vec::new();
        self.root.drain_into(&mut stack);
        while let Some(mut node) = stack.pop() {
            node.drain_into(&mut stack);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_codec::topic;
    use proptest::prelude::*;

    fn matched<V>(tree: &SubscriptionTree<u32, V>, t: &str) -> Vec<u32> {
        let mut v: Vec<u32> = tree.matches(t).into_iter().map(|(k, _)| *k).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn spec_examples() {
        let mut tree = SubscriptionTree::new();
        let filters = [
            "sport/#",
            "sport/tennis/+",
            "+/+",
            "#",
            "$SYS/#",
            "+/monitor/Clients",
            "/+",
            "a/b",
        ];
        for (i, f) in filters.iter().enumerate() {
            tree.insert(f, i as u32, ());
        }
        assert_eq!(matched(&tree, "sport"), [0, 3]);
        assert_eq!(matched(&tree, "sport/tennis/player1"), [0, 1, 3]);
        assert_eq!(matched(&tree, "sport/tennis"), [0, 2, 3]);
        assert_eq!(matched(&tree, "$SYS/monitor/Clients"), [4]);
        assert_eq!(matched(&tree, "/finance"), [2, 3, 6]);
        assert_eq!(matched(&tree, "a/b"), [2, 3, 7]);
    }

    #[test]
    fn deep_filters_are_walked_removed_and_dropped_without_recursion() {
        let deep = vec!["a"; 100_000].join("/");
        let mut tree = SubscriptionTree::new();
        tree.insert(&deep, 1u32, ());
        tree.insert(&format!("{deep}/#"), 2u32, ());
        tree.insert("a/+/a", 3u32, ());
        assert_eq!(matched(&tree, &deep), [1, 2]);
        assert_eq!(tree.remove(&deep, &1), Some(()));
        assert_eq!(tree.remove(&format!("{deep}/#"), &2), Some(()));
        assert_eq!(matched(&tree, "a/b/a"), [3]);
        tree.insert(&deep, 4u32, ());
        drop(tree);
    }

    #[test]
    fn many_subscribers_of_one_filter_grow_into_a_map_and_back() {
        let n = FEW as u32 * 3;
        let mut tree = SubscriptionTree::new();
        for k in 0..n {
            assert_eq!(tree.insert("a/b", k, k), None);
            assert_eq!(tree.insert("a/#", 1000 + k, k), None);
            // Replacing keeps one entry per key, list or map.
            assert_eq!(tree.insert("a/b", k, k + 100), Some(k));
            assert_eq!(tree.insert("a/b", k, k), Some(k + 100));
            assert_eq!(matched(&tree, "a/b").len(), 2 * (k as usize + 1));
        }
        assert_eq!(tree.len(), 2 * n as usize);
        // Removed in an order that is neither insertion nor its reverse, down to nothing.
        let mut keys: Vec<u32> = (0..n).collect();
        keys.sort_by_key(|k| (k * 7) % n);
        for (gone, k) in keys.iter().enumerate() {
            assert_eq!(tree.remove("a/b", k), Some(*k));
            assert_eq!(tree.remove("a/b", k), None);
            // "a/b" matches the exact entries left and every `a/#` entry.
            let mut want: Vec<u32> = keys[gone + 1..].to_vec();
            want.extend((0..n).map(|k| 1000 + k));
            want.sort_unstable();
            assert_eq!(matched(&tree, "a/b"), want);
        }
        for k in 0..n {
            assert_eq!(tree.remove("a/#", &(1000 + k)), Some(k));
        }
        assert!(tree.is_empty());
        assert!(tree.root.is_empty());
    }

    #[test]
    fn pruning_keeps_shared_branches() {
        let mut tree = SubscriptionTree::new();
        tree.insert("a/b/c", 1u32, ());
        tree.insert("a/b", 2u32, ());
        tree.insert("a/+/c", 3u32, ());
        assert_eq!(tree.remove("a/b/c", &1), Some(()));
        assert_eq!(matched(&tree, "a/b"), [2]);
        assert_eq!(matched(&tree, "a/b/c"), [3]);
        assert_eq!(tree.remove("a/+/c", &3), Some(()));
        assert_eq!(tree.remove("a/b", &2), Some(()));
        assert!(tree.root.is_empty());
    }

    #[test]
    fn replace_and_remove_prune_the_tree() {
        let mut tree = SubscriptionTree::new();
        assert_eq!(tree.insert("a/+/c", 1u32, 1), None);
        assert_eq!(tree.insert("a/+/c", 1u32, 2), Some(1));
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.remove("a/+/c", &2), None);
        assert_eq!(tree.remove("a/+/c", &1), Some(2));
        assert!(tree.is_empty());
        assert!(tree.root.is_empty(), "empty branches are pruned");
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just(String::new()),
            Just("$x".to_string())
        ]
    }

    fn filter() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(prop_oneof![level(), Just("+".to_string())], 1..4),
            any::<bool>(),
        )
            .prop_map(|(levels, hash)| {
                let mut f = levels.join("/");
                if hash {
                    f.push_str("/#");
                }
                f
            })
    }

    proptest! {
        /// The tree finds exactly what testing every filter with `topic::matches` finds.
        #[test]
        fn agrees_with_linear_matching(
            filters in proptest::collection::vec(prop_oneof![filter(), Just("#".to_string())], 0..30),
            topics in proptest::collection::vec(proptest::collection::vec(level(), 1..5), 1..10),
        ) {
            let mut tree = SubscriptionTree::new();
            for (i, f) in filters.iter().enumerate() {
                tree.insert(f, i as u32, ());
            }
            for t in topics {
                let t = t.join("/");
                let mut expected: Vec<u32> = filters.iter().enumerate()
                    .filter(|(_, f)| topic::matches(f, &t)).map(|(i, _)| i as u32).collect();
                expected.sort_unstable();
                prop_assert_eq!(matched(&tree, &t), expected, "topic {:?}", t);
            }
            for (i, f) in filters.iter().enumerate() {
                prop_assert!(tree.remove(f, &(i as u32)).is_some());
            }
            prop_assert!(tree.is_empty());
        }
    }
}
