use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::mqtt::QoS;
use crate::router::test_rng::Rng;
use crate::router::topic::matches;

mod stress;

/// Subscribers are plain integers in tests.
type Tree = SubscriptionTree<u32>;

fn qos(level: u8) -> QoS {
    QoS::from_u8(level).expect("test QoS")
}

fn sub(subscriber: u32, level: u8, identifier: Option<u32>) -> Subscription<u32> {
    Subscription {
        subscriber,
        options: SubscriptionOptions {
            qos: qos(level),
            ..Default::default()
        },
        identifier,
    }
}

fn no_local_sub(subscriber: u32, identifier: Option<u32>) -> Subscription<u32> {
    let mut s = sub(subscriber, 0, identifier);
    s.options.no_local = true;
    s
}

/// Deliveries for `topic`, every subscriber online, sorted for comparison.
fn deliver(tree: &Tree, topic: &str, publisher: Option<u32>) -> Vec<Delivery<u32>> {
    let mut out = Vec::new();
    tree.match_topic(topic, publisher.as_ref(), |_| true, &mut out);
    for d in &mut out {
        d.subscription_identifiers.sort_unstable();
    }
    out.sort_by_key(|d| d.subscriber);
    out
}

fn receivers(tree: &Tree, topic: &str) -> Vec<u32> {
    deliver(tree, topic, None)
        .iter()
        .map(|d| d.subscriber)
        .collect()
}

/// What a quiet tree holds, read by walking it, with its structural invariants checked.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Snapshot {
    /// `(filter as subscribed, subscriber) -> (qos, identifier)`.
    pub(super) entries: BTreeMap<(String, u32), (QoS, Option<u32>)>,
    /// Nodes below the root.
    pub(super) nodes: usize,
}

pub(super) fn snapshot(tree: &Tree) -> Snapshot {
    let mut snap = Snapshot::default();
    let mut stack = vec![(Arc::clone(&tree.root), String::new())];
    while let Some((node, path)) = stack.pop() {
        let inner = read_lock(&node.inner);
        assert!(!inner.removed, "reachable node {path:?} is marked removed");
        if !path.is_empty() {
            snap.nodes += 1;
            assert!(!inner.is_empty(), "empty node {path:?} was not pruned");
        }
        let filter = path.strip_prefix('/').unwrap_or(&path);
        for (subscriber, grant) in &inner.plain {
            let value = (grant.options.qos, grant.identifier);
            snap.entries.insert((filter.to_owned(), *subscriber), value);
        }
        for group in &inner.shared {
            assert!(!group.members.is_empty(), "empty share group kept");
            for m in &group.members {
                let key = (format!("$share/{}/{filter}", group.name), m.subscriber);
                snap.entries.insert(key, (m.options.qos, m.identifier));
            }
        }
        for (key, child) in &inner.children {
            stack.push((Arc::clone(child), format!("{path}/{key}")));
        }
    }
    assert_eq!(snap.entries.len(), tree.len(), "len counter out of step");
    snap
}

/// Nodes a set of filters needs below the root: one per distinct prefix of the inner filters.
pub(super) fn nodes_needed<'a>(filters: impl IntoIterator<Item = &'a str>) -> usize {
    let mut prefixes = BTreeSet::new();
    for filter in filters {
        let (_, path) = split_shared(filter);
        let ends = path.match_indices('/').map(|(i, _)| i);
        prefixes.extend(ends.chain([path.len()]).map(|end| &path[..end]));
    }
    prefixes.len()
}

