//! Recipients: who receives an application message, and with which QoS, flags and subscription
//! identifiers (MQTT §3.3.4, §3.8.3.1, §4.8). Pure logic over the two indexes; sessions and sockets are
//! the caller's.
//!
//! Rules implemented here:
//! - QoS is downgraded to the subscription's maximum.
//! - A client with several matching subscriptions gets the message once, at the highest QoS among
//!   them, with every subscription identifier (§3.3.4).
//! - No Local: a client's own messages skip its No Local subscriptions.
//! - Retain As Published keeps the RETAIN flag on forwarded messages; otherwise it is cleared.
//! - Shared subscriptions (`$share/<group>/<filter>`): each group gets one copy, handed to its members
//!   in turn, skipping members the caller says cannot take it (e.g. disconnected).
//! - Retained messages: sent on subscribe according to Retain Handling, never to shared
//!   subscriptions, always with RETAIN set. They live in their own [`RetainedTree`] (the engine
//!   guards it with its own lock, so a retained flood does not stall routing):
//!   [`Router::subscribe`] says which filter to look them up with, [`retained_matching`] finds them.
//!
//! Routing takes `&self` (the engine holds a read lock while it routes, many publishers at once);
//! only the shared-subscription cursors change, behind a small lock of their own.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use outpost_codec::topic::TopicFilter;
use outpost_codec::{QoS, ReasonCode, RetainHandling, SubscribeOptions};

use crate::{RetainedTree, SubscriptionTree};

/// Who holds a subscription: a client, alone or as a member of a share group. 24 bytes: a
/// topic many clients subscribe to keeps one per client in a table grown by doubling (issue 29).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SubKey {
    client: Arc<str>,
    /// A share group's member: boxed, as most subscriptions are not shared.
    group: Option<Box<Share>>,
}

/// A share group's member subscription: the group, and the filter as the member subscribed to it
/// (`$share/<group>/<filter>`: one copy per message goes to the group of that filter).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Share {
    group: Arc<str>,
    filter: Arc<str>,
}

/// Where a subscription to a parsed filter is kept: its share group's part of the key (the
/// group, and the whole filter `whole` gives) and the bare filter, the tree's path.
fn placed<'f>(
    parsed: TopicFilter<'f>,
    whole: impl FnOnce() -> Arc<str>,
) -> (Option<Box<Share>>, &'f str) {
    match parsed {
        TopicFilter::Plain(bare) => (None, bare),
        TopicFilter::Shared {
            group,
            filter: bare,
        } => (
            Some(Box::new(Share {
                group: group.into(),
                filter: whole(),
            })),
            bare,
        ),
    }
}

/// One subscription (the filter is where it is kept in the tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Its options.
    pub options: SubscribeOptions,
    /// MQTT 5 subscription identifier (1 to 268,435,455: never 0, so the option costs no room
    /// and a subscription is 8 bytes: issue 29).
    pub id: Option<NonZeroU32>,
}

impl Subscription {
    /// A subscription with these options and subscription identifier (`None` or 0: none).
    pub fn new(options: SubscribeOptions, id: Option<u32>) -> Self {
        Subscription {
            options,
            id: id.and_then(NonZeroU32::new),
        }
    }

    /// Its subscription identifier, as MQTT 5 carries it.
    pub fn identifier(&self) -> Option<u32> {
        self.id.map(NonZeroU32::get)
    }
}

/// A message to hand to one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The client.
    pub client: Arc<str>,
    /// QoS to deliver with.
    pub qos: QoS,
    /// RETAIN flag to deliver with.
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
}

/// A [`Target`] whose client's name is borrowed from the [`Router`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient<'a> {
    /// The client.
    pub client: &'a Arc<str>,
    /// QoS to deliver with.
    pub qos: QoS,
    /// RETAIN flag to deliver with.
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
}

impl Recipient<'_> {
    /// The target, owning its client's name.
    pub fn into_target(self) -> Target {
        Target {
            client: self.client.clone(),
            qos: self.qos,
            retain: self.retain,
            subscription_ids: self.subscription_ids,
        }
    }
}

/// A share group and the filter its members subscribed to: one copy per message goes to the group.
type GroupKey = (Arc<str>, Arc<str>);

/// A retained message and the QoS it was published with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained<M> {
    /// The message.
    pub message: M,
    /// Its QoS.
    pub qos: QoS,
}

