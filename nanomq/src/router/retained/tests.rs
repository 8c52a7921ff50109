use std::collections::BTreeMap;

use super::*;
use crate::router::test_rng::Rng;
use crate::router::topic::matches;

/// Messages are `(topic number, generation)`; generation 0 counts as expired in keep tests.
type Store = RetainedStore<(u32, u32)>;

fn find(store: &Store, filter: &str) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    store.matching(filter, |_| true, &mut out);
    out.sort_unstable();
    out
}

/// Nodes below the root, checking that none is left empty and that `len` is right.
fn nodes(store: &Store) -> usize {
    let inner = read_lock(&store.inner);
    let mut stack: Vec<&Level<(u32, u32)>> = inner.root.children.values().collect();
    let (mut count, mut messages) = (0, 0);
    while let Some(level) = stack.pop() {
        count += 1;
        messages += usize::from(level.retained.is_some());
        assert!(
            level.retained.is_some() || !level.children.is_empty(),
            "empty node left behind"
        );
        stack.extend(level.children.values());
    }
    assert_eq!(messages, inner.len);
    count
}

#[test]
fn set_replace_clear() {
    let store = Store::new();
    assert!(store.is_empty());
    store.set("a/b", Some((1, 1)));
    assert_eq!(store.len(), 1);
    store.set("a/b", Some((1, 2)));
    assert_eq!(store.len(), 1);
    assert_eq!(find(&store, "a/b"), [(1, 2)]);
    store.set("a/b", None);
    assert!(store.is_empty());
    assert_eq!(find(&store, "a/b"), []);
    assert_eq!(nodes(&store), 0);
    // Clearing what is not there changes nothing.
    store.set("a/b", None);
    store.set("a", Some((0, 1)));
    store.set("a/b/c", None);
    assert_eq!(store.len(), 1);
    assert_eq!(nodes(&store), 1);
}

#[test]
fn clearing_prunes_only_unused_branches() {
    let store = Store::new();
    store.set("a", Some((0, 1)));
    store.set("a/b/c/d", Some((1, 1)));
    store.set("a/b/x", Some((2, 1)));
    assert_eq!(nodes(&store), 5);
    store.set("a/b/c/d", None);
    assert_eq!(nodes(&store), 3, "a/b stays for a/b/x");
    store.set("a", None);
    assert_eq!(nodes(&store), 3, "a stays as the parent of a/b/x");
    store.set("a/b/x", None);
    assert_eq!(nodes(&store), 0);
    store.set("a/b", Some((1, 1)));
    store.set("a/b/c", Some((2, 1)));
    store.set("a/b", None);
    assert_eq!(nodes(&store), 3, "a/b still leads to a/b/c");
    assert_eq!(find(&store, "#"), [(2, 1)]);
}

#[test]
fn wildcard_retrieval_agrees_with_matches() {
    let topics = [
        "a", "a/b", "a/c", "a/b/c", "b", "/x", "/", "a//b", "$SYS/x", "$SYS/y/z", "$SYS",
    ];
    let filters = [
        "#", "+", "+/+", "a/#", "a/+", "a/+/c", "+/b", "/+", "a//b", "a/+/b", "$SYS/#", "$SYS/+",
        "+/x", "b/#", "c/#", "a/b/c/#", "+/+/+",
    ];
    let store = Store::new();
    for (i, topic) in topics.iter().enumerate() {
        store.set(topic, Some((i as u32, 1)));
    }
    for filter in filters {
        let expected: Vec<(u32, u32)> = (0..topics.len())
            .filter(|&i| matches(filter, topics[i]))
            .map(|i| (i as u32, 1))
            .collect();
        assert_eq!(find(&store, filter), expected, "{filter:?}");
    }
    // The `$` rule, spelled out.
    assert!(!find(&store, "#")
        .iter()
        .any(|(i, _)| topics[*i as usize].starts_with('$')));
    assert_eq!(find(&store, "$SYS/#").len(), 3);
}

#[test]
fn expired_messages_are_removed_not_returned() {
    let store = Store::new();
    store.set("a/live", Some((0, 1)));
    store.set("a/dead", Some((1, 0)));
    store.set("a/b/dead", Some((2, 0)));
    store.set("x/dead", Some((3, 0)));
    let keep = |m: &(u32, u32)| m.1 != 0;
    let mut out = Vec::new();
    store.matching("a/#", keep, &mut out);
    assert_eq!(out, [(0, 1)]);
    assert_eq!(store.len(), 2, "x/dead was not visited, so it stays");
    assert_eq!(nodes(&store), 4);
    out.clear();
    store.matching("+/dead", keep, &mut out);
    assert!(out.is_empty());
    assert_eq!(store.len(), 1);
    assert_eq!(nodes(&store), 2);
}

#[test]
fn random_operations_agree_with_a_model() {
    let mut rng = Rng(0xdead_beef);
    let alphabet = ["a", "b", "", "$s"];
    let mut model = BTreeMap::new();
    let store = Store::new();
    for generation in 1..=5_000 {
        let depth = 1 + rng.below(4);
        let levels: Vec<&str> = (0..depth).map(|_| alphabet[rng.below(4)]).collect();
        let topic = levels.join("/");
        if rng.below(2) == 0 {
            store.set(&topic, Some((0, generation)));
            model.insert(topic, generation);
        } else {
            store.set(&topic, None);
            model.remove(&topic);
        }
    }
    assert_eq!(store.len(), model.len());
    nodes(&store);
    for filter in ["#", "+", "a/#", "+/+/#", "$s/#", "/+", "+/b/+/a", "b//#"] {
        let mut expected: Vec<(u32, u32)> = model
            .iter()
            .filter(|(topic, _)| matches(filter, topic))
            .map(|(_, generation)| (0, *generation))
            .collect();
        expected.sort_unstable();
        assert_eq!(find(&store, filter), expected, "{filter:?}");
    }
}

#[test]
fn deep_topics_do_not_overflow_the_stack() {
    let deep = vec!["a"; 40_000].join("/");
    let store = Store::new();
    store.set(&deep, Some((1, 1)));
    assert_eq!(find(&store, "#"), [(1, 1)]);
    assert_eq!(find(&store, &deep), [(1, 1)]);
    store.set(&deep, None);
    assert_eq!(nodes(&store), 0);
    store.set(&deep, Some((1, 1)));
    drop(store);
}
