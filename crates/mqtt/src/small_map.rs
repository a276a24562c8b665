//! A map that stays a short list while it is small: most of the broker's maps hold one or two
//! entries per client (a filter's subscribers, a session's subscriptions), and a hash table's
//! smallest allocation is several times one entry (issue 29: ~400 bytes per held client). Past
//! [`FEW`] entries it becomes a hash map, so a large one is still found in constant time.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Entries past which the list becomes a hash map.
pub(crate) const FEW: usize = 8;

/// A list while short, a hash map past [`FEW`]. Iteration order is unspecified, as a hash map's.
#[derive(Debug, Clone)]
pub(crate) enum SmallMap<K, V> {
    /// A boxed slice, not a `Vec`: it grows one entry at a time anyway, and without the
    /// capacity word the map is 16 bytes, not 24 (a tree node and a session hold one each).
    Few(Box<[(K, V)]>),
    // Boxed: the map (48 bytes with its hasher's keys) would double the size of every small one.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<K, V>>),
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap::Few(Box::default())
    }
}

impl<K: Eq + Hash, V> SmallMap<K, V> {
    /// Adds or replaces; returns the value replaced.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            SmallMap::Few(list) => {
                if let Some(slot) = list.iter_mut().find(|(k, _)| *k == key) {
                    return Some(std::mem::replace(&mut slot.1, value));
                }
                if list.len() < FEW {
                    // Grow one at a time: a list of one takes one entry's room.
                    let mut grown = std::mem::take(list).into_vec();
                    grown.reserve_exact(1);
                    grown.push((key, value));
                    *list = grown.into_boxed_slice();
                    return None;
                }
                let mut map: HashMap<K, V> = std::mem::take(list).into_vec().into_iter().collect();
                map.insert(key, value);
                *self = SmallMap::Many(Box::new(map));
                None
            }
            SmallMap::Many(map) => map.insert(key, value),
        }
    }

    /// Removes `key`; returns its value. A map that shrank to half of [`FEW`] is a list again.
    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Removes `key`; returns the key as it was stored, and its value.
    pub(crate) fn remove_entry<Q>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallMap::Few(list) => {
                let at = list.iter().position(|(k, _)| k.borrow() == key)?;
                let mut shrunk = std::mem::take(list).into_vec();
                let entry = shrunk.swap_remove(at);
                *list = shrunk.into_boxed_slice();
                Some(entry)
            }
            SmallMap::Many(map) => {
                let entry = map.remove_entry(key)?;
                if map.len() <= FEW / 2 {
                    let mut list = Vec::with_capacity(map.len());
                    list.extend(map.drain());
                    *self = SmallMap::Few(list.into_boxed_slice());
                }
                Some(entry)
            }
        }
    }

    /// The value of `key`.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallMap::Few(list) => list.iter().find(|(k, _)| k.borrow() == key).map(|(_, v)| v),
            SmallMap::Many(map) => map.get(key),
        }
    }

    /// True when `key` is there.
    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.get(key).is_some()
    }
}

impl<K, V> SmallMap<K, V> {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        match self {
            SmallMap::Few(list) => list.len(),
            SmallMap::Many(map) => map.len(),
        }
    }

    /// True when there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry.
    pub(crate) fn iter(&self) -> Iter<'_, K, V> {
        match self {
            SmallMap::Few(list) => Iter::Few(list.iter()),
            SmallMap::Many(map) => Iter::Many(map.iter()),
        }
    }

    /// Every key.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }
}

/// The entries of a [`SmallMap`].
pub(crate) enum Iter<'a, K, V> {
    Few(std::slice::Iter<'a, (K, V)>),
    Many(std::collections::hash_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Few(it) => it.next().map(|(k, v)| (k, v)),
            Iter::Many(it) => it.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_into_a_map_and_back_without_losing_an_entry() {
        let n = FEW as u32 * 3;
        let mut m: SmallMap<String, u32> = SmallMap::default();
        for k in 0..n {
            assert_eq!(m.insert(k.to_string(), k), None);
            assert_eq!(m.insert(k.to_string(), k + 100), Some(k));
            assert_eq!(m.len(), k as usize + 1);
            assert!(matches!(m, SmallMap::Few(_)) == (k < FEW as u32));
        }
        let mut keys: Vec<u32> = (0..n).collect();
        keys.sort_by_key(|k| (k * 7) % n);
        for (gone, k) in keys.iter().enumerate() {
            assert_eq!(m.get(k.to_string().as_str()), Some(&(k + 100)));
            assert_eq!(m.remove(k.to_string().as_str()), Some(k + 100));
            assert_eq!(m.remove(k.to_string().as_str()), None);
            assert!(!m.contains_key(k.to_string().as_str()));
            let mut left: Vec<u32> = m.keys().map(|k| k.parse().unwrap_or(u32::MAX)).collect();
            left.sort_unstable();
            let mut want = keys[gone + 1..].to_vec();
            want.sort_unstable();
            assert_eq!(left, want);
            assert_eq!(m.iter().count(), want.len());
        }
        assert!(m.is_empty());
        assert!(matches!(m, SmallMap::Few(_)));
    }

    /// A tree node and a session hold one each (issue 29).
    #[test]
    fn a_small_map_is_two_words() {
        assert_eq!(
            std::mem::size_of::<SmallMap<std::sync::Arc<str>, u64>>(),
            16
        );
    }
}