#[test]
fn matching_table_agrees_with_matches() {
    let table = [
        ("#", "$SYS/x"),
        ("+/x", "$SYS/x"),
        ("$SYS/#", "$SYS/x"),
        ("$SYS/+", "$SYS/x"),
        ("+", "$SYS"),
        ("#", "a"),
        ("a/#", "a"),
        ("a/#", "a/b/c"),
        ("a/b/#", "a"),
        ("+", ""),
        ("+/+", "/"),
        ("a/+/b", "a//b"),
        ("a//b", "a//b"),
        ("a/+", "a"),
        ("sport/tennis/+", "sport/tennis"),
        ("sport/tennis/+", "sport/tennis/p1"),
        ("sport/+/p1", "sport/tennis/p1"),
        ("+/+/#", "a"),
        ("+/+/#", "a/b"),
        ("a/+", "a/$x"),
    ];
    for (filter, topic) in table {
        let tree = Tree::new();
        tree.subscribe(filter, sub(1, 0, None));
        let expected = if matches(filter, topic) {
            vec![1]
        } else {
            vec![]
        };
        assert_eq!(receivers(&tree, topic), expected, "{filter:?} vs {topic:?}");
    }
    let tree = Tree::new();
    for (i, filter) in ["#", "+/x", "$SYS/#", "+/+"].into_iter().enumerate() {
        tree.subscribe(filter, sub(i as u32, 0, None));
    }
    assert_eq!(receivers(&tree, "$SYS/x"), [2]);
    assert_eq!(receivers(&tree, "a/x"), [0, 1, 3]);
}

#[test]
fn random_filters_agree_with_matches() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let alphabet = ["a", "b", "$x", "", "+", "#"];
    let tree = Tree::new();
    let mut filters = Vec::new();
    for i in 0..300 {
        let depth = 1 + rng.below(4);
        let mut levels: Vec<&str> = (0..depth).map(|_| alphabet[rng.below(6)]).collect();
        // `#` is only valid last.
        levels.retain(|l| *l != "#");
        if levels.is_empty() || rng.below(3) == 0 {
            levels.push("#");
        }
        let filter = levels.join("/");
        tree.subscribe(&filter, sub(i, 0, None));
        filters.push(filter);
    }
    for _ in 0..1000 {
        let depth = 1 + rng.below(5);
        let levels: Vec<&str> = (0..depth).map(|_| alphabet[rng.below(4)]).collect();
        let topic = levels.join("/");
        let expected: Vec<u32> = (0..300)
            .filter(|&i| matches(&filters[i as usize], &topic))
            .collect();
        assert_eq!(receivers(&tree, &topic), expected, "topic {topic:?}");
    }
}

#[test]
fn overlapping_subscriptions_merge() {
    let tree = Tree::new();
    tree.subscribe("a/+", sub(1, 0, Some(1)));
    tree.subscribe("a/b", sub(1, 2, Some(2)));
    tree.subscribe("#", sub(1, 1, None));
    let mut rap = sub(1, 0, Some(3));
    rap.options.retain_as_published = true;
    tree.subscribe("a/#", rap);
    tree.subscribe("a/b", sub(2, 1, None));
    let out = deliver(&tree, "a/b", None);
    let merged = Delivery {
        subscriber: 1,
        qos: QoS::ExactlyOnce,
        retain_as_published: true,
        subscription_identifiers: vec![1, 2, 3],
    };
    let single = Delivery {
        subscriber: 2,
        qos: QoS::AtLeastOnce,
        retain_as_published: false,
        subscription_identifiers: vec![],
    };
    assert_eq!(out, [merged, single]);
    // Only `#` matches here: one delivery, its own options.
    let out = deliver(&tree, "b", None);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].qos, QoS::AtLeastOnce);
    assert!(!out[0].retain_as_published);
}

#[test]
fn output_is_appended_and_reused() {
    let tree = Tree::new();
    tree.subscribe("a", sub(1, 0, None));
    let mut out = Vec::new();
    tree.match_topic("a", None::<&u32>, |_| true, &mut out);
    tree.match_topic("a", None::<&u32>, |_| true, &mut out);
    assert_eq!(
        out.len(),
        2,
        "a second match appends, it does not merge into the first"
    );
}