/// What a SUBSCRIBE entry led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// Granted QoS (the requested maximum).
    pub granted: QoS,
    /// The filter (without any `$share/` prefix) whose retained messages are to be sent now, if
    /// Retain Handling asks for them; see [`retained_matching`].
    pub send_retained: Option<String>,
}

/// The retained messages a new subscription to `filter` (a valid filter without `$share/`)
/// receives: (topic, message, QoS to send with: the lower of the retained QoS and `max`).
pub fn retained_matching<M: Clone>(
    tree: &RetainedTree<Retained<M>>,
    filter: &str,
    max: QoS,
) -> Vec<(String, M, QoS)> {
    let mut out = Vec::new();
    tree.for_each_match(filter, |topic, r| {
        out.push((topic.to_string(), r.message.clone(), r.qos.min(max)));
    });
    out
}

/// The subscriptions of the whole broker.
#[derive(Debug, Default)]
pub struct Router {
    tree: SubscriptionTree<SubKey, Subscription>,
    /// Next member index per (group, filter), for handing shared messages out in turn.
    cursors: Mutex<HashMap<GroupKey, usize>>,
    /// How many recipients the last message had: the next one's list starts that large (a
    /// fan-out to a hundred sessions grew its list six times per message, a tenth of routing).
    last_fanout: AtomicUsize,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of subscriptions.
    pub fn subscriptions(&self) -> usize {
        self.tree.len()
    }

    /// Adds or replaces `client`'s subscription to `filter`. An invalid filter is refused with the
    /// reason code for its SUBACK entry.
    /// The client's and the filter's strings are shared with the session (an `Arc` each), not
    /// copied per subscription.
    pub fn subscribe(
        &mut self,
        client: impl Into<Arc<str>>,
        filter: impl Into<Arc<str>>,
        options: SubscribeOptions,
        id: Option<u32>,
    ) -> Result<Subscribed, ReasonCode> {
        let filter: Arc<str> = filter.into();
        let parsed = TopicFilter::parse(&filter).map_err(|_| ReasonCode::TopicFilterInvalid)?;
        let (group, bare) = placed(parsed, || filter.clone());
        let shared = group.is_some();
        let key = SubKey {
            client: client.into(),
            group,
        };
        let sub = Subscription::new(options, id);
        let existed = self.tree.insert(bare, key, sub).is_some();
        let send_retained = !shared
            && match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
        Ok(Subscribed {
            granted: options.qos,
            send_retained: send_retained.then(|| bare.to_string()),
        })
    }

    /// Removes `client`'s subscription to `filter` (as it was subscribed); false if there was none.
    pub fn unsubscribe(&mut self, client: &str, filter: &str) -> bool {
        let Ok(parsed) = TopicFilter::parse(filter) else {
            return false;
        };
        let (group, bare) = placed(parsed, || filter.into());
        self.tree
            .remove(
                bare,
                &SubKey {
                    client: client.into(),
                    group,
                },
            )
            .is_some()
    }

    /// Removes every subscription of `client` (a session that ended); returns how many there were.
    pub fn remove_client(&mut self, client: &str, filters: &[Arc<str>]) -> usize {
        filters
            .iter()
            .filter(|f| self.unsubscribe(client, f))
            .count()
    }

    /// Who receives a message published by `from` on `topic` with `qos` and `retain`.
    /// `available` tells whether a share-group member can take a message now.
    pub fn route(
        &self,
        from: &str,
        topic: &str,
        qos: QoS,
        retain: bool,
        available: impl Fn(&str) -> bool,
    ) -> Vec<Target> {
        self.route_borrowed(from, topic, qos, retain, available)
            .into_iter()
            .map(Recipient::into_target)
            .collect()
    }

