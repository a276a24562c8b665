//! Fuzzes the subscription and retained trees with sequences of insert, remove, match, set and
//! clear on topics and filters of any depth: nothing may panic or overflow the stack, and every
//! match must agree with testing each filter (or topic) one by one with `topic::matches`.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use outpost_codec::topic;
use outpost_mqtt::{RetainedTree, SubscriptionTree};

/// Reads a topic name (`filter = false`) or filter from the input: a level count (possibly very
/// deep), then one byte per level choosing among a few names and, for filters, the wildcards.
fn path(data: &mut &[u8], filter: bool) -> Option<String> {
    let (&n, rest) = data.split_first()?;
    *data = rest;
    let levels = if n >= 250 { usize::from(n) * 40 } else { usize::from(n % 6) + 1 };
    let mut out: Vec<&str> = Vec::with_capacity(levels);
    for i in 0..levels {
        let b = data.get(i % data.len().max(1)).copied().unwrap_or(0);
        out.push(match b % if filter { 7 } else { 5 } {
            0 => "a",
            1 => "b",
            2 => "",
            3 => "$s",
            4 => "c",
            5 => "+",
            _ => "#",
        });
    }
    let consumed = levels.min(data.len());
    *data = &data[consumed..];
    let mut p = out.join("/");
    if filter && !topic::is_valid_topic_filter(&p) {
        // Keep `#` only where it is allowed (the last level).
        p = p.replace('#', "+");
    }
    Some(p)
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let mut subs: SubscriptionTree<u8, ()> = SubscriptionTree::new();
    let mut filters: BTreeMap<(String, u8), ()> = BTreeMap::new();
    let mut retained: RetainedTree<u8> = RetainedTree::new();
    let mut topics: BTreeMap<String, u8> = BTreeMap::new();
    while let Some((&op, rest)) = data.split_first() {
        data = rest;
        let key = op >> 4;
        match op % 6 {
            0 => {
                let Some(f) = path(&mut data, true) else { break };
                subs.insert(&f, key, ());
                filters.insert((f, key), ());
            }
            1 => {
                let Some(f) = path(&mut data, true) else { break };
                let had = filters.remove(&(f.clone(), key)).is_some();
                assert_eq!(subs.remove(&f, &key).is_some(), had);
            }
            2 => {
                let Some(t) = path(&mut data, false) else { break };
                let mut got: Vec<u8> = Vec::new();
                subs.for_each_match(&t, |k, _| got.push(*k));
                let mut want: Vec<u8> = filters
                    .keys()
                    .filter(|(f, _)| topic::matches(f, &t))
                    .map(|(_, k)| *k)
                    .collect();
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "topic {t:?}");
            }
            3 => {
                let Some(t) = path(&mut data, false) else { break };
                retained.set(&t, key);
                topics.insert(t, key);
            }
            4 => {
                let Some(t) = path(&mut data, false) else { break };
                assert_eq!(retained.clear(&t), topics.remove(&t));
            }
            _ => {
                let Some(f) = path(&mut data, true) else { break };
                let mut got: Vec<(String, u8)> = Vec::new();
                retained.for_each_match(&f, |t, v| got.push((t.to_string(), *v)));
                got.sort();
                let want: Vec<(String, u8)> = topics
                    .iter()
                    .filter(|(t, _)| topic::matches(&f, t))
                    .map(|(t, v)| (t.clone(), *v))
                    .collect();
                assert_eq!(got, want, "filter {f:?}");
            }
        }
        assert_eq!(subs.len(), filters.len());
        assert_eq!(retained.len(), topics.len());
    }
});