#[test]
fn large_fan_out_merges_and_keeps_shared_apart() {
    let tree = Tree::new();
    tree.subscribe("$share/g/#", sub(1000, 1, Some(7)));
    for s in 0..100 {
        tree.subscribe("a/b", sub(s, 0, Some(1)));
        tree.subscribe("a/+", sub(s, 1, Some(2)));
    }
    let out = deliver(&tree, "a/b", Some(1000));
    assert_eq!(out.len(), 101);
    for (s, d) in out.iter().take(100).enumerate() {
        assert_eq!(d.subscriber, s as u32);
        assert_eq!(d.qos, QoS::AtLeastOnce);
        assert_eq!(d.subscription_identifiers, [1, 2]);
    }
    assert_eq!(out[100].subscriber, 1000);
    assert_eq!(out[100].subscription_identifiers, [7]);
}

#[test]
fn no_local() {
    let tree = Tree::new();
    tree.subscribe("a", no_local_sub(1, Some(1)));
    tree.subscribe("a", no_local_sub(2, None));
    tree.subscribe("+", sub(1, 0, Some(2)));
    let out = deliver(&tree, "a", Some(1));
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0].subscription_identifiers,
        [2],
        "only the `+` subscription"
    );
    assert_eq!(out[1].subscriber, 2);
    assert_eq!(
        receivers(&tree, "a"),
        [1, 2],
        "broker messages reach everyone"
    );
    assert_eq!(deliver(&tree, "a", Some(2)).len(), 1);
    // No Local does not apply to shared subscriptions.
    let tree = Tree::new();
    tree.subscribe("$share/g/a", no_local_sub(1, None));
    assert_eq!(deliver(&tree, "a", Some(1)).len(), 1);
}

#[test]
fn shared_round_robin() {
    let tree = Tree::new();
    tree.subscribe("$share/g/a/+", sub(1, 1, Some(10)));
    tree.subscribe("$share/g/a/+", sub(2, 2, Some(20)));
    tree.subscribe("a/b", sub(1, 0, None));
    let mut counts = BTreeMap::new();
    let mut out = Vec::new();
    for _ in 0..10 {
        out.clear();
        tree.match_topic("a/b", None::<&u32>, |_| true, &mut out);
        assert_eq!(
            out.len(),
            2,
            "one plain delivery and one shared, never merged"
        );
        let shared = out.iter().find(|d| !d.subscription_identifiers.is_empty());
        let shared = shared.expect("a shared delivery");
        let expected_qos = if shared.subscriber == 1 { 1 } else { 2 };
        assert_eq!(shared.qos, qos(expected_qos));
        assert_eq!(shared.subscription_identifiers, [shared.subscriber * 10]);
        *counts.entry(shared.subscriber).or_insert(0) += 1;
    }
    assert_eq!(counts, BTreeMap::from([(1, 5), (2, 5)]));
}

#[test]
fn shared_groups_are_independent() {
    let tree = Tree::new();
    tree.subscribe("$share/g/a", sub(1, 0, None));
    tree.subscribe("$share/h/a", sub(1, 0, None));
    tree.subscribe("$share/g/#", sub(2, 0, None));
    // Same group name, other filter: another group.
    assert_eq!(receivers(&tree, "a"), [1, 1, 2]);
    assert_eq!(tree.len(), 3);
}

#[test]
fn shared_prefers_online_members() {
    let tree = Tree::new();
    for s in 1..=3 {
        tree.subscribe("$share/g/t", sub(s, 0, None));
    }
    let mut counts = BTreeMap::new();
    let mut out = Vec::new();
    for _ in 0..9 {
        tree.match_topic("t", None::<&u32>, |s| *s == 2, &mut out);
    }
    for d in out.drain(..) {
        *counts.entry(d.subscriber).or_insert(0) += 1;
    }
    assert_eq!(counts, BTreeMap::from([(2, 9)]));
    for _ in 0..9 {
        tree.match_topic("t", None::<&u32>, |_| false, &mut out);
    }
    for d in out.drain(..) {
        *counts.entry(d.subscriber).or_insert(0) += 1;
    }
    assert_eq!(counts, BTreeMap::from([(1, 3), (2, 12), (3, 3)]));
}