    /// [`Router::route`] with each client's name borrowed from the router: a fan-out to many
    /// offline sessions is handed to the offline log while the router's lock is held, and
    /// counting each name up and down again was a tenth of its cost (issue 29).
    pub fn route_borrowed(
        &self,
        from: &str,
        topic: &str,
        qos: QoS,
        retain: bool,
        available: impl Fn(&str) -> bool,
    ) -> Vec<Recipient<'_>> {
        // One entry per matching subscription; a client with several overlapping subscriptions
        // is merged after sorting (cheaper than a map per message when fanning out to thousands).
        // With one matching filter no client can appear twice, and nothing is sorted.
        let hint = self.last_fanout.load(Ordering::Relaxed);
        let mut out: Vec<Recipient<'_>> = Vec::with_capacity(hint.min(MAX_FANOUT_HINT));
        let mut groups: HashMap<GroupKey, Vec<(&SubKey, &Subscription)>> = HashMap::new();
        let filters = self
            .tree
            .for_each_match(topic, |key, sub| match &key.group {
                None => {
                    if sub.options.no_local && &*key.client == from {
                        return;
                    }
                    out.push(Recipient {
                        client: &key.client,
                        qos: qos.min(sub.options.qos),
                        retain: retain && sub.options.retain_as_published,
                        subscription_ids: sub.identifier().into_iter().collect(),
                    });
                }
                Some(share) => groups
                    .entry((share.group.clone(), share.filter.clone()))
                    .or_default()
                    .push((key, sub)),
            });
        if filters > 1 {
            out.sort_by(|a, b| a.client.cmp(b.client));
            out.dedup_by(|later, kept| {
                if later.client != kept.client {
                    return false;
                }
                kept.qos = kept.qos.max(later.qos);
                kept.retain |= later.retain;
                kept.subscription_ids.append(&mut later.subscription_ids);
                true
            });
        }
        let mut cursors = if groups.is_empty() {
            None
        } else {
            Some(self.cursors.lock())
        };
        for (group_key, mut members) in groups {
            // A stable order, so "in turn" means the same thing on every call.
            members.sort_by(|a, b| a.0.client.cmp(&b.0.client));
            let Some(cursors) = cursors.as_mut() else {
                break;
            };
            let cursor = cursors.entry(group_key).or_insert(0);
            let n = members.len();
            let pick = (0..n)
                .map(|i| (*cursor + i) % n)
                .find(|&i| available(&members[i].0.client));
            let Some(i) = pick else { continue };
            *cursor = (i + 1) % n;
            let (key, sub) = members[i];
            out.push(Recipient {
                client: &key.client,
                qos: qos.min(sub.options.qos),
                retain: retain && sub.options.retain_as_published,
                subscription_ids: sub.identifier().into_iter().collect(),
            });
        }
        // Written only when it changes: publishers on every core read it.
        if out.len() != hint {
            self.last_fanout.store(out.len(), Ordering::Relaxed);
        }
        out
    }
}

/// The largest list a message's recipients start with (one of 48 KiB).
const MAX_FANOUT_HINT: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscription as the tree keeps it: 32 bytes (56 before), kept once per client in a
    /// topic's table when many subscribe to it (issue 29). A change that widens it fails here.
    #[test]
    fn a_kept_subscription_stays_small() {
        let size = std::mem::size_of::<(SubKey, Subscription)>();
        assert!(size <= 32, "a subscription is {size} B in the tree");
    }

    fn opts(qos: QoS) -> SubscribeOptions {
        SubscribeOptions::qos(qos)
    }

    /// The clients, sorted (routing returns them in no particular order).
    fn clients(t: &[Target]) -> Vec<&str> {
        let mut c: Vec<&str> = t.iter().map(|t| &*t.client).collect();
        c.sort_unstable();
        c
    }

    #[test]
    fn qos_is_downgraded_and_overlaps_merge() {
        let mut r = Router::new();
        r.subscribe("a", "s/+", opts(QoS::AtMostOnce), Some(1))
            .unwrap();
        r.subscribe("a", "s/#", opts(QoS::AtLeastOnce), Some(2))
            .unwrap();
        r.subscribe("b", "s/x", opts(QoS::ExactlyOnce), None)
            .unwrap();
        let t = r.route("p", "s/x", QoS::AtLeastOnce, false, |_| true);
        assert_eq!(clients(&t), ["a", "b"]);
        assert_eq!(
            t[0].qos,
            QoS::AtLeastOnce,
            "highest QoS of a's subscriptions"
        );
        let mut ids = t[0].subscription_ids.clone();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2]);
        assert_eq!(t[1].qos, QoS::AtLeastOnce, "never above the published QoS");
    }

    #[test]
    fn no_local_and_retain_as_published() {
        let mut r = Router::new();
        r.subscribe(
            "me",
            "t",
            SubscribeOptions {
                no_local: true,
                ..opts(QoS::AtLeastOnce)
            },
            None,
        )
        .unwrap();
        r.subscribe(
            "you",
            "t",
            SubscribeOptions {
                retain_as_published: true,
                ..opts(QoS::AtLeastOnce)
            },
            None,
        )
        .unwrap();
        r.subscribe("them", "t", opts(QoS::AtLeastOnce), None)
            .unwrap();
        let mut t = r.route("me", "t", QoS::AtMostOnce, true, |_| true);
        t.sort_by(|a, b| a.client.cmp(&b.client));
        assert_eq!(clients(&t), ["them", "you"]);
        assert!(!t[0].retain, "RETAIN cleared without Retain As Published");
        assert!(t[1].retain);
    }

    #[test]
    fn shared_subscriptions_take_turns_and_skip_unavailable_members() {
        let mut r = Router::new();
        for c in ["w1", "w2", "w3"] {
            r.subscribe(c, "$share/workers/jobs/+", opts(QoS::AtLeastOnce), None)
                .unwrap();
        }
        r.subscribe("auditor", "jobs/#", opts(QoS::AtMostOnce), None)
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..6 {
            let t = r.route("p", "jobs/1", QoS::AtLeastOnce, false, |_| true);
            assert_eq!(
                t.len(),
                2,
                "one copy for the group, one for the plain subscriber"
            );
            got.push(
                t.iter()
                    .find(|t| &*t.client != "auditor")
                    .unwrap()
                    .client
                    .to_string(),
            );
        }
        assert_eq!(got, ["w1", "w2", "w3", "w1", "w2", "w3"]);
        let t = r.route("p", "jobs/1", QoS::AtLeastOnce, false, |c| c == "w3");
        assert!(clients(&t).contains(&"w3"));
        let t = r.route("p", "jobs/1", QoS::AtLeastOnce, false, |_| false);
        assert_eq!(clients(&t), ["auditor"], "nobody in the group can take it");
        assert!(r.unsubscribe("w1", "$share/workers/jobs/+"));
        assert!(
            !r.unsubscribe("w1", "jobs/+"),
            "the plain filter is another subscription"
        );
    }

    #[test]
    fn retained_messages_on_subscribe_follow_retain_handling() {
        let mut r = Router::new();
        let mut tree = RetainedTree::new();
        tree.set(
            "home/temp",
            Retained {
                message: "21",
                qos: QoS::ExactlyOnce,
            },
        );
        tree.set(
            "home/hum",
            Retained {
                message: "40",
                qos: QoS::AtMostOnce,
            },
        );
        let retained = |r: &mut Router, client: &str, filter: &str, o: SubscribeOptions| {
            let s = r.subscribe(client, filter, o, None).unwrap();
            let mut got = s
                .send_retained
                .map(|f| retained_matching(&tree, &f, o.qos))
                .unwrap_or_default();
            got.sort();
            got
        };
        assert_eq!(
            retained(&mut r, "a", "home/+", opts(QoS::AtLeastOnce)),
            [
                ("home/hum".into(), "40", QoS::AtMostOnce),
                ("home/temp".into(), "21", QoS::AtLeastOnce)
            ]
        );
        let again = SubscribeOptions {
            retain_handling: RetainHandling::SendIfNew,
            ..opts(QoS::AtLeastOnce)
        };
        assert!(retained(&mut r, "a", "home/+", again).is_empty(), "not new");
        assert_eq!(retained(&mut r, "b", "home/+", again).len(), 2, "new");
        let never = SubscribeOptions {
            retain_handling: RetainHandling::DoNotSend,
            ..opts(QoS::AtLeastOnce)
        };
        assert!(retained(&mut r, "c", "home/#", never).is_empty());
        assert!(
            retained(&mut r, "d", "$share/g/home/#", opts(QoS::AtLeastOnce)).is_empty(),
            "never to shared subscriptions"
        );
    }

    #[test]
    fn invalid_filters_get_the_suback_reason_code() {
        let mut r = Router::new();
        assert_eq!(
            r.subscribe("a", "a/#/b", opts(QoS::AtMostOnce), None),
            Err(ReasonCode::TopicFilterInvalid)
        );
        assert_eq!(
            r.subscribe("a", "$share/g", opts(QoS::AtMostOnce), None),
            Err(ReasonCode::TopicFilterInvalid)
        );
        assert_eq!(r.subscriptions(), 0);
    }
}