#[test]
fn subscribe_replaces() {
    let tree = Tree::new();
    assert!(!tree.subscribe("a/b", sub(1, 0, Some(1))));
    assert!(tree.subscribe("a/b", sub(1, 2, Some(5))));
    assert!(!tree.subscribe("a/b", sub(2, 0, None)));
    assert!(!tree.subscribe("$share/g/a/b", sub(1, 0, None)));
    assert!(tree.subscribe("$share/g/a/b", sub(1, 1, Some(9))));
    assert_eq!(tree.len(), 3);
    let out = deliver(&tree, "a/b", None);
    assert_eq!(out.len(), 3);
    let plain = out
        .iter()
        .find(|d| d.subscriber == 1 && d.qos == QoS::ExactlyOnce);
    assert_eq!(plain.expect("replaced").subscription_identifiers, [5]);
    let shared = out
        .iter()
        .find(|d| d.subscriber == 1 && d.qos == QoS::AtLeastOnce);
    assert_eq!(shared.expect("replaced").subscription_identifiers, [9]);
}

#[test]
fn unsubscribe_prunes() {
    let tree = Tree::new();
    tree.subscribe("a/b/c", sub(1, 0, None));
    tree.subscribe("a/b/d", sub(1, 0, None));
    tree.subscribe("$share/g/a/b/c/e", sub(2, 0, None));
    tree.subscribe("a/b/c", sub(2, 0, None));
    assert_eq!(snapshot(&tree).nodes, 5);
    assert!(!tree.unsubscribe("a/b/x", &1));
    assert!(!tree.unsubscribe("a/b", &1));
    assert!(!tree.unsubscribe("a/b/c", &3));
    assert!(!tree.unsubscribe("$share/h/a/b/c/e", &2));
    assert!(!tree.unsubscribe("$share/g/a/b/c/e", &1));
    assert!(tree.unsubscribe("$share/g/a/b/c/e", &2));
    assert_eq!(snapshot(&tree).nodes, 4);
    assert!(tree.unsubscribe("a/b/c", &1));
    assert_eq!(snapshot(&tree).nodes, 4, "a/b/c still has subscriber 2");
    assert!(tree.unsubscribe("a/b/c", &2));
    assert!(!tree.unsubscribe("a/b/c", &2));
    assert_eq!(snapshot(&tree).nodes, 3);
    assert!(tree.unsubscribe("a/b/d", &1));
    assert_eq!(snapshot(&tree), Snapshot::default());
    assert!(tree.is_empty());
    // Pruning stops at a node that still holds subscriptions.
    tree.subscribe("a", sub(1, 0, None));
    tree.subscribe("a/b/c", sub(1, 0, None));
    tree.unsubscribe("a/b/c", &1);
    assert_eq!(snapshot(&tree).nodes, 1);
}

#[test]
fn deep_filters_do_not_overflow_the_stack() {
    // 40 000 levels: deeper than any recursion over the trie could go on a 2 MiB test stack.
    let deep = vec!["a"; 40_000].join("/");
    let tree = Tree::new();
    tree.subscribe(&deep, sub(1, 0, None));
    tree.subscribe(&format!("{deep}/#"), sub(2, 0, None));
    assert_eq!(receivers(&tree, &deep), [1, 2]);
    assert!(tree.unsubscribe(&format!("{deep}/#"), &2));
    assert!(tree.unsubscribe(&deep, &1));
    assert_eq!(snapshot(&tree).nodes, 0);
    tree.subscribe(&deep, sub(1, 0, None));
    drop(tree);
}

#[test]
fn tree_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Tree>();
    shareable::<Delivery<u32>>();
}
